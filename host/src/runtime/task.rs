//! One task: a chain of operators and the loop that feeds it.
//!
//! A task is either driven by a source (it polls the connector) or by its
//! input channels, one per logical input of its head (it receives messages
//! from upstream tasks, tagged with the input they came from, and combines
//! their watermarks; an input behind the others in event time is read
//! first). Either way a message
//! enters the chain at node 0 and flows through the chained operators: each
//! operator's output for a port goes to the chained operators and routers
//! behind that port. Within a task messages are handled one at a time, in
//! order, and the routers are flushed after each group of messages (one
//! source poll, one received channel item), so the order of batches and
//! watermarks is kept on every edge.
//!
//! Checkpoint barriers (see [`crate::checkpoint`]) enter at sources when the
//! coordinator asks. A task with several inputs aligns them: after an input
//! delivers barrier `n`, its further messages wait in the task until every
//! live input has delivered `n`; then the barrier runs through the chain,
//! each operator snapshots itself, and the task acknowledges.

use super::batch::Batch;
use super::operator::{DEAD_LETTER_PORT, NodeInfo, Operator, Output};
use super::router::{Router, TaskInputs};
use super::source::{Positions, Source, SourceOutput, SourcePoll};
use super::{LATENCY_MARKER_INTERVAL, Message};
use crate::checkpoint::coordinator::{Ack, Finished, NodeAck, TaskLink};
use crate::checkpoint::{Barrier, BarrierKind, OperatorState, RestorePoint};
use crate::error::{RuntimeError, StateError};
use crate::time::watermark::{InputWatermarks, Watermark};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Arc;

/// Channel items a task takes in one burst, between flushes, when its input
/// is backlogged.
pub(crate) const MAX_BURST: usize = 8;

/// Where one port of a chained operator sends its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Another operator of this chain (by index; always a later one).
    Chained(usize),
    /// A router of this task (by index).
    Router(usize),
}

pub struct ChainNode {
    pub info: Arc<NodeInfo>,
    /// Which subtask of the node this is, of how many.
    pub subtask: u32,
    pub parallelism: u32,
    pub op: Box<dyn Operator>,
    /// By port: main, dead letter, then the node's side outputs.
    pub targets: Vec<Vec<Target>>,
    out: Output,
    /// The last barrier the node snapshotted for.
    last_barrier: u64,
}

impl ChainNode {
    pub fn new(
        info: Arc<NodeInfo>,
        (subtask, parallelism): (u32, u32),
        op: Box<dyn Operator>,
        targets: Vec<Vec<Target>>,
    ) -> ChainNode {
        ChainNode {
            out: Output::new(info.clone()),
            info,
            subtask,
            parallelism,
            op,
            targets,
            last_barrier: 0,
        }
    }
}

