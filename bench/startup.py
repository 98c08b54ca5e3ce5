#!/usr/bin/env python3
"""Start-up cost of an operator module per language: cold (compiled now) and
warm (loaded from the compiled-module cache), and instantiation.

    bench/startup.py [--rounds 3]

For each language (rust, py, js) it runs examples/bench/w5*.yaml (the session
detector, and for py/js also their USD map) on 10 orders, first with an empty
SLUICE_CACHE_DIR (the host compiles each component), then again with the
filled one (it loads the compiled artifacts). It prints the wall time of the
whole `sluice run`, and from the host's debug log the compile or cache-load
time and the time to instantiate one instance from its pre-linked template
(wasmtime's InstancePre). One line per language and start:
    STARTUP lang=py start=cold wall_s=27.9 compile_s=27.1 load_ms=- instantiate_ms=1.2 modules=2 module_mib=35.6

Needs the release build and the example modules (scripts/build-guests.sh).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
SPECS = {"rust": "w5.yaml", "py": "w5-py.yaml", "js": "w5-js.yaml"}


def run(spec, cache, d, modules):
    env = dict(os.environ, SLUICE_LOG="sluice=debug", SLUICE_CACHE_DIR=cache,
               SLUICE_MODULE_PATH=modules, INPUT=os.path.join(d, "in.jsonl"),
               OUTPUT=os.path.join(d, "out.jsonl"), LATE_OUTPUT=os.path.join(d, "late.jsonl"))
    t = time.monotonic()
    r = subprocess.run([os.path.join(TARGET, "release", "sluice"), "run", "--no-api",
                        os.path.join(REPO, "examples/bench", spec)],
                       env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    if r.returncode != 0:
        sys.exit(f"{spec}: sluice failed:\n{r.stderr}")
    log = r.stdout + r.stderr
    compile_s = sum(dur(m) for m in re.findall(r"compiled a [0-9.]+ MiB module \(\w+\) in (\S+);", log))
    load_s = sum(dur(m) for m in re.findall(r"from the cache in (\S+)", log))
    inst = [dur(m) for m in re.findall(r"instantiated \S+ in (\S+)", log)]
    return wall, compile_s, load_s, inst


def dur(text):
    """A Rust Duration's Debug text ('1.2ms', '27.1s', '140µs') in seconds."""
    m = re.fullmatch(r"([0-9.]+)(ns|µs|ms|s)", text)
    return float(m.group(1)) * {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--file", default="/tmp/bench/orders-200k.jsonl")
    args = ap.parse_args()
    modules = os.environ.get("SLUICE_MODULE_PATH", os.path.join(TARGET, "wasm32-wasip2", "release"))
    with open(args.file) as f:
        head = [next(f) for _ in range(10)]
    for lang, spec in SPECS.items():
        results = {"cold": [], "warm": []}
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="sluice-startup-") as d:
                with open(os.path.join(d, "in.jsonl"), "w") as f:
                    f.writelines(head)
                cache = os.path.join(d, "cache")
                results["cold"].append(run(spec, cache, d, modules))
                results["warm"].append(run(spec, cache, d, modules))
                mib = sum(os.path.getsize(os.path.join(cache, n)) for n in os.listdir(cache)) / (1 << 20)
        for start, rs in results.items():
            inst = [i for r in rs for i in r[3]]
            print(f"STARTUP lang={lang} start={start} rounds={len(rs)} "
                  f"wall_s={statistics.median(r[0] for r in rs):.2f} "
                  f"compile_s={statistics.median(r[1] for r in rs):.2f} "
                  f"cache_load_ms={statistics.median(r[2] for r in rs) * 1e3:.1f} "
                  f"instantiate_ms={statistics.median(inst) * 1e3:.2f} "
                  f"compiled_mib={mib:.1f}", flush=True)


if __name__ == "__main__":
    main()
