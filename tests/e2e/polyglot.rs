//! Operators in Python (`guest-sdk/python`, componentize-py) and JavaScript
//! (`guest-sdk/js`, componentize-js + jco), built from `examples/python/` and
//! `examples/js/` by `scripts/build-guests.sh`: the USD map, the W5 session
//! detector and the count-sum aggregate (W2 and W3) must give exactly the
//! Rust modules' results.

use crate::bench::{check_count_sum_with, check_w1_with, check_w5_spec};
use crate::recovery::committed;
use crate::support::{self, assert_ok, sorted_lines};

/// W1 through `usd_orders_<lang>.wasm` gives the reference checksum and the
/// same rows as the Rust module; W5 through `w5-<lang>.yaml` (that map, then
/// the language's session detector) gives the W5 reference checksum.
fn same_results_as_rust(lang: &str) {
    let dir = support::temp_dir();
    let d = dir.path();
    let (rust, other) = (d.join("w1-rust.jsonl"), d.join(format!("w1-{lang}.jsonl")));
    check_w1_with("usd_orders.wasm", "1", &rust);
    check_w1_with(&format!("usd_orders_{lang}.wasm"), "1", &other);
    assert!(
        sorted_lines(&rust) == sorted_lines(&other),
        "usd_orders_{lang}.wasm wrote other rows than the Rust module"
    );
    let w5 = support::repo().join(format!("examples/bench/w5-{lang}.yaml"));
    check_w5_spec(&w5, "memory", "1");
    check_w5_spec(&w5, "rocksdb", "2");
}

/// Bad orders become record errors with the same records and (for an
/// unknown currency) the same message as the Rust module's.
fn same_record_errors_as_rust(lang: &str) {
    let dir = support::temp_dir();
    let d = dir.path();
    let input = d.join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"order_id":"o-1","customer_id":"c-1","amount":120.5,"currency":"JPY","status":"COMPLETED","event_ts":1}"#,
            "\n",
            r#"{"order_id":"o-2","customer_id":"c-2","amount":300.25,"currency":"EUR","status":"COMPLETED","event_ts":2}"#,
            "\n",
            r#"{"order_id":"o-3","status":"COMPLETED"}"#,
            "\n",
            r#"{"order_id":"o-4","customer_id":"c-4","amount":"12","currency":"USD","status":"COMPLETED","event_ts":4}"#,
            "\n",
            r#"[1,2]"#,
            "\n",
        ),
    )
    .unwrap();
    let run = |module: &str| {
        let spec = d.join(format!("{module}.yaml"));
        let (out, dead) = (
            d.join(format!("{module}.out")),
            d.join(format!("{module}.dead")),
        );
        std::fs::write(
            &spec,
            format!(
                "sources: [{{uid: orders, type: file, path: {}}}]\n\
                 operators:\n  - {{uid: usd, input: orders, wasm: {{module: {module}, config: {{status: COMPLETED}}}}}}\n\
                 sinks: [{{uid: out, input: usd, type: file, path: {}}}]\n\
                 dead_letter: {{type: file, path: {}}}\n",
                input.display(),
                out.display(),
                dead.display()
            ),
        )
        .unwrap();
        assert_ok(&support::run(&spec, &[]));
        let errors: Vec<(String, String)> = std::fs::read_to_string(&dead)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["origin"].as_str().unwrap().to_owned(),
                    v["error"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (std::fs::read_to_string(&out).unwrap(), errors)
    };
    let (rust_out, rust_errors) = run("usd_orders.wasm");
    let (out, errors) = run(&format!("usd_orders_{lang}.wasm"));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(sorted(&out), sorted(&rust_out));
    let origins = |e: &[(String, String)]| e.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>();
    assert_eq!(origins(&errors), origins(&rust_errors), "{errors:?}");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(
        errors[0].1, rust_errors[0].1,
        "the unknown-currency message"
    );
}

fn sorted(text: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    v.sort_by_key(|r| r.to_string());
    v
}

#[test]
fn python_operators_give_the_rust_results() {
    same_results_as_rust("py");
}

/// The Python count-sum aggregate gives W2's and W3's reference checksums
/// (tumbling and sliding windows: `add`, `merge` and `get-result`), at
/// parallelism 1 and 2, with accumulators on the heap and in RocksDB.
#[test]
fn a_python_aggregate_gives_the_rust_results() {
    check_count_sum_with("count_sum_py.wasm");
}

/// The JavaScript count-sum aggregate, likewise.
#[test]
fn a_javascript_aggregate_gives_the_rust_results() {
    check_count_sum_with("count_sum_js.wasm");
}

/// The Python and JavaScript percentile window functions write the Rust
/// module's rows, byte for byte (examples/latency's expectations), at
/// parallelism 1 and 2.
#[test]
fn python_and_javascript_window_functions_give_the_rust_rows() {
    let case = support::repo().join("examples/latency");
    let expected = sorted_lines(&case.join("expected/p99.jsonl"));
    for module in ["percentile_py.wasm", "percentile_js.wasm"] {
        for parallelism in ["1", "2"] {
            let dir = support::temp_dir();
            let o = support::run(
                &case.join("pipeline.yaml"),
                &[
                    ("CASE", case.to_str().unwrap()),
                    ("OUT", dir.path().to_str().unwrap()),
                    ("PARALLELISM", parallelism),
                    ("PERCENTILE_MODULE", module),
                ],
            );
            assert_ok(&o);
            assert_eq!(
                sorted_lines(&dir.path().join("p99.jsonl")),
                expected,
                "{module} at parallelism {parallelism}"
            );
        }
    }
}

