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

use super::operator::{FIRST_SIDE_PORT, NodeInfo};
use super::router::{Partitioning, Router, TaskReceiver, TaskSender};
use super::source::SourceOutput;
use super::task::{ChainNode, Head, SourceNode, Target, Task};
use super::{NodeMetrics, Operator, Output, Splits};
use crate::error::RuntimeError;
use crate::plan::{AggregateKind, NodeKind, Pipeline};
use crate::time::Clock;
use crate::time::watermark::InputWatermarks;
use crate::wasm::aggregate::WasmAggregator;
use crate::wasm::transform::WasmTransform;
use crate::window::WindowOperator;
use crate::window::aggregate::{Aggregator, NativeAggregator};
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
    let (_keep, cancel) = tokio::sync::watch::channel(false);
    run_with(pipeline, clock, &node_metrics(pipeline), cancel).await
}

/// Runs a planned pipeline to the end of its input, counting into `metrics`
/// (from [`node_metrics`]), until `cancel` becomes true: then every task
/// stops, and once all have, the job ends with [`RuntimeError::Cancelled`].
pub async fn run_with(
    pipeline: &Pipeline,
    clock: Arc<dyn Clock>,
    metrics: &[Arc<NodeMetrics>],
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<JobSummary, RuntimeError> {
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
            })
        })
        .collect();

    // Inputs of each chain head: for every incoming edge, where its input
    // indices start.
    let mut input_offset = vec![0u32; pipeline.edges.len()];
    let mut input_count = vec![0u32; pipeline.chains.len()];
    for (e, edge) in pipeline.edges.iter().enumerate() {
        if pipeline.is_chained(edge) {
            continue;
        }
        let c = pipeline.chain_of(edge.to);
        input_offset[e] = input_count[c];
        input_count[c] += match edge.partitioning {
            Partitioning::Forward => 1,
            _ => pipeline.nodes[edge.from].parallelism,
        };
    }

    let mut senders: Vec<Vec<TaskSender>> = Vec::new();
    let mut receivers: Vec<Vec<Option<TaskReceiver>>> = Vec::new();
    for chain in &pipeline.chains {
        let (mut tx, mut rx) = (Vec::new(), Vec::new());
        for _ in 0..chain.parallelism {
            let (t, r) = mpsc::channel(pipeline.settings.channel_capacity);
            tx.push(t);
            rx.push(Some(r));
        }
        senders.push(tx);
        receivers.push(rx);
    }

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let mut spawned = 0usize;
    for (c, chain) in pipeline.chains.iter().enumerate() {
        for subtask in 0..chain.parallelism {
            let mut routers = Vec::new();
            let mut router_owner = Vec::new();
            let mut nodes = Vec::new();
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
                            Partitioning::Forward => {
                                (vec![senders[to][subtask as usize].clone()], input_offset[e])
                            }
                            _ => (senders[to].clone(), input_offset[e] + subtask),
                        };
                        routers.push(
                            Router::new(edge.partitioning.clone(), targets, index)
                                .with_metrics(metrics[n].clone()),
                        );
                        router_owner.push(pos);
                        Target::Router(routers.len() - 1)
                    };
                    targets[edge.port].push(target);
                }
                let op = operator(pipeline, n, subtask, &infos[n], &clock);
                nodes.push(ChainNode::new(infos[n].clone(), subtask, op, targets));
            }
            let head_node = &pipeline.nodes[chain.nodes[0]];
            let head = match &head_node.kind {
                NodeKind::Source {
                    factory,
                    event_time,
                } => Head::Source {
                    source: factory.create(subtask, chain.parallelism),
                    out: Box::new(SourceOutput::new(
                        Output::new(infos[chain.nodes[0]].clone()),
                        factory.format(),
                        event_time.clone(),
                        clock.clone(),
                        pipeline.settings.batch_size,
                        pipeline.settings.buffer_timeout,
                    )),
                },
                _ => Head::Inputs {
                    rx: receivers[c][subtask as usize]
                        .take()
                        .expect("one receiver per task"),
                    watermarks: InputWatermarks::new(input_count[c] as usize),
                },
            };
            let name = format!("{}#{subtask}", head_node.uid);
            let task = Task {
                name: name.clone(),
                chain: nodes,
                routers,
                router_owner,
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
    let mut first_error: Option<RuntimeError> = None;
    let mut cancelled = false;
    let mut running = spawned;
    while running > 0 {
        let result = tokio::select! {
            r = done_rx.recv() => r,
            Ok(_) = cancel.wait_for(|c| *c), if !cancelled => {
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
    if let Some(e) = first_error {
        return Err(e);
    }
    if cancelled {
        return Err(RuntimeError::Cancelled);
    }
    Ok(JobSummary {
        elapsed: started.elapsed(),
        first_read: first(pipeline, metrics, |k| matches!(k, NodeKind::Source { .. })),
        first_output: first(pipeline, metrics, |k| matches!(k, NodeKind::Sink { .. })),
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

/// The operator of node `n` for one subtask.
fn operator(
    pipeline: &Pipeline,
    n: usize,
    subtask: u32,
    info: &Arc<NodeInfo>,
    clock: &Arc<dyn crate::time::Clock>,
) -> Box<dyn Operator> {
    let node = &pipeline.nodes[n];
    match &node.kind {
        NodeKind::Source { .. } => Box::new(SourceNode),
        NodeKind::Transform { module, settings } => {
            Box::new(WasmTransform::new(module.clone(), settings.clone()))
        }
        NodeKind::Window {
            settings,
            aggregate,
        } => {
            let agg: Box<dyn Aggregator> = match aggregate {
                AggregateKind::Native(aggs) => Box::new(NativeAggregator::new(aggs.clone())),
                AggregateKind::Wasm { module, settings } => Box::new(WasmAggregator::new(
                    module.clone(),
                    settings.clone(),
                    info.clone(),
                )),
                AggregateKind::Function { module, settings } => {
                    Box::new(crate::wasm::window_fn::WasmWindowFunction::new(
                        module.clone(),
                        settings.clone(),
                        info.clone(),
                    ))
                }
            };
            // Window accumulators go to RocksDB with that backend; with the
            // heap backend they stay in the window's own slots.
            let backend = match &pipeline.settings.state_backend {
                crate::state::Backend::Memory { .. } => None,
                b @ crate::state::Backend::RocksDb { .. } => {
                    Some((b.clone(), node.uid.clone(), subtask))
                }
            };
            Box::new(WindowOperator::new(
                settings.clone(),
                agg,
                backend,
                pipeline.settings.max_parallelism,
            ))
        }
        NodeKind::Process {
            module,
            settings,
            process,
        } => Box::new(crate::wasm::process::WasmProcess::new(
            module.clone(),
            settings.clone(),
            process.clone(),
            subtask,
            clock.clone(),
            node.side_ports.clone(),
        )),
        NodeKind::Sink { factory } => factory.create(subtask, node.parallelism),
    }
}
