#!/usr/bin/env python3
"""Rows per second into PostgreSQL: sluice's `postgres` sink beside COPY.

    bench/postgres.py [ROWS] [RUNS]        (default 1000000 rows, 3 runs)

Starts a throwaway PostgreSQL cluster (Debian's server binaries, as the
`postgres` user when run as root; a free loopback port; fsync off, as the
tests run it), writes ROWS order rows as JSON lines, and times, medians of
RUNS:
  - COPY: psql's `\\copy` of the same rows (as tab-separated text) into the
    table: the physical limit of loading them;
  - sluice append (a table without a primary key) and upsert (primary key
    `order_id`), at parallelism 1 and 2, exactly once (checkpoints every
    10 s: rows are applied when each checkpoint completes) and at least once
    (no checkpoints: written every buffer_timeout).
Times are whole processes (sluice's includes planning, reading and parsing
the JSON); rows/s = ROWS / seconds. The sluice binary is the release build
in $CARGO_TARGET_DIR (default ~/.cache/sluice/target).
"""
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sluice/target"))
SLUICE = os.path.join(TARGET, "release", "sluice")


def pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        sys.exit("PostgreSQL's server is not installed (scripts/setup.sh installs it)")
    return os.path.dirname(found[-1])


def as_owner(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


class Cluster:
    def __init__(self, extra=""):
        self.dir = tempfile.mkdtemp(prefix="sluice-pg-bench-")
        self.bin = pg_bin()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data = os.path.join(self.dir, "data")
        subprocess.run(as_owner([f"{self.bin}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\n{extra}")
        subprocess.run(as_owner([f"{self.bin}/pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"),
                                 "start", "-w"]), check=True, capture_output=True)
        self.data = data
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def psql(self, *args):
        return subprocess.run([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                               "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    def stop(self):
        subprocess.run(as_owner([f"{self.bin}/pg_ctl", "-D", self.data, "stop", "-m", "fast"]),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def write_rows(path, tsv, n):
    with open(path, "w") as j, open(tsv, "w") as t:
        for i in range(n):
            row = {"order_id": f"o-{i}", "customer_id": f"c-{i % 5000}", "amount_cents": (i * 7919) % 100000,
                   "status": ("NEW", "PAID", "SHIPPED")[i % 3], "event_ts": 1700000000000 + i}
            j.write(json.dumps(row, separators=(",", ":")) + "\n")
            t.write(f"o-{i}\tc-{i % 5000}\t{row['amount_cents']}\t{row['status']}\t"
                    f"{row['event_ts']}\n")


SPEC = """name: pg-bench
parallelism: {p}
checkpoints:
  dir: '{ck}'
  interval: 10s
sources:
  - uid: rows
    type: file
    path: '{input}'
    parallelism: 1
sinks:
  - uid: out
    input: rows
    type: postgres
    url: '{url}'
    table: '{table}'
"""

TABLE = "(order_id text{pk}, customer_id text, amount_cents bigint, status text, event_ts bigint)"


def timed(cmd, env=None):
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return time.monotonic() - t


def main(argv):
    rows = int(argv[0]) if argv else 1_000_000
    runs = int(argv[1]) if len(argv) > 1 else 3
    if not os.access(SLUICE, os.X_OK):
        sys.exit(f"{SLUICE} is missing: cargo build --release -p sluice")
    pg = Cluster()
    work = tempfile.mkdtemp(prefix="sluice-pg-bench-work-")
    try:
        jsonl, tsv = os.path.join(work, "rows.jsonl"), os.path.join(work, "rows.tsv")
        write_rows(jsonl, tsv, rows)
        if os.geteuid() == 0:
            os.chmod(work, 0o755)
        results = []

        def measure(label, setup, cmd):
            secs = []
            for _ in range(runs):
                pg.psql("-c", setup)
                shutil.rmtree(os.path.join(work, "ck"), ignore_errors=True)
                secs.append(timed(cmd))
                count = int(pg.psql("-c", "SELECT count(*) FROM bench"))
                if count != rows:
                    sys.exit(f"{label}: {count} rows in the table, {rows} expected")
            m = statistics.median(secs)
            results.append((label, m))
            print(f"{label:<40} {m:7.2f} s {rows / m:12,.0f} rows/s", flush=True)

        plain = "DROP TABLE IF EXISTS bench, sluice_sink_progress; CREATE TABLE bench " + TABLE.format(pk="")
        keyed = "DROP TABLE IF EXISTS bench, sluice_sink_progress; CREATE TABLE bench " + TABLE.format(
            pk=" PRIMARY KEY")
        copy = [f"{pg.bin}/psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-X", "-q",
                "-c", f"\\copy bench FROM '{tsv}'"]
        measure("COPY (psql \\copy), no primary key", plain, copy)
        measure("COPY (psql \\copy), primary key", keyed, copy)
        for mode, setup in (("append", plain), ("upsert", keyed)):
            for p in (1, 2):
                for exactly_once in (True, False):
                    ck = os.path.join(work, "ck") if exactly_once else ""
                    spec = os.path.join(work, "spec.yaml")
                    with open(spec, "w") as f:
                        f.write(SPEC.format(p=p, ck=ck, input=jsonl, url=pg.url, table="bench"))
                    label = f"sluice {mode} p={p} {'exactly once' if exactly_once else 'at least once'}"
                    measure(label, setup, [SLUICE, "run", "--no-api", "-q", spec])
        copy_plain = results[0][1]
        copy_keyed = results[1][1]
        print()
        for label, m in results[2:]:
            base = copy_keyed if "upsert" in label else copy_plain
            print(f"{label:<40} {m / base:5.2f}x COPY's time")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
