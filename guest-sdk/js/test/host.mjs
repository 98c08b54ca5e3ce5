// A stand-in for the sluice host in the SDK's unit tests: the WIT imports
// (`logging`, `state`, `output`, `http`, `broadcast-state`) as in-memory modules, and `load`,
// which bundles an operator module with the SDK against them and imports it.
//
// `http.fetch` records each request in `host().requests` and answers with
// what `host().http(request)` returns: `{status, headers, body}` (body a
// string or bytes) or `{err: "message"}` for a transport failure.
//
// The state store behaves as the Rust SDK's native stand-in
// (guest-sdk/rust/src/state.rs): keyed by state handle and key index.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { rollup } from "@rollup/wasm-node";

const here = dirname(fileURLToPath(import.meta.url));

const HOST = `
export const host = globalThis.__sluiceTestHost ??= {
  logs: [], declared: [], sides: [], lists: new Map(), maps: new Map(), broadcast: [],
};
export function log(level, message) { host.logs.push([level, message]); }
export function declare(d) {
  // \`broadcast-state.declare(name)\` shares the name with \`state.declare\`.
  if (typeof d === "string") {
    const b = host.broadcast.findIndex((x) => x.name === d);
    if (b >= 0) return b;
    host.broadcast.push({ name: d, entries: new Map() });
    return host.broadcast.length - 1;
  }
  const i = host.declared.findIndex((x) => x.name === d.name);
  if (i >= 0) {
    if (host.declared[i].kind === d.kind && host.declared[i].version === d.version) return i;
    throw Object.assign(new Error("state \`" + d.name + "\` is already declared as another kind or version"), { payload: "x" });
  }
  host.declared.push(d);
  return host.declared.length - 1;
}
export function sideOutput(name) {
  const i = host.sides.indexOf(name);
  if (i >= 0) return i + 1;
  host.sides.push(name);
  return host.sides.length;
}
const enc = new TextEncoder();
function byteList(items) {
  const spans = []; let n = 0;
  for (const b of items) { spans.push({ offset: n, len: b.length }); n += b.length; }
  const data = new Uint8Array(n); let at = 0;
  for (const b of items) { data.set(b, at); at += b.length; }
  return { data, spans };
}
function slice(l, s) { return l.data.slice(s.offset, s.offset + s.len); }
const k = (s, key) => s + "/" + key;
export function listGet(s, key) { return byteList(host.lists.get(k(s, key)) ?? []); }
export function listAdd(s, key, e) { const l = host.lists.get(k(s, key)) ?? []; l.push(e.slice()); host.lists.set(k(s, key), l); }
export function listUpdate(s, key, l) { host.lists.set(k(s, key), l.spans.map((sp) => slice(l, sp))); }
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
export function mapGet(s, key, uk) { return host.maps.get(k(s, key))?.get(hex(uk))?.[1]; }
export function mapPut(s, key, uk, v) {
  const m = host.maps.get(k(s, key)) ?? new Map(); m.set(hex(uk), [uk.slice(), v.slice()]); host.maps.set(k(s, key), m);
}
export function mapRemove(s, key, uk) { host.maps.get(k(s, key))?.delete(hex(uk)); }
export function get(s, key) { return host.broadcast[s].entries.get(hex(key))?.[1]; }
export function put(s, key, v) { host.broadcast[s].entries.set(hex(key), [key.slice(), v.slice()]); }
export function remove(s, key) { host.broadcast[s].entries.delete(hex(key)); }
export function entries(s) {
  const es = [...host.broadcast[s].entries.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return [byteList(es.map(([, [k]]) => k)), byteList(es.map(([, [, v]]) => v))];
}
export function mapEntries(s, key) {
  const es = [...(host.maps.get(k(s, key)) ?? new Map()).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return [byteList(es.map(([, [uk]]) => uk)), byteList(es.map(([, [, v]]) => v))];
}
export function clear(s, key) { host.lists.delete(k(s, key)); host.maps.delete(k(s, key)); }
// The bindings' error for an import's \`err\`: the value is the payload.
class ComponentError extends Error {
  constructor(value) { super(String(value)); this.payload = value; }
}
export function fetch(request) {
  (host.requests ??= []).push(request);
  if (typeof host.http !== "function") throw new Error("the stand-in host has no http handler (set host().http)");
  const r = host.http(request);
  if (r.err !== undefined) throw new ComponentError(r.err);
  const body = typeof r.body === "string" ? enc.encode(r.body) : (r.body ?? new Uint8Array(0));
  return { status: r.status ?? 200, headers: r.headers ?? [], body };
}
`;

