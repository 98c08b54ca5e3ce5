//! Every example is run by a test, and a new example without one fails here.

use crate::support::{self, assert_ok, stdout};
use std::collections::BTreeSet;

/// Examples and the tests that run them.
const COVERED: &[(&str, &str)] = &[
    (
        "examples/sql/orders-per-minute.sql",
        "sql::the_readme_example_runs_on_the_generator",
    ),
    (
        "examples/bench/w1.yaml",
        "bench::w1_reproduces_the_reference_checksum",
    ),
    (
        "examples/bench/w2.yaml",
        "bench::w2_reproduces_the_reference_checksum",
    ),
    (
        "examples/bench/w3.yaml",
        "bench::w3_reproduces_the_reference_checksum",
    ),
    (
        "examples/bench/w4.yaml",
        "bench::w4_reproduces_the_reference_checksum",
    ),
    (
        "examples/bench/w2-postgres.yaml",
        "postgres::w2_upserted_into_postgres_gives_the_reference_checksum",
    ),
    (
        "examples/customer-tier/pipeline.yaml",
        "postgres::a_lookup_join_enriches_orders_from_a_table_through_its_cache",
    ),
    (
        "examples/orders-cdc/pipeline.yaml",
        "cdc::the_orders_cdc_example_keeps_revenue_by_status_live",
    ),
    (
        "examples/revenue-postgres/kafka.yaml",
        "postgres::the_kafka_to_postgres_tutorial_is_exactly_once_through_crashes",
    ),
    (
        "examples/revenue-postgres/generator.yaml",
        "postgres::the_kafka_to_postgres_tutorial_is_exactly_once_through_crashes",
    ),
    (
        "examples/bench/w6.yaml",
        "bench::w6_reproduces_the_reference_checksum",
    ),
    (
        "examples/bench/w7.yaml",
        "bench::w7_reproduces_the_reference_checksum",
    ),
    (
        "examples/operators/bench-joins",
        "bench::w6_reproduces_the_reference_checksum",
    ),
    (
        "examples/orders/pipeline.yaml",
        "examples::the_orders_demo_runs_on_the_generator",
    ),
    (
        "examples/savepoints/orders.yaml",
        "recovery::savepoint_stop_and_restore_at_parallelism_1_2_3_gives_identical_results",
    ),
    (
        "examples/savepoints/counter.yaml",
        "recovery::a_module_swap_keeps_counts_and_an_incompatible_module_is_refused",
    ),
    (
        "examples/operators/counter-v1",
        "recovery::a_module_swap_keeps_counts_and_an_incompatible_module_is_refused",
    ),
    (
        "examples/operators/counter-v2",
        "recovery::a_module_swap_keeps_counts_and_an_incompatible_module_is_refused",
    ),
    (
        "examples/operators/counter-v3",
        "recovery::a_module_swap_keeps_counts_and_an_incompatible_module_is_refused",
    ),
    (
        "examples/bench/kafka-w1.yaml",
        "kafka::kafka_w1_w2_and_w5_on_one_partition_reproduce_the_reference_checksums",
    ),
    (
        "examples/bench/kafka-w2.yaml",
        "kafka::kafka_w1_w2_and_w5_on_one_partition_reproduce_the_reference_checksums",
    ),
    (
        "examples/bench/kafka-w5.yaml",
        "kafka::kafka_w1_w2_and_w5_on_one_partition_reproduce_the_reference_checksums",
    ),
    (
        "examples/kafka/load.yaml",
        "kafka (every test loads its input with it)",
    ),
    (
        "examples/kafka/dump.yaml",
        "kafka (every test reads its output with it)",
    ),
    (
        "examples/serve/orders-live.yaml",
        "api::upload_submit_watch_metrics_and_cancel_over_http",
    ),
    (
        "examples/operators/usd-orders",
        "bench::w1_reproduces_the_reference_checksum",
    ),
    ("examples/operators/usd-udf", "sql_udf (all tests)"),
    (
        "examples/python/usd_udf.py",
        "sql_udf::python_and_javascript_functions_give_the_same_rows",
    ),
    (
        "examples/js/usd-udf.js",
        "sql_udf::python_and_javascript_functions_give_the_same_rows",
    ),
    (
        "examples/operators/count-sum",
        "bench::w2_reproduces_the_reference_checksum",
    ),
    (
        "examples/operators/count",
        "bench::w4_reproduces_the_reference_checksum",
    ),
    ("examples/operators/chaos", "sandbox (all tests)"),
    (
        "examples/operators/chaos-process",
        "sandbox::a_trap_in_a_keyed_process_function_costs_only_its_record_and_its_writes_are_undone",
    ),
    (
        "examples/operators/chaos-enricher",
        "sandbox::an_enricher_that_spins_is_stopped_by_its_attempt_timeout_not_the_call_deadline",
    ),
    (
        "examples/bench/w5.yaml",
        "bench::w5_reproduces_the_reference_checksum_on_the_heap (and _on_rocksdb)",
    ),
    (
        "examples/bench/dedup.yaml",
        "bench::state_larger_than_the_memory_limit_runs_on_rocksdb",
    ),
    (
        "examples/operators/session-detector",
        "bench::w5_reproduces_the_reference_checksum_on_the_heap (and _on_rocksdb)",
    ),
    ("examples/operators/fraud-detector", "cases::fraud"),
    (
        "examples/operators/inactivity",
        "examples::processing_time_timers_report_keys_that_go_quiet",
    ),
    ("examples/operators/dedup", "cases::dedup"),
    ("examples/operators/percentile", "cases::latency"),
    ("examples/enricher/orders-tier.yaml", "enricher (all tests)"),
    ("examples/operators/customer-tier", "enricher (all tests)"),
    (
        "examples/bench/w5-py.yaml",
        "polyglot::python_operators_give_the_rust_results",
    ),
    (
        "examples/python/usd_orders.py",
        "polyglot::python_operators_give_the_rust_results (and _report_the_same_record_errors)",
    ),
    (
        "examples/python/session_detector.py",
        "polyglot::python_operators_give_the_rust_results",
    ),
    (
        "examples/python/customer_tier.py",
        "enricher::python_and_javascript_enrichers_give_the_rust_results",
    ),
    (
        "examples/python/percentile.py",
        "polyglot::python_and_javascript_window_functions_give_the_rust_rows",
    ),
    (
        "examples/js/percentile.js",
        "polyglot::python_and_javascript_window_functions_give_the_rust_rows",
    ),
    (
        "examples/python/count_sum.py",
        "polyglot::a_python_aggregate_gives_the_rust_results",
    ),
    (
        "examples/js/count-sum.js",
        "polyglot::a_javascript_aggregate_gives_the_rust_results",
    ),
    (
        "examples/js/customer-tier.js",
        "enricher::python_and_javascript_enrichers_give_the_rust_results",
    ),
    (
        "examples/bench/w5-js.yaml",
        "polyglot::javascript_operators_give_the_rust_results",
    ),
    (
        "examples/js/usd-orders.js",
        "polyglot::javascript_operators_give_the_rust_results (and _report_the_same_record_errors)",
    ),
    (
        "examples/js/session-detector.js",
        "polyglot::javascript_operators_give_the_rust_results",
    ),
    ("examples/operators/fraud-rules", "cases::fraud-rules"),
    (
        "examples/bench/kafka-w7.yaml",
        "kafka::kafka_w7_joins_two_topics_to_the_reference_checksum",
    ),
    (
        "examples/python/fraud_rules.py",
        "polyglot::python_and_javascript_broadcast_functions_give_the_rust_alerts",
    ),
    (
        "examples/js/fraud-rules.js",
        "polyglot::python_and_javascript_broadcast_functions_give_the_rust_alerts",
    ),
    (
        "examples/operators/chaos-broadcast",
        "broadcast::broadcast_state_that_differs_between_subtasks_fails_the_checkpoint (and cases::error_broadcast_write_from_the_keyed_side)",
    ),
    (
        "examples/bench/w6-rs.yaml",
        "bench::w6_as_a_co_process_function_in_rust_python_and_javascript",
    ),
    (
        "examples/bench/w6-py.yaml",
        "bench::w6_as_a_co_process_function_in_rust_python_and_javascript",
    ),
    (
        "examples/bench/w6-js.yaml",
        "bench::w6_as_a_co_process_function_in_rust_python_and_javascript",
    ),
    (
        "examples/operators/bench-co-join",
        "bench::w6_as_a_co_process_function_in_rust_python_and_javascript",
    ),
    (
        "examples/python/bench_co_join.py",
        "bench::w6_as_a_co_process_function_in_rust_python_and_javascript",
    ),
    (
        "examples/js/bench-co-join.js",
        "bench::w6_as_a_co_process_function_in_rust_python_and_javascript",
    ),
];

