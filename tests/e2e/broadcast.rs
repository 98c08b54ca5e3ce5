//! Keyed broadcast process functions beyond what a data-driven case can
//! show: the check that every subtask holds the same broadcast state.

use crate::support::{self, stderr};

/// A broadcast side that writes what only its own subtask knows (how many
/// keyed records that instance has seen) leaves the subtasks with different
/// broadcast state: the first checkpoint after it fails the job, naming the
/// operator, instead of keeping subtask 0's state as everyone's.
#[test]
fn broadcast_state_that_differs_between_subtasks_fails_the_checkpoint() {
    let dir = support::temp_dir();
    let d = dir.path();
    // 100 keys over two subtasks; the one rule comes after most of them in
    // event time, so each subtask has seen its own share when it arrives.
    let keyed: String = (0..400)
        .map(|i| format!("{{\"k\":\"k{}\",\"ts\":{}}}\n", i % 100, i * 1000))
        .collect();
    std::fs::write(d.join("keyed.jsonl"), keyed).unwrap();
    std::fs::write(d.join("rules.jsonl"), "{\"rule\":\"r\",\"ts\":300000}\n").unwrap();
    let spec = d.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "parallelism: 2\n\
             sources:\n\
             \x20 - {{ uid: keyed, type: file, path: \"{0}/keyed.jsonl\", parallelism: 1, event_time: {{ timestamp: /ts, watermark: {{ max_out_of_orderness: 0s }} }} }}\n\
             \x20 - {{ uid: rules, type: file, path: \"{0}/rules.jsonl\", parallelism: 1, event_time: {{ timestamp: /ts, watermark: {{ max_out_of_orderness: 0s }} }} }}\n\
             operators:\n\
             \x20 - uid: checks\n\
             \x20   input: {{ keyed: keyed, broadcast: rules }}\n\
             \x20   input_selection: lowest_watermark\n\
             \x20   key_by: /k\n\
             \x20   broadcast_process: {{ module: chaos_broadcast.wasm, config: {{ mode: local }} }}\n\
             sinks:\n\
             \x20 - {{ uid: out, input: checks, type: file, path: \"{0}/out\" }}\n",
            d.display()
        ),
    )
    .unwrap();
    let o = support::sluice()
        .args(["run", "--no-api", "-q", "--checkpoint-interval", "10ms"])
        .arg("--checkpoint-dir")
        .arg(d.join("ck"))
        .args(["--source-rate", "500"])
        .arg(&spec)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    // The module's fault: no restart would help.
    assert!(!err.contains("restarting"), "{err}");
    assert!(
        err.contains(
            "operator `checks`: subtasks 0 and 1 hold different broadcast state at checkpoint"
        ) && err.contains("must change broadcast state the same way on every subtask"),
        "{err}"
    );
}
