//! The bench specs (examples/bench/w1.yaml … w5.yaml) on orders-200k give the
//! CHECKSUM lines of bench/README (the shared benchmark's reference results,
//! which reference.py and Apache Flink both produce) at parallelism 1 and 2.

use crate::support::{self, assert_ok};

const EXPECTED: [(&str, &str); 4] = [
    (
        "W1",
        "CHECKSUM W1 results=112008 sum_usd_cents=3622360232 spec_sum=3622472240 hash=70bb42d7f8f10814",
    ),
    (
        "W2",
        "CHECKSUM W2 results=22061 sum_count=199818 sum_cents=4989540265 sum_ws=21950058283 late=182 hash=d19d85e6f8f3e0e4",
    ),
    (
        "W3",
        "CHECKSUM W3 results=104873 sum_count=1999759 sum_cents=49933735896 sum_ws=104317225459 late=0 hash=bd43661678ab6f89",
    ),
    (
        "W4",
        "CHECKSUM W4 results=17696 sum_count=199931 sum_len=880555713 late=69 hash=e453e4bb26d5bf9e",
    ),
];

/// W1 with `module` as its map (`USD_MODULE`) gives the reference checksum;
/// returns its output.
pub fn check_w1_with(module: &str, parallelism: &str, out: &std::path::Path) {
    let o = support::run(
        &support::repo().join("examples/bench/w1.yaml"),
        &[
            ("INPUT", support::orders_200k().to_str().unwrap()),
            ("OUTPUT", out.to_str().unwrap()),
            ("PARALLELISM", parallelism),
            ("USD_MODULE", module),
        ],
    );
    assert_ok(&o);
    let got = support::checksum("W1", out, None);
    assert_eq!(got, EXPECTED[0].1, "W1 with {module}");
}

/// A workload at parallelism 1 and 2, on both state backends where it has
/// keyed state (W2–W4 keep their window accumulators in RocksDB with
/// `STATE_BACKEND=rocksdb`).
fn check(workload: &str, expected: &str) {
    check_with(workload, expected, &[]);
}

/// W2 and W3 with `module` as their aggregate (`COUNT_SUM_MODULE`) give the
/// reference checksums, at parallelism 1 and 2, on both state backends.
pub fn check_count_sum_with(module: &str) {
    for i in [1, 2] {
        check_with(
            EXPECTED[i].0,
            EXPECTED[i].1,
            &[("COUNT_SUM_MODULE", module)],
        );
    }
}

fn check_with(workload: &str, expected: &str, env: &[(&str, &str)]) {
    let input = support::orders_200k();
    let spec = support::repo().join(format!("examples/bench/{}.yaml", workload.to_lowercase()));
    let backends: &[&str] = if workload == "W1" {
        &["memory"]
    } else {
        &["memory", "rocksdb"]
    };
    for (parallelism, backend) in ["1", "2"]
        .into_iter()
        .flat_map(|p| backends.iter().map(move |b| (p, *b)))
    {
        let dir = support::temp_dir();
        let out = dir.path().join("out.jsonl");
        let late = dir.path().join("late.jsonl");
        let o = support::run(
            &spec,
            &[
                ("INPUT", input.to_str().unwrap()),
                ("OUTPUT", out.to_str().unwrap()),
                ("LATE_OUTPUT", late.to_str().unwrap()),
                ("PARALLELISM", parallelism),
                ("STATE_BACKEND", backend),
            ]
            .into_iter()
            .chain(env.iter().copied())
            .collect::<Vec<_>>(),
        );
        assert_ok(&o);
        let late = (workload != "W1").then_some(late.as_path());
        let got = support::checksum(workload, &out, late);
        assert_eq!(
            got, expected,
            "{workload} at parallelism {parallelism} on {backend} ({env:?})"
        );
    }
}

#[test]
fn w1_reproduces_the_reference_checksum() {
    check(EXPECTED[0].0, EXPECTED[0].1);
}

#[test]
fn w2_reproduces_the_reference_checksum() {
    check(EXPECTED[1].0, EXPECTED[1].1);
}

#[test]
fn w3_reproduces_the_reference_checksum() {
    check(EXPECTED[2].0, EXPECTED[2].1);
}

#[test]
fn w4_reproduces_the_reference_checksum() {
    check(EXPECTED[3].0, EXPECTED[3].1);
}

pub const W5: &str = "CHECKSUM W5 results=17704 sum_count=199931 sum_len=880560263 late=69 early_close=866 dropped_ooo=0 hash=afb64e595aba9bd6";

