#!/usr/bin/env python3
"""What checkpointing costs, and how fast a job recovers.

    bench/checkpoints.py cost FILE [--workloads W2,W5] [--intervals off,10s,1s] [--rounds 2] [-p 1]
    bench/checkpoints.py recovery FILE [--workloads W2,W5] [--kill-after 2.5] [-p 1]

`cost` runs each bench spec (examples/bench/wN.yaml) on FILE without
checkpoints and with each interval, rounds interleaved, and prints one line
per run and a summary per workload: wall time, throughput, how many
checkpoints completed, their duration and size (from the coordinator's
debug log), and the throughput cost against the run without checkpoints.

`recovery` runs a spec with checkpoints every second, kills it with SIGKILL
after --kill-after seconds, and runs the same command again: it prints how
long the restart took to read its first record, counted from the process's
start (module loading, reading the checkpoint, restoring state and source
positions all included).

Build first: cargo build --release -p sluice and scripts/build-guests.sh.
Env: SLUICE (the binary; default $CARGO_TARGET_DIR/release/sluice).
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
SLUICE = os.environ.get("SLUICE", os.path.join(TARGET, "release", "sluice"))
MODULES = os.environ.get("SLUICE_MODULE_PATH", os.path.join(TARGET, "wasm32-wasip2", "release"))

COMPLETE = re.compile(r"checkpoint (\d+) complete in ([0-9.]+)(ns|µs|us|ms|s), (\d+) bytes")
FIRST_READ = re.compile(r"first record read ([0-9.]+) ms")
UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def spec(w):
    return os.path.join(REPO, "examples", "bench", w.lower() + ".yaml")


def env_for(w, file, out, parallelism, ck=None, interval=None):
    env = dict(os.environ)
    env.update(
        INPUT=file,
        OUTPUT=os.path.join(out, "out"),
        LATE_OUTPUT=os.path.join(out, "late"),
        DROPPED_OUTPUT=os.path.join(out, "dropped"),
        PARALLELISM=str(parallelism),
        SLUICE_MODULE_PATH=MODULES,
        SLUICE_LOG="sluice=debug",
    )
    if ck:
        env.update(CHECKPOINT_DIR=ck, CHECKPOINT_INTERVAL=interval)
    return env


def events_in(file):
    with open(file, "rb") as f:
        return sum(1 for _ in f)


def one_run(w, file, parallelism, interval):
    out = tempfile.mkdtemp(prefix="sluice-ckbench.")
    try:
        ck = os.path.join(out, "ck") if interval != "off" else None
        started = time.monotonic()
        p = subprocess.run(
            [SLUICE, "run", "--no-api", spec(w)],
            env=env_for(w, file, out, parallelism, ck, interval),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wall = time.monotonic() - started
        if p.returncode != 0:
            sys.exit(f"{w} interval={interval} failed:\n{p.stderr[-3000:]}")
        done = [(float(v) * UNITS[u], int(b)) for _, v, u, b in COMPLETE.findall(p.stderr)]
        return wall, done
    finally:
        shutil.rmtree(out, ignore_errors=True)


def cost(args):
    n = events_in(args.file)
    for w in args.workloads.split(","):
        walls = {i: [] for i in args.intervals.split(",")}
        cks = {i: [] for i in walls}
        for r in range(args.rounds):
            for interval in walls:
                wall, done = one_run(w, args.file, args.parallelism, interval)
                walls[interval].append(wall)
                cks[interval].extend(done)
                ms = [d for d, _ in done]
                print(
                    f"RUN {w} p={args.parallelism} interval={interval} round={r + 1} wall_s={wall:.2f} "
                    f"events_per_s={n / wall:.0f} checkpoints={len(done)}"
                    + (f" ckpt_ms_mean={statistics.mean(ms):.1f} ckpt_ms_max={max(ms):.1f}"
                       f" ckpt_bytes_mean={statistics.mean(b for _, b in done):.0f}" if done else ""),
                    flush=True,
                )
        base = statistics.median(walls["off"]) if "off" in walls else None
        for interval, ws in walls.items():
            med = statistics.median(ws)
            done = cks[interval]
            line = f"SUMMARY {w} p={args.parallelism} interval={interval} wall_s_median={med:.2f} events_per_s={n / med:.0f}"
            if base:
                line += f" wall_cost={(med / base - 1) * 100:+.1f}% throughput_change={(base / med - 1) * 100:+.1f}%"
            if done:
                ms = [d for d, _ in done]
                line += (f" checkpoints_per_run={len(done) / len(ws):.1f} ckpt_ms_median={statistics.median(ms):.1f}"
                         f" ckpt_ms_max={max(ms):.1f} ckpt_mb_median={statistics.median(b for _, b in done) / 1e6:.2f}")
            print(line, flush=True)


def recovery(args):
    for w in args.workloads.split(","):
        out = tempfile.mkdtemp(prefix="sluice-recovery.")
        try:
            ck = os.path.join(out, "ck")
            env = env_for(w, args.file, out, args.parallelism, ck, "1s")
            cmd = [SLUICE, "run", "--no-api", spec(w)]
            first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(args.kill_after)
            first.send_signal(signal.SIGKILL)
            _, err = first.communicate()
            done = COMPLETE.findall(err)
            if not done:
                sys.exit(f"{w}: no checkpoint completed in {args.kill_after} s; raise --kill-after")
            last_id, _, _, size = done[-1]
            started = time.monotonic()
            again = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            restoring_at, lines = None, []
            for line in again.stdout:
                lines.append(line)
                if restoring_at is None and "restoring from" in line:
                    restoring_at = time.monotonic() - started
            wall = time.monotonic() - started
            text = "".join(lines)
            if again.wait() != 0:
                sys.exit(f"{w}: the restart failed:\n{text[-3000:]}")
            m = FIRST_READ.search(text)
            restored = re.search(r"restoring from \S+ \(checkpoint (\d+)\)", text)
            # The summary counts from the attempt's start, which is when the
            # "restoring from" line is logged.
            first_ms = float(m.group(1)) if m else float("nan")
            total_ms = (restoring_at or float("nan")) * 1e3 + first_ms
            print(
                f"RECOVERY {w} p={args.parallelism} killed_after_s={args.kill_after} "
                f"restored_checkpoint={restored.group(1) if restored else '?'} (last complete {last_id}) "
                f"checkpoint_bytes={size} process_start_to_restore_ms={(restoring_at or 0) * 1e3:.0f} "
                f"restore_to_first_record_ms={first_ms:.1f} process_start_to_first_record_ms={total_ms:.0f} "
                f"restart_wall_s={wall:.2f}",
                flush=True,
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["cost", "recovery"])
    ap.add_argument("file")
    ap.add_argument("--workloads", default="W2,W5")
    ap.add_argument("--intervals", default="off,10s,1s")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kill-after", type=float, default=2.5)
    ap.add_argument("-p", "--parallelism", type=int, default=1)
    args = ap.parse_args()
    args.file = os.path.abspath(args.file)
    cost(args) if args.mode == "cost" else recovery(args)


if __name__ == "__main__":
    main()
