//! Async enrichment (`enricher:`): the customer-tier module against
//! a real HTTP service process on loopback (`examples/enricher/tier_service.py`),
//! with injected latency: results and order, the failure paths (service down,
//! too slow, garbage, a host outside the grant) and records in flight at a
//! checkpoint surviving crashes.

use crate::recovery::{committed, sluice_with};
use crate::support::{self, assert_ok, stderr};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tier service, stopped on drop.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        let mut child = Command::new("python3")
            .arg(support::repo().join("examples/enricher/tier_service.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the tier service");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("tier service said {line:?}"));
        Service { child, port }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tier the service gives customer `c-<k>`.
fn tier_of(customer: &str) -> &'static str {
    let k: u64 = customer[2..].parse().unwrap();
    if k.is_multiple_of(10) {
        "gold"
    } else if k.is_multiple_of(3) {
        "silver"
    } else {
        "bronze"
    }
}

/// The first `n` orders of orders-200k, in a file.
fn orders(dir: &Path, n: usize) -> PathBuf {
    let all = std::fs::read_to_string(support::orders_200k()).unwrap();
    let mut text: String = all.lines().take(n).flat_map(|l| [l, "\n"]).collect();
    if n == 0 {
        text.clear();
    }
    let path = dir.join("orders.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn spec() -> PathBuf {
    support::repo().join("examples/enricher/orders-tier.yaml")
}

/// Checks every output row against its input order and the service's tier;
/// returns the order ids in output order.
fn check_rows(input: &Path, output: &Path) -> Vec<String> {
    let inputs: HashMap<String, serde_json::Value> = std::fs::read_to_string(input)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["order_id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let mut ids = Vec::new();
    for line in std::fs::read_to_string(output).unwrap().lines() {
        let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
        let tier = row.as_object_mut().unwrap().remove("tier").unwrap();
        let id = row["order_id"].as_str().unwrap().to_owned();
        // As JSON numbers: a JavaScript module writes 388.00 as 388.
        assert_eq!(
            numbers_as_f64(&row),
            numbers_as_f64(&inputs[&id]),
            "the order was changed: {line}"
        );
        let customer = row["customer_id"].as_str().unwrap();
        assert_eq!(tier, tier_of(customer), "{line}");
        ids.push(id);
    }
    ids
}

/// `ids` holds 1..=n, each once.
fn assert_exactly_once(ids: &[u64], n: u64) {
    let mut seen = vec![0u32; n as usize + 1];
    for &i in ids {
        seen[i as usize] += 1;
    }
    let missing: Vec<u64> = (1..=n).filter(|&i| seen[i as usize] == 0).collect();
    let repeated: Vec<u64> = (1..=n).filter(|&i| seen[i as usize] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "missing orders {missing:?}, repeated {repeated:?}"
    );
}

/// `v` with every number as an `f64`, so that `388` and `388.0` compare
/// equal.
fn numbers_as_f64(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
            .collect(),
        other => other.clone(),
    }
}

fn numbered(ids: &[String]) -> Vec<u64> {
    ids.iter().map(|i| i[2..].parse().unwrap()).collect()
}

/// Runs the example on `input` against `service` (granted), with `extra`
/// settings; checks every row and returns the order numbers in output order.
fn enrich_all(service: &Service, input: &Path, out: &Path, extra: &[(&str, &str)]) -> Vec<u64> {
    let address = service.address();
    let mut env = vec![
        ("INPUT", input.to_str().unwrap()),
        ("OUTPUT", out.to_str().unwrap()),
        ("TIER_SERVICE", address.as_str()),
        ("TIER_GRANT", address.as_str()),
    ];
    env.extend_from_slice(extra);
    assert_ok(&support::run(&spec(), &env));
    numbered(&check_rows(input, out))
}

#[test]
fn ordered_enrichment_keeps_input_order_and_unordered_loses_nothing() {
    // 0-8 ms per request, so that results complete out of order.
    let service = Service::start(&["--latency-ms", "0", "--jitter-ms", "8"]);
    let dir = support::temp_dir();
    let d = dir.path();
    let input = orders(d, 1500);
    for order in ["ordered", "unordered"] {
        let out = d.join(format!("{order}.jsonl"));
        let ids = enrich_all(
            &service,
            &input,
            &out,
            &[("CAPACITY", "30"), ("ORDER", order)],
        );
        assert_exactly_once(&ids, 1500);
        if order == "ordered" {
            assert!(ids.is_sorted(), "ordered mode reordered records");
        }
    }
}

/// The same enricher written in Python and JavaScript
/// (`examples/python/customer_tier.py`, `examples/js/customer-tier.js`)
/// gives the Rust module's rows, in input order, and the same error for a
/// service that answers garbage.
#[test]
fn python_and_javascript_enrichers_give_the_rust_results() {
    let service = Service::start(&["--latency-ms", "1", "--jitter-ms", "4"]);
    let garbage = Service::start(&["--latency-ms", "0", "--mode", "garbage"]);
    let dir = support::temp_dir();
    let d = dir.path();
    let input = orders(d, 300);
    for module in [
        "customer_tier.wasm",
        "customer_tier_py.wasm",
        "customer_tier_js.wasm",
    ] {
        let out = d.join(format!("{module}.jsonl"));
        let ids = enrich_all(
            &service,
            &input,
            &out,
            &[("TIER_MODULE", module), ("CAPACITY", "10")],
        );
        assert_exactly_once(&ids, 300);
        assert!(ids.is_sorted(), "{module} reordered records");

        let (o, errors) = run_failing(
            &garbage.address(),
            &garbage.address(),
            &[("TIER_MODULE", module)],
        );
        all_dead(&o, &errors, "the response body is not the JSON expected");
    }
}

/// Runs the example with these settings; returns the run and the dead
/// letters' error messages.
fn run_failing(
    service: &str,
    grant: &str,
    extra: &[(&str, &str)],
) -> (std::process::Output, Vec<String>) {
    let dir = support::temp_dir();
    let d = dir.path();
    let input = orders(d, 6);
    let dead = d.join("dead.jsonl");
    let mut env = vec![
        ("INPUT", input.to_str().unwrap().to_owned()),
        ("OUTPUT", d.join("out.jsonl").to_str().unwrap().to_owned()),
        ("DEAD_LETTER_OUTPUT", dead.to_str().unwrap().to_owned()),
        ("TIER_SERVICE", service.to_owned()),
        ("TIER_GRANT", grant.to_owned()),
        ("RETRIES", "1".to_owned()),
        ("BACKOFF", "10ms".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = support::run(&spec(), &env);
    let errors = std::fs::read_to_string(&dead)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["node"], "tier", "{l}");
            assert!(
                v["origin"].as_str().unwrap().contains("orders.jsonl"),
                "{l}"
            );
            v["error"].as_str().unwrap().to_owned()
        })
        .collect();
    (o, errors)
}

