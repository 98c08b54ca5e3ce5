//! Members found by the host (the `fields` import): a Rust transform or
//! aggregate that reads named fields gets them from the host's scan after
//! its first call. Whatever the record's shape, a module must read what its
//! own scan would have read.

use crate::support::{self, assert_ok, stderr};
use std::collections::BTreeMap;

/// What the `usd-orders` example must make of one input record.
enum Outcome {
    Row(String),
    Dropped,
    Error(&'static str),
}

/// A JSON string, as serde_json (and the SDK's writer) writes it.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The output row for a kept order.
fn row(order_id: &str, customer_id: &str, amount_usd: f64) -> Outcome {
    Outcome::Row(format!(
        r#"{{"order_id":{},"customer_id":{},"amount_usd":{}}}"#,
        quoted(order_id),
        quoted(customer_id),
        serde_json::to_string(&amount_usd).unwrap()
    ))
}

/// Record `i`: one of a dozen shapes, and what the map must make of it.
fn record(i: u64) -> (String, Outcome) {
    let amount = 100 + (i * 7919) % 900;
    let (a, c) = (format!("{amount}.25"), amount as f64 + 0.25);
    let id = format!("o-{i}");
    match i % 12 {
        // The usual order of members.
        0 | 1 => (
            format!(
                r#"{{"order_id":"{id}","customer_id":"c-{i}","amount":{a},"currency":"EUR","status":"COMPLETED","event_ts":1700000000000}}"#
            ),
            row(&id, &format!("c-{i}"), c * 1.1),
        ),
        // Reversed, with whitespace everywhere.
        2 => (
            format!(
                " {{ \"status\" : \"COMPLETED\" ,\t\"currency\":\"GBP\" ,\t \"amount\" : {a} , \"customer_id\" :\"c\" , \"order_id\": \"{id}\" }} "
            ),
            row(&id, "c", c * 1.25),
        ),
        // Strings with escapes, as values: decoded, written back escaped.
        3 => (
            format!(
                r#"{{"order_id":"{id}\"\\\n","customer_id":"caf\u00e9 \ud83d\ude00","amount":{a},"currency":"USD","status":"COMPLETED"}}"#
            ),
            row(&format!("{id}\"\\\n"), "café 😀", c),
        ),
        // A member name with escapes: the module reads the record itself.
        4 => (
            format!(
                r#"{{"order_id":"{id}","customer_id":"c","\u0061mount":{a},"currency":"USD","status":"COMPLETED"}}"#
            ),
            row(&id, "c", c),
        ),
        // Twice the same member: the first counts.
        5 => (
            format!(
                r#"{{"order_id":"{id}","amount":{a},"customer_id":"c","amount":1.0,"currency":"USD","status":"COMPLETED","status":"PENDING"}}"#
            ),
            row(&id, "c", c),
        ),
        // Nested values with quotes and brackets in them before the members.
        6 => (
            format!(
                r#"{{"meta":{{"amount":1,"s":"}}\"]","l":[[{{}}],"{{"]}},"order_id":"{id}","customer_id":"c","tags":["a\"b",{{"currency":"JPY"}}],"amount":{a},"currency":"GBP","status":"COMPLETED"}}"#
            ),
            row(&id, "c", c * 1.25),
        ),
        // Errors name the field, as the module's own scan does.
        7 => (
            format!(r#"{{"order_id":"{id}","customer_id":"c","amount":{a},"status":"COMPLETED"}}"#),
            Outcome::Error(r#"field "currency" is missing"#),
        ),
        8 => (
            format!(
                r#"{{"order_id":"{id}","customer_id":"c","amount":"{a}","currency":"USD","status":"COMPLETED"}}"#
            ),
            Outcome::Error(r#"field "amount" is not a number"#),
        ),
        9 => (
            format!("[\"{id}\"]"),
            Outcome::Error("the record is not a JSON object"),
        ),
        // Dropped by the filters.
        10 => (
            format!(
                r#"{{"order_id":"{id}","customer_id":"c","amount":{a},"currency":"USD","status":"PENDING"}}"#
            ),
            Outcome::Dropped,
        ),
        _ => (
            format!(
                r#"{{"order_id":"{id}","customer_id":"c","amount":99.5,"currency":"USD","status":"COMPLETED"}}"#
            ),
            Outcome::Dropped,
        ),
    }
}

/// The map is fed by the file source alone: the source finds the members
/// as it checks each record.
#[test]
fn a_map_reads_the_same_fields_whether_the_source_or_the_module_finds_them() {
    reads_the_same_fields(Finder::Source);
}

/// The source feeds a second sink too: the host finds the members before
/// each call.
#[test]
fn a_map_reads_the_same_fields_whether_the_host_or_the_module_finds_them() {
    reads_the_same_fields(Finder::Host);
}

#[derive(PartialEq)]
enum Finder {
    Source,
    Host,
}

impl Finder {
    /// The spec's sinks beside the operator's: with the host finding the
    /// members, a second one reads the source too.
    fn second_sink(&self) -> &'static str {
        match self {
            Finder::Source => "",
            Finder::Host => "  - { uid: copy, input: orders, type: discard }\n",
        }
    }
}

/// Runs `spec` with its sources paced (half a second for 20,000 records:
/// a source that had read everything before the module named its fields
/// would have no batch left to find them in); the log.
fn run_paced(spec: &std::path::Path) -> String {
    let o = support::sluice()
        .arg("run")
        .arg(spec)
        .args(["--source-rate", "40000"])
        .env(
            "SLUICE_LOG",
            "sluice_host::wasm=debug,sluice_host::runtime::source=debug",
        )
        .output()
        .expect("run sluice");
    assert_ok(&o);
    stderr(&o)
}

/// Whether the log of [`run_paced`] says that the source found the members
/// and that a call took them from its batch.
fn found_by_source(log: &str) -> bool {
    log.contains("the source finds the members its operator reads")
        && log.contains("a call's members come with its batch")
}

/// The dead letters of node `node` in the file `path`: error by origin.
fn dead_letters(path: &std::path::Path, node: &str) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["node"], node, "{l}");
            (
                v["origin"].as_str().unwrap().to_owned(),
                v["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn reads_the_same_fields(finder: Finder) {
    // Far more records than one call takes (4,096), so that most calls
    // come after the module has named its fields.
    const RECORDS: u64 = 20_000;
    let dir = support::temp_dir();
    let d = dir.path();
    let mut input = String::new();
    let mut rows = Vec::new();
    let mut errors = BTreeMap::new();
    for i in 0..RECORDS {
        let (text, outcome) = record(i);
        input.push_str(&text);
        input.push('\n');
        match outcome {
            Outcome::Row(r) => rows.push(r),
            Outcome::Error(e) => {
                errors.insert(format!("{}/input.jsonl:{}", d.display(), i + 1), e);
            }
            Outcome::Dropped => {}
        }
    }
    std::fs::write(d.join("input.jsonl"), input).unwrap();
    let spec = d.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "sources:\n  - {{ uid: orders, type: file, path: \"{0}/input.jsonl\" }}\n\
             operators:\n  - uid: usd\n    input: orders\n    chain: false\n    \
             wasm: {{ module: usd_orders.wasm, config: {{ status: COMPLETED, min_amount: 100.0 }} }}\n\
             sinks:\n  - {{ uid: out, input: usd, type: file, path: \"{0}/out.jsonl\" }}\n{1}\
             dead_letter: {{ type: file, path: \"{0}/dead.jsonl\" }}\n",
            d.display(),
            finder.second_sink()
        ),
    )
    .unwrap();
    let log = run_paced(&spec);
    assert!(
        log.contains("the host finds the module's fields")
            && log.contains(r#"names=["order_id", "customer_id", "amount", "currency", "status"]"#),
        "the module did not name its fields:\n{log}"
    );
    assert_eq!(found_by_source(&log), finder == Finder::Source, "{log}");
    rows.sort();
    let got = support::sorted_lines(&d.join("out.jsonl"));
    let missing: Vec<_> = rows
        .iter()
        .filter(|r| got.binary_search(r).is_err())
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|g| rows.binary_search(g).is_err())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} rows missing, first {:?}; {} unexpected, first {:?}",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    assert_eq!(got.len(), rows.len());
    let dead = dead_letters(&d.join("dead.jsonl"), "usd");
    assert_eq!(dead.len(), errors.len());
    for (origin, error) in &errors {
        assert_eq!(
            dead.get(origin).map(String::as_str),
            Some(*error),
            "{origin}"
        );
    }
}

