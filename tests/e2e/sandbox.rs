//! Containment: a guest that panics, spins or hoards memory costs one record
//! (or stops the job with an error naming the operator and the record), never
//! the host; and a guest reaches only what the spec grants it. All with the
//! `chaos` example operator.

use crate::support::{self, assert_ok, stderr};
use std::path::Path;

/// A spec with a file source, the chaos transform and a file sink, and a
/// dead-letter sink when `dead_letter` is set.
fn spec(dir: &Path, wasm: &str, dead_letter: bool) -> std::path::PathBuf {
    spec_with(dir, &format!("wasm: {wasm}"), dead_letter)
}

/// The same with the chaos module as an async enricher: `enricher` is the
/// operator's `enricher:` (its module's keys and how it runs).
fn enricher_spec(dir: &Path, enricher: &str) -> std::path::PathBuf {
    spec_with(dir, &format!("enricher: {enricher}"), true)
}

/// The spec with `operator` as the chaos node's operator fields.
fn spec_with(dir: &Path, operator: &str, dead_letter: bool) -> std::path::PathBuf {
    let mut s = format!(
        "sources:\n  - {{ uid: lines, type: file, path: \"{0}/input.jsonl\" }}\n\
         operators:\n  - uid: chaos\n    input: lines\n    {operator}\n\
         sinks:\n  - {{ uid: out, input: chaos, type: file, path: \"{0}/out.jsonl\" }}\n",
        dir.display()
    );
    if dead_letter {
        s.push_str(&format!(
            "dead_letter: {{ type: file, path: \"{}/dead.jsonl\" }}\n",
            dir.display()
        ));
    }
    let path = dir.join("spec.yaml");
    std::fs::write(&path, s).unwrap();
    std::fs::write(
        dir.join("input.jsonl"),
        "{\"n\":1}\n{\"n\":2}\n{\"n\":3,\"note\":\"boom\"}\n{\"n\":4}\n{\"n\":5}\n",
    )
    .unwrap();
    path
}

fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("dead.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs the chaos operator over the five records with a dead-letter sink:
/// the four harmless records must come out, and exactly one dead letter —
/// returned — for the third.
fn one_dead_letter(wasm: &str) -> serde_json::Value {
    let dir = support::temp_dir();
    let spec = spec(dir.path(), wasm, true);
    one_dead_letter_of(&spec, dir.path())
}

/// The same for a spec written into `dir`.
fn one_dead_letter_of(spec: &Path, dir: &Path) -> serde_json::Value {
    let o = support::run(spec, &[]);
    assert_ok(&o);
    let out = support::sorted_lines(&dir.join("out.jsonl"));
    assert_eq!(out, ["{\"n\":1}", "{\"n\":2}", "{\"n\":4}", "{\"n\":5}"]);
    let mut dead = dead_letters(dir);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = dead.remove(0);
    assert_eq!(d["node"], "chaos");
    assert!(
        d["origin"].as_str().unwrap().ends_with("input.jsonl:3"),
        "{d}"
    );
    assert_eq!(d["value"], "{\"n\":3,\"note\":\"boom\"}");
    d
}

fn error_of(dead_letter: &serde_json::Value) -> &str {
    dead_letter["error"].as_str().unwrap()
}

#[test]
fn a_panicking_guest_costs_only_the_record_that_made_it_panic() {
    let d = one_dead_letter("{ module: chaos.wasm, config: { mode: panic } }");
    assert!(
        error_of(&d).contains("chaos: panic on record {\"n\":3,\"note\":\"boom\"}"),
        "{d}"
    );
}

#[test]
fn without_a_dead_letter_sink_a_trap_stops_the_job_naming_operator_and_record() {
    let dir = support::temp_dir();
    let spec = spec(
        dir.path(),
        "{ module: chaos.wasm, config: { mode: panic } }",
        false,
    );
    let o = support::run(&spec, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("operator `chaos` trapped on record "), "{err}");
    assert!(err.contains("input.jsonl:3: wasm trap"), "{err}");
    assert!(err.contains("chaos: panic on record"), "{err}");
}

#[test]
fn a_job_that_fails_without_checkpoints_keeps_the_output_of_the_records_before_the_failure() {
    // Source, chaos and sink share one task, so every batch before the
    // poison record's batch has reached the sink when the job fails.
    let dir = support::temp_dir();
    let d = dir.path();
    let input: String = (1..=3000)
        .map(|n| {
            if n == 2500 {
                format!("{{\"n\":{n},\"note\":\"boom\"}}\n")
            } else {
                format!("{{\"n\":{n}}}\n")
            }
        })
        .collect();
    std::fs::write(d.join("input.jsonl"), input).unwrap();
    let spec = d.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "batch_size: 500\nsources:\n  - {{ uid: lines, type: file, path: \"{0}/input.jsonl\" }}\n\
             operators:\n  - {{ uid: chaos, input: lines, wasm: {{ module: chaos.wasm, config: {{ mode: panic }} }} }}\n\
             sinks:\n  - {{ uid: out, input: chaos, type: file, path: \"{0}/out.jsonl\" }}\n",
            d.display()
        ),
    )
    .unwrap();
    let o = support::run(&spec, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("chaos: panic on record"),
        "{}",
        stderr(&o)
    );
    let out = std::fs::read_to_string(d.join("out.jsonl")).unwrap();
    let ns: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // The first 2000 records (four whole batches before the poison's) in
    // order; nothing of the failed batch or after it.
    assert!(
        ns.len() >= 2000 && ns.len() < 2500,
        "{} records written",
        ns.len()
    );
    assert!(
        ns.iter().copied().eq(1..=ns.len() as u64),
        "not the records before the failure in order"
    );
}

