//! The jobs of a host: each runs on a thread of its own (its tasks on
//! theirs, see [`crate::runtime::job`]) and keeps its metrics readable while
//! it runs and after it ends.

use crate::error::RuntimeError;
use crate::plan::{NodeKind, Pipeline};
use crate::runtime::NodeMetrics;
use crate::runtime::job::{self, JobSummary};
use crate::time::SystemClock;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Finished,
    Failed,
    Cancelled,
    /// Stopped with a savepoint.
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Stopped => "stopped",
        }
    }
}

/// The plan's shape, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    pub uid: String,
    pub kind: &'static str,
    pub parallelism: u32,
    /// The chain (task) the node runs in.
    pub chain: usize,
    /// SHA-256 of the node's Wasm module, if it has one.
    pub module: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    /// The output of `from` it carries: `main`, `dead_letter`, or a side
    /// output's name.
    pub port: String,
    pub partitioning: &'static str,
    /// True when both ends run in one task (no channel).
    pub chained: bool,
}

impl Graph {
    pub fn of(p: &Pipeline) -> Graph {
        Graph {
            nodes: p
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| GraphNode {
                    uid: n.uid.clone(),
                    kind: n.kind.name(),
                    parallelism: n.parallelism,
                    chain: p.chain_of(i),
                    module: module_of(&n.kind).map(str::to_owned),
                })
                .collect(),
            edges: p
                .edges
                .iter()
                .map(|e| GraphEdge {
                    from: p.nodes[e.from].uid.clone(),
                    to: p.nodes[e.to].uid.clone(),
                    port: p.port_names(e.from)[e.port].to_owned(),
                    partitioning: e.partitioning.name(),
                    chained: p.is_chained(e),
                })
                .collect(),
        }
    }
}

fn module_of(kind: &NodeKind) -> Option<&str> {
    kind.factory()?.module().map(|m| m.sha256)
}

/// Rates of one node over the last sampling interval.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rates {
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    /// Share of the interval the node's subtasks spent waiting for room
    /// downstream (0 to 1).
    pub backpressure: f64,
}

/// A node's records in, records out and backpressured nanoseconds.
type Counters = (u64, u64, u64);

/// Where a started job's result arrives once it has ended.
pub type Done = tokio::sync::oneshot::Receiver<Result<JobSummary, RuntimeError>>;

struct Mutable {
    status: Status,
    ended_at: Option<i64>,
    last_error: Option<String>,
    rates: Vec<Rates>,
    /// Counters at the last sample: (when, in, out, backpressured ns).
    last_sample: Option<(Instant, Vec<Counters>)>,
    elapsed: Option<f64>,
    /// Where the job stopped with a savepoint.
    savepoint: Option<String>,
}

pub struct Job {
    pub id: String,
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub submitted_at: i64,
    pub graph: Graph,
    /// The Flink SQL script the job was planned from, as submitted (its
    /// `${VAR}`s not replaced, so that no value passed as a variable shows).
    pub sql: Option<String>,
    pub metrics: Vec<Arc<NodeMetrics>>,
    /// Cancel, savepoints, and the checkpoint counters (restarts among
    /// them).
    pub control: job::ControlHandle,
    /// Cancelled with `--drop-slot`: the sources release what they hold
    /// outside the job (replication slots) once it has stopped.
    release_sources: std::sync::atomic::AtomicBool,
    started: Instant,
    state: Mutex<Mutable>,
}

