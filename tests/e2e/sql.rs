//! `sluice sql` against Apache Flink: every case in tests/sql/cases runs
//! under `sluice sql` and must give the result columns (names and types)
//! and the rows (kinds and values) that Flink 2.3.0 wrote into the case's
//! golden (scripts/sql-goldens.sh regenerates them; CI needs no Java). The
//! benchmark's W1 query runs unchanged and gives the reference checksum
//! at parallelism 1 and 2.

use crate::support::{self, assert_ok, stderr, stdout};
use sluice_host::json::{Pointer, find_many};
use std::path::Path;

/// The golden's columns line and rows: `(kind, the row's JSON array text)`;
/// for a script Flink refuses, `-- error: …` and no rows.
fn read_golden(path: &Path) -> (String, Vec<(String, String)>) {
    let text = std::fs::read_to_string(path).unwrap();
    if text.starts_with("-- error: ") {
        return (text.trim_end().to_owned(), Vec::new());
    }
    let mut lines = text.lines();
    let columns = lines
        .next()
        .and_then(|l| l.strip_prefix("-- columns: "))
        .unwrap_or_else(|| panic!("{}: no columns line", path.display()))
        .to_owned();
    let rows = lines
        .map(|l| {
            let (kind, row) = l.split_once(' ').expect("a kind, then the row");
            (kind.to_owned(), row.to_owned())
        })
        .collect();
    (columns, rows)
}

/// Compares one of sluice's values with Flink's (both raw JSON text), for
/// a column of type `ty`: DECIMAL digit for digit (its scale included; the
/// golden holds it as a string), DOUBLE as the same double (Rust's parser
/// rounds correctly, serde_json's default one does not), the rest as JSON
/// values.
fn same_value(ty: &str, ours: &str, flink: &str) -> bool {
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    if flink == "null" {
        return ours == "null";
    }
    if ty.starts_with("DECIMAL") {
        return json(flink).as_ref().and_then(|v| v.as_str()) == Some(ours);
    }
    if ty.starts_with("DOUBLE") && !flink.starts_with('"') {
        return ours.parse::<f64>().ok() == flink.parse::<f64>().ok();
    }
    json(ours).is_some() && json(ours) == json(flink)
}

fn sql(args: &[&str], case_dir: &Path) -> std::process::Output {
    support::sluice()
        .arg("sql")
        .args(args)
        .env("DATA", case_dir.join("data"))
        .output()
        .unwrap()
}

