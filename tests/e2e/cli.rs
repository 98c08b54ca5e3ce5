//! The command line: versions, validation, exit codes.

use crate::support::{self, stderr, stdout};

#[test]
fn version_names_the_wit_contract_and_wasmtime() {
    let o = support::sluice().arg("version").output().unwrap();
    assert!(o.status.success());
    let v = stdout(&o);
    let wanted = format!(
        "sluice 0.1.0 (WIT sluice:operator@{}, wasmtime 48.",
        support::wit_version()
    );
    assert!(v.starts_with(&wanted), "{v}");
}

#[test]
fn validate_prints_the_plan_without_running() {
    let dir = support::temp_dir();
    let o = support::sluice()
        .args(["validate", "examples/bench/w2.yaml"])
        .env("INPUT", support::repo().join("examples/bench/w2.yaml"))
        .env("OUTPUT", dir.path().join("never-written.jsonl"))
        .env("LATE_OUTPUT", dir.path().join("never-written-late.jsonl"))
        .env("PARALLELISM", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(plan.contains("task 0 × 1: orders (source)\n"), "{plan}");
    assert!(plan.contains("task 1 × 2: windows (window), "), "{plan}");
    assert!(
        plan.contains("  orders -> windows [hash /customer_id]\n"),
        "{plan}"
    );
    assert!(plan.contains("  windows -> results [chained]\n"), "{plan}");
    assert!(
        plan.contains("  windows.late -> late [chained]\n"),
        "{plan}"
    );
    assert!(!dir.path().join("never-written.jsonl").exists());
}

#[test]
fn chain_false_gives_a_node_its_own_task() {
    let dir = support::temp_dir();
    let o = support::sluice()
        .args(["validate", "examples/bench/w1.yaml"])
        .env("INPUT", support::repo().join("examples/bench/w1.yaml"))
        .env("OUTPUT", dir.path().join("out.jsonl"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(plan.contains("task 0 × 1: orders (source)\n"), "{plan}");
    // The map and its sink both ask for a task of their own.
    assert!(
        plan.contains("task 1 × 1: usd-orders (transform)\n"),
        "{plan}"
    );
    assert!(plan.contains("task 2 × 1: results (sink)\n"), "{plan}");
    assert!(
        plan.contains("  orders -> usd-orders [forward]\n"),
        "{plan}"
    );
    assert!(
        plan.contains("  usd-orders -> results [forward]\n"),
        "{plan}"
    );
}

#[test]
fn a_broken_spec_exits_with_2_and_a_missing_spec_names_the_file() {
    let dir = support::temp_dir();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "sources: [\n").unwrap();
    let o = support::sluice()
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.yaml:"), "{}", stderr(&o));
    let o = support::sluice()
        .args(["run", "no/such/spec.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no/such/spec.yaml: cannot read the spec"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_output_that_cannot_be_written_is_named_and_called_external() {
    let dir = support::temp_dir();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "sources: [ { uid: gen, type: datagen, count: 10 } ]\n\
         sinks: [ { uid: out, input: gen, type: file, path: /proc/sluice/out.jsonl } ]\n",
    )
    .unwrap();
    let o = support::sluice().arg("run").arg(&spec).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot create folder /proc/sluice"), "{err}");
    assert!(err.contains("a problem outside sluice"), "{err}");
}

#[test]
fn compiled_modules_are_cached_by_content_hash() {
    let cache = support::temp_dir();
    let run = || {
        support::sluice()
            .args(["validate", "examples/orders/pipeline.yaml"])
            .env("SLUICE_CACHE_DIR", cache.path())
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", stderr(&o));
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 2, "one artifact per module: {cached:?}");
    assert!(
        cached
            .iter()
            .all(|n| n.ends_with(".cwasm") && n.len() > 64 + 6)
    );
    let o = run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 2);
}