impl ChainNode {
    /// Notes the watermark the node passes on, for its metrics.
    #[inline]
    fn passed_on(&self, t: i64) {
        self.info.metrics.watermarks[self.subtask as usize]
            .store(t, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What feeds a task.
pub enum Head {
    /// A source; chain node 0 stands for the source node itself.
    Source {
        source: Box<dyn Source>,
        out: Box<SourceOutput>,
        /// Barriers to inject, from the checkpoint coordinator.
        triggers: tokio::sync::mpsc::UnboundedReceiver<Barrier>,
    },
    /// Upstream tasks.
    Inputs {
        rx: TaskInputs,
        watermarks: InputWatermarks,
        /// The head node's logical input of each input channel.
        logical: Vec<usize>,
        /// Read the input with the lowest watermark first.
        lowest_watermark_first: bool,
    },
}

pub struct Task {
    /// `uid#subtask` of the chain's head, for logs and errors.
    pub name: String,
    /// The task's index in the job (how the coordinator counts it).
    pub index: usize,
    pub chain: Vec<ChainNode>,
    pub routers: Vec<Router>,
    /// For each router, the chain node whose output it carries (for the
    /// dead-letter output of records a key-by rejects).
    pub router_owner: Vec<usize>,
    pub link: TaskLink,
    /// The snapshot the job starts from, if any.
    pub restore: Option<RestorePoint>,
    /// Snapshots of the chain's nodes for the barrier going through.
    pub collected: Vec<NodeAck>,
    /// The positions of the source at the head, for the barrier going
    /// through.
    pub source_meta: Option<serde_json::Value>,
    /// The last complete checkpoint the operators were told of.
    pub last_completed: u64,
    /// The nodes' final parts, gathered as they close at the end of input.
    pub final_parts: Vec<NodeAck>,
}

impl Task {
    /// Opens the chain's operators, then feeds it from `head` until the end
    /// of input.
    pub async fn run(mut self, head: Head) -> Result<(), RuntimeError> {
        for node in &mut self.chain {
            node.op.open().await?;
        }
        if let Some(restore) = &self.restore {
            for node in &mut self.chain {
                let state = restore
                    .state_for(&node.info.uid, node.subtask, node.parallelism)
                    .map_err(|message| RuntimeError::State {
                        uid: node.info.uid.to_string(),
                        error: StateError::Backend(format!(
                            "cannot restore from {}: {message}",
                            restore.location
                        )),
                    })?;
                if let Some(state) = state {
                    node.op.restore(state).await?;
                }
            }
        }
        match head {
            Head::Source {
                source,
                out,
                triggers,
            } => self.run_source(source, out, triggers).await,
            Head::Inputs {
                rx,
                watermarks,
                logical,
                lowest_watermark_first,
            } => {
                self.run_inputs(rx, watermarks, logical, lowest_watermark_first)
                    .await
            }
        }
    }

    /// Tells the operators of checkpoints completed since the last call;
    /// returns the latest, if one completed.
    fn notice_completed(&mut self) -> Option<u64> {
        let c = self
            .link
            .completed
            .load(std::sync::atomic::Ordering::Relaxed);
        if c > self.last_completed {
            self.last_completed = c;
            for node in &mut self.chain {
                node.op.notify_checkpoint_complete(c);
            }
            return Some(c);
        }
        None
    }

    /// Tells the coordinator that the task has processed all its input:
    /// its nodes' final parts stand in for it in later snapshots.
    fn finished(&mut self) {
        let _ = self.link.finished.send(Finished {
            task: self.index,
            nodes: std::mem::take(&mut self.final_parts),
        });
    }

    /// Runs a barrier through the chain and acknowledges it.
    async fn barrier(&mut self, b: Barrier) -> Result<(), RuntimeError> {
        self.process(0, Message::Barrier(b)).await?;
        let nodes = std::mem::take(&mut self.collected);
        // A coordinator that is gone (the job is stopping) needs no ack.
        let _ = self.link.acks.send(Ack {
            task: self.index,
            barrier: b,
            nodes,
        });
        Ok(())
    }

    /// The positions to resume a source from, if the job restores.
    fn restore_source(
        &self,
        source: &mut dyn Source,
        out: &mut SourceOutput,
    ) -> Result<(), RuntimeError> {
        let Some(restore) = &self.restore else {
            return Ok(());
        };
        let node = &self.chain[0];
        let state = restore
            .state_for(&node.info.uid, node.subtask, node.parallelism)
            .map_err(|message| RuntimeError::State {
                uid: node.info.uid.to_string(),
                error: StateError::Backend(message),
            })?;
        let Some(state) = state else {
            return Ok(());
        };
        let (mut positions, mut progress) = (Positions::new(), Positions::new());
        for meta in &state.metas {
            if let Some(serde_json::Value::Object(m)) = meta.get("splits") {
                positions.extend(m.clone());
            }
            if let Some(serde_json::Value::Object(m)) = meta.get("progress") {
                progress.extend(m.clone());
            }
        }
        source.restore(&positions)?;
        out.restore(progress);
        Ok(())
    }

    /// Runs what the source read (and set aside as dead letters) through
    /// the chain.
    async fn pass_on_read(&mut self, out: &mut SourceOutput) -> Result<(), RuntimeError> {
        let messages: Vec<Message> = out.take_messages().collect();
        for msg in messages {
            self.process(0, msg).await?;
        }
        let dead: Vec<(usize, Batch)> = out.output().drain().collect();
        for (port, batch) in dead {
            self.process_from(0, port, Message::Batch(batch)).await?;
        }
        Ok(())
    }

    async fn run_source(
        &mut self,
        mut source: Box<dyn Source>,
        mut out: Box<SourceOutput>,
        mut triggers: tokio::sync::mpsc::UnboundedReceiver<Barrier>,
    ) -> Result<(), RuntimeError> {
        self.restore_source(&mut *source, &mut out)?;
        source.open(&mut out)?;
        let mut last_marker = std::time::Instant::now();
        let mut early: Option<Barrier> = None;
        // Positions at the barriers of checkpoints not yet complete.
        let mut taken: VecDeque<(u64, Positions)> = VecDeque::new();
        loop {
            if let Some(c) = self.notice_completed() {
                let mut latest = None;
                while taken.front().is_some_and(|(id, _)| *id <= c) {
                    latest = taken.pop_front();
                }
                if let Some((_, positions)) = latest {
                    source.checkpoint_complete(&positions);
                }
            }
            // A source in the middle of a unit that must stay whole (a
            // database transaction) holds barriers back until its end.
            let mut next = if source.at_boundary() {
                early.take().or_else(|| triggers.try_recv().ok())
            } else {
                if early.is_none() {
                    early = triggers.try_recv().ok();
                }
                None
            };
            while let Some(b) = next.take() {
                next = triggers.try_recv().ok();
                // Everything read so far goes before the barrier.
                out.cut_for_barrier();
                self.pass_on_read(&mut out).await?;
                let positions = source.snapshot();
                taken.push_back((b.id, positions.clone()));
                self.source_meta = Some(serde_json::json!({
                    "splits": positions,
                    "progress": out.split_progress(),
                }));
                self.barrier(b).await?;
                self.flush().await?;
                if b.kind == BarrierKind::StopWithSavepoint {
                    // Read nothing more; the job stops once the savepoint
                    // is complete.
                    loop {
                        self.notice_completed();
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
            out.begin_poll();
            let poll = source.poll(&mut out)?;
            let wait = out.tick(poll != SourcePoll::More);
            if poll == SourcePoll::Finished {
                out.finish();
            }
            self.pass_on_read(&mut out).await?;
            if last_marker.elapsed() >= LATENCY_MARKER_INTERVAL {
                last_marker = std::time::Instant::now();
                self.process(0, Message::LatencyMarker(last_marker)).await?;
            }
            self.flush().await?;
            match poll {
                SourcePoll::More => match out.pace_wait() {
                    None => tokio::task::consume_budget().await,
                    Some(d) => tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        Some(b) = triggers.recv(), if early.is_none() => early = Some(b),
                    },
                },
                SourcePoll::Wait(d) => {
                    let d = wait.map_or(d, |w| w.min(d));
                    // A chained operator with work under way wants to be
                    // flushed sooner.
                    let d = self
                        .chain
                        .iter()
                        .filter_map(|n| n.op.wakeup())
                        .fold(d, std::time::Duration::min);
                    tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        // A barrier need not wait for the next record.
                        Some(b) = triggers.recv(), if early.is_none() => early = Some(b),
                    }
                }
                SourcePoll::Finished => {
                    self.process(0, Message::EndOfInput).await?;
                    self.flush().await?;
                    let meta = serde_json::json!({
                        "splits": source.snapshot(),
                        "progress": out.split_progress(),
                    });
                    if let Some(head) = self.final_parts.first_mut() {
                        head.state.meta = meta;
                    }
                    self.finished();
                    return Ok(());
                }
            }
        }
    }

    async fn run_inputs(
        &mut self,
        mut rx: TaskInputs,
        mut watermarks: InputWatermarks,
        logical: Vec<usize>,
        lowest: bool,
    ) -> Result<(), RuntimeError> {
        let n = watermarks.len();
        let mut align = Alignment {
            blocked: vec![false; n],
            ended: vec![false; n],
            held: vec![VecDeque::new(); n],
            barrier: None,
        };
        let mut inbox: VecDeque<(usize, Message)> = VecDeque::new();
        // Channel items taken since the last flush, where an operator of
        // the chain takes bursts (see below).
        let mut burst = 0;
        let bursts = self.chain.iter().any(|n| n.op.takes_bursts());
        loop {
            self.notice_completed();
            // An operator with processing-time timers wants to run when the
            // first one is due, input or not.
            let wakeup = self.chain.iter().filter_map(|n| n.op.wakeup()).min();
            let prefer = preferred(lowest, &watermarks, &align, &logical, rx.len());
            let received = match wakeup {
                None => Some(rx.recv(prefer).await),
                Some(after) => tokio::select! {
                    r = rx.recv(prefer) => Some(r),
                    () = tokio::time::sleep(after) => None,
                },
            };
            let Some(received) = received else {
                self.flush().await?;
                continue;
            };
            let Some((input, messages)) = received else {
                return Err(RuntimeError::Disconnected(format!(
                    "{}: inputs closed before the end of input",
                    self.name
                )));
            };
            inbox.extend(messages.into_iter().map(|m| (input as usize, m)));
            while let Some((input, msg)) = next_message(&mut inbox, lowest, &watermarks, &align) {
                if align.blocked[input] {
                    align.held[input].push_back(msg);
                    continue;
                }
                match msg {
                    Message::Batch(_) => self.process_input(logical[input], msg).await?,
                    Message::LatencyMarker(_) => self.process(0, msg).await?,
                    Message::Watermark(wm) => {
                        if let Some(wm) = watermarks.on_watermark(input, wm) {
                            self.process(0, Message::Watermark(wm)).await?;
                        }
                    }
                    Message::Barrier(b) => {
                        match align.barrier {
                            Some(a) if a.id > b.id => continue,
                            Some(a) if a.id < b.id => {
                                // The older checkpoint was given up: let
                                // its held messages go first.
                                align.release(&mut inbox);
                                inbox.push_front((input, msg));
                                align.barrier = None;
                                continue;
                            }
                            _ => {}
                        }
                        align.barrier = Some(b);
                        align.blocked[input] = true;
                        if align.complete() {
                            self.barrier(b).await?;
                            align.release(&mut inbox);
                        }
                    }
                    Message::EndOfInput => {
                        align.ended[input] = true;
                        let (wm, all_ended) = watermarks.on_end(input);
                        if let Some(wm) = wm {
                            self.process(0, Message::Watermark(wm)).await?;
                        }
                        if let Some(b) = align.barrier
                            && align.complete()
                        {
                            self.barrier(b).await?;
                            align.release(&mut inbox);
                        }
                        if all_ended {
                            self.process(0, Message::EndOfInput).await?;
                            self.flush().await?;
                            self.finished();
                            return Ok(());
                        }
                    }
                }
            }
            // Input already waiting joins the burst of a chain whose
            // operator takes bursts ([`Operator::takes_bursts`]): it then
            // makes one call for all of it (W5 p=1 −17 %). Up to MAX_BURST
            // items, so that output still leaves while the input stays
            // backlogged. Other chains flush after each item (W1's Wasm
            // map ran 13 % slower with bursts).
            burst += 1;
            if bursts && burst < MAX_BURST && rx.any_ready() {
                continue;
            }
            burst = 0;
            self.flush().await?;
        }
    }

    /// Runs `msg` through chain node `start` and everything behind it; what
    /// leaves the task waits in the routers until [`Task::flush`].
    async fn process(&mut self, start: usize, msg: Message) -> Result<(), RuntimeError> {
        let mut work = VecDeque::new();
        work.push_back((start, msg));
        self.run_work(work, 0).await
    }

    /// [`Task::process`] of a batch that came to the head node through its
    /// logical input `input`.
    async fn process_input(&mut self, input: usize, msg: Message) -> Result<(), RuntimeError> {
        let mut work = VecDeque::new();
        work.push_back((0, msg));
        self.run_work(work, input).await
    }

    /// Sends `msg` out of `port` of chain node `node` (without running the
    /// node itself).
    async fn process_from(
        &mut self,
        node: usize,
        port: usize,
        msg: Message,
    ) -> Result<(), RuntimeError> {
        let mut work = VecDeque::new();
        route(
            &self.chain[node].targets[port],
            msg,
            &mut work,
            &mut self.routers,
        );
        self.run_work(work, 0).await
    }

    /// Runs the work items in order; the first one came through logical
    /// input `input` of its node (every other one through input 0: chained
    /// nodes have one input).
    async fn run_work(
        &mut self,
        mut work: VecDeque<(usize, Message)>,
        mut input: usize,
    ) -> Result<(), RuntimeError> {
        while let Some((i, msg)) = work.pop_front() {
            let from = std::mem::take(&mut input);
            let node = &mut self.chain[i];
            let control = match msg {
                Message::Batch(batch) => {
                    node.info.metrics.arrived(batch.len());
                    if from == 0 {
                        node.op.process_batch(batch, &mut node.out).await?;
                    } else {
                        node.op.process_input(from, batch, &mut node.out).await?;
                    }
                    None
                }
                Message::Watermark(Watermark::Time(t)) => {
                    node.op.on_watermark(t, &mut node.out).await?;
                    // A buffering operator passes it on when it flushes.
                    if node.op.buffers() {
                        None
                    } else {
                        node.passed_on(t);
                        Some(Message::Watermark(Watermark::Time(t)))
                    }
                }
                Message::LatencyMarker(made) => {
                    node.info.metrics.latency.observe(made.elapsed());
                    Some(Message::LatencyMarker(made))
                }
                Message::Watermark(Watermark::Idle) => Some(Message::Watermark(Watermark::Idle)),
                Message::Barrier(b) => {
                    if node.last_barrier >= b.id {
                        // It reached this node by another path already.
                        continue;
                    }
                    node.last_barrier = b.id;
                    // What a buffering operator holds belongs before the
                    // barrier.
                    if node.op.buffers()
                        && let Some(t) = node.op.flush(&mut node.out).await?
                    {
                        node.passed_on(t);
                        let wm = Message::Watermark(Watermark::Time(t));
                        route_output(node, Some(wm), &mut work, &mut self.routers);
                    }
                    let mut state = node.op.snapshot(b, &mut node.out).await?;
                    if i == 0
                        && let Some(meta) = self.source_meta.take()
                    {
                        state.meta = meta;
                    }
                    self.collected.push(NodeAck {
                        uid: node.info.uid.clone(),
                        parallelism: node.parallelism,
                        subtask: node.subtask,
                        state,
                    });
                    Some(Message::Barrier(b))
                }
                Message::EndOfInput => {
                    if node.op.buffers()
                        && let Some(t) = node.op.flush(&mut node.out).await?
                    {
                        node.passed_on(t);
                        let wm = Message::Watermark(Watermark::Time(t));
                        route_output(node, Some(wm), &mut work, &mut self.routers);
                    }
                    node.op.close(&mut node.out).await?;
                    self.final_parts.push(NodeAck {
                        uid: node.info.uid.clone(),
                        parallelism: node.parallelism,
                        subtask: node.subtask,
                        state: OperatorState {
                            meta: serde_json::json!({ "finished": true }),
                            keyed: None,
                            committables: node.op.take_final_committables(),
                        },
                    });
                    Some(Message::EndOfInput)
                }
            };
            route_output(node, control, &mut work, &mut self.routers);
            self.dead_letter_rejected(&mut work)?;
        }
        Ok(())
    }

    /// Ends a burst of input: buffering operators process what they
    /// collected (in chain order, so that what one emits reaches the next
    /// before it flushes), then the routers send what they hold (waiting
    /// while a channel is full).
    async fn flush(&mut self) -> Result<(), RuntimeError> {
        for i in 0..self.chain.len() {
            // An operator with work under way (an async enricher's results)
            // is flushed too, so that its results leave.
            let op = &self.chain[i].op;
            if !op.buffers() && op.wakeup().is_none() {
                continue;
            }
            let node = &mut self.chain[i];
            let mut work = VecDeque::new();
            let watermark = node.op.flush(&mut node.out).await?;
            if let Some(t) = watermark {
                node.passed_on(t);
            }
            let wm = watermark.map(|t| Message::Watermark(Watermark::Time(t)));
            route_output(node, wm, &mut work, &mut self.routers);
            self.dead_letter_rejected(&mut work)?;
            self.run_work(work, 0).await?;
        }
        for r in &mut self.routers {
            r.flush().await?;
        }
        Ok(())
    }

    /// Records a key-by could not route go to the dead-letter output of the
    /// node that emitted them.
    fn dead_letter_rejected(
        &mut self,
        work: &mut VecDeque<(usize, Message)>,
    ) -> Result<(), RuntimeError> {
        for r in 0..self.routers.len() {
            let Some(rejected) = self.routers[r].take_rejected() else {
                continue;
            };
            let owner = &mut self.chain[self.router_owner[r]];
            for (i, reason) in rejected.reasons.iter().enumerate() {
                owner.out.dead_letter(rejected.batch.get(i), reason)?;
            }
            for (port, batch) in owner.out.drain() {
                debug_assert_eq!(port, DEAD_LETTER_PORT);
                route(
                    &owner.targets[port],
                    Message::Batch(batch),
                    work,
                    &mut self.routers,
                );
            }
        }
        Ok(())
    }
}

/// The logical input to read first: with `lowest`, that of the input the
/// task waits for (see [`next_message`]); else the one strictly behind the
/// others in event time, if any, so that an input running ahead waits in
/// its channel and upstream rather than in the operator's state (a join
/// holds what the other side can still match). Inputs blocked at a barrier
/// or ended do not count.
fn preferred(
    lowest: bool,
    watermarks: &InputWatermarks,
    align: &Alignment,
    logical: &[usize],
    groups: usize,
) -> Option<usize> {
    let eligible = |i: usize| !align.blocked[i] && !align.ended[i];
    if lowest {
        watermarks.lowest(eligible).map(|i| logical[i])
    } else {
        watermarks.behind(logical, groups, eligible)
    }
}

/// The next message to handle: the first to arrive, or with `lowest`
/// (`input_selection: lowest_watermark`) the first of the active input
/// with the lowest watermark that is not blocked at a barrier — `None`
/// while that input has sent nothing yet, so that the task waits for it.
/// Without such an input (all are idle, finished or blocked), the first to
/// arrive.
fn next_message(
    inbox: &mut VecDeque<(usize, Message)>,
    lowest: bool,
    watermarks: &InputWatermarks,
    align: &Alignment,
) -> Option<(usize, Message)> {
    if !lowest {
        return inbox.pop_front();
    }
    match watermarks.lowest(|i| !align.blocked[i] && !align.ended[i]) {
        None => inbox.pop_front(),
        Some(c) => {
            let at = inbox.iter().position(|(i, _)| *i == c)?;
            inbox.remove(at)
        }
    }
}

/// Barrier alignment across a task's inputs.
struct Alignment {
    /// Inputs that delivered the barrier being aligned.
    blocked: Vec<bool>,
    ended: Vec<bool>,
    /// What blocked inputs sent after the barrier.
    held: Vec<VecDeque<Message>>,
    barrier: Option<Barrier>,
}

impl Alignment {
    /// Whether every live input has delivered the barrier.
    fn complete(&self) -> bool {
        self.barrier.is_some() && self.blocked.iter().zip(&self.ended).all(|(b, e)| *b || *e)
    }

    /// Unblocks every input: what they sent meanwhile is handled next, in
    /// order per input.
    fn release(&mut self, inbox: &mut VecDeque<(usize, Message)>) {
        for (i, held) in self.held.iter_mut().enumerate() {
            while let Some(m) = held.pop_back() {
                inbox.push_front((i, m));
            }
        }
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.barrier = None;
    }
}

/// Hands `msg` to every target, cloning only when there are several.
/// Routes what `node` emitted, then `control` (a watermark, the end of
/// input) to every port: a control message follows the records before it.
fn route_output(
    node: &mut ChainNode,
    control: Option<Message>,
    work: &mut VecDeque<(usize, Message)>,
    routers: &mut [Router],
) {
    let watermarks = node.out.take_watermarks();
    if watermarks.is_empty() {
        for (port, batch) in node.out.drain() {
            route(&node.targets[port], Message::Batch(batch), work, routers);
        }
    } else {
        // Watermarks the operator passed on among its output, in place.
        let items: Vec<(usize, Batch)> = node.out.drain().collect();
        let mut watermarks = watermarks.into_iter().peekable();
        for (n, (port, batch)) in items.into_iter().enumerate() {
            while let Some((_, t)) = watermarks.next_if(|&(before, _)| before <= n) {
                route_watermark(node, t, work, routers);
            }
            route(&node.targets[port], Message::Batch(batch), work, routers);
        }
        for (_, t) in watermarks {
            route_watermark(node, t, work, routers);
        }
    }
    if let Some(control) = control {
        for targets in &node.targets {
            route(targets, control.clone(), work, routers);
        }
    }
}

fn route_watermark(
    node: &mut ChainNode,
    t: i64,
    work: &mut VecDeque<(usize, Message)>,
    routers: &mut [Router],
) {
    node.passed_on(t);
    for targets in &node.targets {
        route(
            targets,
            Message::Watermark(Watermark::Time(t)),
            work,
            routers,
        );
    }
}

fn route(
    targets: &[Target],
    msg: Message,
    work: &mut VecDeque<(usize, Message)>,
    routers: &mut [Router],
) {
    let Some((last, rest)) = targets.split_last() else {
        return;
    };
    for t in rest {
        send_to(*t, msg.clone(), work, routers);
    }
    send_to(*last, msg, work, routers);
}

#[inline]
fn send_to(t: Target, msg: Message, work: &mut VecDeque<(usize, Message)>, routers: &mut [Router]) {
    match t {
        Target::Chained(j) => work.push_back((j, msg)),
        Target::Router(r) => routers[r].push(msg),
    }
}

/// The operator standing for a source node at the head of its chain: the
/// records the source read pass through it to the source's targets.
pub struct SourceNode;

#[async_trait]
impl Operator for SourceNode {
    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        out.emit(batch);
        Ok(())
    }
}