/// The stand-in's recorded logs and store (shared by every loaded module).
export function host() {
  return (globalThis.__sluiceTestHost ??= { logs: [], declared: [], sides: [], lists: new Map(), maps: new Map() });
}

/// Bundles `source` (an operator module's text) with the SDK against the
/// stand-in host and imports it.
export async function load(source) {
  const dir = await mkdtemp(join(tmpdir(), "sluice-js-test-"));
  try {
    const hostPath = join(dir, "host.js");
    await writeFile(hostPath, HOST);
    const input = join(dir, "op.js");
    await writeFile(input, source);
    const alias = { sluice: join(here, "..", "sluice.js") };
    for (const i of ["logging", "state", "output", "http", "broadcast-state"]) alias[`sluice:operator/${i}`] = hostPath;
    const bundle = await rollup({
      input,
      plugins: [{ name: "stand-in", resolveId: (id) => alias[id] ?? null }],
      onwarn() {},
    });
    const out = join(dir, "bundle.mjs");
    await bundle.write({ file: out, format: "esm" });
    await bundle.close();
    return await import(pathToFileURL(out).href);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/// A batch as the host sends it: records `{value, key?, timestamp?,
/// headers?, kind?}` (strings; `kind` a WIT `row-kind` case, "insert" by
/// default).
export function batch(records) {
  const pieces = [];
  let n = 0;
  const put = (s) => {
    const b = enc.encode(s);
    pieces.push(b);
    const span = { offset: n, len: b.length };
    n += b.length;
    return span;
  };
  const headers = [];
  const metas = records.map((r) => {
    const r2 = typeof r === "string" ? { value: r } : r;
    const key = r2.key === undefined ? undefined : put(r2.key);
    const value = put(r2.value);
    const start = headers.length;
    for (const [hn, hv] of r2.headers ?? []) headers.push({ name: put(hn), value: put(hv) });
    return {
      key,
      value,
      timestamp: r2.timestamp === undefined ? undefined : BigInt(r2.timestamp),
      headersStart: start,
      headersLen: headers.length - start,
      kind: r2.kind ?? "insert",
    };
  });
  const data = new Uint8Array(n);
  let at = 0;
  for (const p of pieces) {
    data.set(p, at);
    at += p.length;
  }
  return { data, records: metas, headers };
}

/// A byte list of strings (`null`: the absent span of `keyed-input.values`).
export function byteList(items) {
  const spans = [];
  let s = "";
  for (const it of items) {
    if (it === null) {
      spans.push({ offset: 0xffffffff, len: 0 });
      continue;
    }
    const b = enc.encode(it);
    spans.push({ offset: enc.encode(s).length, len: b.length });
    s += it;
  }
  return { data: enc.encode(s), spans };
}

const text = (data, span) => dec.decode(data.subarray(span.offset, span.offset + span.len));

/// An output batch as plain records: `{key, value, timestamp, headers}`.
export function records(out) {
  const b = out.records;
  return b.records.map((m) => ({
    key: m.key === undefined ? undefined : text(b.data, m.key),
    value: text(b.data, m.value),
    timestamp: m.timestamp === undefined ? undefined : Number(m.timestamp),
    headers: b.headers.slice(m.headersStart, m.headersStart + m.headersLen).map((h) => [text(b.data, h.name), text(b.data, h.value)]),
  }));
}

/// Value writes as `[state, key, value or undefined]`.
export function valueWrites(out) {
  return out.valueWrites.map((w) => [w.state, w.key, w.value === undefined ? undefined : text(out.valueData, w.value)]);
}