#[test]
fn every_example_has_a_test() {
    let repo = support::repo();
    let mut found = BTreeSet::new();
    for dir in [
        "examples/bench",
        "examples/customer-tier",
        "examples/enricher",
        "examples/revenue-postgres",
        "examples/orders-cdc",
        "examples/kafka",
        "examples/orders",
        "examples/savepoints",
        "examples/serve",
    ] {
        for e in std::fs::read_dir(repo.join(dir))
            .unwrap()
            .filter_map(Result::ok)
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".yaml") {
                found.insert(format!("{dir}/{name}"));
            }
        }
    }
    // Operators in other languages, and SQL scripts: one file each.
    for dir in ["examples/python", "examples/js", "examples/sql"] {
        for e in std::fs::read_dir(repo.join(dir))
            .unwrap()
            .filter_map(Result::ok)
        {
            found.insert(format!("{dir}/{}", e.file_name().to_string_lossy()));
        }
    }
    for e in std::fs::read_dir(repo.join("examples/operators"))
        .unwrap()
        .filter_map(Result::ok)
    {
        found.insert(format!(
            "examples/operators/{}",
            e.file_name().to_string_lossy()
        ));
    }
    for e in std::fs::read_dir(repo.join("examples"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let name = e.file_name().to_string_lossy().into_owned();
        // A folder with a pipeline and its expected output is a data-driven
        // case (tests/e2e/cases.rs runs it).
        let is_case =
            e.path().join("pipeline.yaml").is_file() && e.path().join("expected").is_dir();
        assert!(
            is_case
                || [
                    "bench",
                    "customer-tier",
                    "enricher",
                    "js",
                    "kafka",
                    "orders",
                    "orders-cdc",
                    "operators",
                    "python",
                    "revenue-postgres",
                    "savepoints",
                    "serve",
                    "sql"
                ]
                .contains(&name.as_str()),
            "examples/{name} is new: give it a test and list it in tests/e2e/examples.rs"
        );
    }
    let covered: BTreeSet<String> = COVERED.iter().map(|(e, _)| e.to_string()).collect();
    let missing: Vec<_> = found.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "examples without a test: {missing:?} (add one and list it in COVERED)"
    );
    let stale: Vec<_> = covered.difference(&found).collect();
    assert!(
        stale.is_empty(),
        "COVERED lists examples that do not exist: {stale:?}"
    );
    // Each named test exists: `module::test` is a `#[test] fn test` in
    // tests/e2e/module.rs, a bare `module` (all its tests) is a file of
    // tests, and `cases::NAME` is a data-driven case (a folder the `cases`
    // target runs). Deleting or renaming a test an example relies on fails
    // here.
    let mut unknown = Vec::new();
    for (example, test) in COVERED {
        let name = test.split_whitespace().next().unwrap_or_default();
        let (module, function) = name.split_once("::").unwrap_or((name, ""));
        let source = std::fs::read_to_string(repo.join("tests/e2e").join(format!("{module}.rs")))
            .unwrap_or_default();
        let exists = if module == "cases" {
            repo.join("tests/cases")
                .join(function)
                .join("spec.yaml")
                .is_file()
                || (repo
                    .join("examples")
                    .join(function)
                    .join("pipeline.yaml")
                    .is_file()
                    && repo
                        .join("examples")
                        .join(function)
                        .join("expected")
                        .is_dir())
        } else if function.is_empty() {
            source.contains("#[test]")
        } else {
            // The first line after `#[test]` and its other attributes.
            source.split("#[test]").skip(1).any(|t| {
                t.lines()
                    .map(str::trim_start)
                    .find(|l| !l.is_empty() && !l.starts_with("#["))
                    .is_some_and(|l| l.starts_with(&format!("fn {function}(")))
            })
        };
        if !exists {
            unknown.push(format!("{example}: {test}"));
        }
    }
    assert!(
        unknown.is_empty(),
        "COVERED names tests that do not exist (in tests/e2e/<module>.rs): {unknown:#?}"
    );
}

