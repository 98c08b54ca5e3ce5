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
