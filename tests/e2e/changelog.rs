//! Changelog kinds across the Wasm boundary: a map in each language keeps
//! the kind of every record it maps; a process function sees the kinds and
//! emits its own changes (`examples/operators/dedup` keeping the last row per
//! key), which the plan and the host allow only where the spec says
//! `changelog: true`.

use crate::support::{self, assert_ok, stderr, stdout};
use std::path::Path;

/// An order's row as Debezium writes it (`status`, `amount` vary).
fn order(id: u32, amount: &str, currency: &str, status: &str) -> String {
    format!(
        r#"{{"order_id":"o-{id}","customer_id":"c-{id}","amount":{amount},"currency":"{currency}","status":"{status}","event_ts":1700000000000}}"#
    )
}

/// Debezium change events of two orders: o-1 created PENDING then
/// COMPLETED; o-2 created COMPLETED, its amount changed, then deleted.
fn changes() -> String {
    let (o1p, o1c) = (
        order(1, "100.0", "EUR", "PENDING"),
        order(1, "100.0", "EUR", "COMPLETED"),
    );
    let (o2a, o2b) = (
        order(2, "50.0", "USD", "COMPLETED"),
        order(2, "60.0", "USD", "COMPLETED"),
    );
    [
        format!(r#"{{"op":"c","before":null,"after":{o1p}}}"#),
        format!(r#"{{"op":"u","before":{o1p},"after":{o1c}}}"#),
        format!(r#"{{"op":"c","before":null,"after":{o2a}}}"#),
        format!(r#"{{"op":"u","before":{o2a},"after":{o2b}}}"#),
        format!(r#"{{"op":"d","before":{o2b},"after":null}}"#),
    ]
    .map(|l| l + "\n")
    .concat()
}

/// `sluice run` of a spec written to `d`.
fn run_spec(d: &Path, name: &str, spec: &str) -> std::process::Output {
    let path = d.join(name);
    std::fs::write(&path, spec).unwrap();
    support::run(&path, &[])
}

/// `(kind, order_id)` of each line of a `stdout` sink with `changelog: true`.
fn kinds_and_ids(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let (kind, row) = l.split_once(' ').expect("a kind, then the row");
            let row: serde_json::Value = serde_json::from_str(row).unwrap();
            (
                kind.to_owned(),
                row["order_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The USD map filters COMPLETED orders of a changelog: o-1's retraction
/// (PENDING) is dropped with its row, its update (COMPLETED) kept; o-2's
/// insert, update pair and delete all pass with their kinds. The Python and
/// JavaScript builds of the same map write the same lines as the Rust one.
#[test]
fn a_wasm_map_keeps_each_record_kind_in_every_language() {
    let dir = support::temp_dir();
    let d = dir.path();
    let input = d.join("changes.jsonl");
    std::fs::write(&input, changes()).unwrap();
    let mut outputs = Vec::new();
    for module in [
        "usd_orders.wasm",
        "usd_orders_py.wasm",
        "usd_orders_js.wasm",
    ] {
        let o = run_spec(
            d,
            "map.yaml",
            &format!(
                "sources: [{{uid: cdc, type: file, path: '{}', format: debezium-json}}]\n\
                 operators:\n  - {{uid: usd, input: cdc, wasm: {{module: {module}, config: {{status: COMPLETED}}}}}}\n\
                 sinks: [{{uid: out, input: usd, type: stdout, changelog: true}}]\n",
                input.display()
            ),
        );
        assert_ok(&o);
        let out = stdout(&o);
        assert_eq!(
            kinds_and_ids(&out),
            [
                ("+U", "o-1"),
                ("+I", "o-2"),
                ("-U", "o-2"),
                ("+U", "o-2"),
                ("-D", "o-2")
            ]
            .map(|(k, id)| (k.to_owned(), id.to_owned())),
            "{module}: {out}"
        );
        outputs.push((module, out));
    }
    for (module, out) in &outputs[1..] {
        assert_eq!(out, &outputs[0].1, "{module} against usd_orders.wasm");
    }
}

/// A keyed process function sees the kind of each record of a changelog,
/// in the call that takes a batch and in the calls that replay a trapped
/// batch record by record: `chaos_process` emits the kind it saw. Without
/// a trap, o-1's three changes and o-2's four reach it in order. When the
/// records with amount 60.0 (o-2's `+U` and `-D`) make it trap, they go to
/// the dead-letter sink and the records replayed around them keep their
/// kinds.
#[test]
fn a_process_function_sees_each_record_kind() {
    let dir = support::temp_dir();
    let d = dir.path();
    let input = d.join("changes.jsonl");
    std::fs::write(&input, changes()).unwrap();
    let seen = |trigger: &str| {
        let spec = format!(
            "sources: [{{uid: cdc, type: file, path: '{}', format: debezium-json}}]\n\
             operators:\n  - uid: kinds\n    input: cdc\n    key_by: /order_id\n    \
             process: {{module: chaos_process.wasm, config: {{trigger: '{trigger}'}}}}\n\
             sinks: [{{uid: out, input: kinds, type: stdout}}]\n\
             dead_letter: {{type: file, path: '{}'}}\n",
            input.display(),
            d.join("dead.jsonl").display()
        );
        let o = run_spec(d, "kinds.yaml", &spec);
        assert_ok(&o);
        let mut rows: Vec<(String, u64, String)> = stdout(&o)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["key"].as_str().unwrap().to_owned(),
                    v["count"].as_u64().unwrap(),
                    v["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        rows.sort();
        rows.into_iter()
            .map(|(key, n, kind)| format!("{key} {n} {kind}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen("boom"),
        [
            "o-1 1 +I", "o-1 2 -U", "o-1 3 +U", "o-2 1 +I", "o-2 2 -U", "o-2 3 +U", "o-2 4 -D"
        ]
    );
    assert_eq!(
        seen("60.0"),
        ["o-1 1 +I", "o-1 2 -U", "o-1 3 +U", "o-2 1 +I", "o-2 2 -U"]
    );
    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 2, "{dead}");
}

/// Orders with repeated ids, as a file of inserts.
const REPEATS: &str = r#"{"order_id":"o-1","status":"PENDING"}
{"order_id":"o-2","status":"PENDING"}
{"order_id":"o-1","status":"PAID"}
{"order_id":"o-1","status":"SHIPPED"}
"#;

fn dedup_spec(input: &Path, changelog: &str, sink: &str) -> String {
    format!(
        "sources: [{{uid: orders, type: file, path: '{}'}}]\n\
         operators:\n  - uid: latest\n    input: orders\n    key_by: /order_id\n    \
         process: {{module: dedup.wasm, config: {{keep: last}}{changelog}}}\n\
         sinks: [{{uid: out, input: latest, {sink}}}]\n",
        input.display()
    )
}

/// Keeping the last row per key is a changelog: with `changelog: true` the
/// process function's `-U`/`+U` pairs reach a sink that applies them; an
/// append-only sink after it is a plan error naming both nodes; without the
/// declaration the host stops the job at the first update, naming the
/// operator, before the file sink could take it for a row. `changelog` on a
/// window's aggregator is refused where it is written.
#[test]
fn a_process_function_emits_a_changelog_only_where_the_spec_says_so() {
    let dir = support::temp_dir();
    let d = dir.path();
    let input = d.join("orders.jsonl");
    std::fs::write(&input, REPEATS).unwrap();

    let o = run_spec(
        d,
        "last.yaml",
        &dedup_spec(&input, ", changelog: true", "type: stdout, changelog: true"),
    );
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "+I {\"order_id\":\"o-1\",\"status\":\"PENDING\"}\n\
         +I {\"order_id\":\"o-2\",\"status\":\"PENDING\"}\n\
         -U {\"order_id\":\"o-1\",\"status\":\"PENDING\"}\n\
         +U {\"order_id\":\"o-1\",\"status\":\"PAID\"}\n\
         -U {\"order_id\":\"o-1\",\"status\":\"PAID\"}\n\
         +U {\"order_id\":\"o-1\",\"status\":\"SHIPPED\"}\n"
    );

    let out = d.join("out.jsonl");
    let file_sink = format!("type: file, path: '{}'", out.display());
    let o = run_spec(
        d,
        "planned.yaml",
        &dedup_spec(&input, ", changelog: true", &file_sink),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "`out` (sink) is append-only, but its input is the changelog (updates and deletes) of `latest`"
        ),
        "{}",
        stderr(&o)
    );

    let o = run_spec(d, "undeclared.yaml", &dedup_spec(&input, "", &file_sink));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "operator `latest` returned an invalid result: it emitted a -U record where its output is append-only"
        ),
        "{}",
        stderr(&o)
    );
    let written = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(!written.contains("PAID"), "{written}");

    let o = run_spec(
        d,
        "window.yaml",
        &format!(
            "sources: [{{uid: orders, type: file, path: '{}', event_time: {{timestamp: /event_ts}}}}]\n\
             operators:\n  - uid: w\n    input: orders\n    key_by: /order_id\n    \
             window: {{type: tumbling, size: 1m}}\n    \
             aggregate: {{wasm: {{module: count_sum.wasm, changelog: true}}}}\n\
             sinks: [{{uid: out, input: w, type: stdout}}]\n",
            input.display()
        ),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`changelog` is for modules that emit records"),
        "{}",
        stderr(&o)
    );
}