/// Each of the 6 records was dead-lettered with a message containing `what`
/// after both attempts.
fn all_dead(o: &std::process::Output, errors: &[String], what: &str) {
    assert_ok(o);
    assert_eq!(errors.len(), 6, "{errors:?}\n{}", stderr(o));
    for e in errors {
        assert!(
            e.starts_with("enrichment failed: ") && e.contains(what) && e.ends_with("(2 attempts)"),
            "{e}"
        );
    }
}

#[test]
fn a_service_that_is_down_sends_records_to_the_dead_letter_sink_after_retries() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let (o, errors) = run_failing(&address, &address, &[]);
    all_dead(&o, &errors, &format!("cannot connect to {address}"));
}

#[test]
fn a_service_slower_than_the_timeout_and_one_returning_garbage_fail_their_records() {
    let slow = Service::start(&["--latency-ms", "400"]);
    let (o, errors) = run_failing(&slow.address(), &slow.address(), &[("TIMEOUT", "50ms")]);
    all_dead(&o, &errors, "timed out after 50ms");

    let garbage = Service::start(&["--latency-ms", "0", "--mode", "garbage"]);
    let (o, errors) = run_failing(&garbage.address(), &garbage.address(), &[]);
    all_dead(
        &o,
        &errors,
        "the response body is not the JSON expected (expected value at line 1 column 1): \"<html>",
    );

    let failing = Service::start(&["--latency-ms", "0", "--mode", "error"]);
    let (o, errors) = run_failing(&failing.address(), &failing.address(), &[]);
    all_dead(&o, &errors, "HTTP status 500");
}