/// W5 (a Wasm keyed process function with three value states and a moving
/// timer) on one state backend, at parallelism 1 and 2.
fn check_w5(backend: &str) {
    for parallelism in ["1", "2"] {
        check_w5_spec(
            &support::repo().join("examples/bench/w5.yaml"),
            backend,
            parallelism,
        );
    }
}

/// `spec` (W5's variables) gives the W5 reference checksum.
pub fn check_w5_spec(spec: &std::path::Path, backend: &str, parallelism: &str) {
    let input = support::orders_200k();
    let dir = support::temp_dir();
    let out = dir.path().join("out.jsonl");
    let late = dir.path().join("late.jsonl");
    let dropped = dir.path().join("dropped.jsonl");
    let o = support::run(
        spec,
        &[
            ("INPUT", input.to_str().unwrap()),
            ("OUTPUT", out.to_str().unwrap()),
            ("LATE_OUTPUT", late.to_str().unwrap()),
            ("DROPPED_OUTPUT", dropped.to_str().unwrap()),
            ("PARALLELISM", parallelism),
            ("STATE_BACKEND", backend),
        ],
    );
    assert_ok(&o);
    let got = support::checksum_w5(&out, &late, &dropped);
    assert_eq!(
        got,
        W5,
        "W5 ({}) on {backend} at parallelism {parallelism}",
        spec.display()
    );
}

#[test]
fn w5_reproduces_the_reference_checksum_on_the_heap() {
    check_w5("memory");
}

#[test]
fn w5_reproduces_the_reference_checksum_on_rocksdb() {
    check_w5("rocksdb");
}

/// Every record of orders-200k has its own key (order_id). With the heap
/// backend capped at 8 MiB (well below the state's size) the job stops and
/// says to use RocksDB; on RocksDB under the same settings it completes, and
/// every order passes the dedup exactly once.
#[test]
fn state_larger_than_the_memory_limit_runs_on_rocksdb() {
    let input = support::orders_200k();
    let spec = support::repo().join("examples/bench/dedup.yaml");
    let dir = support::temp_dir();
    let out = dir.path().join("unique.jsonl");
    let vars = |backend| {
        [
            ("INPUT", input.to_str().unwrap()),
            ("OUTPUT", out.to_str().unwrap()),
            ("STATE_BACKEND", backend),
            ("STATE_MEMORY_LIMIT", "8MiB"),
        ]
    };
    let o = support::run(&spec, &vars("memory"));
    assert!(!o.status.success(), "the heap backend should be full");
    let err = support::stderr(&o);
    assert!(
        err.contains("`dedup`") && err.contains("state") && err.contains("rocksdb"),
        "{err}"
    );
    let o = support::run(&spec, &vars("rocksdb"));
    assert_ok(&o);
    let unique = std::fs::read_to_string(&out).unwrap();
    assert_eq!(unique.lines().count(), 200_000);
}

pub const W6: &str = "CHECKSUM W6 results=122295 sum_paid_cents=2900157598 sum_delay=36615922498 hash=26c79432c613ecc2";

/// The variables of a join workload's spec for orders-200k.
fn join_vars() -> Vec<(&'static str, String)> {
    let (payments, rates) = support::join_inputs_200k();
    vec![
        ("INPUT", support::orders_200k().display().to_string()),
        ("PAYMENTS", payments.display().to_string()),
        ("RATES", rates.display().to_string()),
    ]
}

fn with_vars<'a>(
    vars: &'a [(&'static str, String)],
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    vars.iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(more.iter().copied())
        .collect()
}

/// A join workload (`examples/bench/<w>.yaml`) at parallelism 1 and 2 on
/// both state backends gives `expected`.
pub fn check_join(spec: &std::path::Path, workload: &str, expected: &str) {
    let all = [
        ("1", "memory"),
        ("1", "rocksdb"),
        ("2", "memory"),
        ("2", "rocksdb"),
    ];
    check_join_at(spec, workload, expected, &all);
}

/// A join workload gives `expected` at each (parallelism, backend).
fn check_join_at(spec: &std::path::Path, workload: &str, expected: &str, at: &[(&str, &str)]) {
    let vars = join_vars();
    for &(parallelism, backend) in at {
        {
            let dir = support::temp_dir();
            let out = dir.path().join("out.jsonl");
            let o = support::run(
                spec,
                &with_vars(
                    &vars,
                    &[
                        ("OUTPUT", out.to_str().unwrap()),
                        ("PARALLELISM", parallelism),
                        ("STATE_BACKEND", backend),
                    ],
                ),
            );
            assert_ok(&o);
            let got = support::checksum(workload, &out, None);
            assert_eq!(
                got,
                expected,
                "{workload} ({}) at parallelism {parallelism} on {backend}",
                spec.display()
            );
        }
    }
}

