#!/usr/bin/env python3
"""The `postgres-cdc` source: snapshot rows/s, then change rows/s and lag
while pgbench writes.

    bench/postgres_cdc.py [SCALE] [SECONDS] [CLIENTS]   (default 10, 20 s, 4)

Starts a throwaway PostgreSQL cluster (as bench/postgres.py does, with
wal_level=logical), initialises pgbench at SCALE (100,000 accounts per
unit) and sets REPLICA IDENTITY FULL on its accounts. Then:
  - snapshot: `sluice run` of a bounded CDC source (the snapshot, then the
    stream up to the position current when it starts) into the stdout sink
    (`changelog: true`) on /dev/null, timed whole-process: rows/s = accounts / seconds;
  - streaming: an unbounded CDC source (startup: latest) of pgbench_accounts
    and a `ticks` table into the stdout sink, while pgbench runs a TPC-B-like
    transaction that also inserts a tick stamped with clock_timestamp();
    this script reads sluice's output as it comes and reports change rows/s
    and the lag of each tick (wall clock when its row reaches sluice's
    stdout minus its stamp): median, p99, max. pgbench's own tps is printed
    beside, with the WAL the slot still held at the end.
The sluice binary is the release build in $CARGO_TARGET_DIR.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postgres import SLUICE, Cluster  # noqa: E402

SNAPSHOT = """name: cdc-snapshot
sources:
  - {{ uid: cdc, type: postgres-cdc, url: '{url}', table: pgbench_accounts, slot: snap, bounded: true }}
sinks:
  - {{ uid: out, input: cdc, type: stdout, changelog: true }}
"""

STREAM = """name: cdc-stream
buffer_timeout: 5ms
sources:
  - {{ uid: cdc, type: postgres-cdc, url: '{url}', tables: [pgbench_accounts, ticks], slot: live, startup: latest }}
sinks:
  - {{ uid: out, input: cdc, type: stdout, changelog: true }}
"""

SCRIPT = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO ticks (aid, at_ms) VALUES (:aid, (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
END;
"""


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main(argv):
    scale = int(argv[0]) if argv else 10
    seconds = int(argv[1]) if len(argv) > 1 else 20
    clients = int(argv[2]) if len(argv) > 2 else 4
    if not os.access(SLUICE, os.X_OK):
        sys.exit(f"{SLUICE} is missing: cargo build --release -p sluice")
    pg = Cluster("wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\n")
    work = tempfile.mkdtemp(prefix="sluice-cdc-bench-")
    pgbench = [f"{pg.bin}/pgbench", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"]
    try:
        subprocess.run(pgbench + ["-i", "-q", "-s", str(scale), "postgres"], check=True, capture_output=True)
        pg.psql("-c", "ALTER TABLE pgbench_accounts REPLICA IDENTITY FULL; "
                "CREATE TABLE ticks (id bigserial PRIMARY KEY, aid int, at_ms bigint); "
                "ALTER TABLE ticks REPLICA IDENTITY FULL")
        accounts = scale * 100_000
        spec = os.path.join(work, "snapshot.yaml")
        with open(spec, "w") as f:
            f.write(SNAPSHOT.format(url=pg.url))
        t = time.monotonic()
        p = subprocess.run([SLUICE, "run", "--no-api", "-q", spec], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        secs = time.monotonic() - t
        if p.returncode != 0:
            sys.exit(f"snapshot run failed:\n{p.stderr}")
        print(f"snapshot: {accounts:,} rows in {secs:.2f} s = {accounts / secs:,.0f} rows/s (whole process)",
              flush=True)
        pg.psql("-c", "SELECT pg_drop_replication_slot('snap')")

        spec = os.path.join(work, "stream.yaml")
        with open(spec, "w") as f:
            f.write(STREAM.format(url=pg.url))
        script = os.path.join(work, "tpcb.sql")
        with open(script, "w") as f:
            f.write(SCRIPT)
        job = subprocess.Popen([SLUICE, "run", "--no-api", "-q", spec], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1)
        rows, lags, ticks_sent = [0], [], 0

        def read():
            for line in job.stdout:
                rows[0] += 1
                if '"at_ms"' in line:
                    lags.append(time.time() * 1000 - json.loads(line.split(" ", 1)[1])["at_ms"])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # The slot exists once the source has started.
        for _ in range(300):
            if pg.psql("-c", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'live'") == "1":
                break
            time.sleep(0.1)
        time.sleep(0.5)
        bench = subprocess.run(pgbench + ["-n", "-T", str(seconds), "-c", str(clients), "-j", "2",
                                          "-f", script, "postgres"], capture_output=True, text=True, check=True)
        ticks_sent = int(pg.psql("-c", "SELECT count(*) FROM ticks"))
        deadline = time.monotonic() + 60
        while len(lags) < ticks_sent and time.monotonic() < deadline:
            time.sleep(0.1)
        held = pg.psql("-c", "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) "
                       "FROM pg_replication_slots WHERE slot_name = 'live'")
        job.kill()
        job.wait()
        tps = next((line for line in bench.stdout.splitlines() if line.startswith("tps")), "tps ?")
        print(f"pgbench: {clients} clients, {seconds} s: {tps.split('(')[0].strip()}; "
              f"{ticks_sent:,} ticks", flush=True)
        if len(lags) < ticks_sent:
            sys.exit(f"only {len(lags)} of {ticks_sent} ticks reached sluice's output")
        # Each transaction gives -U/+U of an account and +I of a tick.
        print(f"streaming: {rows[0]:,} change rows in {seconds} s of pgbench = {rows[0] / seconds:,.0f} rows/s; "
              f"lag per tick: median {statistics.median(lags):.1f} ms, p99 {pct(lags, 0.99):.1f} ms, "
              f"max {max(lags):.1f} ms; WAL the slot holds at the end: {held}", flush=True)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