/// A job's numbers at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorView {
    pub uid: String,
    pub kind: &'static str,
    pub parallelism: u32,
    pub records_in: u64,
    pub records_out: u64,
    #[serde(flatten)]
    pub rates: Rates,
    /// Event-time watermark (ms since the epoch), once every subtask has one.
    pub watermark: Option<i64>,
    /// Wall clock minus watermark, ms.
    pub watermark_lag_ms: Option<i64>,
    pub late: u64,
    pub dead_lettered: u64,
    /// Keyed state of a process function (other kinds: not measured).
    pub state_bytes: Option<u64>,
    pub wasm_seconds: f64,
    /// Latency markers' time from source to here: median and 99th
    /// percentile (bucket upper bounds), ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl Job {
    pub fn status(&self) -> Status {
        self.state.lock().expect("job").status
    }

    pub fn last_error(&self) -> Option<String> {
        self.state.lock().expect("job").last_error.clone()
    }

    pub fn ended_at(&self) -> Option<i64> {
        self.state.lock().expect("job").ended_at
    }

    /// Seconds the job ran (so far).
    pub fn duration(&self) -> f64 {
        self.state
            .lock()
            .expect("job")
            .elapsed
            .unwrap_or_else(|| self.started.elapsed().as_secs_f64())
    }

    /// Asks the job to stop; it becomes `cancelled` once its tasks have.
    /// False when it is no longer running.
    pub fn cancel(&self) -> bool {
        self.cancel_releasing(false)
    }

    /// [`Job::cancel`]; with `release`, the sources then drop what they
    /// hold outside the job (a CDC source's replication slot).
    pub fn cancel_releasing(&self, release: bool) -> bool {
        if self.status() != Status::Running {
            return false;
        }
        self.release_sources
            .store(release, std::sync::atomic::Ordering::Relaxed);
        self.control.cancel.send_replace(true);
        true
    }

    /// Takes a savepoint (into `dir`, or the checkpoint folder) and, with
    /// `stop`, stops the job once it is complete. Returns its folder.
    pub async fn savepoint(
        &self,
        dir: Option<std::path::PathBuf>,
        stop: bool,
    ) -> Result<std::path::PathBuf, String> {
        if self.status() != Status::Running {
            return Err(format!("job {} is {}", self.id, self.status().name()));
        }
        self.control.savepoint(dir, stop).await
    }

    /// Where the job stopped with a savepoint.
    pub fn savepoint_path(&self) -> Option<String> {
        self.state.lock().expect("job").savepoint.clone()
    }

    pub fn uses_module(&self, sha256: &str) -> bool {
        self.graph
            .nodes
            .iter()
            .any(|n| n.module.as_deref() == Some(sha256))
    }

    /// Updates the rates from the counters' change since the last sample.
    pub fn sample(&self) {
        let now = Instant::now();
        let counters: Vec<Counters> = self
            .metrics
            .iter()
            .map(|m| {
                (
                    NodeMetrics::get(&m.records_in),
                    NodeMetrics::get(&m.records_out),
                    NodeMetrics::get(&m.backpressured_nanos),
                )
            })
            .collect();
        let mut st = self.state.lock().expect("job");
        if st.status != Status::Running {
            st.rates = vec![Rates::default(); self.metrics.len()];
            return;
        }
        if let Some((then, before)) = &st.last_sample {
            let dt = now.duration_since(*then).as_secs_f64();
            if dt > 0.0 {
                st.rates = counters
                    .iter()
                    .zip(before)
                    .zip(&self.graph.nodes)
                    .map(|((c, b), n)| Rates {
                        records_in_per_second: c.0.saturating_sub(b.0) as f64 / dt,
                        records_out_per_second: c.1.saturating_sub(b.1) as f64 / dt,
                        backpressure: (c.2.saturating_sub(b.2) as f64
                            / (dt * 1e9 * n.parallelism.max(1) as f64))
                            .min(1.0),
                    })
                    .collect();
            }
        }
        st.last_sample = Some((now, counters));
    }

    pub fn operators(&self) -> Vec<OperatorView> {
        let rates = self.state.lock().expect("job").rates.clone();
        let now = super::store::now_ms();
        let ms = |s: Option<f64>| s.filter(|s| s.is_finite()).map(|s| s * 1e3);
        self.graph
            .nodes
            .iter()
            .zip(&self.metrics)
            .enumerate()
            .map(|(i, (n, m))| {
                let watermark = m.watermark();
                OperatorView {
                    uid: n.uid.clone(),
                    kind: n.kind,
                    parallelism: n.parallelism,
                    records_in: NodeMetrics::get(&m.records_in),
                    records_out: NodeMetrics::get(&m.records_out),
                    rates: rates.get(i).copied().unwrap_or_default(),
                    watermark,
                    watermark_lag_ms: watermark.map(|w| now.saturating_sub(w)),
                    late: NodeMetrics::get(&m.late),
                    dead_lettered: NodeMetrics::get(&m.dead_lettered),
                    state_bytes: (n.kind == "process").then(|| m.state_size()),
                    wasm_seconds: NodeMetrics::get(&m.wasm_nanos) as f64 / 1e9,
                    latency_p50_ms: ms(m.latency.quantile(0.5)),
                    latency_p99_ms: ms(m.latency.quantile(0.99)),
                }
            })
            .collect()
    }
}

/// All jobs of this host, oldest first.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<Vec<Arc<Job>>>,
    next: AtomicU64,
}