#[test]
fn every_case_gives_flinks_columns_and_rows() {
    let root = support::repo().join("tests/sql");
    let mut cases: Vec<_> = std::fs::read_dir(root.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    let data = root.join("data");
    let env = [("DATA", data.to_str().unwrap())];
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(compare_with_golden(
            case,
            &case.with_extension("golden"),
            &env,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `script` under `sluice sql` (with `env`) and compares its result
/// columns and rows with `golden`'s, in a canonical order; returns the
/// differences. A golden of a script Flink refuses wants sluice to refuse it.
pub fn compare_with_golden(script: &Path, golden: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let name = script.file_stem().unwrap().to_string_lossy().into_owned();
    let sql = |args: &[&str]| {
        support::sluice()
            .arg("sql")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let mut failures = Vec::new();
    let (columns, rows) = read_golden(golden);
    let case_arg = script.to_str().unwrap();
    if columns.starts_with("-- error: ") {
        // Flink refuses the script; so must sluice, as a script error.
        let o = sql(&["--explain", case_arg]);
        if o.status.code() != Some(2) {
            failures.push(format!("{name}: flink says {columns}, sluice planned it"));
        }
        return failures;
    }
    let o = sql(&["--explain", case_arg]);
    assert_ok(&o);
    let explained = stdout(&o);
    let ours = explained
        .lines()
        .find_map(|l| l.strip_prefix("result columns: "))
        .unwrap_or_default();
    if ours != columns {
        failures.push(format!(
            "{name}: columns\n  flink: {columns}\n  ours:  {ours}"
        ));
        return failures;
    }
    let cols = split_columns(&columns);
    let o = sql(&["-q", case_arg]);
    assert_ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() != rows.len() {
        failures.push(format!(
            "{name}: {} rows, flink {}:\n{out}",
            lines.len(),
            rows.len()
        ));
        return failures;
    }
    let pointers: Vec<Pointer> = cols
        .iter()
        .map(|(n, _)| Pointer::parse(&format!("/{n}")).unwrap())
        .collect();
    let refs: Vec<&Pointer> = pointers.iter().collect();
    let positions: Vec<Pointer> = (0..cols.len())
        .map(|i| Pointer::parse(&format!("/{i}")).unwrap())
        .collect();
    let positions: Vec<&Pointer> = positions.iter().collect();
    let text =
        |raw: Option<&[u8]>| String::from_utf8_lossy(raw.unwrap_or(b"<missing>")).into_owned();
    // Rows as per-column raw texts, in a canonical order: rows that
    // one watermark fires (several windows, several keys) come in an
    // order neither engine promises.
    let norm = |ty: &str, raw: &str| -> String {
        if ty.starts_with("DOUBLE")
            && let Ok(d) = raw.trim_matches('"').parse::<f64>()
        {
            return format!("{d:e}");
        }
        raw.trim_matches('"').to_owned()
    };
    let mut ours: Vec<Vec<String>> = Vec::new();
    let mut theirs: Vec<Vec<String>> = Vec::new();
    for (line, (kind, row)) in lines.iter().zip(&rows) {
        assert_eq!(kind, "+I", "{name}: only inserts so far");
        let mut found = vec![None; refs.len()];
        find_many(line.as_bytes(), &refs, &mut found).unwrap();
        ours.push(found.iter().map(|r| text(*r)).collect());
        let mut want = vec![None; positions.len()];
        find_many(row.as_bytes(), &positions, &mut want).unwrap();
        theirs.push(want.iter().map(|r| text(*r)).collect());
    }
    let key = |r: &Vec<String>| -> Vec<String> {
        r.iter()
            .zip(&cols)
            .map(|(v, (_, ty))| norm(ty, v))
            .collect()
    };
    ours.sort_by_key(key);
    theirs.sort_by_key(key);
    for (got_row, want_row) in ours.iter().zip(&theirs) {
        for ((n, ty), (got, want)) in cols.iter().zip(got_row.iter().zip(want_row)) {
            if !same_value(ty, got, want) {
                failures.push(format!(
                    "{name}: column {n} ({ty}): flink {want}, ours {got}\n  row: {got_row:?}"
                ));
            }
        }
    }
    failures
}

/// `a INT, b DECIMAL(10, 2)` as `[(a, INT), (b, DECIMAL(10, 2))]`: commas
/// inside parentheses belong to the type.
fn split_columns(columns: &str) -> Vec<(String, String)> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for ch in columns.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur);
    out.iter()
        .map(|c| {
            let (n, t) = c.trim().split_once(' ').unwrap();
            (n.to_owned(), t.to_owned())
        })
        .collect()
}

/// The benchmark's W1 query (bench/sql/w1.sql, a copy of the shared
/// benchmark's) runs unchanged on the 200k orders and gives W1's reference
/// checksum, at parallelism 1 and 2.
#[test]
fn the_w1_query_gives_the_reference_checksum() {
    let dir = support::temp_dir();
    for p in ["1", "2"] {
        let out = dir.path().join(format!("w1-{p}.jsonl"));
        let o = support::sluice()
            .args(["sql", "-q", "-p", p, "bench/sql/w1.sql", "--output"])
            .arg(&out)
            .env("ORDERS", support::orders_200k())
            .output()
            .unwrap();
        assert_ok(&o);
        assert_eq!(
            support::checksum("W1", &out, None),
            "CHECKSUM W1 results=112008 sum_usd_cents=3622360232 spec_sum=3622472240 hash=70bb42d7f8f10814",
            "parallelism {p}"
        );
    }
    // A filter and projection runs at the job's parallelism, the file's
    // one reader spreading its records (a window's input stays beside it).
    let o = support::sluice()
        .args(["sql", "--explain", "-p", "2", "bench/sql/w1.sql"])
        .env("ORDERS", support::orders_200k())
        .output()
        .unwrap();
    assert_ok(&o);
    let plan = stdout(&o);
    assert!(
        plan.contains("task 1 × 2: select (sql)")
            && plan.contains("table-orders -> select [rebalance]"),
        "{plan}"
    );
}

/// The benchmark's window queries (bench/sql/w2.sql … w4.sql, copies of
/// the shared benchmark's) run unchanged on the 200k orders, at parallelism
/// 1 and 2, and give the reference checksums (SQL reports no late count:
/// an empty late file).
#[test]
fn the_window_queries_give_the_reference_checksums() {
    let dir = support::temp_dir();
    let late = dir.path().join("late.jsonl");
    std::fs::write(&late, "").unwrap();
    for (w, want) in [
        (
            "W2",
            "CHECKSUM W2 results=22061 sum_count=199818 sum_cents=4989540265 sum_ws=21950058283 late=0 hash=d19d85e6f8f3e0e4",
        ),
        (
            "W3",
            "CHECKSUM W3 results=104873 sum_count=1999759 sum_cents=49933735896 sum_ws=104317225459 late=0 hash=bd43661678ab6f89",
        ),
        (
            "W4",
            "CHECKSUM W4 results=17696 sum_count=199931 sum_len=880555713 late=0 hash=e453e4bb26d5bf9e",
        ),
    ] {
        // At parallelism 2 the windows run in two subtasks; the table's
        // reading stays one, so the same rows are late.
        for p in ["1", "2"] {
            let out = dir.path().join(format!("{w}-{p}.jsonl"));
            let script = format!("bench/sql/{}.sql", w.to_lowercase());
            let o = support::sluice()
                .args(["sql", "-q", "-p", p, &script, "--output"])
                .arg(&out)
                .env("ORDERS", support::orders_200k())
                .output()
                .unwrap();
            assert_ok(&o);
            assert_eq!(support::checksum(w, &out, Some(&late)), want, "p={p}");
        }
    }
}

/// INSERT INTOs of one script (a statement set) run as one job: a view
/// read twice is planned once, `print` prints each row with its kind and
/// identifier, `blackhole` takes its rows, `filesystem` writes JSON lines
/// in its folder, and values are cast to the sink's column types.
#[test]
fn several_inserts_run_as_one_job_into_print_blackhole_and_files() {
    let dir = support::temp_dir();
    let d = dir.path();
    let out = d.join("out");
    let script = format!(
        "CREATE TABLE events (order_id STRING, customer_id STRING, amount DECIMAL(10, 2), currency STRING,
           qty INT, price DOUBLE, event_ts BIGINT, ts AS TO_TIMESTAMP_LTZ(event_ts, 3),
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '${{DATA}}/events.jsonl', 'format' = 'json');
         CREATE TABLE printed (id STRING, cents BIGINT) WITH ('connector' = 'print', 'print-identifier' = 'eur');
         CREATE TABLE nothing (id STRING) WITH ('connector' = 'blackhole');
         CREATE TABLE files (customer_id STRING, n BIGINT, ws TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TEMPORARY VIEW eur AS SELECT order_id, amount FROM events WHERE currency = 'EUR';
         EXECUTE STATEMENT SET BEGIN
         INSERT INTO printed SELECT order_id, CAST(amount * 100 AS INT) FROM eur;
         INSERT INTO nothing SELECT order_id FROM eur;
         INSERT INTO files SELECT customer_id, COUNT(*), window_start
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end, customer_id;
         END;",
        out.display()
    );
    let f = d.join("inserts.sql");
    std::fs::write(&f, script).unwrap();
    let root = support::repo().join("tests/sql");
    let o = sql(&["--explain", f.to_str().unwrap()], &root);
    assert_ok(&o);
    let plan = stdout(&o);
    assert_eq!(plan.matches("view-eur (sql)").count(), 1, "{plan}");
    for node in [
        "sink-printed",
        "sink-nothing",
        "sink-files",
        "insert-files-window (window)",
    ] {
        assert!(plan.contains(node), "{node}: {plan}");
    }
    let o = sql(&["-q", f.to_str().unwrap()], &root);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "eur> +I {\"id\":\"e-1\",\"cents\":1000}\n\
         eur> +I {\"id\":\"e-4\",\"cents\":100}\n\
         eur> +I {\"id\":\"e-5\",\"cents\":200}\n\
         eur> +I {\"id\":\"e-8\",\"cents\":400}\n\
         eur> +I {\"id\":\"e-9\",\"cents\":600}\n\
         eur> +I {\"id\":\"e-14\",\"cents\":999}\n\
         eur> +I {\"id\":\"e-15\",\"cents\":100}\n"
    );
    let rows = support::sorted_lines(&out.join("part-0.json"));
    assert_eq!(rows.len(), 10, "{rows:?}");
    assert_eq!(
        rows[0],
        "{\"customer_id\":\"c-1\",\"n\":1,\"ws\":\"2023-11-14 22:13:30.000\"}"
    );
}

/// The README's example: a `datagen` table (Flink's options) of 120,000
/// orders, one per millisecond over two minutes, counted per customer and
/// minute into a `print` table.
#[test]
fn the_readme_example_runs_on_the_generator() {
    let o = support::sluice()
        .args(["sql", "-q", "examples/sql/orders-per-minute.sql"])
        .output()
        .unwrap();
    assert_ok(&o);
    let out = stdout(&o);
    let mut total = 0;
    let mut minutes = std::collections::BTreeSet::new();
    let mut customers = std::collections::BTreeSet::new();
    for line in out.lines() {
        let row = line.strip_prefix("+I ").unwrap_or_else(|| panic!("{line}"));
        let v: serde_json::Value = serde_json::from_str(row).unwrap();
        total += v["orders"].as_i64().unwrap();
        minutes.insert(v["minute"].as_str().unwrap().to_owned());
        let c = v["customer_id"].as_i64().unwrap();
        assert!((1..=20).contains(&c), "{line}");
        customers.insert(c);
        assert!(v["revenue"].as_f64().unwrap() > 0.0, "{line}");
    }
    assert_eq!(total, 120_000);
    assert_eq!(
        minutes.into_iter().collect::<Vec<_>>(),
        ["2023-11-14 22:14:00.000", "2023-11-14 22:15:00.000"]
    );
    assert_eq!(customers.len(), 20);
    assert_eq!(out.lines().count(), 40);
}

/// What this part does not run yet is refused with the file, line and
/// column and the feature's name; so are bad types and unknown columns.
#[test]
fn what_is_not_supported_is_refused_where_it_is_written() {
    let dir = support::temp_dir();
    let d = dir.path();
    let table = "CREATE TABLE t (a INT, s STRING) WITH ('connector' = 'filesystem', 'path' = 'x.jsonl', 'format' = 'json');\n";
    for (query, message) in [
        (
            "SELECT s, COUNT(*) FROM t\nGROUP BY s;",
            ":2:1: GROUP BY outside a window TVF (a group aggregation, whose result is a changelog) is not supported",
        ),
        (
            "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(a), INTERVAL '1' SECOND))\nGROUP BY window_start, window_end;",
            ":2:22: table `t` has no WATERMARK: a window TVF needs an event-time column",
        ),
        (
            "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(a), INTERVAL '1' MONTH))\nGROUP BY window_start, window_end;",
            ":2:68: `INTERVAL '1' MONTH` is not a day-time interval",
        ),
        (
            "SELECT s FROM t WHERE COUNT(*) > 1;",
            ":2:23: the aggregate function COUNT belongs in the SELECT or HAVING of a window aggregation",
        ),
        (
            "SELECT a FROM t\nWHERE nope > 1;",
            ":3:7: column `nope` not found; the columns are a, s",
        ),
        (
            "SELECT a + s FROM t;",
            ":2:8: `+` cannot take INT and STRING",
        ),
        (
            "SELECT a FROM t JOIN t ON true;",
            ":2:22: JOIN is not supported",
        ),
        (
            "INSERT INTO t (a) SELECT a FROM t;",
            ":2:13: INSERT INTO with a column list is not supported",
        ),
        (
            "SELECT a FROM t ORDER BY a;",
            ":2:1: ORDER BY, LIMIT or FETCH is not supported",
        ),
        (
            "INSERT INTO t SELECT a FROM t;",
            ":2:22: the query gives 1 columns, where 2 are written",
        ),
        (
            "INSERT INTO t SELECT a, a FROM t;",
            ":2:25: column `s` is STRING, and the query gives it INT",
        ),
        (
            "SELECT a FROM t;\nSELECT s FROM t;",
            ":2:1: a SELECT that is not the script's last statement has nowhere to go",
        ),
        ("SELECT a FROM u;", ":2:15: table `u` not found"),
        (
            "SELECT CAST(a AS DECIMAL(40, 2)) FROM t;",
            ":2:13: DECIMAL(40,2): DECIMAL takes a precision of 1 to 38",
        ),
    ] {
        let f = d.join("q.sql");
        std::fs::write(&f, format!("{table}{query}")).unwrap();
        let o = support::sluice().arg("sql").arg(&f).output().unwrap();
        assert!(!o.status.success(), "{query}");
        let err = stderr(&o);
        assert!(err.contains(&format!("q.sql{message}")), "{query}: {err}");
    }
}

/// A record that does not fit its table stops the job (as Flink's `json`
/// format does), naming the record's file and line, the table and the
/// column.
#[test]
fn a_record_that_does_not_fit_its_table_is_named() {
    let o = query_rows("a INT", "{\"a\":1}\n{\"a\":\"x\"}\n", "SELECT a FROM t;");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("rows.jsonl:2")
            && err.contains("table `t`, column `a` (INT): \"x\" is not an integer"),
        "{err}"
    );
}

/// A script is input the host does not trust: an expression nested past
/// the limits (the parser's for parentheses, the binder's for a long chain
/// of operators) is refused, not a crash.
#[test]
fn a_deeply_nested_expression_is_refused() {
    let dir = support::temp_dir();
    let f = dir.path().join("deep.sql");
    for (deep, says) in [
        (
            format!("{}a{}", "(a + ".repeat(2_000), ")".repeat(2_000)),
            "deep.sql: recursion limit exceeded",
        ),
        (
            format!("a{}", " + a".repeat(2_000)),
            "deep.sql:2:8: the expression nests deeper than 200 levels",
        ),
    ] {
        std::fs::write(
            &f,
            format!("CREATE TABLE t (a INT) WITH ('connector' = 'filesystem', 'path' = 'x', 'format' = 'json');\nSELECT {deep} FROM t;\n"),
        )
        .unwrap();
        let o = support::sluice().arg("sql").arg(&f).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    // A script too long to be a query someone wrote.
    std::fs::write(&f, format!("SELECT a{} FROM t;", " + a".repeat(20_000))).unwrap();
    let o = support::sluice().arg("sql").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the script has over 20000 tokens"),
        "{}",
        stderr(&o)
    );
}

/// Runs `sluice sql -q` on table `t (columns)` over the lines `rows` and
/// the statement `query`.
fn query_rows(columns: &str, rows: &str, query: &str) -> std::process::Output {
    let dir = support::temp_dir();
    let d = dir.path();
    let file = d.join("rows.jsonl");
    std::fs::write(&file, rows).unwrap();
    let f = d.join("q.sql");
    std::fs::write(
        &f,
        format!(
            "CREATE TABLE t ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n{query}\n",
            file.display()
        ),
    )
    .unwrap();
    // The log says whether the source found the members the query reads.
    support::sluice()
        .args(["sql", "-q"])
        .arg(&f)
        .env("SLUICE_LOG", "sluice_host::runtime::source=debug")
        .output()
        .unwrap()
}

/// Whether the source of `o`'s query found the members the query reads
/// (run by [`query_rows`]).
fn source_found_members(o: &std::process::Output) -> bool {
    stderr(o).contains("the source finds the members its operator reads")
}

/// The source does not check a table's JSON (it scans each record for the
/// members the query reads, and leaves a record its scan refuses to the
/// `sql` operator, whose own scan names the fault): a line that is not JSON
/// past the fields a query reads is still named, in a plain query and in a
/// window's.
#[test]
fn a_line_that_is_not_json_is_named_though_its_fields_come_first() {
    // (query, whether it reads members the source finds: the last reads
    // only the event time, which the source reads anyway).
    for (query, members) in [
        ("SELECT a FROM t;", true),
        (
            "SELECT window_start, SUM(a) AS s FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(rt), INTERVAL '10' SECOND)) GROUP BY window_start, window_end;",
            true,
        ),
        (
            "SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(rt), INTERVAL '10' SECOND)) GROUP BY window_start, window_end;",
            false,
        ),
    ] {
        let o = query_rows(
            "a INT, ts BIGINT, rt AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rt AS rt",
            "{\"a\":1,\"ts\":1000}\n{\"a\":2,\"ts\":2000,\"b\":}\n{\"a\":3,\"ts\":3000}\n",
            query,
        );
        assert!(!o.status.success(), "{query}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("rows.jsonl:2") && err.contains("invalid JSON at byte 21"),
            "{query}: {err}"
        );
        assert_eq!(source_found_members(&o), members, "{query}: {err}");
    }
}

/// Text columns are read into buffers reused from row to row: escaped and
/// non-ASCII text, a missing and a null member after rows that had them,
/// each row with its own values (where the source found them).
#[test]
fn text_columns_are_each_rows_own() {
    let o = query_rows(
        "a STRING, b STRING",
        concat!(
            "{\"a\":\"plain\",\"b\":\"x\"}\n",
            "{\"a\":\"tab\\there \\\"q\\\" \\u00e9\",\"b\":null}\n",
            "{\"b\":\"y\"}\n",
            "{\"a\":\"ünï\",\"b\":\"z\"}\n",
            "{\"a\":\"plain\",\"b\":\"x\"}\n",
        ),
        "SELECT a, b, CHAR_LENGTH(a) AS n FROM t;",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(source_found_members(&o), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        concat!(
            "{\"a\":\"plain\",\"b\":\"x\",\"n\":5}\n",
            "{\"a\":\"tab\\there \\\"q\\\" é\",\"b\":null,\"n\":14}\n",
            "{\"a\":null,\"b\":\"y\",\"n\":null}\n",
            "{\"a\":\"ünï\",\"b\":\"z\",\"n\":3}\n",
            "{\"a\":\"plain\",\"b\":\"x\",\"n\":5}\n",
        )
    );
}

/// `sluice sql --explain q.sql | head -1`: the reader closing the pipe is
/// not a crash.
#[test]
fn explain_into_a_closed_pipe_does_not_panic() {
    let root = support::repo().join("tests/sql");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = support::sluice()
        .args(["sql", "--explain"])
        .arg(root.join("cases/window_tumble.sql"))
        .env("DATA", root.join("data"))
        .stdout(writer)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
