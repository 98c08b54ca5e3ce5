#!/usr/bin/env python3
"""Kafka to PostgreSQL: end-to-end latency of the `postgres` sink.

    bench/postgres_latency.py [--rate 5000] [--seconds 20] [--interval 1s]
                              [--buffer-timeout 5ms] [--delivery both|at-least-once|exactly-once]
                              [--file /tmp/bench/orders-1m.jsonl]

Starts a Tansu broker and a throwaway PostgreSQL cluster (with
`track_commit_timestamp`), runs W1 (COMPLETED orders converted to USD by the
`usd-orders` Wasm map) from a topic into the table `w1` (primary key
`order_id`), and produces the orders of --file into the topic at --rate
records/s for --seconds from a Python producer (bench/kafka.py's). The
latency of a row is the time its transaction committed in PostgreSQL (the
server's `pg_xact_commit_timestamp`: when the row became visible) minus the
time its order was handed to the producer; the first 2 s are warm-up and
left out. At least once the sink writes every --buffer-timeout; exactly once
a row becomes visible when the checkpoint after it completes (every
--interval). One line per delivery:
    PG-LATENCY W1 delivery=… rate=… achieved_rate=… rows=… measured=… p50_ms=… p90_ms=… p99_ms=…
      p999_ms=… max_ms=… [interval=…] buffer_timeout=…
Needs `pip install confluent-kafka` (the producer) and a release build of
sluice and of the example operators (scripts/build-guests.sh).
"""
import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kafka as kb  # noqa: E402  (bench/kafka.py)
import postgres as pgb  # noqa: E402  (bench/postgres.py)

SPEC = """name: w1-postgres-latency
buffer_timeout: {buffer_timeout}
checkpoints:
  dir: '{ck}'
  interval: {interval}
sources:
  - uid: orders
    type: kafka
    bootstrap: {bootstrap}
    topic: orders
    start: earliest
    properties: {{ fetch.wait.max.ms: "10" }}
operators:
  - uid: usd
    input: orders
    wasm:
      module: usd_orders.wasm
      config: {{ status: COMPLETED }}
sinks:
  - uid: results
    input: usd
    type: postgres
    url: '{url}'
    table: w1
    buffer_timeout: {buffer_timeout}
"""


def run(delivery, lines, args):
    ctx = multiprocessing.get_context("fork")
    n = len(lines)
    sent_at = ctx.RawArray("d", n)
    sent = ctx.RawValue("q", 0)
    go, report = ctx.Event(), ctx.Queue()
    # The producer stamps time.monotonic(); PostgreSQL stamps wall time.
    wall_minus_mono = time.time() - time.monotonic()
    pg = pgb.Cluster(extra="track_commit_timestamp = on\n")
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-pg-latency.") as tmp, kb.Tansu() as broker:
            broker.create("orders")
            pg.psql("-c", "CREATE TABLE w1 (order_id text PRIMARY KEY, customer_id text, amount_usd numeric)")
            spec = os.path.join(tmp, "spec.yaml")
            with open(spec, "w") as f:
                f.write(SPEC.format(
                    buffer_timeout=args.buffer_timeout,
                    ck=os.path.join(tmp, "ck") if delivery == "exactly-once" else "",
                    interval=args.interval,
                    bootstrap=broker.bootstrap,
                    url=pg.url,
                ))
            api = f"127.0.0.1:{kb.free_port()}"
            log = open(os.path.join(tmp, "sluice.log"), "w")
            job = subprocess.Popen([kb.SLUICE, "run", "--listen", api, spec], env=kb.sluice_env(),
                                   stdout=log, stderr=subprocess.STDOUT)
            producer = None
            try:
                metrics = kb.Metrics(api)
                kb.wait_for(metrics.answers, 30, f"sluice's API does not answer on {api}")
                producer = ctx.Process(target=kb.producer_main,
                                       args=(broker.bootstrap, "orders", lines, args.rate, args.seconds,
                                             sent_at, sent, go, report))
                producer.start()
                kb.wait_for(lambda: metrics.source_read() >= 1, 60, "sluice's source read no record")
                go.set()
                started, ended, produced = report.get(timeout=args.seconds + 30)
                producer.join()
                kb.wait_for(lambda: metrics.source_read() >= produced + 1, 30, "sluice did not read all input")
                expected = metrics.sink_in()
                kb.wait_for(lambda: int(pg.psql("-c", "SELECT count(*) FROM w1")) >= expected, 30,
                            "not every row reached the table")
            finally:
                if producer and producer.is_alive():
                    producer.terminate()
                job.kill()
                job.wait()
                log.close()
            rows = pg.psql("-c", "SELECT order_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM w1")
    finally:
        pg.stop()
    ms = []
    for line in rows.splitlines():
        order_id, committed = line.split("|")
        i = int(order_id[2:]) - 1
        if sent_at[i] >= started + kb.WARM_UP_S:
            ms.append((float(committed) - (sent_at[i] + wall_minus_mono)) * 1e3)
    ms.sort()
    if not ms:
        sys.exit("nothing measured after the warm-up: raise --seconds")
    line = (
        f"PG-LATENCY W1 delivery={delivery} rate={args.rate} achieved_rate={produced / (ended - started):.0f} "
        f"rows={len(rows.splitlines())} measured={len(ms)} "
        + " ".join(f"{k}_ms={kb.percentile(ms, q):.1f}" for k, q in
                   [("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)])
        + f" max_ms={ms[-1]:.1f}"
        + (f" interval={args.interval}" if delivery == "exactly-once" else "")
        + f" buffer_timeout={args.buffer_timeout}"
    )
    print(line, flush=True)


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--rate", type=float, default=5000)
    a.add_argument("--seconds", type=float, default=20)
    a.add_argument("--interval", default="1s")
    a.add_argument("--buffer-timeout", default="5ms")
    a.add_argument("--delivery", default="both", choices=["both", "at-least-once", "exactly-once"])
    a.add_argument("--file", default="/tmp/bench/orders-1m.jsonl")
    args = a.parse_args()
    lines = kb.read_orders(args.file, int(args.rate * args.seconds) + 1)
    for d in (["at-least-once", "exactly-once"] if args.delivery == "both" else [args.delivery]):
        run(d, lines, args)


if __name__ == "__main__":
    main()
