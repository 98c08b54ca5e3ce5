//! Wasm functions in `sluice sql` (`CREATE FUNCTION … LANGUAGE WASM`), with
//! the example module examples/operators/usd-udf: their rows against
//! Flink's for the same expression in built-in SQL, a row that makes the
//! module trap, and scripts that call them wrongly.

use crate::sql::compare_with_golden;
use crate::support::{self, assert_ok, stderr, stdout};

/// `usd(amount, currency)` in a WHERE and a SELECT gives, row for row and
/// with the same result type, what Flink gives for the same arithmetic
/// written in built-in SQL (a golden made by Flink).
#[test]
fn a_wasm_function_gives_what_flink_gives_for_the_same_expression() {
    let root = support::repo().join("tests/sql");
    let data = root.join("data");
    let failures = compare_with_golden(
        &root.join("udf/usd.sql"),
        &root.join("cases/udf_usd_builtin.golden"),
        &[("DATA", data.to_str().unwrap())],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A function that panics on one row (`per_unit` with a quantity of 0)
/// makes the module trap; the call is replayed row by row, that row's
/// record goes to the dead-letter sink with the panic, and every other row
/// of the batch — before and after it — gets its value.
#[test]
fn a_function_that_traps_costs_only_its_row() {
    let dir = support::temp_dir();
    let d = dir.path();
    let mut input = String::new();
    for i in 0..200 {
        let qty = if i == 137 { 0 } else { i % 7 + 1 };
        input.push_str(&format!(
            "{{\"order_id\":\"o-{i}\",\"amount\":{}.00,\"qty\":{qty}}}\n",
            i + 1
        ));
    }
    std::fs::write(d.join("in.jsonl"), input).unwrap();
    let spec = d.join("spec.yaml");
    std::fs::write(
        &spec,
        r#"sources:
  - { uid: orders, type: file, path: "${DIR}/in.jsonl" }
operators:
  - uid: unit
    input: orders
    sql:
      table: orders
      columns: [[order_id, STRING], [amount, "DECIMAL(10, 2)"], [qty, INT]]
      select: [[order_id, order_id], [per_unit, "per_unit(amount, qty)"]]
      functions: [[per_unit, usd_udf.wasm, per_unit]]
sinks:
  - { uid: out, input: unit, type: file, path: "${DIR}/out.jsonl" }
dead_letter: { type: file, path: "${DIR}/dead.jsonl" }
"#,
    )
    .unwrap();
    let o = support::run(&spec, &[("DIR", d.to_str().unwrap())]);
    assert_ok(&o);
    let out = std::fs::read_to_string(d.join("out.jsonl")).unwrap();
    assert_eq!(out.lines().count(), 199, "{out}");
    for line in out.lines() {
        // {"order_id":"o-12","per_unit":3.25}: DECIMAL text, digit for digit.
        let (id, value) = line
            .strip_prefix("{\"order_id\":\"o-")
            .and_then(|r| r.strip_suffix('}'))
            .and_then(|r| r.split_once("\",\"per_unit\":"))
            .unwrap_or_else(|| panic!("{line}"));
        let i: u32 = id.parse().unwrap();
        assert_ne!(i, 137);
        let (cents, qty) = (i128::from(i + 1) * 100, i128::from(i % 7 + 1));
        let expected = format!("{}.{:02}", cents / qty / 100, cents / qty % 100);
        assert_eq!(value, expected, "{line}");
    }
    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(
        dead[0]["origin"]
            .as_str()
            .unwrap()
            .ends_with("in.jsonl:138")
            && error.starts_with("function per_unit: function trapped")
            && error.contains("attempt to divide by zero"),
        "{dead:?}"
    );
}

/// Without a dead-letter sink, a row the function refuses stops the job,
/// naming the function, its message and the record's file and line.
#[test]
fn a_refused_row_without_a_dead_letter_sink_stops_the_job_naming_it() {
    let root = support::repo().join("tests/sql");
    let dir = support::temp_dir();
    let script = dir.path().join("all.sql");
    let text = std::fs::read_to_string(root.join("udf/usd.sql"))
        .unwrap()
        .replace("WHERE currency <> 'JPY'\n  AND usd(amount, 'EUR') > 2", "");
    std::fs::write(&script, text).unwrap();
    let o = support::sluice()
        .args(["sql", "-q"])
        .arg(&script)
        .env("DATA", root.join("data"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("events.jsonl:12")
            && err.contains("function usd: no rate for currency \"JPY\""),
        "{err}"
    );
}

/// Calls the module's signature does not allow, and CREATE FUNCTIONs that
/// cannot be met, are refused before anything runs, at their line and
/// column.
#[test]
fn wrong_calls_and_functions_are_refused_where_they_are_written() {
    let dir = support::temp_dir();
    let d = dir.path();
    let table = "CREATE TABLE t (a DECIMAL(10, 2), s STRING, n INT, x DOUBLE) WITH ('connector' = 'filesystem', 'path' = 'x.jsonl', 'format' = 'json');\n";
    let usd = "CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR 'usd_udf.wasm';\n";
    for (script, message) in [
        (
            format!("{usd}SELECT usd(s, s) FROM t;"),
            ":3:8: argument 1 of usd is STRING, and its parameter is DECIMAL(10, 2)",
        ),
        (
            format!("{usd}SELECT usd(x, s) FROM t;"),
            ":3:8: argument 1 of usd is DOUBLE, and its parameter is DECIMAL(10, 2)",
        ),
        (
            format!("{usd}SELECT usd(a) FROM t;"),
            ":3:8: usd takes 2 argument(s) (DECIMAL(10, 2), STRING), not 1",
        ),
        (
            "CREATE FUNCTION w AS 'weighted_avg' LANGUAGE WASM USING JAR 'usd_udf.wasm';\nSELECT w(x, n) FROM t;".to_owned(),
            ":3:8: the aggregate function w belongs in the SELECT of a window aggregation",
        ),
        (
            "CREATE FUNCTION f AS 'nope' LANGUAGE WASM USING JAR 'usd_udf.wasm';\nSELECT a FROM t;".to_owned(),
            ":2:17: function `f`: module `usd_udf.wasm` has no function `nope` (it offers: usd, per_unit, weighted_avg)",
        ),
        (
            "CREATE FUNCTION f AS 'usd' LANGUAGE WASM USING JAR 'missing.wasm';\nSELECT a FROM t;".to_owned(),
            ":2:17: function `f`: module `missing.wasm` not found",
        ),
        (
            "CREATE FUNCTION f AS 'usd' LANGUAGE WASM USING JAR 'usd_orders.wasm';\nSELECT a FROM t;".to_owned(),
            "does not implement the world sluice:operator/sql-function-module",
        ),
        (
            "CREATE FUNCTION f AS 'com.example.Usd' LANGUAGE JAVA;\nSELECT a FROM t;".to_owned(),
            ":2:49: function `f`: LANGUAGE JAVA is not supported by `sluice sql`",
        ),
        (
            "CREATE FUNCTION f AS 'com.example.Usd';\nSELECT a FROM t;".to_owned(),
            ":2:17: function `f`: `sluice sql` runs functions compiled to Wasm components",
        ),
        (
            format!("{usd}{usd}SELECT a FROM t;"),
            ":3:17: function `usd` already exists",
        ),
        (
            format!("{usd}CREATE TABLE c (a DECIMAL(10, 2), u AS usd(a, 'EUR')) WITH ('connector' = 'datagen');\nSELECT u FROM c;"),
            ":3:40: the computed column `u` calls the Wasm function usd",
        ),
    ] {
        let f = d.join("q.sql");
        std::fs::write(&f, format!("{table}{script}")).unwrap();
        let o = support::sluice().arg("sql").arg(&f).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{script}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(message), "{script}: {err}");
    }
}

/// `weighted_avg(price, qty)` beside `COUNT(*)` in TUMBLE and HOP windows
/// (HOP merges panes, so the module's `merge` runs) gives what Flink gives
/// for `SUM(price * qty) / SUM(qty)` (goldens made by Flink).
#[test]
fn a_wasm_aggregate_gives_what_flink_gives_for_the_same_sums() {
    let root = support::repo().join("tests/sql");
    let data = root.join("data");
    let mut failures = Vec::new();
    for kind in ["tumble", "hop"] {
        failures.extend(compare_with_golden(
            &root.join(format!("udf/weighted_avg_{kind}.sql")),
            &root.join(format!("cases/window_udaf_{kind}_builtin.golden")),
            &[("DATA", data.to_str().unwrap())],
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A row the Wasm aggregate refuses (a negative quantity) is dead-lettered
/// and counts in no call of its window — not in the module's accumulator,
/// not in the built-in `COUNT(*)` beside it — and the other rows of the
/// batch are added once each.
#[test]
fn a_row_a_wasm_aggregate_refuses_counts_nowhere() {
    let dir = support::temp_dir();
    let d = dir.path();
    let rows = [
        ("a", 2.0, 1, 1000),
        ("a", 4.0, 3, 2000),
        ("b", 1.0, -5, 3000),
        ("b", 8.0, 2, 4000),
        ("a", 1.0, -1, 5000),
        ("b", 2.0, 2, 6000),
        ("a", 0.0, 1, 20_000),
    ];
    let input: String = rows
        .iter()
        .map(|(k, p, q, ts)| {
            format!("{{\"k$0\":\"{k}\",\"a$1$0\":{p:.1},\"a$1$1\":{q},\"ts\":{ts}}}\n")
        })
        .collect();
    std::fs::write(d.join("in.jsonl"), input).unwrap();
    let spec = d.join("spec.yaml");
    std::fs::write(
        &spec,
        r#"sources:
  - uid: rows
    type: file
    path: "${DIR}/in.jsonl"
    event_time:
      timestamp: /ts
      watermark: { strategy: max_minus_delay, max_out_of_orderness: 0ms, emit: per_event }
operators:
  - uid: w
    input: rows
    key_by: /k$0
    window: { type: tumbling, size: 10000ms }
    output: { key: "key$" }
    aggregate:
      sql:
        keys: [STRING]
        functions: [[weighted_avg, usd_udf.wasm, weighted_avg]]
        calls: [[COUNT], [WASM, weighted_avg]]
sinks:
  - { uid: out, input: w, type: file, path: "${DIR}/out.jsonl" }
dead_letter: { type: file, path: "${DIR}/dead.jsonl" }
"#,
    )
    .unwrap();
    let o = support::run(&spec, &[("DIR", d.to_str().unwrap())]);
    assert_ok(&o);
    let out = std::fs::read_to_string(d.join("out.jsonl")).unwrap();
    let mut got: Vec<(String, i64, f64)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["k$0"].as_str().unwrap().to_owned(),
                v["a$0"].as_i64().unwrap(),
                v["a$1"].as_f64().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    // a: (2·1 + 4·3) / 4; b: (8·2 + 2·2) / 4; a's last window: 0.
    assert_eq!(
        got,
        vec![
            ("a".to_owned(), 1, 0.0),
            ("a".to_owned(), 2, 3.5),
            ("b".to_owned(), 2, 5.0)
        ],
        "{out}"
    );
    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    let lines: Vec<&str> = dead.lines().collect();
    assert_eq!(lines.len(), 2, "{dead}");
    for (line, q) in [("in.jsonl:3", -5), ("in.jsonl:5", -1)] {
        assert!(
            lines.iter().any(|l| l.contains(line)
                && l.contains(&format!(
                    "function weighted_avg: a quantity cannot be negative ({q})"
                ))),
            "{dead}"
        );
    }
}

/// The same functions written in Python (examples/python/usd_udf.py) and
/// JavaScript (examples/js/usd-udf.js) give Flink's rows for the scalar
/// and aggregate scripts, and refuse the JPY row with the same message.
#[test]
fn python_and_javascript_functions_give_the_same_rows() {
    let root = support::repo().join("tests/sql");
    let data = root.join("data");
    let dir = support::temp_dir();
    let mut failures = Vec::new();
    for lang in ["py", "js"] {
        let module = format!("usd_udf_{lang}.wasm");
        for (script, golden) in [
            ("usd", "udf_usd_builtin"),
            ("weighted_avg_tumble", "window_udaf_tumble_builtin"),
            ("weighted_avg_hop", "window_udaf_hop_builtin"),
        ] {
            let text = std::fs::read_to_string(root.join(format!("udf/{script}.sql")))
                .unwrap()
                .replace("usd_udf.wasm", &module);
            let copy = dir.path().join(format!("{script}_{lang}.sql"));
            std::fs::write(&copy, text).unwrap();
            failures.extend(compare_with_golden(
                &copy,
                &root.join(format!("cases/{golden}.golden")),
                &[("DATA", data.to_str().unwrap())],
            ));
        }
        let all = dir.path().join(format!("all_{lang}.sql"));
        let text = std::fs::read_to_string(root.join("udf/usd.sql"))
            .unwrap()
            .replace("usd_udf.wasm", &module)
            .replace("WHERE currency <> 'JPY'\n  AND usd(amount, 'EUR') > 2", "");
        std::fs::write(&all, text).unwrap();
        let o = support::sluice()
            .args(["sql", "-q"])
            .arg(&all)
            .env("DATA", &data)
            .output()
            .unwrap();
        let err = stderr(&o);
        if o.status.success()
            || !err.contains("events.jsonl:12")
            || !err.contains("function usd: ")
            || !err.contains("no rate for currency")
            || !err.contains("JPY")
        {
            failures.push(format!("{lang}: the JPY row: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
