//! Deploying a plan: channels, tasks, and waiting for them.
//!
//! Every chain of the plan runs as one task per subtask. Each task that is
//! not driven by a source gets one bounded channel; every upstream subtask
//! that feeds it holds a sender and tags its messages with its own input
//! index, so the task can tell its inputs apart (for the minimum watermark)
//! while backpressure stays per channel. A job ends when every task has seen
//! the end of its input; the first task that fails stops the others.
//!
//! Each task is a tokio task on its own single-threaded runtime, on its own
//! OS thread (Flink's thread-per-task model). Operators are CPU-bound; on a
//! shared work-stealing runtime a task woken by its upstream's send runs next
//! on the same worker (tokio's LIFO slot, which other workers cannot steal
//! from), so a pipeline of tasks ends up taking turns on one core instead of
//! running side by side.

use super::batch::MemberRequest;
use super::graph::{NodeKind, Pipeline};
use super::keys::KeySelector;
use super::operator::{FIRST_SIDE_PORT, MAIN_PORT, NodeInfo, Subtask};
use super::router::{Partitioning, Router, TaskInputs, TaskSender};
use super::source::{Format, SourceOutput};
use super::task::{ChainNode, Head, SourceNode, Target, Task};
use super::{NodeMetrics, Operator, Output, Splits};
use crate::checkpoint::coordinator::{Coordinator, Outcome, SavepointRequest, Setup};
use crate::checkpoint::{CheckpointStats, RestorePoint};
use crate::error::{Fault, RuntimeError, WasmError};
use crate::time::Clock;
use crate::time::watermark::InputWatermarks;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// What a finished job did.
#[derive(Debug)]
pub struct JobSummary {
    pub elapsed: Duration,
    pub nodes: Vec<NodeSummary>,
    /// When the first record was read, and when the first record reached a
    /// sink, counted from the process start.
    pub first_read: Option<Duration>,
    pub first_output: Option<Duration>,
    /// Set when the job stopped with a savepoint: where it is.
    pub savepoint: Option<std::path::PathBuf>,
    /// Set when there was nothing to do: the checkpoint folder says the job
    /// had already finished.
    pub already_finished: Option<String>,
}

#[derive(Debug)]
pub struct NodeSummary {
    pub uid: String,
    pub kind: &'static str,
    pub parallelism: u32,
    pub records_in: u64,
    pub records_out: u64,
    pub late: u64,
    pub dead_lettered: u64,
    pub wasm: Duration,
    /// A lookup join's cache hits and misses.
    pub cache: (u64, u64),
    /// Bytes of keyed state the node's subtasks held at the end, as their
    /// backends estimate them (operators that report it).
    pub state_bytes: u64,
}

impl JobSummary {
    /// Records read by all sources.
    pub fn records_read(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.kind == "source")
            .map(|n| n.records_in + n.dead_lettered)
            .sum()
    }
}

/// The live metrics of a job's nodes (in plan order), readable while it
/// runs.
pub fn node_metrics(pipeline: &Pipeline) -> Vec<Arc<NodeMetrics>> {
    pipeline
        .nodes
        .iter()
        .map(|n| Arc::new(NodeMetrics::new(n.parallelism)))
        .collect()
}

/// Runs a planned pipeline to the end of its input.
pub async fn run(pipeline: &Pipeline, clock: Arc<dyn Clock>) -> Result<JobSummary, RuntimeError> {
    let (control, _handle) = Control::new();
    run_with(
        pipeline,
        clock,
        &node_metrics(pipeline),
        control,
        Start::default(),
    )
    .await
}

/// How a job is steered while it runs: cancelled, asked for savepoints.
pub struct Control {
    pub cancel: tokio::sync::watch::Receiver<bool>,
    pub requests: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<SavepointRequest>>>,
    pub stats: Arc<CheckpointStats>,
}

/// The other end of a [`Control`].
#[derive(Clone)]
pub struct ControlHandle {
    pub cancel: Arc<tokio::sync::watch::Sender<bool>>,
    pub requests: mpsc::UnboundedSender<SavepointRequest>,
    pub stats: Arc<CheckpointStats>,
}

impl Control {
    pub fn new() -> (Control, ControlHandle) {
        let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(CheckpointStats::default());
        (
            Control {
                cancel,
                requests: Arc::new(tokio::sync::Mutex::new(req_rx)),
                stats: stats.clone(),
            },
            ControlHandle {
                cancel: Arc::new(cancel_tx),
                requests: req_tx,
                stats,
            },
        )
    }
}

impl ControlHandle {
    /// Asks for a savepoint (and to stop after it); waits for its folder.
    pub async fn savepoint(
        &self,
        dir: Option<std::path::PathBuf>,
        stop: bool,
    ) -> Result<std::path::PathBuf, String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.requests
            .send(SavepointRequest { dir, stop, reply })
            .map_err(|_| "the job is not running".to_owned())?;
        rx.await
            .map_err(|_| "the job ended before the savepoint was complete".to_owned())?
    }
}

/// Where a job starts from.
#[derive(Default, Clone)]
pub struct Start {
    /// A savepoint (or checkpoint) folder; without one a job with a
    /// checkpoint folder resumes from its latest complete checkpoint.
    pub from_savepoint: Option<std::path::PathBuf>,
    /// Whether state in the snapshot that no operator claims may be dropped.
    pub drop_unclaimed_state: bool,
}

