#!/usr/bin/env python3
"""Async enrichment: records/s against an HTTP service with injected latency.

    bench/enrich.py [--latency-ms 20] [--capacities 1,10,100] [--seconds 5]
                    [--file /tmp/bench/orders-200k.jsonl] [--order ordered]
                    [--module customer_tier.wasm]

Starts examples/enricher/tier_service.py on a free loopback port (every
request answered after --latency-ms), then for each capacity runs
examples/enricher/orders-tier.yaml (the customer-tier module, or --module:
customer_tier_py.wasm, customer_tier_js.wasm; at parallelism 1) on the first N orders of --file, where N is what the ideal rate
(capacity / latency) would do in --seconds. It reads the job's own figure
(records read / run time, from `sluice run`'s summary, so process start and
module compilation are not in it) and checks that every order came out
once. One line per capacity:
    ENRICH module=customer_tier.wasm capacity=10 latency_ms=20 order=ordered records=2500 seconds=5.31 records_per_s=471 ideal=500 efficiency=0.94

Needs the release build (cargo build --release -p sluice) and the example
modules (scripts/build-guests.sh).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--capacities", default="1,10,100")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--file", default="/tmp/bench/orders-200k.jsonl")
    ap.add_argument("--order", choices=["ordered", "unordered"], default="ordered")
    ap.add_argument("--module", default="customer_tier.wasm")
    args = ap.parse_args()
    sluice = os.path.join(TARGET, "release", "sluice")
    modules = os.environ.get("SLUICE_MODULE_PATH", os.path.join(TARGET, "wasm32-wasip2", "release"))
    with open(args.file) as f:
        lines = f.readlines()
    service = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "examples/enricher/tier_service.py"),
         "--latency-ms", str(args.latency_ms)],
        stdout=subprocess.PIPE, text=True)
    try:
        address = service.stdout.readline().strip().rsplit(" ", 1)[1]
        with tempfile.TemporaryDirectory(prefix="sluice-enrich-") as d:
            for cap in [int(c) for c in args.capacities.split(",")]:
                ideal = cap * 1000.0 / args.latency_ms
                n = min(len(lines), max(50, int(ideal * args.seconds)))
                inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
                with open(inp, "w") as f:
                    f.writelines(lines[:n])
                env = dict(os.environ, INPUT=inp, OUTPUT=out, TIER_SERVICE=address,
                           TIER_GRANT=address, CAPACITY=str(cap), ORDER=args.order,
                           TIMEOUT="10s", SLUICE_MODULE_PATH=modules, TIER_MODULE=args.module)
                r = subprocess.run([sluice, "run", "--no-api", os.path.join(REPO, "examples/enricher/orders-tier.yaml")],
                                   env=env, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"capacity {cap}: sluice failed:\n{r.stderr}")
                m = re.search(r"finished in ([0-9.]+) s: (\d+) records read", r.stdout + r.stderr)
                if not m:
                    sys.exit(f"capacity {cap}: no summary in the output:\n{r.stdout}{r.stderr}")
                seconds, read = float(m.group(1)), int(m.group(2))
                with open(out) as f:
                    ids = sorted(int(re.search(r'"order_id":"o-(\d+)"', l).group(1)) for l in f)
                if ids != list(range(1, n + 1)):
                    sys.exit(f"capacity {cap}: {len(ids)} results for {n} orders, or not each once")
                rate = read / seconds
                print(f"ENRICH module={args.module} capacity={cap} latency_ms={args.latency_ms:g} order={args.order} "
                      f"records={read} seconds={seconds:.2f} records_per_s={rate:.0f} "
                      f"ideal={ideal:.0f} efficiency={rate / ideal:.2f}", flush=True)
    finally:
        service.terminate()
        service.wait()


if __name__ == "__main__":
    main()
