// Builds a JavaScript operator into a sluice Wasm component; run through
// `guest-sdk/js/build` (its header says how the world is chosen).
//
//   node guest-sdk/js/build.mjs OPERATOR.js OUT.wasm [--world NAME] [--wit PATH]
//        [--enable FEATURE]... [--bundle PATH]

import { existsSync } from "node:fs";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const SDK = join(here, "sluice.js");
const DEFAULT_WIT = resolve(here, "../../wit/operator.wit");
/// An import of the SDK's WIT package without a version.
const UNVERSIONED = /^sluice:operator\/[a-z-]+$/;
/// The StarlingMonkey features componentize-js can leave out, and the ones
/// an operator gets unless `--enable` names them: only `stdio` stays, so
/// that console output and uncaught exceptions reach the host's log.
const FEATURES = ["stdio", "random", "clocks", "http", "fetch-event"];
const DEFAULT_ON = ["stdio"];

function usage(msg) {
  if (msg) console.error(`build: ${msg}`);
  console.error(
    "usage: guest-sdk/js/build OPERATOR.js OUT.wasm [--world NAME] [--wit PATH] [--enable FEATURE]... [--bundle PATH]",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { enable: [], positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--world") opts.world = value();
    else if (a === "--wit") opts.wit = value();
    else if (a === "--enable") opts.enable.push(...value().split(","));
    else if (a === "--bundle") opts.bundle = value();
    else if (a === "-h" || a === "--help") usage();
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else opts.positional.push(a);
  }
  if (opts.positional.length !== 2) usage("expected OPERATOR.js and OUT.wasm");
  for (const f of opts.enable) {
    if (!FEATURES.includes(f)) usage(`unknown feature ${f} (one of ${FEATURES.join(", ")})`);
  }
  return opts;
}

/// `keyed-process` -> `keyedProcess`: the ES export name of a WIT interface.
function camel(name) {
  return name.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/// The worlds of a WIT file and the ES export names each expects (interface
/// exports, with `include`s resolved). Enough of WIT for wit/operator.wit.
function witWorlds(text) {
  const src = text.replace(/\/\/.*$/gm, "");
  const raw = new Map();
  const re = /\bworld\s+([a-z0-9-]+)\s*\{([^}]*)\}/g;
  for (let m; (m = re.exec(src)); ) {
    const body = m[2];
    const exports = [...body.matchAll(/\bexport\s+([^;:\s]+)\s*;/g)].map((x) => {
      const iface = x[1].replace(/@.*$/, "").split("/").pop();
      return camel(iface);
    });
    const includes = [...body.matchAll(/\binclude\s+([a-z0-9-]+)\s*;/g)].map((x) => x[1]);
    raw.set(m[1], { exports, includes });
  }
  const resolved = new Map();
  const get = (name, seen = new Set()) => {
    if (resolved.has(name)) return resolved.get(name);
    const w = raw.get(name);
    if (!w || seen.has(name)) return new Set();
    seen.add(name);
    const set = new Set(w.exports);
    for (const inc of w.includes) for (const e of get(inc, seen)) set.add(e);
    resolved.set(name, set);
    return set;
  };
  for (const name of raw.keys()) get(name);
  return resolved;
}

function chooseWorld(worlds, exports, witPath) {
  const have = [...exports].sort().join(",");
  const matches = [...worlds]
    .filter(([, set]) => [...set].sort().join(",") === have)
    .map(([name]) => name);
  if (matches.length === 1) return matches[0];
  const known = [...worlds]
    .map(([name, set]) => `  ${name}: ${[...set].join(", ")}`)
    .join("\n");
  throw new Error(
    `cannot tell the world from the module's exports (${have || "none"})` +
      (matches.length ? `: several worlds fit (${matches.join(", ")})` : "") +
      `; export exactly what one world of ${witPath} exports, or pass --world:\n${known}`,
  );
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const [source, out] = opts.positional.map((p) => resolve(p));
  const witPath = resolve(opts.wit ?? DEFAULT_WIT);
  if (!existsSync(source)) throw new Error(`no such file: ${source}`);
  if (!existsSync(witPath)) throw new Error(`no such WIT file: ${witPath}`);

  // The WIT imports name no version (`sluice:operator/logging`): they get
  // the package's, from the WIT file, the one place it is written.
  const witText = await readFile(witPath, "utf8");
  const version = /^package\s+sluice:operator@([^;\s]+)\s*;/m.exec(witText)?.[1];
  if (version === undefined) throw new Error(`${witPath} declares no package sluice:operator@VERSION`);

  const { rollup } = await import("@rollup/wasm-node");
  const { componentize } = await import("@bytecodealliance/componentize-js");

  // One ES module: the operator with the SDK (and anything else it imports
  // by a relative path); the WIT imports stay imports.
  const warnings = [];
  const bundle = await rollup({
    input: source,
    // WIT imports stay imports; the SDK's unversioned ones are resolved
    // (to the versioned name, external) by the plugin below.
    external: (id) => /^[a-z][a-z0-9-]*:[a-z][a-z0-9-]*\//.test(id) && !UNVERSIONED.test(id),
    plugins: [
      {
        name: "sluice-sdk",
        resolveId: (id) => {
          if (id === "sluice") return SDK;
          if (UNVERSIONED.test(id)) return { id: `${id}@${version}`, external: true };
          return null;
        },
      },
    ],
    // An import of a WIT interface the operator does not use must go: its
    // world may not have it (a transform has no `state`).
    treeshake: { moduleSideEffects: (id, isExternal) => !isExternal },
    onwarn(w) {
      warnings.push(w);
    },
  });
  const { output } = await bundle.generate({ format: "es" });
  await bundle.close();
  for (const w of warnings) {
    // An unresolved import is an error: the component could not load it.
    if (w.code === "UNRESOLVED_IMPORT") throw new Error(w.message);
    console.error(`build: warning: ${w.message}`);
  }
  const chunk = output.find((o) => o.type === "chunk" && o.isEntry);
  const exports = new Set(chunk.exports);

  const worlds = witWorlds(witText);
  const world = opts.world ?? chooseWorld(worlds, exports, witPath);
  if (!worlds.has(world)) throw new Error(`${witPath} has no world ${world}`);

  if (opts.bundle) await writeFile(opts.bundle, chunk.code);

  const work = await mkdtemp(join(tmpdir(), "sluice-js-build-"));
  try {
    const bundled = join(work, basename(source).replace(/\.[cm]?js$/, "") + ".bundle.js");
    await writeFile(bundled, chunk.code);
    const enabled = new Set([...DEFAULT_ON, ...opts.enable]);
    const { component } = await componentize({
      sourcePath: bundled,
      witPath,
      worldName: world,
      disableFeatures: FEATURES.filter((f) => !enabled.has(f)),
    });
    const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
    await writeFile(tmp, component);
    await rename(tmp, out);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`build: ${e?.message ?? e}`);
  // A syntax error: rollup shows the lines around it.
  if (e?.frame) console.error(e.frame);
  process.exit(1);
});
