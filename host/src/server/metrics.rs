//! `/metrics`: every job's node metrics in the Prometheus text format
//! (version 0.0.4), labelled `job` (the id), `job_name` and `operator`.

use super::jobs::{Jobs, Status};
use super::store::ModuleStore;
use crate::runtime::{HISTOGRAM_BOUNDS, NodeMetrics};
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// The exposition text.
pub fn render(jobs: &Jobs, store: Option<&ModuleStore>) -> String {
    let jobs = jobs.list();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sluice_build_info The running sluice.\n# TYPE sluice_build_info gauge\nsluice_build_info{{version=\"{}\",wit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::WIT_PACKAGE
    );
    if let Some(store) = store {
        let _ = writeln!(
            out,
            "# HELP sluice_modules Modules in the store.\n# TYPE sluice_modules gauge\nsluice_modules {}",
            store.list().len()
        );
    }
    header(
        &mut out,
        "sluice_job_status",
        "gauge",
        "1 for the job's status.",
    );
    for j in &jobs {
        for s in [
            Status::Running,
            Status::Finished,
            Status::Failed,
            Status::Cancelled,
            Status::Stopped,
        ] {
            let _ = writeln!(
                out,
                "sluice_job_status{{job=\"{}\",job_name=\"{}\",status=\"{}\"}} {}",
                j.id,
                escape(&j.name),
                s.name(),
                u8::from(j.status() == s)
            );
        }
    }
    type Stat = fn(&crate::checkpoint::CheckpointStats) -> f64;
    let job_series: [(&str, &str, &str, Stat); 5] = [
        (
            "sluice_job_restarts_total",
            "counter",
            "Restarts after failures.",
            |c| c.restarts.load(Ordering::Relaxed) as f64,
        ),
        (
            "sluice_checkpoints_completed_total",
            "counter",
            "Checkpoints and savepoints completed.",
            |c| c.completed.load(Ordering::Relaxed) as f64,
        ),
        (
            "sluice_checkpoints_failed_total",
            "counter",
            "Checkpoints that failed (timed out, could not be written).",
            |c| c.failed.load(Ordering::Relaxed) as f64,
        ),
        (
            "sluice_last_checkpoint_duration_seconds",
            "gauge",
            "How long the last complete checkpoint took, from trigger to manifest.",
            |c| c.last_duration_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        ),
        (
            "sluice_last_checkpoint_size_bytes",
            "gauge",
            "Bytes of state the last complete checkpoint wrote.",
            |c| c.last_size_bytes.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, kind, help, read) in job_series {
        header(&mut out, name, kind, help);
        for j in &jobs {
            let _ = writeln!(
                out,
                "{name}{{job=\"{}\",job_name=\"{}\"}} {}",
                j.id,
                escape(&j.name),
                read(&j.control.stats)
            );
        }
    }

    type Read = fn(&NodeMetrics) -> Option<f64>;
    let series: [(&str, &str, &str, Read); 11] = [
        (
            "sluice_records_in_total",
            "counter",
            "Records that reached the operator.",
            |m| Some(NodeMetrics::get(&m.records_in) as f64),
        ),
        (
            "sluice_records_out_total",
            "counter",
            "Records the operator emitted.",
            |m| Some(NodeMetrics::get(&m.records_out) as f64),
        ),
        (
            "sluice_late_records_total",
            "counter",
            "Records a window dropped or sent to its late output for coming too late.",
            |m| Some(NodeMetrics::get(&m.late) as f64),
        ),
        (
            "sluice_dead_lettered_records_total",
            "counter",
            "Records sent to the dead-letter sink.",
            |m| Some(NodeMetrics::get(&m.dead_lettered) as f64),
        ),
        (
            "sluice_lookup_cache_hits_total",
            "counter",
            "Lookups a lookup join's cache answered.",
            |m| Some(NodeMetrics::get(&m.cache_hits) as f64),
        ),
        (
            "sluice_lookup_cache_misses_total",
            "counter",
            "Lookups a lookup join sent to its table.",
            |m| Some(NodeMetrics::get(&m.cache_misses) as f64),
        ),
        (
            "sluice_wasm_call_seconds_total",
            "counter",
            "Time spent in Wasm calls.",
            |m| Some(NodeMetrics::get(&m.wasm_nanos) as f64 / 1e9),
        ),
        (
            "sluice_backpressured_seconds_total",
            "counter",
            "Time the operator's subtasks waited for room downstream (summed over subtasks).",
            |m| Some(NodeMetrics::get(&m.backpressured_nanos) as f64 / 1e9),
        ),
        (
            "sluice_state_bytes",
            "gauge",
            "Keyed state a process function holds, as its backend estimates it.",
            |m| Some(m.state_size() as f64),
        ),
        (
            "sluice_watermark_milliseconds",
            "gauge",
            "The operator's event-time watermark (least over subtasks), ms since the epoch.",
            |m| m.watermark().map(|w| w as f64),
        ),
        (
            "sluice_watermark_lag_seconds",
            "gauge",
            "Wall clock minus the operator's watermark.",
            |m| {
                m.watermark()
                    .map(|w| (super::store::now_ms().saturating_sub(w)) as f64 / 1e3)
            },
        ),
    ];
    for (name, kind, help, read) in series {
        header(&mut out, name, kind, help);
        for j in &jobs {
            for (n, m) in j.graph.nodes.iter().zip(&j.metrics) {
                // Only process functions' state is measured.
                if name == "sluice_state_bytes" && n.kind != "process" {
                    continue;
                }
                if let Some(v) = read(m) {
                    let _ = writeln!(
                        out,
                        "{name}{{job=\"{}\",job_name=\"{}\",operator=\"{}\"}} {v}",
                        j.id,
                        escape(&j.name),
                        escape(&n.uid)
                    );
                }
            }
        }
    }
    header(
        &mut out,
        "sluice_latency_seconds",
        "histogram",
        "Time from a source to the operator, measured by latency markers (one per source subtask per second).",
    );
    for j in &jobs {
        for (n, m) in j.graph.nodes.iter().zip(&j.metrics) {
            if n.kind == "source" {
                continue;
            }
            let labels = format!(
                "job=\"{}\",job_name=\"{}\",operator=\"{}\"",
                j.id,
                escape(&j.name),
                escape(&n.uid)
            );
            let (cumulative, sum) = m.latency.snapshot();
            for (i, c) in cumulative.iter().enumerate() {
                let le = HISTOGRAM_BOUNDS
                    .get(i)
                    .map_or("+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "sluice_latency_seconds_bucket{{{labels},le=\"{le}\"}} {c}"
                );
            }
            let _ = writeln!(out, "sluice_latency_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(
                out,
                "sluice_latency_seconds_count{{{labels}}} {}",
                cumulative.last().copied().unwrap_or(0)
            );
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
