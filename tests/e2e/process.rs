//! Keyed process functions driven call by call (`testing::OperatorHarness`):
//! orders of input a job's task produces only by timing.

use super::support;
use sluice_host::plan::PlanOptions;
use sluice_host::testing::OperatorHarness;

/// The session detector of W5, with a gap of one second.
fn sessions() -> OperatorHarness {
    let spec = "sources:\n\
                \x20 - { uid: in, type: datagen, count: 0, event_time: { timestamp: /ts } }\n\
                operators:\n\
                \x20 - uid: s\n\
                \x20   input: in\n\
                \x20   key_by: /k\n\
                \x20   process: { module: session_detector.wasm, config: { gap_ms: 1000, key_field: k } }\n\
                sinks:\n\
                \x20 - { uid: out, input: s, type: stdout }\n\
                \x20 - { uid: late, input: s.late, type: stdout }\n";
    let options = PlanOptions::from_env(&[support::modules_dir()]);
    OperatorHarness::plan_with(spec, "s", &options).unwrap_or_else(|e| panic!("{e}"))
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

/// A watermark that makes more event-time timers due than one call takes
/// (16,384) fires them in calls of their own before the records that came
/// after it, in the same burst. Those records are still processed under
/// their own keys: here a new key and one whose session the timers closed.
#[test]
fn records_after_a_watermark_that_fires_many_timers_keep_their_own_keys() {
    let mut h = sessions();
    let n = 16_384 + 100;
    let first: Vec<(String, i64)> = (0..n)
        .map(|i| (format!(r#"{{"k":"c{i}","ts":{}}}"#, 10_000 + i), 10_000 + i))
        .collect();
    h.records(0, first).unwrap();
    assert_eq!(h.flush().unwrap(), None);
    assert_eq!(h.take_output(""), Vec::<String>::new());

    // Every session's timer is due by `w`; the two records come after it,
    // before the next flush.
    let w = 10_000 + n + 1_000;
    let t = w + 5;
    h.watermark(w).unwrap();
    h.records(
        0,
        [
            (format!(r#"{{"k":"fresh","ts":{t}}}"#), t),
            (format!(r#"{{"k":"c0","ts":{t}}}"#), t),
        ],
    )
    .unwrap();
    assert_eq!(h.flush().unwrap(), Some(w));
    let closed: Vec<String> = (0..n)
        .map(|i| {
            let s = 10_000 + i;
            format!(
                r#"{{"k":"c{i}","session_start":{s},"session_end":{},"count":1}}"#,
                s + 1_000
            )
        })
        .collect();
    assert_eq!(sorted(h.take_output("")), sorted(closed));

    h.watermark(i64::MAX).unwrap();
    h.close().unwrap();
    let opened: Vec<String> = ["c0", "fresh"]
        .iter()
        .map(|k| {
            format!(
                r#"{{"k":"{k}","session_start":{t},"session_end":{},"count":1}}"#,
                t + 1_000
            )
        })
        .collect();
    assert_eq!(sorted(h.take_output("")), opened);
    assert_eq!(h.take_output("late"), Vec::<String>::new());
}

/// `chaos_process.wasm` with a 32 MiB memory limit, every record keeping
/// 1 MiB of it; `list` says whether records are added to list state too.
fn leaking(list: bool) -> OperatorHarness {
    let spec = format!(
        "wasm: {{ memory_limit: 32MiB }}\n\
         sources: [{{ uid: in, type: datagen, count: 0 }}]\n\
         operators:\n\
         \x20 - uid: p\n\
         \x20   input: in\n\
         \x20   key_by: /k\n\
         \x20   process: {{ module: chaos_process.wasm, config: {{ leak_kib: 1024, list: {list} }} }}\n\
         sinks: [{{ uid: out, input: p, type: stdout }}]\n"
    );
    let options = PlanOptions::from_env(&[support::modules_dir()]);
    OperatorHarness::plan_with(&spec, "p", &options).unwrap_or_else(|e| panic!("{e}"))
}

/// `n` records of key `k`, as one batch then a flush: one call.
fn call(h: &mut OperatorHarness, k: &str, n: usize) -> Result<(), String> {
    let records = (0..n).map(|i| (format!(r#"{{"k":"{k}","i":{i}}}"#), 0));
    h.records(0, records).map_err(|e| e.to_string())?;
    h.flush().map(|_| ()).map_err(|e| e.to_string())
}

/// What the chaos process function emitted: each row's count and `seen`.
fn counts(h: &mut OperatorHarness) -> Vec<(u64, u64)> {
    h.take_output("")
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            (v["count"].as_u64().unwrap(), v["seen"].as_u64().unwrap())
        })
        .collect()
}

/// A call that runs out of memory on an instance that earlier calls grew,
/// and that wrote no list or map state, is made again on a new instance:
/// 10 MiB kept by the first two calls and 24 MiB by the third do not fit in
/// 32 MiB; 24 do. Its value writes count once.
#[test]
fn a_call_that_outgrows_a_grown_instance_is_made_again_on_a_new_one() {
    let mut h = leaking(false);
    call(&mut h, "a", 5).unwrap();
    call(&mut h, "a", 5).unwrap();
    assert_eq!(counts(&mut h).len(), 10);
    call(&mut h, "a", 24).unwrap();
    let expected: Vec<(u64, u64)> = (11..=34).map(|c| (c, 0)).collect();
    assert_eq!(counts(&mut h), expected);
    // The instance is near its limit: the next call gets a new one.
    call(&mut h, "a", 24).unwrap();
    assert_eq!(counts(&mut h).len(), 24);
}

/// The same call, but one that added to list state without a dead-letter
/// sink (its list writes cannot be undone): made again it would add them
/// twice, so the trap stops the job, naming the operator and the limit.
#[test]
fn a_call_that_outgrew_its_instance_after_list_writes_is_not_made_again() {
    let mut h = leaking(true);
    call(&mut h, "a", 5).unwrap();
    call(&mut h, "a", 5).unwrap();
    let e = call(&mut h, "a", 24).unwrap_err();
    assert!(e.contains("`p`") && e.contains("memory limit"), "{e}");
}