/// A join workload the other two ways of tests/cases: at parallelism 2 with
/// checkpoints (exactly-once part files), and paced, killed at parallelism 2
/// once a checkpoint was taken while the sources were still reading, then
/// restored from that checkpoint at parallelism 3. The committed output gives
/// `expected` both times.
fn check_join_checkpointed(workload: &str, expected: &str) {
    let spec = support::repo().join(format!("examples/bench/{}.yaml", workload.to_lowercase()));
    let vars = join_vars();
    let dir = support::temp_dir();
    let d = dir.path();
    let (out, ck) = (d.join("out"), d.join("ck"));
    let ck_vars = |out: &std::path::Path, ck: &std::path::Path, p: &'static str| {
        [
            ("OUTPUT", out.display().to_string()),
            ("CHECKPOINT_DIR", ck.display().to_string()),
            ("CHECKPOINT_INTERVAL", "50ms".to_owned()),
            ("PARALLELISM", p.to_owned()),
        ]
    };
    let env = |more: &[(&'static str, String)]| -> Vec<(String, String)> {
        vars.iter()
            .chain(more.iter())
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let command = |more: &[(&'static str, String)]| {
        let mut c = support::sluice();
        c.arg("run").arg(&spec);
        for (k, v) in env(more) {
            c.env(k, v);
        }
        c
    };
    let o = command(&ck_vars(&out, &ck, "2"))
        .output()
        .expect("run sluice");
    assert_ok(&o);
    let got = support::checksum(
        workload,
        &crate::recovery::committed(&out, &d.join("out.jsonl")),
        None,
    );
    assert_eq!(
        got, expected,
        "{workload} at parallelism 2 with checkpoints"
    );

    let (out, ck) = (d.join("out-killed"), d.join("ck-killed"));
    let mut child = command(&ck_vars(&out, &ck, "2"))
        // Both sources together: about 2 s of input.
        .args(["--source-rate", "100000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sluice");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let taken = loop {
        if let Some(chk) = support::latest_checkpoint(&ck)
            && support::checkpoint_reading(&chk)
        {
            break true;
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Let a few more checkpoints pass, so that state is in them.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(taken, "{workload}: no checkpoint while reading ({status})");
    let from = support::latest_checkpoint(&ck).unwrap();
    assert!(
        support::checkpoint_reading(&from),
        "{workload}: {} was taken after all input was read",
        from.display()
    );
    let o = command(&ck_vars(&out, &ck, "3"))
        .arg("--from-savepoint")
        .arg(&from)
        .output()
        .expect("run sluice");
    assert_ok(&o);
    let got = support::checksum(
        workload,
        &crate::recovery::committed(&out, &d.join("out-killed.jsonl")),
        None,
    );
    assert_eq!(
        got,
        expected,
        "{workload} killed at parallelism 2 and restored at 3 from {}",
        from.display()
    );
}

#[test]
fn w6_reproduces_the_reference_checksum() {
    check_join(&support::repo().join("examples/bench/w6.yaml"), "W6", W6);
}

/// W6 as a keyed co-process function (`examples/bench/w6-rs.yaml`,
/// `-py`, `-js`): the native join's rows. The Rust module on both backends
/// at both parallelisms; the Python and JavaScript ones, ten times slower,
/// at parallelism 2 on RocksDB (state across subtasks, in the store).
#[test]
fn w6_as_a_co_process_function_in_rust_python_and_javascript() {
    let bench = support::repo().join("examples/bench");
    check_join(&bench.join("w6-rs.yaml"), "W6", W6);
    for spec in ["w6-py.yaml", "w6-js.yaml"] {
        check_join_at(&bench.join(spec), "W6", W6, &[("2", "rocksdb")]);
    }
}

#[test]
fn w6_with_checkpoints_and_killed_and_restored_at_another_parallelism() {
    check_join_checkpointed("W6", W6);
}

pub const W7: &str = "CHECKSUM W7 results=139951 sum_usd_cents=3789295733 sum_rate_ppm=151803121451 hash=5af1965272b1ad1e";

#[test]
fn w7_reproduces_the_reference_checksum() {
    check_join(&support::repo().join("examples/bench/w7.yaml"), "W7", W7);
}

/// W7 the two other ways. Its rates file (95 records) is read at once; the
/// job goes on checkpointing its orders (the finished source's final
/// positions stand in for it).
#[test]
fn w7_with_checkpoints_and_killed_and_restored_at_another_parallelism() {
    check_join_checkpointed("W7", W7);
}