#[test]
fn a_host_outside_the_grant_fails_the_job_naming_the_operator_and_the_host() {
    let service = Service::start(&["--latency-ms", "0"]);
    // The module is pointed at 127.0.0.2 (also loopback, also reachable);
    // only 127.0.0.1 is granted.
    let target = format!("127.0.0.2:{}", service.port);
    let (o, errors) = run_failing(&target, &service.address(), &[]);
    assert!(!o.status.success(), "the job should fail");
    assert!(errors.is_empty(), "{errors:?}");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "operator `tier` may not connect to {target}: the host is not in its grants.network (allowed: {})",
            service.address()
        )),
        "{err}"
    );
}

#[test]
fn records_in_flight_at_a_checkpoint_are_issued_again_after_a_crash() {
    let service = Service::start(&["--latency-ms", "2", "--jitter-ms", "6"]);
    let dir = support::temp_dir();
    let d = dir.path();
    let n = 3000;
    let input = orders(d, n);
    let (out, cks) = (d.join("out"), d.join("checkpoints"));
    let env = [
        ("INPUT", input.to_str().unwrap()),
        ("OUTPUT", out.to_str().unwrap()),
        ("CHECKPOINT_DIR", cks.to_str().unwrap()),
        ("CHECKPOINT_INTERVAL", "30ms"),
        ("TIER_SERVICE", &service.address()),
        ("TIER_GRANT", &service.address()),
        ("CAPACITY", "40"),
    ];
    // Each run is killed once a checkpoint newer than the one it started
    // from holds records in flight (waiting for that state, not for a
    // moment that may come too early on a busy machine); the next run
    // restores the latest checkpoint. After each kill: how many records in
    // flight that checkpoint holds (a newer one may have completed just
    // before the kill).
    let mut restored_in_flight = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = 0;
    let mut started_from = None;
    loop {
        assert!(Instant::now() < deadline, "the crash loop did not finish");
        let mut child = sluice_with(&["run", "--no-api", "-q"], &env)
            .arg(spec())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        if killed < 3 {
            let ready = || {
                support::latest_checkpoint(&cks) != started_from
                    && in_flight_at_latest_checkpoint(&cks) > 0
            };
            while child.try_wait().unwrap().is_none() && !ready() {
                assert!(
                    Instant::now() < deadline,
                    "no checkpoint held records in flight"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
                restored_in_flight.push(in_flight_at_latest_checkpoint(&cks));
                started_from = support::latest_checkpoint(&cks);
                continue;
            }
        }
        let o = child.wait_with_output().unwrap();
        assert_ok(&o);
        break;
    }
    assert!(killed > 0, "the job ended before it could be killed");
    // Exactly once, in input order within what each run committed.
    let ids = numbered(&check_rows(&input, &committed(&out, &d.join("out.jsonl"))));
    assert_exactly_once(&ids, n as u64);
    assert!(ids.is_sorted(), "ordered mode across restarts");
    // The restarts did restore records in flight (the source's positions
    // were past them): without re-issuing them, records would be missing.
    assert!(
        restored_in_flight.iter().any(|&n| n > 0),
        "no restart restored records in flight: {restored_in_flight:?}"
    );
}

/// Records in flight stored by the newest complete checkpoint (0 if none).
fn in_flight_at_latest_checkpoint(dir: &Path) -> usize {
    let Some(latest) = support::latest_checkpoint(dir) else {
        return 0;
    };
    let text = std::fs::read_to_string(latest.join("_manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["operators"]["tier"]["subtasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["meta"]["in_flight"].as_array().map_or(0, Vec::len))
        .sum()
}