/// The fraud-rules broadcast process function in Python and JavaScript
/// gives the Rust module's alerts and dead letters (examples/fraud-rules's
/// expectations), at parallelism 1 and 3.
#[test]
fn python_and_javascript_broadcast_functions_give_the_rust_alerts() {
    let case = support::repo().join("examples/fraud-rules");
    for module in ["fraud_rules_py.wasm", "fraud_rules_js.wasm"] {
        for parallelism in ["1", "3"] {
            let dir = support::temp_dir();
            let o = support::run(
                &case.join("pipeline.yaml"),
                &[
                    ("CASE", case.to_str().unwrap()),
                    ("OUT", dir.path().to_str().unwrap()),
                    ("PARALLELISM", parallelism),
                    ("FRAUD_RULES_MODULE", module),
                ],
            );
            assert_ok(&o);
            // Dead letters name their origin by the path the spec was given.
            let repo = format!("{}/", support::repo().display());
            for file in ["alerts.jsonl", "dead-letters.jsonl"] {
                let got: Vec<String> = sorted_lines(&dir.path().join(file))
                    .iter()
                    .map(|l| l.replace(&repo, ""))
                    .collect();
                assert_eq!(
                    got,
                    sorted_lines(&case.join("expected").join(file)),
                    "{module} at parallelism {parallelism}: {file}"
                );
            }
        }
    }
}

#[test]
fn python_operators_report_the_same_record_errors() {
    same_record_errors_as_rust("py");
}

#[test]
fn javascript_operators_give_the_rust_results() {
    same_results_as_rust("js");
}

#[test]
fn javascript_operators_report_the_same_record_errors() {
    same_record_errors_as_rust("js");
}

/// componentize-js's glue leaks the input of every keyed-process call (about
/// 180 bytes per record): with 40 MiB per instance the JS session detector
/// would run out of memory within W5's 200k records. The host replaces an
/// instance that has grown past three quarters of its limit after a call,
/// and makes a call that outgrew the limit on a grown instance again on a new
/// one (with bursts, one call can grow the instance by more than a quarter of
/// 40 MiB), so the job completes with W5's results.
#[test]
fn a_leaking_javascript_module_is_replaced_before_it_runs_out_of_memory() {
    let dir = support::temp_dir();
    let spec = std::fs::read_to_string(support::repo().join("examples/bench/w5-js.yaml")).unwrap();
    let capped = dir.path().join("w5-js-40mib.yaml");
    std::fs::write(&capped, format!("wasm: {{ memory_limit: 40MiB }}\n{spec}")).unwrap();
    check_w5_spec(&capped, "memory", "1");
}

/// The session detector's state is the same JSON in every language, so a
/// job can change language at a restore: W5 runs in Python until it has
/// checkpointed, is killed, resumes from that checkpoint in JavaScript, is
/// killed again, and finishes in Rust, with W5's reference results.
#[test]
fn a_checkpoint_of_python_state_restores_into_javascript_and_then_rust() {
    let dir = support::temp_dir();
    let d = dir.path();
    let (out, late, dropped, ck) = (
        d.join("out"),
        d.join("late"),
        d.join("dropped"),
        d.join("ck"),
    );
    let input = support::orders_200k();
    let env = [
        ("INPUT", input.to_str().unwrap()),
        ("OUTPUT", out.to_str().unwrap()),
        ("LATE_OUTPUT", late.to_str().unwrap()),
        ("DROPPED_OUTPUT", dropped.to_str().unwrap()),
        ("CHECKPOINT_DIR", ck.to_str().unwrap()),
        ("CHECKPOINT_INTERVAL", "100ms"),
    ];
    for spec in ["w5-py", "w5-js"] {
        let before = checkpoints(&ck);
        let mut c = support::sluice();
        c.args(["run", "--no-api", "-q"])
            .arg(support::repo().join(format!("examples/bench/{spec}.yaml")))
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        // Two checkpoints of this run, then a kill mid-way.
        while checkpoints(&ck) < before + 2 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{spec} ended before it was killed"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "{spec}: no checkpoint"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let o = support::run(&support::repo().join("examples/bench/w5.yaml"), &env);
    assert_ok(&o);
    let got = support::checksum_w5(
        &committed(&out, &d.join("out.jsonl")),
        &committed(&late, &d.join("late.jsonl")),
        &committed(&dropped, &d.join("dropped.jsonl")),
    );
    assert_eq!(got, crate::bench::W5);
}

/// The id of the newest complete checkpoint (0 if none); ids grow across
/// restores.
fn checkpoints(dir: &std::path::Path) -> u32 {
    support::latest_checkpoint(dir)
        .and_then(|c| c.file_name()?.to_str()?.strip_prefix("chk-")?.parse().ok())
        .unwrap_or(0)
}