/// Runs a planned pipeline to the end of its input, counting into `metrics`
/// (from [`node_metrics`]), restarting it from its latest checkpoint after a
/// failure as the spec's restart strategy allows, until `control.cancel`
/// becomes true: then every task stops, and once all have, the job ends with
/// [`RuntimeError::Cancelled`].
pub async fn run_with(
    pipeline: &Pipeline,
    clock: Arc<dyn Clock>,
    metrics: &[Arc<NodeMetrics>],
    mut control: Control,
    start: Start,
) -> Result<JobSummary, RuntimeError> {
    let initial = match (&start.from_savepoint, &pipeline.settings.checkpoints) {
        (Some(dir), _) => Some(RestorePoint::savepoint(dir).map_err(RuntimeError::Checkpoint)?),
        (None, Some(c)) => RestorePoint::latest(&c.dir).map_err(RuntimeError::Checkpoint)?,
        (None, None) => None,
    }
    .map(|mut r| {
        r.drop_unclaimed = start.drop_unclaimed_state;
        r
    });
    let committers: Vec<(String, Arc<dyn crate::checkpoint::Committer>)> = pipeline
        .nodes
        .iter()
        .filter_map(|n| {
            let c = n.kind.factory()?.committer()?;
            Some((n.uid.clone(), c))
        })
        .collect();
    if let Some(r) = &initial {
        if r.finished() {
            for (uid, c) in &committers {
                c.recover(Some(r.id()), &r.committables(uid))
                    .map_err(|e| RuntimeError::Checkpoint(format!("sink `{uid}`: {e}")))?;
            }
            return Ok(JobSummary {
                already_finished: Some(r.location.clone()),
                ..JobSummary::empty()
            });
        }
        let uids: Vec<&str> = pipeline.nodes.iter().map(|n| n.uid.as_str()).collect();
        let unclaimed = r.unclaimed(&uids);
        if !unclaimed.is_empty() && !r.drop_unclaimed {
            return Err(RuntimeError::Incompatible(format!(
                "{} holds state of {} that no node of this spec claims (by uid); restore it with a spec that has them, or pass --drop-unclaimed-state to drop that state",
                r.location,
                unclaimed
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if let Some(r) = &initial {
        // A swapped module must be able to take over its operator's state:
        // refuse now, with the reason, rather than fail (and restart) later.
        for n in &pipeline.nodes {
            let Some(factory) = n.kind.factory() else {
                continue;
            };
            factory.check_restore(&n.uid, r).await.map_err(|m| {
                let module = factory
                    .module()
                    .map(|m| format!(" ({})", m.path.display()))
                    .unwrap_or_default();
                RuntimeError::Incompatible(format!(
                    "operator `{}`{module} cannot restore from {}: {m}",
                    n.uid, r.location
                ))
            })?;
        }
    }
    let mut restore = initial.clone();
    let mut failures = 0u32;
    loop {
        // A sink that cannot recover now (its broker is down) fails the
        // attempt: the restart strategy tries again.
        let recovered = committers.iter().try_for_each(|(uid, c)| {
            let items = restore
                .as_ref()
                .map(|r| r.committables(uid))
                .unwrap_or_default();
            c.recover(restore.as_ref().map(|r| r.id()), &items)
                .map_err(|e| RuntimeError::Checkpoint(format!("sink `{uid}`: {e}")))
        });
        let result = match recovered {
            Err(e) => Err(e),
            Ok(()) => {
                if let Some(r) = &restore {
                    control
                        .stats
                        .restored_from
                        .store(r.id(), std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(job = %pipeline.name, "restoring from {} (checkpoint {})", r.location, r.id());
                }
                run_attempt(
                    pipeline,
                    clock.clone(),
                    metrics,
                    &mut control,
                    restore.clone(),
                    &committers,
                )
                .await
            }
        };
        let e = match result {
            Err(e) if !matches!(e, RuntimeError::Cancelled) => e,
            other => return other,
        };
        // Whose fault it is decides: a broken spec, module or record fails
        // the same way again, so the job fails now, with its message; the
        // outside world (a file, a broker) may recover; a bug in sluice is
        // retried too, but said to be one.
        match e.fault() {
            Fault::User => return Err(e),
            Fault::External => {}
            Fault::Internal => tracing::error!(
                job = %pipeline.name,
                "internal error (a bug in sluice; please report it): {e}"
            ),
        }
        failures += 1;
        let Some(delay) = pipeline.settings.restart.delay(failures) else {
            return Err(e);
        };
        control
            .stats
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            job = %pipeline.name,
            "the job failed: {e}; restarting in {} (restart {failures} of {})",
            humantime::format_duration(delay),
            pipeline.settings.restart.attempts()
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = control.cancel.wait_for(|c| *c) => return Err(RuntimeError::Cancelled),
        }
        if let Some(c) = &pipeline.settings.checkpoints
            && let Some(latest) = RestorePoint::latest(&c.dir).map_err(RuntimeError::Checkpoint)?
        {
            restore = Some(RestorePoint {
                drop_unclaimed: start.drop_unclaimed_state,
                ..latest
            });
        }
    }
}

impl JobSummary {
    fn empty() -> JobSummary {
        JobSummary {
            elapsed: Duration::ZERO,
            nodes: Vec::new(),
            first_read: None,
            first_output: None,
            savepoint: None,
            already_finished: None,
        }
    }
}

/// One attempt at running the job: from `restore` (if any) until it ends,
/// fails, is cancelled, or stops with a savepoint.
async fn run_attempt(
    pipeline: &Pipeline,
    clock: Arc<dyn Clock>,
    metrics: &[Arc<NodeMetrics>],
    control: &mut Control,
    restore: Option<RestorePoint>,
    committers: &[(String, Arc<dyn crate::checkpoint::Committer>)],
) -> Result<JobSummary, RuntimeError> {
    let cancel = &mut control.cancel;
    let started = Instant::now();
    let splits = Arc::new(Splits::default());
    let infos: Vec<Arc<NodeInfo>> = pipeline
        .nodes
        .iter()
        .zip(metrics)
        .map(|(n, m)| {
            Arc::new(NodeInfo {
                uid: n.uid.as_str().into(),
                has_dead_letter: pipeline.has_dead_letter,
                splits: splits.clone(),
                metrics: m.clone(),
                changelog: n.changelog,
            })
        })
        .collect();

    // Inputs of each chain head: for every incoming edge, where its input
    // indices start.
    let mut input_offset = vec![0u32; pipeline.edges.len()];
    let mut input_count = vec![0u32; pipeline.chains.len()];
    // The head's logical input of each input index.
    let mut logical: Vec<Vec<usize>> = vec![Vec::new(); pipeline.chains.len()];
    for (e, edge) in pipeline.edges.iter().enumerate() {
        if pipeline.is_chained(edge) {
            continue;
        }
        let c = pipeline.chain_of(edge.to);
        input_offset[e] = input_count[c];
        let n = match edge.partitioning {
            Partitioning::Forward => 1,
            _ => pipeline.nodes[edge.from].parallelism,
        };
        input_count[c] += n;
        logical[c].extend(std::iter::repeat_n(edge.input, n as usize));
    }

    // A channel per subtask and logical input of each chain's head.
    let mut senders: Vec<Vec<Vec<TaskSender>>> = Vec::new();
    let mut receivers: Vec<Vec<Option<TaskInputs>>> = Vec::new();
    for (c, chain) in pipeline.chains.iter().enumerate() {
        let groups = logical[c].iter().max().map_or(1, |m| m + 1);
        let (mut tx, mut rx) = (Vec::new(), Vec::new());
        for _ in 0..chain.parallelism {
            let (t, r): (Vec<_>, Vec<_>) = (0..groups)
                .map(|_| mpsc::channel(pipeline.settings.channel_capacity))
                .unzip();
            tx.push(t);
            rx.push(Some(TaskInputs::new(r)));
        }
        senders.push(tx);
        receivers.push(rx);
    }

    let tasks: usize = pipeline.chains.iter().map(|c| c.parallelism as usize).sum();
    let mut triggers = Vec::new();
    let mut trigger_rx = Vec::new();
    for chain in &pipeline.chains {
        if pipeline.nodes[chain.nodes[0]].kind.is_source() {
            for _ in 0..chain.parallelism {
                let (t, r) = mpsc::unbounded_channel();
                triggers.push(t);
                trigger_rx.push(Some(r));
            }
        }
    }
    let (outcome_tx, mut outcome_rx) = mpsc::unbounded_channel();
    let (coordinator, link) = Coordinator::new(
        Setup {
            job: pipeline.name.clone(),
            max_parallelism: pipeline.settings.max_parallelism,
            backend: pipeline.settings.state_backend.name(),
            settings: pipeline.settings.checkpoints.clone(),
            restored_id: restore.as_ref().map_or(0, |r| r.id()),
            committers: committers.to_vec(),
            stats: control.stats.clone(),
        },
        triggers,
        tasks,
        outcome_tx,
    );
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
    let coordinator = tokio::spawn(coordinator.run(control.requests.clone(), shutdown_rx));
    let mut next_trigger = trigger_rx.iter_mut();

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let mut spawned = 0usize;
    let members = member_requests(pipeline);
    for (c, chain) in pipeline.chains.iter().enumerate() {
        for subtask in 0..chain.parallelism {
            let mut routers = Vec::new();
            let mut router_owner = Vec::new();
            let mut nodes = Vec::new();
            // The head's main-port edges: the router of each key-hash one.
            let mut head_edges: Vec<Option<(usize, KeySelector)>> = Vec::new();
            for (pos, &n) in chain.nodes.iter().enumerate() {
                let node = &pipeline.nodes[n];
                let ports = FIRST_SIDE_PORT + node.side_ports.len();
                let mut targets: Vec<Vec<Target>> = vec![Vec::new(); ports];
                for (e, edge) in pipeline
                    .edges
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.from == n)
                {
                    let target = if pipeline.is_chained(edge) {
                        Target::Chained(
                            chain
                                .nodes
                                .iter()
                                .position(|&m| m == edge.to)
                                .expect("chained node"),
                        )
                    } else {
                        let to = pipeline.chain_of(edge.to);
                        let (targets, index) = match edge.partitioning {
                            Partitioning::Forward => (
                                vec![senders[to][subtask as usize][edge.input].clone()],
                                input_offset[e],
                            ),
                            _ => (
                                senders[to].iter().map(|s| s[edge.input].clone()).collect(),
                                input_offset[e] + subtask,
                            ),
                        };
                        routers.push(
                            Router::new(edge.partitioning.clone(), targets, index)
                                .with_metrics(metrics[n].clone()),
                        );
                        router_owner.push(pos);
                        Target::Router(routers.len() - 1)
                    };
                    if pos == 0 && edge.port == MAIN_PORT {
                        head_edges.push(match (&target, &edge.partitioning) {
                            (Target::Router(r), Partitioning::KeyHash { key, .. }) => {
                                Some((*r, key.clone()))
                            }
                            _ => None,
                        });
                    }
                    targets[edge.port].push(target);
                }
                let op: Box<dyn Operator> = match &node.kind {
                    NodeKind::Source { .. } => Box::new(SourceNode),
                    NodeKind::Operator(factory) => factory.create(&Subtask {
                        index: subtask,
                        parallelism: chain.parallelism,
                        info: &infos[n],
                        clock: &clock,
                        side_ports: &node.side_ports,
                        members: members[n].as_ref(),
                    }),
                };
                nodes.push(ChainNode::new(
                    infos[n].clone(),
                    (subtask, chain.parallelism),
                    op,
                    targets,
                ));
            }
            let head_node = &pipeline.nodes[chain.nodes[0]];
            let head = match &head_node.kind {
                NodeKind::Source {
                    factory,
                    event_time,
                } => Head::Source {
                    source: factory.create(subtask, chain.parallelism),
                    out: {
                        let mut out = SourceOutput::new(
                            Output::new(infos[chain.nodes[0]].clone()),
                            factory.format(),
                            event_time.clone(),
                            clock.clone(),
                            pipeline.settings.batch_size,
                            pipeline.settings.buffer_timeout,
                        )
                        .with_pace(pipeline.settings.source_rate);
                        // All its records go through one key-hash router:
                        // the source reads their keys as it checks them.
                        if let [Some((r, key))] = head_edges.as_slice()
                            && out.with_key(key)
                        {
                            routers[*r].take_keys_as_set();
                        }
                        if let Some(request) = &members[chain.nodes[0]] {
                            out.with_members(request.clone());
                        }
                        Box::new(out)
                    },
                    triggers: next_trigger
                        .next()
                        .and_then(Option::take)
                        .expect("a trigger channel per source task"),
                },
                _ => Head::Inputs {
                    rx: receivers[c][subtask as usize]
                        .take()
                        .expect("one receiver per task"),
                    watermarks: InputWatermarks::new(input_count[c] as usize),
                    logical: logical[c].clone(),
                    lowest_watermark_first: head_node.input_selection
                        == crate::runtime::graph::InputSelection::LowestWatermark,
                },
            };
            let name = format!("{}#{subtask}", head_node.uid);
            let task = Task {
                name: name.clone(),
                index: spawned,
                chain: nodes,
                routers,
                router_owner,
                link: link.clone(),
                restore: restore.clone(),
                collected: Vec::new(),
                source_meta: None,
                // Operators hear of the restored checkpoint first thing.
                last_completed: 0,
                final_parts: Vec::new(),
            };
            let span = tracing::info_span!("task", job = %pipeline.name, task = %name);
            spawn(task, head, span, done_tx.clone(), cancel_rx.clone())?;
            spawned += 1;
        }
    }
    // Tasks hold the senders they need; the job holds none, so a task sees
    // its inputs close when its upstream tasks are gone.
    drop(senders);

    drop(done_tx);
    drop(link);
    let mut first_error: Option<RuntimeError> = None;
    let mut cancelled = false;
    let mut stopped = None;
    let mut running = spawned;
    while running > 0 {
        let result = tokio::select! {
            r = done_rx.recv() => r,
            Ok(_) = cancel.wait_for(|c| *c), if !cancelled => {
                cancelled = true;
                let _ = cancel_tx.send(true);
                continue;
            }
            Some(outcome) = outcome_rx.recv(), if !cancelled => {
                match outcome {
                    Outcome::Failed(e) => {
                        first_error.get_or_insert(RuntimeError::Checkpoint(e));
                    }
                    Outcome::Stopped(path) => stopped = Some(path),
                    Outcome::Diverged { uid, message } => {
                        first_error.get_or_insert(WasmError::Diverged { uid, message }.into());
                    }
                }
                cancelled = true;
                let _ = cancel_tx.send(true);
                continue;
            }
        };
        let Some(result) = result else {
            break;
        };
        running -= 1;
        // Once cancelled, tasks stop without ending their output, and their
        // neighbours' errors say so: none of that is the job's error.
        if let Err(e) = result
            && !cancelled
        {
            // Keep the root cause: the errors of tasks that lost a neighbour
            // come after it.
            let secondary = matches!(e, RuntimeError::Disconnected(_));
            if first_error
                .as_ref()
                .is_none_or(|f| matches!(f, RuntimeError::Disconnected(_)) && !secondary)
            {
                first_error = Some(e);
            }
            let _ = cancel_tx.send(true);
        }
    }
    let _ = shutdown_tx.send(());
    let coordinator = coordinator
        .await
        .map_err(|e| RuntimeError::Internal(format!("the checkpoint coordinator failed: {e}")))?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if cancelled && stopped.is_none() {
        return Err(RuntimeError::Cancelled);
    }
    if stopped.is_none() {
        coordinator.finish().map_err(RuntimeError::Checkpoint)?;
    }
    Ok(JobSummary {
        savepoint: stopped,
        already_finished: None,
        elapsed: started.elapsed(),
        first_read: first(pipeline, metrics, NodeKind::is_source),
        first_output: first(pipeline, metrics, NodeKind::is_sink),
        nodes: pipeline
            .nodes
            .iter()
            .zip(metrics)
            .map(|(n, m)| NodeSummary {
                uid: n.uid.clone(),
                kind: n.kind.name(),
                parallelism: n.parallelism,
                records_in: NodeMetrics::get(&m.records_in),
                records_out: NodeMetrics::get(&m.records_out),
                late: NodeMetrics::get(&m.late),
                dead_lettered: NodeMetrics::get(&m.dead_lettered),
                wasm: Duration::from_nanos(NodeMetrics::get(&m.wasm_nanos)),
                cache: (
                    NodeMetrics::get(&m.cache_hits),
                    NodeMetrics::get(&m.cache_misses),
                ),
                state_bytes: m.state_bytes.iter().map(NodeMetrics::get).sum(),
            })
            .collect(),
    })
}

/// Runs a task on its own thread and runtime; reports its result on `done`.
/// The task stops early when `cancel` becomes true or is dropped.
fn spawn(
    task: Task,
    head: Head,
    span: tracing::Span,
    done: tokio::sync::mpsc::UnboundedSender<Result<(), RuntimeError>>,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let name = format!("sluice {}", task.name);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let run = move || -> Result<(), RuntimeError> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        RuntimeError::Internal(format!("cannot start a task runtime: {e}"))
                    })?;
                rt.block_on(async move {
                    tokio::select! {
                        r = task.run(head).instrument(span) => r,
                        _ = cancel.wait_for(|c| *c) => Ok(()),
                    }
                })
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                .unwrap_or_else(|p| {
                    Err(RuntimeError::Internal(format!(
                        "a task panicked: {}",
                        panic_message(p)
                    )))
                });
            let _ = done.send(result);
        })
        .map(drop)
        .map_err(|e| RuntimeError::Internal(format!("cannot start a task thread: {e}")))
}