#[test]
fn a_guest_that_floods_its_log_gets_a_bounded_share_of_the_hosts() {
    let dir = support::temp_dir();
    let spec = spec(
        dir.path(),
        "{ module: chaos.wasm, config: { mode: flood } }",
        false,
    );
    // 17 MiB to stderr and 20,000 log lines from one record.
    let o = support::run(&spec, &[("SLUICE_LOG", "info")]);
    assert_ok(&o);
    let log = stderr(&o);
    // Unbounded, it would be over 17 MiB; a window admits 128 KiB.
    assert!(log.len() < 4 << 20, "{} bytes of host log", log.len());
    assert!(
        log.contains("guest stderr: xxxx"),
        "{}",
        &log[..log.len().min(2000)]
    );
    let suppressed = log
        .lines()
        .find(|l| l.contains("suppressed "))
        .unwrap_or_else(|| {
            panic!(
                "no report of suppressed lines: {}",
                &log[log.len().saturating_sub(3000)..]
            )
        });
    assert!(
        suppressed.contains("chaos") && suppressed.contains("lines ("),
        "{suppressed}"
    );
    // Said when the operator's instance goes, before the job ends (a flood
    // shorter than the budget's interval has no later window to say it in).
    let ended = log.find("job ended").expect("job ended");
    assert!(
        log.find("suppressed ").unwrap() < ended,
        "suppressed lines reported after the job ended"
    );
    // The records are all there.
    assert_eq!(
        support::sorted_lines(&dir.path().join("out.jsonl")).len(),
        5
    );
}

#[test]
fn an_enricher_that_spins_is_stopped_by_its_attempt_timeout_not_the_call_deadline() {
    let dir = support::temp_dir();
    let spec = enricher_spec(
        dir.path(),
        "{ module: chaos_enricher.wasm, config: { mode: spin }, call_timeout: 60s, \
         capacity: 4, timeout: 300ms, retries: 1, backoff: 10ms }",
    );
    let started = std::time::Instant::now();
    let d = one_dead_letter_of(&spec, dir.path());
    // Two attempts of 300 ms, not two of the 60 s call deadline.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error_of(&d).contains("timed out after 300ms (2 attempts)"),
        "{d}"
    );
}

#[test]
fn a_spinning_guest_is_stopped_by_its_call_deadline() {
    let started = std::time::Instant::now();
    let d = one_dead_letter("{ module: chaos.wasm, config: { mode: spin }, call_timeout: 200ms }");
    assert!(
        started.elapsed().as_secs() < 30,
        "the deadline did not stop the guest"
    );
    assert!(
        error_of(&d).contains("exceeded its call deadline of 200ms"),
        "{d}"
    );
}

#[test]
fn a_greedy_guest_is_stopped_by_its_memory_cap() {
    let d = one_dead_letter("{ module: chaos.wasm, config: { mode: alloc }, memory_limit: 32MiB }");
    assert!(
        error_of(&d).contains("exceeded its memory limit of 32 MiB"),
        "{d}"
    );
}