impl Jobs {
    /// Starts `pipeline` on a thread of its own. The receiver gets the
    /// job's result once it has ended (and its status is set).
    pub fn start(
        &self,
        pipeline: Pipeline,
        start: job::Start,
        sql: Option<String>,
    ) -> Result<(Arc<Job>, Done), String> {
        let metrics = job::node_metrics(&pipeline);
        let (control, handle) = job::Control::new();
        let job = Arc::new(Job {
            id: self.new_id(),
            name: pipeline.name.clone(),
            submitted_at: super::store::now_ms(),
            graph: Graph::of(&pipeline),
            sql,
            metrics: metrics.clone(),
            control: handle,
            release_sources: Default::default(),
            started: Instant::now(),
            state: Mutex::new(Mutable {
                status: Status::Running,
                ended_at: None,
                last_error: None,
                rates: vec![Rates::default(); pipeline.nodes.len()],
                last_sample: None,
                elapsed: None,
                savepoint: None,
            }),
        });
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let handle = job.clone();
        std::thread::Builder::new()
            .name(format!("sluice job {}", job.id))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RuntimeError::Internal(format!("cannot start a runtime: {e}")))
                    .and_then(|rt| {
                        rt.block_on(job::run_with(
                            &pipeline,
                            Arc::new(SystemClock),
                            &metrics,
                            control,
                            start,
                        ))
                    });
                let mut released = Vec::new();
                if matches!(result, Err(RuntimeError::Cancelled))
                    && handle
                        .release_sources
                        .load(std::sync::atomic::Ordering::Relaxed)
                {
                    for node in &pipeline.nodes {
                        if let NodeKind::Source { factory, .. } = &node.kind
                            && let Err(m) = factory.release()
                        {
                            tracing::error!(job = %handle.id, "source `{}`: {m}", node.uid);
                            released.push(format!("source `{}`: {m}", node.uid));
                        }
                    }
                }
                {
                    let mut st = handle.state.lock().expect("job");
                    if !released.is_empty() {
                        st.last_error = Some(released.join("; "));
                    }
                    st.status = match &result {
                        Ok(s) if s.savepoint.is_some() => Status::Stopped,
                        Ok(_) => Status::Finished,
                        Err(RuntimeError::Cancelled) => Status::Cancelled,
                        Err(_) => Status::Failed,
                    };
                    if let Err(e) = &result
                        && !matches!(e, RuntimeError::Cancelled)
                    {
                        tracing::error!(job = %handle.id, name = %handle.name, "job failed: {e}");
                        st.last_error = Some(e.to_string());
                    }
                    if let Ok(s) = &result {
                        st.savepoint = s.savepoint.as_ref().map(|p| p.display().to_string());
                    }
                    st.ended_at = Some(super::store::now_ms());
                    st.elapsed = Some(handle.started.elapsed().as_secs_f64());
                }
                tracing::info!(job = %handle.id, name = %handle.name, status = handle.status().name(), "job ended");
                let _ = done_tx.send(result);
            })
            .map_err(|e| format!("cannot start a job thread: {e}"))?;
        self.jobs.lock().expect("jobs").push(job.clone());
        Ok((job, done_rx))
    }

    pub fn list(&self) -> Vec<Arc<Job>> {
        self.jobs.lock().expect("jobs").clone()
    }

    /// The job with this id, or the one job whose id starts with it.
    pub fn get(&self, id: &str) -> Result<Arc<Job>, String> {
        let jobs = self.jobs.lock().expect("jobs");
        if let Some(j) = jobs.iter().find(|j| j.id == id) {
            return Ok(j.clone());
        }
        let matching: Vec<&Arc<Job>> = if id.is_empty() {
            Vec::new()
        } else {
            jobs.iter().filter(|j| j.id.starts_with(id)).collect()
        };
        match matching.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!("no job `{id}` (`sluice job list` shows the jobs)")),
            _ => Err(format!(
                "`{id}` is the start of several job ids; give more of it"
            )),
        }
    }

    /// The running jobs that use the module with this hash.
    pub fn using_module(&self, sha256: &str) -> Vec<Arc<Job>> {
        self.list()
            .into_iter()
            .filter(|j| j.status() == Status::Running && j.uses_module(sha256))
            .collect()
    }

    pub fn sample(&self) {
        for j in self.list() {
            j.sample();
        }
    }

    /// 16 hex digits, unique in this process and unlikely to repeat across
    /// processes.
    fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let seed = format!(
            "{}-{}-{n}-{:?}",
            std::process::id(),
            super::store::now_ms(),
            Instant::now()
        );
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
    }
}