/// The earliest first record among the nodes of a kind, since the process
/// started.
fn first(
    pipeline: &Pipeline,
    metrics: &[Arc<NodeMetrics>],
    kind: impl Fn(&NodeKind) -> bool,
) -> Option<Duration> {
    pipeline
        .nodes
        .iter()
        .zip(metrics)
        .filter(|(n, _)| kind(&n.kind))
        .filter_map(|(_, m)| m.first_record.get())
        .min()
        .map(|t| t.saturating_duration_since(crate::process_start()))
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Which operators ask their sources to find the members they read (see
/// [`crate::runtime::batch::Members`]), and which sources are asked: by
/// node, the request they share. An operator that
/// [`asks_members`](crate::runtime::OperatorFactory::asks_members) gets one when every edge into it
/// comes from a JSON source (checked or not; checked, for a key-by) whose
/// records all go to it; such a source gets the request of the operator it
/// feeds.
fn member_requests(pipeline: &Pipeline) -> Vec<Option<Arc<MemberRequest>>> {
    let mut requests: Vec<Option<Arc<MemberRequest>>> = vec![None; pipeline.nodes.len()];
    // Whether the edge comes from a JSON source, all of whose records it
    // takes as they are: whole batches, or, from a checked source that
    // reads their keys for the router, the records of each key.
    let whole_from_json = |e: &crate::runtime::Edge| {
        let format = match &pipeline.nodes[e.from].kind {
            NodeKind::Source { factory, .. } => factory.format(),
            _ => return false,
        };
        let main_edges = pipeline
            .edges
            .iter()
            .filter(|o| o.from == e.from && o.port == MAIN_PORT)
            .count();
        e.port == MAIN_PORT
            && main_edges == 1
            && match e.partitioning {
                Partitioning::Forward | Partitioning::Rebalance => {
                    matches!(format, Format::Json | Format::JsonUnchecked)
                }
                Partitioning::KeyHash { .. } => format == Format::Json,
                Partitioning::Broadcast => false,
            }
    };
    for (n, node) in pipeline.nodes.iter().enumerate() {
        let NodeKind::Operator(factory) = &node.kind else {
            continue;
        };
        let inputs: Vec<&crate::runtime::Edge> =
            pipeline.edges.iter().filter(|e| e.to == n).collect();
        if !factory.asks_members()
            || inputs.is_empty()
            || !inputs.iter().all(|e| whole_from_json(e))
        {
            continue;
        }
        let request = Arc::new(MemberRequest::default());
        // Asked now, so that the sources find them from their first record.
        if let Some(names) = factory.known_members() {
            request.ask(names);
        }
        for e in inputs {
            requests[e.from] = Some(request.clone());
        }
        requests[n] = Some(request);
    }
    requests
}

#[cfg(test)]
mod tests {
    //! Jobs run in this process (no `sluice` binary): planned from inline
    //! specs with generated input.

    use super::*;
    use crate::plan::{PlanOptions, load_text};
    use std::path::Path;
    use std::sync::atomic::Ordering;

    fn try_plan(spec: &str, options: &PlanOptions) -> Result<Pipeline, crate::error::PlanError> {
        load_text(
            spec,
            Path::new("t.yaml"),
            Path::new("."),
            &|_| None,
            options,
        )
    }

    fn plan(spec: &str, options: &PlanOptions) -> Pipeline {
        try_plan(spec, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `pipeline`; its result and how often it restarted.
    fn run(pipeline: &Pipeline) -> (Result<JobSummary, RuntimeError>, u64) {
        let (control, handle) = Control::new();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let result = rt.block_on(run_with(
            pipeline,
            Arc::new(crate::time::SystemClock),
            &node_metrics(pipeline),
            control,
            Start::default(),
        ));
        (result, handle.stats.restarts.load(Ordering::Relaxed))
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    #[test]
    fn a_job_reads_every_record_once_at_parallelism_2() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let p = plan(
            &format!(
                "parallelism: 2\n\
                 sources: [{{ uid: a, type: datagen, count: 1000, splits: 2 }}]\n\
                 sinks: [{{ uid: out, input: a, type: file, path: {} }}]\n",
                out.display()
            ),
            &PlanOptions::default(),
        );
        let (summary, restarts) = run(&p);
        let summary = summary.unwrap();
        assert_eq!((summary.records_read(), restarts), (1000, 0));
        assert_eq!(lines(&out), 1000);
        let sink = summary.nodes.iter().find(|n| n.uid == "out").unwrap();
        assert_eq!(
            (sink.kind, sink.parallelism, sink.records_in),
            ("sink", 2, 1000)
        );
    }

    #[test]
    fn a_finished_checkpointed_job_says_so_when_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let options = PlanOptions {
            checkpoint_dir: Some(dir.path().join("ck").display().to_string()),
            checkpoint_interval: Some(Duration::from_millis(5)),
            ..PlanOptions::default()
        };
        let spec = format!(
            "sources: [{{ uid: a, type: datagen, count: 500 }}]\n\
             sinks: [{{ uid: out, input: a, type: file, path: {} }}]\n",
            out.display()
        );
        let (first, _) = run(&plan(&spec, &options));
        assert!(first.unwrap().already_finished.is_none());
        // With checkpoints the sink writes committed part files.
        let committed: usize = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| lines(&e.path()))
            .sum();
        assert_eq!(committed, 500);
        let (again, _) = run(&plan(&spec, &options));
        assert!(again.unwrap().already_finished.is_some());
    }

    #[test]
    fn an_external_fault_restarts_per_the_strategy_and_a_user_fault_fails_at_once() {
        let restart = "restart: { strategy: fixed_delay, attempts: 2, delay: 1ms }\n";
        // The sink cannot create its folder: the outside world's fault.
        let (result, restarts) = run(&plan(
            &format!(
                "{restart}sources: [{{ uid: a, type: datagen, count: 10 }}]\n\
                 sinks: [{{ uid: out, input: a, type: file, path: /dev/null/x/out.jsonl }}]\n"
            ),
            &PlanOptions::default(),
        ));
        let e = result.unwrap_err();
        assert_eq!((e.fault(), restarts), (crate::Fault::External, 2), "{e}");

        // A record without the key field and no dead-letter sink: the same
        // record would fail every attempt.
        let dir = tempfile::tempdir().unwrap();
        let (result, restarts) = run(&plan(
            &format!(
                "{restart}sources:\n\
                 \x20 - {{ uid: a, type: datagen, count: 10, event_time: {{ timestamp: /event_ts }} }}\n\
                 operators:\n\
                 \x20 - uid: w\n    input: a\n    key_by: /no_such_field\n\
                 \x20   window: {{ type: tumbling, size: 1m }}\n\
                 \x20   aggregate: {{ native: [{{ fn: count }}] }}\n\
                 sinks: [{{ uid: out, input: w, type: file, path: {} }}]\n",
                dir.path().join("out.jsonl").display()
            ),
            &PlanOptions::default(),
        ));
        let e = result.unwrap_err();
        assert_eq!((e.fault(), restarts), (crate::Fault::User, 0), "{e}");
        assert!(e.to_string().contains("/no_such_field"), "{e}");
    }

    /// `sample: { every: N }` keeps every Nth record of each subtask: a
    /// native operator kind the caller adds to the planner's registry, as a
    /// new kind of sluice is added.
    struct SampleKind;

    impl crate::runtime::kind::OperatorKind for SampleKind {
        fn tag(&self) -> &'static str {
            "sample"
        }

        fn what(&self) -> &'static str {
            "a sampler"
        }

        fn plan(
            &self,
            cx: &dyn crate::runtime::kind::PlanContext,
        ) -> Result<crate::runtime::kind::Planned, crate::error::PlanError> {
            use crate::runtime::kind::{Planned, error, field};
            #[derive(serde::Deserialize)]
            struct Sample {
                every: usize,
            }
            let s = field::<Sample>(cx, "sample")?.expect("the tag is set");
            if s.every == 0 {
                return Err(error(cx, "sample.every", "`every` must be at least 1"));
            }
            Ok(Planned::new(Arc::new(SampleFactory(s.every))))
        }
    }

    struct SampleFactory(usize);

    impl crate::runtime::OperatorFactory for SampleFactory {
        fn kind(&self) -> &'static str {
            "sample"
        }

        fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
            Box::new(Sampler {
                every: self.0,
                seen: 0,
            })
        }
    }

    struct Sampler {
        every: usize,
        seen: usize,
    }

    #[async_trait::async_trait]
    impl Operator for Sampler {
        async fn process_batch(
            &mut self,
            batch: crate::runtime::Batch,
            out: &mut Output,
        ) -> Result<(), RuntimeError> {
            let mut kept = crate::runtime::Batch::default();
            for r in batch.iter() {
                self.seen += 1;
                if self.seen.is_multiple_of(self.every) {
                    kept.push_record(r, None);
                }
            }
            out.emit(kept);
            Ok(())
        }
    }

    #[test]
    fn a_kind_the_caller_registers_plans_and_runs_and_others_do_not_know_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let spec = |every: u32| {
            format!(
                "sources: [{{ uid: a, type: datagen, count: 1000 }}]\n\
                 operators:\n\
                 \x20 - uid: s\n    input: a\n    sample: {{ every: {every} }}\n\
                 sinks: [{{ uid: out, input: s, type: file, path: {} }}]\n",
                out.display()
            )
        };
        let options = PlanOptions {
            kinds: crate::plan::builtin_kinds().with(Arc::new(SampleKind)),
            ..PlanOptions::default()
        };
        let (summary, _) = run(&plan(&spec(10), &options));
        assert_eq!(summary.unwrap().records_read(), 1000);
        assert_eq!(lines(&out), 100);

        let refused = |spec: &str, options: &PlanOptions| {
            load_text(
                spec,
                Path::new("t.yaml"),
                Path::new("."),
                &|_| None,
                options,
            )
            .err()
            .expect("a plan error")
        };
        let e = refused(&spec(0), &options);
        assert_eq!(e.location.line, Some(5), "{e}");
        assert!(e.message.contains("`every` must be at least 1"), "{e}");
        let e = refused(&spec(10), &PlanOptions::default());
        assert!(e.message.contains("unknown field `sample`"), "{e}");
    }

    /// `tag: {}` with `input: { left: …, right: … }`: emits each record as
    /// `{"input": NAME, "ts": …, "late": …}`, late meaning behind the
    /// watermark the operator had when the record came: a two-input kind, as
    /// the joins are.
    struct TagKind;

    impl crate::runtime::kind::OperatorKind for TagKind {
        fn tag(&self) -> &'static str {
            "tag"
        }

        fn what(&self) -> &'static str {
            "a tagger"
        }

        fn inputs(&self) -> &'static [&'static str] {
            &["left", "right"]
        }

        fn plan(
            &self,
            cx: &dyn crate::runtime::kind::PlanContext,
        ) -> Result<crate::runtime::kind::Planned, crate::error::PlanError> {
            let spec = crate::runtime::kind::field::<TagSpec>(cx, "tag")?.unwrap_or_default();
            Ok(crate::runtime::kind::Planned::new(Arc::new(TagFactory(
                std::time::Duration::from_micros(spec.pause_us),
            ))))
        }
    }

    /// `tag: { pause_us: N }`: the tagger takes N µs per batch (a slow
    /// operator, so that its inputs queue up).
    #[derive(serde::Deserialize, Default)]
    struct TagSpec {
        #[serde(default)]
        pause_us: u64,
    }

    struct TagFactory(std::time::Duration);

    impl crate::runtime::OperatorFactory for TagFactory {
        fn kind(&self) -> &'static str {
            "tag"
        }

        fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
            Box::new(Tagger {
                watermark: i64::MIN,
                subtask: subtask.index,
                pause: self.0,
            })
        }
    }

    struct Tagger {
        watermark: i64,
        subtask: u32,
        pause: std::time::Duration,
    }

    impl Tagger {
        fn tag(&self, name: &str, batch: &crate::runtime::Batch, out: &mut Output) {
            if !self.pause.is_zero() {
                std::thread::sleep(self.pause);
            }
            let mut tagged = crate::runtime::Batch::default();
            for r in batch.iter() {
                let ts = r.timestamp().expect("event time");
                let late = ts <= self.watermark;
                let (subtask, key) = (
                    self.subtask,
                    String::from_utf8_lossy(r.key().unwrap_or(b"-")),
                );
                let row = format!(
                    r#"{{"input":"{name}","ts":{ts},"subtask":{subtask},"key":{key:?},"late":{late}}}"#
                );
                tagged.push(None, row.as_bytes(), Some(ts), r.origin());
            }
            out.emit(tagged);
        }
    }

    #[async_trait::async_trait]
    impl Operator for Tagger {
        async fn process_batch(
            &mut self,
            batch: crate::runtime::Batch,
            out: &mut Output,
        ) -> Result<(), RuntimeError> {
            self.tag("left", &batch, out);
            Ok(())
        }

        async fn process_input(
            &mut self,
            input: usize,
            batch: crate::runtime::Batch,
            out: &mut Output,
        ) -> Result<(), RuntimeError> {
            assert_eq!(input, 1, "two inputs");
            self.tag("right", &batch, out);
            Ok(())
        }

        async fn on_watermark(
            &mut self,
            watermark: i64,
            _out: &mut Output,
        ) -> Result<(), RuntimeError> {
            self.watermark = watermark;
            Ok(())
        }
    }

    fn tag_spec(input: &str, parallelism: u32) -> String {
        tag_spec_keyed(input, "", parallelism)
    }

    /// `tag_spec` with `keys` (lines under the operator, e.g. a `key_by`).
    fn tag_spec_keyed(input: &str, keys: &str, parallelism: u32) -> String {
        format!(
            "parallelism: {parallelism}\n\
             sources:\n\
             \x20 - {{ uid: a, type: datagen, count: 0, event_time: {{ timestamp: /ts, watermark: {{ emit: per_event }} }} }}\n\
             \x20 - {{ uid: b, type: datagen, count: 0, event_time: {{ timestamp: /ts, watermark: {{ emit: per_event }} }} }}\n\
             operators:\n\
             \x20 - uid: t\n    input: {input}\n    tag: {{}}\n{keys}\
             sinks: [{{ uid: out, input: t, type: stdout }}]\n"
        )
    }

    #[test]
    fn a_two_input_operator_gets_each_record_with_its_input_and_a_finished_input_does_not_make_the_other_late()
     {
        let options = PlanOptions {
            kinds: crate::plan::builtin_kinds().with(Arc::new(TagKind)),
            ..PlanOptions::default()
        };
        for parallelism in [1, 2] {
            let mut h = crate::testing::Harness::plan_with(
                &tag_spec("{ left: a, right: b }", parallelism),
                &options,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            // The left input ends at once; the right one goes on far ahead.
            h.input("a", ["{\"ts\":1}", "{\"ts\":2}"]);
            let right: Vec<String> = (100..400).map(|t| format!("{{\"ts\":{t}}}")).collect();
            h.input("b", &right);
            h.run().unwrap();
            let mut rows = h.output("out");
            rows.sort();
            assert_eq!(rows.len(), 302);
            assert!(
                rows[0].starts_with(r#"{"input":"left","ts":1,"#),
                "{}",
                rows[0]
            );
            let late: Vec<&String> = rows.iter().filter(|r| r.ends_with("true}")).collect();
            assert!(late.is_empty(), "p={parallelism}: late rows {late:?}");
            assert_eq!(rows.iter().filter(|r| r.contains("right")).count(), 300);
        }

        let refused = |input: &str, options: &PlanOptions| {
            try_plan(&tag_spec(input, 1), options)
                .err()
                .expect("a plan error")
        };
        let e = refused("{ left: a }", &options);
        assert!(e.message.contains("input `right` is missing"), "{e}");
        assert_eq!(e.location.line, Some(7), "{e}");
        let e = refused("{ left: a, right: b, middle: a }", &options);
        assert!(
            e.message.contains("`middle` is not an input of a tagger"),
            "{e}"
        );
        let e = refused("a", &options);
        assert!(
            e.message
                .contains("a tagger has named inputs: write `input: { left: …, right: … }`"),
            "{e}"
        );
        // A one-input kind refuses names.
        let e = try_plan(
            &tag_spec("{ left: a, right: b }", 1)
                .replace("tag: {}", "window: { type: session, gap: 1s }"),
            &options,
        )
        .err()
        .expect("a plan error");
        assert!(e.message.contains("a window has one input"), "{e}");
    }

    /// `collect: { bursts: B }`: buffers its input and emits, at each flush,
    /// `{"records": N}` for the N records it collected; it takes bursts when
    /// B. The first batch takes it 100 ms, so that its input queues up.
    struct CollectKind;

    impl crate::runtime::kind::OperatorKind for CollectKind {
        fn tag(&self) -> &'static str {
            "collect"
        }

        fn what(&self) -> &'static str {
            "a collector"
        }

        fn plan(
            &self,
            cx: &dyn crate::runtime::kind::PlanContext,
        ) -> Result<crate::runtime::kind::Planned, crate::error::PlanError> {
            #[derive(serde::Deserialize)]
            struct Spec {
                bursts: bool,
            }
            let spec =
                crate::runtime::kind::field::<Spec>(cx, "collect")?.expect("the test's spec says");
            Ok(crate::runtime::kind::Planned::new(Arc::new(
                CollectFactory(spec.bursts),
            )))
        }
    }

    struct CollectFactory(bool);

    impl crate::runtime::OperatorFactory for CollectFactory {
        fn kind(&self) -> &'static str {
            "collect"
        }

        fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
            Box::new(Collector {
                bursts: self.0,
                records: 0,
                paused: false,
            })
        }
    }

    struct Collector {
        bursts: bool,
        records: usize,
        paused: bool,
    }

    #[async_trait::async_trait]
    impl Operator for Collector {
        async fn process_batch(
            &mut self,
            batch: crate::runtime::Batch,
            _out: &mut Output,
        ) -> Result<(), RuntimeError> {
            if !self.paused {
                self.paused = true;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            self.records += batch.len();
            Ok(())
        }

        fn buffers(&self) -> bool {
            true
        }

        fn takes_bursts(&self) -> bool {
            self.bursts
        }

        async fn flush(&mut self, out: &mut Output) -> Result<Option<i64>, RuntimeError> {
            if self.records > 0 {
                let mut b = crate::runtime::Batch::default();
                let row = format!(r#"{{"records":{}}}"#, self.records);
                b.push(None, row.as_bytes(), None, crate::runtime::Origin::NONE);
                out.emit(b);
                self.records = 0;
            }
            Ok(None)
        }
    }

    /// An operator that takes bursts gets, while its input is backlogged,
    /// the records of several channel items before a flush (up to
    /// `MAX_BURST` of them); one that does not is flushed after each.
    #[test]
    fn a_backlogged_operator_that_takes_bursts_is_flushed_after_several_channel_items() {
        let options = PlanOptions {
            kinds: crate::plan::builtin_kinds().with(Arc::new(CollectKind)),
            ..PlanOptions::default()
        };
        let rows: Vec<String> = (0..400).map(|i| format!("{{\"i\":{i}}}")).collect();
        for bursts in [true, false] {
            let spec = format!(
                "batch_size: 8\nchannel_capacity: 32\n\
                 sources: [{{ uid: a, type: datagen, count: 0 }}]\n\
                 operators:\n\
                 \x20 - {{ uid: c, input: a, chain: false, collect: {{ bursts: {bursts} }} }}\n\
                 sinks: [{{ uid: out, input: c, type: stdout }}]\n"
            );
            let mut h = crate::testing::Harness::plan_with(&spec, &options)
                .unwrap_or_else(|e| panic!("{e}"));
            h.input("a", &rows);
            h.run().unwrap();
            let flushed: Vec<u64> = h
                .output("out")
                .iter()
                .map(|r| {
                    serde_json::from_str::<serde_json::Value>(r).unwrap()["records"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert_eq!(flushed.iter().sum::<u64>(), 400, "bursts: {bursts}");
            let most = *flushed.iter().max().unwrap();
            if bursts {
                // The input queued up behind the first batch's pause.
                assert!(
                    most > 8 && most <= 8 * super::super::task::MAX_BURST as u64,
                    "{flushed:?}"
                );
            } else {
                assert_eq!(most, 8, "{flushed:?}");
            }
        }
    }

    /// A slow two-input operator reads the input behind in event time
    /// first: the one ahead waits in its channel and upstream, not in the
    /// operator (whose state, were it a join, would hold it). Without that,
    /// both inputs arrive at the same rate in records, and the right one,
    /// ten times as fast in event time, runs far ahead.
    #[test]
    fn a_two_input_task_reads_the_input_behind_in_event_time_first() {
        let options = PlanOptions {
            kinds: crate::plan::builtin_kinds().with(Arc::new(TagKind)),
            ..PlanOptions::default()
        };
        let spec = format!(
            "batch_size: 8\nchannel_capacity: 2\n{}",
            tag_spec("{ left: a, right: b }", 1).replace("tag: {}", "tag: { pause_us: 200 }")
        );
        let mut h =
            crate::testing::Harness::plan_with(&spec, &options).unwrap_or_else(|e| panic!("{e}"));
        let n = 1500;
        let left: Vec<String> = (0..n).map(|t| format!("{{\"ts\":{t}}}")).collect();
        let right: Vec<String> = (0..n).map(|t| format!("{{\"ts\":{}}}", t * 10)).collect();
        h.input("a", &left).input("b", &right);
        h.run().unwrap();
        let rows = h.output("out");
        assert_eq!(rows.len(), 2 * n);
        let (mut left_max, mut right_max) = (-1, -1);
        for row in &rows {
            let v: serde_json::Value = serde_json::from_str(row).unwrap();
            let ts = v["ts"].as_i64().unwrap();
            if v["input"] == "left" {
                left_max = left_max.max(ts);
                if left_max == 1000 {
                    break;
                }
            } else {
                right_max = right_max.max(ts);
            }
        }
        assert_eq!(left_max, 1000);
        // Taking turns would have reached ~10,000 on the right by now.
        assert!(
            right_max < 3000,
            "the right input ran ahead to {right_max} while the left one was at 1000"
        );
    }

    #[test]
    fn a_two_input_operator_keyed_per_input_gets_each_keys_records_of_both_inputs_on_one_subtask() {
        let options = PlanOptions {
            kinds: crate::plan::builtin_kinds().with(Arc::new(TagKind)),
            ..PlanOptions::default()
        };
        let spec = tag_spec_keyed(
            "{ left: a, right: b }",
            "    key_by: { left: /k, right: /id }\n",
            2,
        );
        let mut h =
            crate::testing::Harness::plan_with(&spec, &options).unwrap_or_else(|e| panic!("{e}"));
        let left: Vec<String> = (0..40)
            .map(|i| format!("{{\"k\":\"c{}\",\"ts\":{i}}}", i % 10))
            .collect();
        let right: Vec<String> = (0..40)
            .map(|i| format!("{{\"id\":\"c{}\",\"ts\":{i}}}", i % 10))
            .collect();
        h.input("a", &left).input("b", &right);
        h.run().unwrap();
        let rows: Vec<serde_json::Value> = h
            .output("out")
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        assert_eq!(rows.len(), 80);
        let mut subtask_of: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> =
            Default::default();
        for r in &rows {
            subtask_of
                .entry(r["key"].as_str().unwrap().to_owned())
                .or_default()
                .insert(r["subtask"].as_u64().unwrap());
        }
        // Ten keys, each on one subtask with both inputs' records; both
        // subtasks get some.
        assert_eq!(subtask_of.len(), 10, "{subtask_of:?}");
        assert!(subtask_of.values().all(|s| s.len() == 1), "{subtask_of:?}");
        let used: std::collections::BTreeSet<u64> =
            subtask_of.values().flatten().copied().collect();
        assert_eq!(used.len(), 2);

        let refused = |keys: &str| {
            try_plan(&tag_spec_keyed("{ left: a, right: b }", keys, 2), &options)
                .err()
                .expect("a plan error")
        };
        let e = refused("    key_by: { left: /k }\n");
        assert!(e.message.contains("no key for input `right`"), "{e}");
        let e = refused("    key_by: { left: /k, rite: /id }\n");
        assert!(
            e.message.contains("`rite` is not an input of a tagger"),
            "{e}"
        );
        assert_eq!(e.location.line, Some(9), "{e}");
        // A one-input kind takes one key.
        let e = try_plan(
            "sources: [{ uid: a, type: datagen, count: 0, event_time: { timestamp: /ts } }]\n\
             operators:\n\
             \x20 - uid: w\n    input: a\n    key_by: { left: /k }\n\
             \x20   window: { type: session, gap: 1s }\n\
             \x20   aggregate: { native: [{ fn: count }] }\n\
             sinks: [{ uid: out, input: w, type: stdout }]\n",
            &options,
        )
        .err()
        .expect("a plan error");
        assert!(
            e.message
                .contains("a window has one input: give `key_by` one JSON pointer"),
            "{e}"
        );
    }
}