/// The demo of the README: hourly revenue per customer from the generator,
/// with the same results at parallelism 1 and 2 (the watermark follows every
/// order, so lateness depends only on the data).
#[test]
fn the_orders_demo_runs_on_the_generator() {
    let spec = support::repo().join("examples/orders/pipeline.yaml");
    let mut results = Vec::new();
    for parallelism in ["1", "2"] {
        let o = support::run(&spec, &[("RATE", "10000000"), ("PARALLELISM", parallelism)]);
        assert_ok(&o);
        let text = stdout(&o);
        let mut revenue: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        revenue.sort_by_key(|v| v.to_string());
        let late = text
            .lines()
            .filter(|l| l.starts_with("late order: "))
            .count();
        assert!(!text.contains("dead letter: "), "{text}");
        let orders: u64 = revenue.iter().map(|v| v["orders"].as_u64().unwrap()).sum();
        // 100000 generated, 70011 of them COMPLETED; the late ones are not counted.
        assert_eq!(orders + late as u64, 70_011, "parallelism {parallelism}");
        assert!(revenue.iter().all(|v| v["window_end"].as_i64().unwrap()
            - v["window_start"].as_i64().unwrap()
            == 3_600_000));
        results.push((revenue, late));
    }
    assert_eq!(results[0], results[1], "parallelism 1 and 2 differ");
}