#[test]
fn a_rejected_record_goes_to_the_dead_letter_sink_with_the_guests_reason() {
    let d = one_dead_letter("{ module: chaos.wasm, config: { mode: error } }");
    assert_eq!(error_of(&d), "chaos: rejected record");
}

fn probes(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn by_default_a_guest_sees_no_files_no_clock_no_environment_and_no_randomness() {
    let dir = support::temp_dir();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    let wasm = format!(
        "{{ module: chaos.wasm, config: {{ mode: probe, path: \"{}/secret.txt\" }} }}",
        dir.path().display()
    );
    let spec = spec(dir.path(), &wasm, false);
    let o = support::run(&spec, &[("SLUICE_PROBE", "from the host")]);
    assert_ok(&o);
    let p = probes(dir.path());
    assert_eq!(p.len(), 5);
    assert!(p[0]["file"]["err"].is_string(), "{}", p[0]);
    assert_eq!(p[0]["clock_ms"], 0);
    assert!(p[0]["env"].is_null());
    // A fixed sequence instead of entropy: the same value in every run.
    let again = support::temp_dir();
    let spec2 = self::spec(again.path(), &wasm, false);
    assert_ok(&support::run(&spec2, &[]));
    assert_eq!(probes(again.path())[0]["random"], p[0]["random"]);
}

#[test]
fn grants_open_exactly_what_they_name() {
    let dir = support::temp_dir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "hello from the host").unwrap();
    let wasm = format!(
        "{{ module: chaos.wasm, config: {{ mode: probe, path: /data/hello.txt }}, \
         grants: {{ clock: true, random: true, env: {{ SLUICE_PROBE: granted }}, \
         dirs: [ {{ host: \"{}\", guest: /data }} ] }} }}",
        data.display()
    );
    let spec = spec(dir.path(), &wasm, false);
    let o = support::run(&spec, &[]);
    assert_ok(&o);
    let p = probes(dir.path());
    assert_eq!(p[0]["file"]["ok"], "hello from the host");
    assert!(p[0]["clock_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(p[0]["env"], "granted");
}

#[test]
fn guest_log_lines_reach_the_host_log_with_the_operator_uid() {
    let dir = support::temp_dir();
    let spec = spec(
        dir.path(),
        "{ module: chaos.wasm, config: { mode: log } }",
        false,
    );
    let o = support::run(&spec, &[("SLUICE_LOG", "info")]);
    assert_ok(&o);
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("{\"n\":3,\"note\":\"boom\"}"))
        .unwrap_or_else(|| panic!("no guest log line in:\n{err}"));
    assert!(
        line.contains("operator=\"chaos\"") || line.contains("operator=chaos"),
        "{line}"
    );
    assert!(line.contains("INFO"), "{line}");
}

/// Runs the inactivity process function (one processing-time timer per key)
/// over `keys` distinct keys with the given `state:` section.
fn many_timers(keys: usize, state: &str) -> std::process::Output {
    many_timers_with(keys, state, "")
}

/// `many_timers` with `extra` lines at the top of the spec.
fn many_timers_with(keys: usize, state: &str, extra: &str) -> std::process::Output {
    let dir = support::temp_dir();
    let d = dir.path();
    let input: String = (0..keys).map(|i| format!("{{\"k\":\"k{i}\"}}\n")).collect();
    std::fs::write(d.join("keys.jsonl"), input).unwrap();
    let spec = d.join("timers.yaml");
    std::fs::write(
        &spec,
        format!(
            "{extra}state: {state}\n\
             sources:\n  - {{ uid: keys, type: file, path: \"{0}/keys.jsonl\" }}\n\
             operators:\n  - uid: quiet\n    input: keys\n    key_by: /k\n    process: {{ module: inactivity.wasm, config: {{ timeout_ms: 600000 }} }}\n\
             sinks:\n  - {{ uid: out, input: quiet, type: file, path: \"{0}/out.jsonl\" }}\n",
            d.display()
        ),
    )
    .unwrap();
    support::run(&spec, &[])
}

#[test]
fn timers_count_against_the_heap_backends_state_budget() {
    // 60,000 keys: their value states (~6 MB) fit in 8 MiB, their timers
    // on top of them (~9 MB more) do not.
    // Under a restart strategy: a full backend fills again on every attempt
    // (a user fault), so the job fails at once.
    let o = many_timers_with(
        60_000,
        "{ backend: memory, memory_limit: 8MiB }",
        "restart: { strategy: fixed_delay, attempts: 2, delay: 10ms }\n",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stderr(&o).contains("restarting"), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "the in-memory state backend is full (8 MiB, `state.memory_limit`) (timers take"
        ),
        "{err}"
    );
    assert!(err.contains("quiet"), "{err}");
    // With room for both, the same job runs.
    assert_ok(&many_timers(
        60_000,
        "{ backend: memory, memory_limit: 64MiB }",
    ));
}