/// Record `i` of the window test: a line, and the amount in cents it adds
/// to its customer's window, or the error the aggregate gives it.
fn order(i: u64) -> (String, Result<i64, &'static str>) {
    let cents = ((i * 7919) % 100_000) as i64;
    let a = format!("{}.{:02}", cents / 100, cents % 100);
    let (c, ts) = (format!("c-{}", i % 7), 1_700_000_000_000 + i * 10);
    match i % 8 {
        0..=2 => (
            format!(r#"{{"order_id":"o-{i}","customer_id":"{c}","amount":{a},"event_ts":{ts}}}"#),
            Ok(cents),
        ),
        3 => (
            format!(" {{ \"event_ts\" : {ts} ,\t\"amount\" : {a} , \"customer_id\":\"{c}\" }} "),
            Ok(cents),
        ),
        // A member name with escapes: the module reads the record itself.
        4 => (
            format!(r#"{{"customer_id":"{c}","\u0061mount":{a},"event_ts":{ts}}}"#),
            Ok(cents),
        ),
        // Twice the same member: the first counts.
        5 => (
            format!(r#"{{"customer_id":"{c}","amount":{a},"amount":1.0,"event_ts":{ts}}}"#),
            Ok(cents),
        ),
        6 => (
            format!(r#"{{"customer_id":"{c}","amount":"{a}","event_ts":{ts}}}"#),
            Err(r#"field "amount" is not a number"#),
        ),
        _ => (
            format!(r#"{{"meta":{{"amount":1,"s":"}}\"]"}},"customer_id":"{c}","event_ts":{ts}}}"#),
            Err(r#"field "amount" is missing"#),
        ),
    }
}

/// A window's Rust aggregate (`count-sum`, which reads `amount`) keyed by
/// customer: the source finds the member as it checks each record and
/// reads its key, and the member's place goes with each record through the
/// key-by (whole at parallelism 1, split at 2) and into the window's
/// pending batch. Results and dead letters are those of the module's own
/// scan, and the same when the source also feeds a second sink (the host
/// then finds the member before each call).
#[test]
fn a_window_aggregate_reads_the_same_fields_whoever_finds_them() {
    for (finder, parallelism) in [(Finder::Source, 1), (Finder::Source, 2), (Finder::Host, 2)] {
        window_reads_the_same_fields(finder, parallelism);
    }
}

fn window_reads_the_same_fields(finder: Finder, parallelism: u32) {
    const RECORDS: u64 = 20_000;
    let dir = support::temp_dir();
    let d = dir.path();
    let mut input = String::new();
    // (customer, window start) -> (count, cents)
    let mut windows: BTreeMap<(String, u64), (u64, i64)> = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for i in 0..RECORDS {
        let (text, added) = order(i);
        input.push_str(&text);
        input.push('\n');
        match added {
            Ok(cents) => {
                let start = (1_700_000_000_000 + i * 10) / 60_000 * 60_000;
                let w = windows.entry((format!("c-{}", i % 7), start)).or_default();
                w.0 += 1;
                w.1 += cents;
            }
            Err(e) => {
                errors.insert(format!("{}/input.jsonl:{}", d.display(), i + 1), e);
            }
        }
    }
    std::fs::write(d.join("input.jsonl"), input).unwrap();
    let spec = d.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "parallelism: {parallelism}\n\
             sources:\n  - uid: orders\n    type: file\n    path: \"{0}/input.jsonl\"\n    parallelism: 1\n    \
             event_time: {{ timestamp: /event_ts, watermark: {{ max_out_of_orderness: 0s, emit: per_event }} }}\n\
             operators:\n  - uid: windows\n    input: orders\n    key_by: /customer_id\n    \
             window: {{ type: tumbling, size: 60s }}\n    \
             aggregate: {{ wasm: {{ module: count_sum.wasm, config: {{ field: amount, count_as: count, sum_as: sum_cents }} }} }}\n\
             sinks:\n  - {{ uid: out, input: windows, type: file, path: \"{0}/out.jsonl\" }}\n{1}\
             dead_letter: {{ type: file, path: \"{0}/dead.jsonl\" }}\n",
            d.display(),
            finder.second_sink()
        ),
    )
    .unwrap();
    let log = run_paced(&spec);
    assert_eq!(
        found_by_source(&log),
        finder == Finder::Source,
        "p={parallelism}: {log}"
    );
    let mut expected: Vec<String> = windows
        .iter()
        .map(|((c, start), (count, cents))| {
            format!(
                r#"{{"customer_id":"{c}","window_start":{start},"window_end":{},"count":{count},"sum_cents":{cents}}}"#,
                start + 60_000
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        support::sorted_lines(&d.join("out.jsonl")),
        expected,
        "p={parallelism}"
    );
    let dead = dead_letters(&d.join("dead.jsonl"), "windows");
    let errors: BTreeMap<String, String> =
        errors.into_iter().map(|(o, e)| (o, e.to_owned())).collect();
    assert_eq!(dead, errors, "p={parallelism}");
}
