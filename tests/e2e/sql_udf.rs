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
    ] {
        let f = d.join("q.sql");
        std::fs::write(&f, format!("{table}{script}")).unwrap();
        let o = support::sluice().arg("sql").arg(&f).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{script}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(message), "{script}: {err}");
    }
}