#[test]
fn timers_on_the_rocksdb_backend_live_on_disk_unless_asked_to_stay_on_the_heap() {
    // The job that fills the heap backend above, with less memory still:
    // RocksDB keeps the timers (as Flink does), so they cost no heap.
    let rocks =
        "backend: rocksdb, memory_limit: 4MiB, rocksdb_cache: 8MiB, rocksdb_write_buffer: 4MiB";
    assert_ok(&many_timers(60_000, &format!("{{ {rocks} }}")));
    // `timers: heap` (Flink's HEAP timer service) bounds them by the limit.
    let o = many_timers(60_000, &format!("{{ {rocks}, timers: heap }}"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("the timers on the heap take")
            && err.contains("more than `state.memory_limit` (4.0 MiB)"),
        "{err}"
    );
    // The heap backend has no RocksDB to keep them in.
    let o = many_timers(10, "{ backend: memory, timers: rocksdb }");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`timers: rocksdb` needs `backend: rocksdb`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_trap_in_a_keyed_process_function_costs_only_its_record_and_its_writes_are_undone() {
    let dir = support::temp_dir();
    let d = dir.path();
    std::fs::write(
        d.join("input.jsonl"),
        "{\"k\":\"a\",\"n\":1}\n{\"k\":\"a\",\"n\":2}\n{\"k\":\"a\",\"n\":3,\"note\":\"boom\"}\n{\"k\":\"a\",\"n\":4}\n{\"k\":\"b\",\"n\":5}\n",
    )
    .unwrap();
    let write_spec = |dead_letter: bool| {
        let mut s = format!(
            "sources:\n  - {{ uid: lines, type: file, path: \"{0}/input.jsonl\" }}\n\
             operators:\n  - uid: chaos\n    input: lines\n    key_by: /k\n    process: {{ module: chaos_process.wasm, config: {{ trigger: boom }} }}\n\
             sinks:\n  - {{ uid: out, input: chaos, type: file, path: \"{0}/out.jsonl\" }}\n",
            d.display()
        );
        if dead_letter {
            s.push_str(&format!(
                "dead_letter: {{ type: file, path: \"{}/dead.jsonl\" }}\n",
                d.display()
            ));
        }
        let path = d.join(format!("spec-{dead_letter}.yaml"));
        std::fs::write(&path, s).unwrap();
        path
    };
    let o = support::run(&write_spec(true), &[]);
    assert_ok(&o);
    // The boom record's list write and count are undone: the next record of
    // its key sees the state of the two before it.
    let mut rows: Vec<(String, u64, u64)> = support::sorted_lines(&d.join("out.jsonl"))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["key"].as_str().unwrap().to_owned(),
                v["count"].as_u64().unwrap(),
                v["seen"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("a".to_owned(), 1, 1),
            ("a".to_owned(), 2, 2),
            ("a".to_owned(), 3, 3),
            ("b".to_owned(), 1, 1),
        ]
    );
    let dead = dead_letters(d);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"], "{\"k\":\"a\",\"n\":3,\"note\":\"boom\"}");
    assert!(
        error_of(&dead[0]).contains("operator trapped")
            && error_of(&dead[0]).contains("chaos: panic on record"),
        "{}",
        dead[0]
    );
    // Without a dead-letter sink the trap stops the job, naming the call.
    let o = support::run(&write_spec(false), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("chaos: panic on record"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_enrichers_instances_share_one_memory_limit() {
    let dir = support::temp_dir();
    let spec = enricher_spec(
        dir.path(),
        "{ module: chaos_enricher.wasm, config: { mode: alloc }, memory_limit: 48MiB, \
         capacity: 4, timeout: 20s, retries: 2, backoff: 10ms }",
    );
    let d = one_dead_letter_of(&spec, dir.path());
    assert!(
        error_of(&d)
            .contains("exceeded its memory limit of 48 MiB, shared by the subtask's instances")
            && error_of(&d).contains("(3 attempts)"),
        "{d}"
    );
}
