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
            match finder {
                Finder::Source => "",
                Finder::Host => "  - { uid: copy, input: orders, type: discard }\n",
            }
        ),
    )
    .unwrap();
    // Paced (half a second in all): a source that had read everything
    // before the module named its fields would have no batch left to find
    // them in.
    let o = support::sluice()
        .arg("run")
        .arg(&spec)
        .args(["--source-rate", "40000"])
        .env(
            "SLUICE_LOG",
            "sluice_host::wasm=debug,sluice_host::runtime::source=debug",
        )
        .output()
        .expect("run sluice");
    assert_ok(&o);
    let log = stderr(&o);
    assert!(
        log.contains("the host finds the module's fields")
            && log.contains(r#"names=["order_id", "customer_id", "amount", "currency", "status"]"#),
        "the module did not name its fields:\n{log}"
    );
    let by_source = log.contains("the source finds the members its operator reads");
    assert_eq!(by_source, finder == Finder::Source, "{log}");
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
    let dead: BTreeMap<String, String> = std::fs::read_to_string(d.join("dead.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["node"], "usd", "{l}");
            (
                v["origin"].as_str().unwrap().to_owned(),
                v["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(dead.len(), errors.len());
    for (origin, error) in &errors {
        assert_eq!(
            dead.get(origin).map(String::as_str),
            Some(*error),
            "{origin}"
        );
    }
}