/// Processing-time timers (examples/operators/inactivity): the generator
/// sends 600 orders over about two seconds; every key that stays quiet for
/// 150 ms of wall-clock time is reported once per quiet spell. Which keys go
/// quiet depends on timing, so the test checks what holds whatever the
/// timing: reports arrive while the job runs, each names a customer, and no
/// record is counted twice.
#[test]
fn processing_time_timers_report_keys_that_go_quiet() {
    let dir = support::temp_dir();
    let out = dir.path().join("quiet.jsonl");
    let spec = dir.path().join("inactivity.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"
parallelism: 2
state: {{ backend: ${{STATE_BACKEND}} }}
sources:
  - uid: orders
    type: datagen
    schema: orders
    count: 600
    rate: 300
    customers: 40
    parallelism: 1
operators:
  - uid: quiet
    input: orders
    key_by: /customer_id
    process: {{ module: inactivity.wasm, config: {{ timeout_ms: 150 }} }}
sinks:
  - {{ uid: out, input: quiet, type: file, path: "{}" }}
"#,
            out.display()
        ),
    )
    .unwrap();
    for backend in ["memory", "rocksdb"] {
        let o = support::run(&spec, &[("STATE_BACKEND", backend)]);
        assert_ok(&o);
        let text = std::fs::read_to_string(&out).unwrap();
        let reports: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!reports.is_empty(), "no key went quiet on {backend}");
        let mut counted = 0;
        for r in &reports {
            assert!(r["key"].as_str().unwrap().starts_with("c-"), "{r}");
            let n = r["records"].as_u64().unwrap();
            assert!(n >= 1, "{r}");
            counted += n;
        }
        assert!(counted <= 600, "{counted} records reported on {backend}");
    }
}
