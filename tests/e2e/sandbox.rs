//! Containment: a guest that panics, spins or hoards memory costs one record
//! (or stops the job with an error naming the operator and the record), never
//! the host; and a guest reaches only what the spec grants it. All with the
//! `chaos` example operator.

use crate::support::{self, assert_ok, stderr};
use std::path::Path;

/// A spec with a file source, the chaos transform and a file sink, and a
/// dead-letter sink when `dead_letter` is set.
fn spec(dir: &Path, wasm: &str, dead_letter: bool) -> std::path::PathBuf {
    let mut s = format!(
        "sources:\n  - {{ uid: lines, type: file, path: \"{0}/input.jsonl\" }}\n\
         operators:\n  - uid: chaos\n    input: lines\n    wasm: {wasm}\n\
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
    let o = support::run(&spec, &[]);
    assert_ok(&o);
    let out = support::sorted_lines(&dir.path().join("out.jsonl"));
    assert_eq!(out, ["{\"n\":1}", "{\"n\":2}", "{\"n\":4}", "{\"n\":5}"]);
    let mut dead = dead_letters(dir.path());
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
