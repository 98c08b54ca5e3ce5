#!/usr/bin/env python3
"""sluice beside Apache Flink on the same file, in the same sitting.

    bench/compare.py FILE [RUNS] [WORKLOADS] [--rocksdb] [--payments FILE] [--rates FILE] [--sql]
        e.g. bench/compare.py /tmp/bench/orders-5m.jsonl 3 W5 --rocksdb
             bench/compare.py /tmp/bench/orders-5m.jsonl 3 W1,W2,W3,W4 --sql
             bench/compare.py /tmp/bench/orders-5m.jsonl 3 W6,W7 \
                 --payments /tmp/bench/payments-5m.jsonl --rates /tmp/bench/rates-5m.jsonl

Runs every (workload, parallelism 1 and 2) RUNS times on each engine, round
robin (sluice, Flink, sluice, ...) so that drifts of the machine's speed hit
both alike, and prints a table of medians: wall seconds of the whole process,
events/s over it, peak RSS, and whether the CHECKSUM lines agree. sluice runs
through bench/run.sh (build it first); Flink through the shared harness
(FLINK_BENCH, default ../shared/bench/flink/run.sh next to this repository).
With --rocksdb, both keep keyed state in RocksDB (sluice: STATE_BACKEND=rocksdb,
which its W5 spec reads; Flink: the harness's --rocksdb). W6 and W7 take their
second inputs from --payments and --rates; their events/s count both inputs.
With --sql, W1-W4 as SQL: `sluice sql bench/sql/wN.sql` beside Flink SQL running
the shared benchmark's ../shared/bench/sql/wN.sql (the same script), checksums
compared without the late count (SQL reports none).
"""
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SQL = "--sql" in sys.argv
FLINK = os.environ.get("FLINK_BENCH", os.path.join(HERE, "..", "..", "shared", "bench", "flink", "run.sh"))


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    checksum = re.search(r"^CHECKSUM .*$", p.stdout, re.M).group(0)
    if SQL:
        checksum = re.sub(r" late=\S+", "", checksum)
    t = re.search(r"^TIME wall_s=([\d.]+) events_per_s_wall=(\d+) max_rss_mb=(\d+)", p.stdout, re.M)
    return checksum, float(t.group(1)), int(t.group(3))


def take_option(argv, name):
    """The value after `name` in argv (removed from it), or None."""
    if name not in argv:
        return None
    i = argv.index(name)
    value = os.path.abspath(argv[i + 1])
    del argv[i:i + 2]
    return value


def main(argv):
    rocksdb = "--rocksdb" in argv
    argv = [a for a in argv if a not in ("--rocksdb", "--sql")]
    second = {"W6": ("--payments", take_option(argv, "--payments")),
              "W7": ("--rates", take_option(argv, "--rates"))}
    if not argv:
        sys.exit(__doc__)
    env = dict(os.environ, STATE_BACKEND="rocksdb" if rocksdb else "memory")
    flink_extra = ["--rocksdb"] if rocksdb else []
    file = os.path.abspath(argv[0])
    runs = int(argv[1]) if len(argv) > 1 else 3
    workloads = argv[2].split(",") if len(argv) > 2 else ["W1", "W2", "W3", "W4"]
    lines = lambda path: sum(1 for _ in open(path, "rb"))
    orders = lines(file)
    rows = []
    for w in workloads:
        extra = []
        if w in second:
            flag, path = second[w]
            if path is None:
                sys.exit(f"{w} needs {flag} FILE")
            extra = [flag, path]
        events = orders + (lines(extra[1]) if extra else 0)
        for p in ("1", "2"):
            res = {"sluice": [], "flink": []}
            for i in range(runs):
                if SQL:
                    script = os.path.join(os.path.dirname(FLINK), "..", "sql", f"{w.lower()}.sql")
                    res["sluice"].append(run([os.path.join(HERE, "run.sh"), w, p, file, "--sql"], env))
                    res["flink"].append(run(["bash", FLINK, script, p, file]))
                else:
                    res["sluice"].append(run([os.path.join(HERE, "run.sh"), w, p, file] + extra, env))
                    res["flink"].append(run(["bash", FLINK, w, p, file] + extra + flink_extra))
                print(f"{w} p={p} run {i + 1}: sluice {res['sluice'][-1][1]:.2f} s, "
                      f"flink {res['flink'][-1][1]:.2f} s", file=sys.stderr, flush=True)
            row = {"w": w, "p": p, "events": events}
            for engine, r in res.items():
                walls = [x[1] for x in r]
                row[engine] = (statistics.median(walls), min(walls), max(walls),
                               statistics.median(x[2] for x in r), {x[0] for x in r})
            rows.append(row)
    backend = "sluice sql beside Flink SQL" if SQL else "RocksDB state" if rocksdb else "heap state"
    print(f"\n{orders:,} orders (W6/W7: and their second input), {runs} runs each, {backend}, medians (min-max)\n")
    print("| workload | p | sluice wall s | sluice events/s | sluice RSS MB | Flink wall s | Flink events/s "
          "| Flink RSS MB | speed-up | RSS ratio | checksums |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s, f, events = r["sluice"], r["flink"], r["events"]
        same = "equal" if s[4] == f[4] and len(s[4]) == 1 else "DIFFER"
        print(f"| {r['w']} | {r['p']} | {s[0]:.2f} ({s[1]:.2f}-{s[2]:.2f}) | {events / s[0]:,.0f} | {s[3]:.0f} "
              f"| {f[0]:.2f} ({f[1]:.2f}-{f[2]:.2f}) | {events / f[0]:,.0f} | {f[3]:.0f} "
              f"| {f[0] / s[0]:.1f}x | 1/{f[3] / s[3]:.0f} | {same} |")


if __name__ == "__main__":
    main(sys.argv[1:])
