//! The checkpoint coordinator of one job attempt: triggers checkpoints at
//! the spec's interval and savepoints on request, collects the tasks'
//! acknowledgements, writes the state objects and then the manifest, commits
//! the sinks' output, and keeps the last few checkpoints.
//!
//! It runs as a tokio task beside the job's tasks and talks to them only
//! through channels: triggers to the source tasks, acknowledgements back.

use super::format::{self, Manifest, OperatorManifest, SnapshotKind, SubtaskManifest};
use super::storage::{DirStorage, Storage};
use super::{Barrier, BarrierKind, CheckpointSettings, CheckpointStats, Committer, OperatorState};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// What a task sends once a barrier has passed its whole chain.
pub struct Ack {
    /// The task's index in the job.
    pub task: usize,
    pub barrier: Barrier,
    pub nodes: Vec<NodeAck>,
}

/// What a task sends when it has processed all its input and ends: its
/// nodes' part of every later snapshot (a source's final positions, a
/// sink's last output to commit; no keyed state — what a finished operator
/// held has been emitted). Checkpoints go on without it (Flink's FLIP-147):
/// a job whose small rates file has been read still checkpoints its orders.
pub struct Finished {
    pub task: usize,
    pub nodes: Vec<NodeAck>,
}

/// One operator subtask's part of a snapshot.
#[derive(Clone)]
pub struct NodeAck {
    pub uid: Arc<str>,
    pub parallelism: u32,
    pub subtask: u32,
    pub state: OperatorState,
}

/// Someone asks for a savepoint (and maybe to stop the job after it).
pub struct SavepointRequest {
    /// The folder to write it to; by default `savepoint-<id>` in the
    /// checkpoint folder.
    pub dir: Option<PathBuf>,
    pub stop: bool,
    pub reply: oneshot::Sender<Result<PathBuf, String>>,
}

/// What the coordinator tells the job.
#[derive(Debug)]
pub enum Outcome {
    /// Too many checkpoints failed, or a commit failed.
    Failed(String),
    /// A stop-with-savepoint completed: the job should stop.
    Stopped(PathBuf),
    /// The subtasks of operator `uid` hold different broadcast state (see
    /// [`super::BROADCAST_HASH`]): the same input does it again, so the job
    /// fails without a restart.
    Diverged { uid: String, message: String },
}

/// What the tasks of an attempt hold to talk to the coordinator.
#[derive(Clone)]
pub struct TaskLink {
    pub acks: mpsc::UnboundedSender<Ack>,
    /// Tasks that have processed all their input.
    pub finished: mpsc::UnboundedSender<Finished>,
    /// The id of the last complete checkpoint (its output is committed).
    pub completed: Arc<AtomicU64>,
}

struct InFlight {
    id: u64,
    kind: BarrierKind,
    started: Instant,
    /// The tasks that acknowledged it.
    acked: std::collections::HashSet<usize>,
    /// The finished tasks whose final parts it holds.
    included: Vec<usize>,
    writes: usize,
    failed_write: Option<String>,
    operators: super::Operators,
    target: Arc<dyn Storage>,
    prefix: String,
    request: Option<SavepointRequest>,
}

pub struct Coordinator {
    job: String,
    max_parallelism: u32,
    backend: &'static str,
    settings: Option<CheckpointSettings>,
    storage: Option<Arc<DirStorage>>,
    next_id: u64,
    /// The id of this attempt's first checkpoint.
    first_id: u64,
    triggers: Vec<mpsc::UnboundedSender<Barrier>>,
    tasks: usize,
    committers: Vec<(String, Arc<dyn Committer>)>,
    stats: Arc<CheckpointStats>,
    completed: Arc<AtomicU64>,
    acks: mpsc::UnboundedReceiver<Ack>,
    finished_rx: mpsc::UnboundedReceiver<Finished>,
    /// Finished tasks and their final parts (their committables cleared
    /// once a complete checkpoint has committed them).
    finished: std::collections::BTreeMap<usize, Vec<NodeAck>>,
    writes_tx: mpsc::UnboundedSender<(u64, Result<(), String>)>,
    writes_rx: mpsc::UnboundedReceiver<(u64, Result<(), String>)>,
    outcome: mpsc::UnboundedSender<Outcome>,
    pending: Option<InFlight>,
    queued: VecDeque<SavepointRequest>,
    last_end: Instant,
    last_trigger: Instant,
    failures_in_row: u32,
    /// Every source has ended: no more barriers can be injected.
    finishing: bool,
}

/// How the job is set up for the coordinator.
pub struct Setup {
    pub job: String,
    pub max_parallelism: u32,
    pub backend: &'static str,
    pub settings: Option<CheckpointSettings>,
    /// The id the restored snapshot had (the next checkpoint gets a higher
    /// one).
    pub restored_id: u64,
    pub committers: Vec<(String, Arc<dyn Committer>)>,
    pub stats: Arc<CheckpointStats>,
}

impl Coordinator {
    /// A coordinator and the link its tasks use.
    pub fn new(
        setup: Setup,
        triggers: Vec<mpsc::UnboundedSender<Barrier>>,
        tasks: usize,
        outcome: mpsc::UnboundedSender<Outcome>,
    ) -> (Coordinator, TaskLink) {
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let completed = Arc::new(AtomicU64::new(setup.restored_id));
        let storage = setup
            .settings
            .as_ref()
            .map(|s| Arc::new(DirStorage::new(&s.dir)));
        let now = Instant::now();
        let c = Coordinator {
            job: setup.job,
            max_parallelism: setup.max_parallelism,
            backend: setup.backend,
            settings: setup.settings,
            storage,
            next_id: setup.restored_id + 1,
            first_id: setup.restored_id + 1,
            triggers,
            tasks,
            committers: setup.committers,
            stats: setup.stats,
            completed: completed.clone(),
            acks,
            finished_rx,
            finished: Default::default(),
            writes_tx,
            writes_rx,
            outcome,
            pending: None,
            queued: VecDeque::new(),
            last_end: now,
            last_trigger: now,
            failures_in_row: 0,
            finishing: false,
        };
        let link = TaskLink {
            acks: acks_tx,
            finished: finished_tx,
            completed,
        };
        (c, link)
    }

    /// Runs until `shutdown` fires, then gives itself back for
    /// [`Coordinator::finish`].
    pub async fn run(
        mut self,
        requests: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<SavepointRequest>>>,
        mut shutdown: oneshot::Receiver<()>,
    ) -> Coordinator {
        let mut requests = requests.lock().await;
        loop {
            let wake = self.next_wakeup();
            tokio::select! {
                _ = &mut shutdown => return self,
                Some(ack) = self.acks.recv() => self.on_ack(ack),
                Some((id, r)) = self.writes_rx.recv() => self.on_write(id, r),
                Some(f) = self.finished_rx.recv() => self.on_finished(f),
                Some(req) = requests.recv() => {
                    self.queued.push_back(req);
                    self.on_tick();
                }
                () = sleep_until(wake) => self.on_tick(),
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if let Some(p) = &self.pending {
            return self.settings.as_ref().map(|s| p.started + s.timeout);
        }
        if self.finishing {
            return None;
        }
        let s = self.settings.as_ref()?;
        Some((self.last_trigger + s.interval).max(self.last_end + s.min_pause))
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if let Some(p) = &self.pending {
            let timeout = self.settings.as_ref().map(|s| s.timeout);
            if let Some(t) = timeout
                && now >= p.started + t
            {
                let id = p.id;
                self.fail_pending(format!(
                    "checkpoint {id} did not complete within {}",
                    humantime::format_duration(t)
                ));
            }
            return;
        }
        if let Some(req) = self.queued.pop_front() {
            let kind = if req.stop {
                BarrierKind::StopWithSavepoint
            } else {
                BarrierKind::Savepoint
            };
            self.trigger(kind, Some(req));
            return;
        }
        if let Some(wake) = self.next_wakeup()
            && now >= wake
        {
            self.trigger(BarrierKind::Checkpoint, None);
        }
    }

    fn trigger(&mut self, kind: BarrierKind, request: Option<SavepointRequest>) {
        if self.finishing {
            refuse_finishing(request);
            return;
        }
        let id = self.next_id;
        let wanted = request.as_ref().map(|r| r.dir.clone());
        let target: Result<(Arc<dyn Storage>, String), String> = match (wanted, &self.storage) {
            (Some(Some(d)), _) if d.join(format::MANIFEST).exists() => Err(format!(
                "{} already holds a savepoint; choose another folder",
                d.display()
            )),
            (Some(Some(d)), _) => Ok((Arc::new(DirStorage::new(d)), String::new())),
            (Some(None), Some(s)) => Ok((
                Arc::new(DirStorage::new(s.root().join(format!("savepoint-{id:08}")))),
                String::new(),
            )),
            (Some(None), None) => {
                Err("the job has no checkpoint folder: give the savepoint a target folder".into())
            }
            (None, Some(s)) => Ok((s.clone(), format!("chk-{id:08}/"))),
            (None, None) => return,
        };
        let (target, prefix) = match target {
            Ok(t) => t,
            Err(e) => {
                if let Some(r) = request {
                    let _ = r.reply.send(Err(e));
                }
                return;
            }
        };
        self.next_id += 1;
        let barrier = Barrier { id, kind };
        // A source that has read all its input takes no barrier; its final
        // part stands in for its acknowledgement.
        let taken = self
            .triggers
            .iter()
            .filter(|t| t.send(barrier).is_ok())
            .count();
        if taken == 0 {
            self.finishing = true;
            refuse_finishing(request);
            return;
        }
        tracing::debug!(job = %self.job, "triggered checkpoint {id} ({kind:?})");
        self.last_trigger = Instant::now();
        self.pending = Some(InFlight {
            id,
            kind,
            started: Instant::now(),
            acked: Default::default(),
            included: Vec::new(),
            writes: 0,
            failed_write: None,
            operators: Default::default(),
            target,
            prefix,
            request,
        });
        let p = self.pending.as_mut().expect("just set");
        for (&task, nodes) in &self.finished {
            p.included.push(task);
            for node in nodes {
                Self::add_node(p, node.clone(), &self.writes_tx);
            }
        }
    }

    /// A task has ended: the pending checkpoint, if the task did not
    /// acknowledge it, takes its final part instead.
    fn on_finished(&mut self, f: Finished) {
        if let Some(p) = &mut self.pending
            && !p.acked.contains(&f.task)
        {
            p.included.push(f.task);
            for node in &f.nodes {
                Self::add_node(p, node.clone(), &self.writes_tx);
            }
        }
        self.finished.insert(f.task, f.nodes);
        self.maybe_complete();
    }

    fn on_ack(&mut self, ack: Ack) {
        let Some(p) = &mut self.pending else {
            return;
        };
        if p.id != ack.barrier.id {
            return;
        }
        p.acked.insert(ack.task);
        for node in ack.nodes {
            Self::add_node(p, node, &self.writes_tx);
        }
        self.maybe_complete();
    }

    /// Adds one operator subtask's part to a pending snapshot (its keyed
    /// state is written on the side).
    fn add_node(
        p: &mut InFlight,
        node: NodeAck,
        writes_tx: &mpsc::UnboundedSender<(u64, Result<(), String>)>,
    ) {
        {
            let mut sub = SubtaskManifest {
                subtask: node.subtask,
                meta: node.state.meta,
                state: None,
                state_bytes: 0,
                committables: node.state.committables,
            };
            if let Some(bytes) = node.state.keyed {
                let name = format!("{}-{}.state", safe_name(&node.uid), node.subtask);
                sub.state_bytes = bytes.len() as u64;
                sub.state = Some(name.clone());
                p.writes += 1;
                let target = p.target.clone();
                let full = format!("{}{name}", p.prefix);
                let done = writes_tx.clone();
                let id = p.id;
                tokio::task::spawn_blocking(move || {
                    let r = target
                        .put(&full, &bytes)
                        .map_err(|e| format!("cannot write {}: {e}", target.describe(&full)));
                    let _ = done.send((id, r));
                });
            }
            let op = p
                .operators
                .entry(node.uid.to_string())
                .or_insert_with(|| OperatorManifest {
                    parallelism: node.parallelism,
                    subtasks: Vec::new(),
                });
            op.subtasks.push(sub);
        }
    }

    fn on_write(&mut self, id: u64, r: Result<(), String>) {
        let Some(p) = &mut self.pending else {
            return;
        };
        if p.id != id {
            return;
        }
        p.writes -= 1;
        if let Err(e) = r {
            p.failed_write.get_or_insert(e);
        }
        self.maybe_complete();
    }

    fn maybe_complete(&mut self) {
        let Some(p) = &self.pending else {
            return;
        };
        let covered =
            (0..self.tasks).all(|t| p.acked.contains(&t) || self.finished.contains_key(&t));
        if !covered || p.writes > 0 {
            return;
        }
        if let Some(e) = p.failed_write.clone() {
            self.fail_pending(e);
            return;
        }
        if let Some((uid, message)) = broadcast_divergence(p.id, &p.operators) {
            let warning = format!("operator `{uid}`: {message}");
            let _ = self.outcome.send(Outcome::Diverged { uid, message });
            self.fail_pending(warning);
            return;
        }
        let mut p = self.pending.take().expect("pending");
        let kind = match p.kind {
            BarrierKind::Checkpoint => SnapshotKind::Checkpoint,
            _ => SnapshotKind::Savepoint,
        };
        let operators = std::mem::take(&mut p.operators);
        let manifest = self.manifest(p.id, kind, operators);
        let location = p.target.describe(p.prefix.trim_end_matches('/'));
        if let Err(e) = self.write_manifest(&*p.target, &p.prefix, &manifest) {
            self.pending = Some(p);
            self.fail_pending(e);
            return;
        }
        if crash_before_commit() == Some(p.id + 1 - self.first_id) {
            eprintln!(
                "sluice: SLUICE_CRASH_BEFORE_COMMIT: checkpoint {} is complete and not committed; stopping the process",
                p.id
            );
            std::process::abort();
        }
        if let Err(e) = self.commit(&manifest) {
            let _ = self.outcome.send(Outcome::Failed(e));
            return;
        }
        // What finished sinks left is committed now; later snapshots and
        // the end of the job need not commit it again.
        for t in &p.included {
            for node in self.finished.get_mut(t).into_iter().flatten() {
                node.state.committables.clear();
            }
        }
        self.completed.store(p.id, Ordering::Relaxed);
        let took = p.started.elapsed();
        let s = &self.stats;
        s.completed.fetch_add(1, Ordering::Relaxed);
        s.last_id.store(p.id, Ordering::Relaxed);
        s.last_duration_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
        s.last_size_bytes
            .store(manifest.size_bytes(), Ordering::Relaxed);
        self.failures_in_row = 0;
        self.last_end = Instant::now();
        tracing::debug!(
            job = %self.job,
            "checkpoint {} complete in {took:?}, {} bytes",
            p.id,
            manifest.size_bytes()
        );
        if kind == SnapshotKind::Checkpoint {
            self.prune(p.id);
        } else {
            tracing::info!(job = %self.job, "savepoint {} written to {location}", p.id);
        }
        let path = PathBuf::from(&location);
        if let Some(r) = p.request.take() {
            let _ = r.reply.send(Ok(path.clone()));
        }
        if p.kind == BarrierKind::StopWithSavepoint {
            let _ = self.outcome.send(Outcome::Stopped(path));
        }
    }

    fn manifest(&self, id: u64, kind: SnapshotKind, mut operators: super::Operators) -> Manifest {
        for op in operators.values_mut() {
            op.subtasks.sort_by_key(|s| s.subtask);
        }
        Manifest {
            format: Manifest::FORMAT.into(),
            version: format::FORMAT_VERSION,
            id,
            kind,
            job: self.job.clone(),
            taken_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            max_parallelism: self.max_parallelism,
            backend: self.backend.into(),
            operators,
        }
    }

    fn write_manifest(
        &self,
        target: &dyn Storage,
        prefix: &str,
        manifest: &Manifest,
    ) -> Result<(), String> {
        let name = format!("{prefix}{}", format::MANIFEST);
        let bytes = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
        target
            .put(&name, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", target.describe(&name)))
    }

    /// Commits the sinks' output a complete snapshot covers.
    fn commit(&self, manifest: &Manifest) -> Result<(), String> {
        for (uid, committer) in &self.committers {
            let items: Vec<serde_json::Value> = manifest
                .operators
                .get(uid)
                .map(|o| {
                    o.subtasks
                        .iter()
                        .flat_map(|s| s.committables.iter().cloned())
                        .collect()
                })
                .unwrap_or_default();
            if !items.is_empty() {
                committer.commit(manifest.id, &items).map_err(|e| {
                    format!(
                        "sink `{uid}`: cannot commit checkpoint {}: {e}",
                        manifest.id
                    )
                })?;
            }
        }
        Ok(())
    }

    fn fail_pending(&mut self, message: String) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.failures_in_row += 1;
        self.last_end = Instant::now();
        if p.prefix.starts_with("chk-") {
            let _ = p.target.delete_prefix(&p.prefix);
        }
        tracing::warn!(job = %self.job, "{message}");
        if let Some(r) = p.request.take() {
            let _ = r.reply.send(Err(message.clone()));
        }
        let tolerable = self.settings.as_ref().map_or(0, |s| s.tolerable_failures);
        if p.kind == BarrierKind::Checkpoint && self.failures_in_row > tolerable {
            let _ = self.outcome.send(Outcome::Failed(format!(
                "{message}; {} checkpoints failed in a row, more than `checkpoints.tolerable_failures` ({tolerable})",
                self.failures_in_row
            )));
        }
    }

    /// Keeps the last `retained` complete checkpoints; removes older ones and
    /// any partial ones before `latest`.
    fn prune(&self, latest: u64) {
        let (Some(storage), Some(settings)) = (&self.storage, &self.settings) else {
            return;
        };
        let Ok(names) = storage.list("chk-") else {
            return;
        };
        let mut folders: Vec<(u64, bool)> = Vec::new();
        for n in &names {
            let Some((folder, file)) = n.split_once('/') else {
                continue;
            };
            let Some(id) = folder
                .strip_prefix("chk-")
                .and_then(|i| i.parse::<u64>().ok())
            else {
                continue;
            };
            match folders.iter_mut().find(|f| f.0 == id) {
                Some(f) => f.1 |= file == format::MANIFEST,
                None => folders.push((id, file == format::MANIFEST)),
            }
        }
        folders.sort();
        let complete: Vec<u64> = folders.iter().filter(|f| f.1).map(|f| f.0).collect();
        let keep_from = complete
            .len()
            .saturating_sub(settings.retained.max(1))
            .min(complete.len());
        let keep = &complete[keep_from..];
        for (id, _) in folders {
            if id < latest && !keep.contains(&id) {
                let _ = storage.delete_prefix(&format!("chk-{id:08}/"));
            }
        }
    }

    /// After every task has ended: with checkpointing on, commits the sinks'
    /// last output under a final manifest (so a rerun knows the job is done).
    pub fn finish(mut self) -> Result<(), String> {
        while let Ok(f) = self.finished_rx.try_recv() {
            self.finished.insert(f.task, f.nodes);
        }
        let Some(storage) = self.storage.clone() else {
            return Ok(());
        };
        let id = self.next_id;
        let mut operators = super::Operators::new();
        let last_parts = std::mem::take(&mut self.finished).into_values().flatten();
        for node in last_parts.filter(|n| !n.state.committables.is_empty()) {
            operators
                .entry(node.uid.to_string())
                .or_insert_with(|| OperatorManifest {
                    parallelism: node.parallelism,
                    subtasks: Vec::new(),
                })
                .subtasks
                .push(SubtaskManifest {
                    subtask: node.subtask,
                    committables: node.state.committables,
                    ..Default::default()
                });
        }
        let manifest = self.manifest(id, SnapshotKind::Final, operators);
        let prefix = format!("chk-{id:08}/");
        self.write_manifest(&*storage, &prefix, &manifest)?;
        self.commit(&manifest)?;
        self.prune(id);
        Ok(())
    }
}

/// Answers a savepoint request that came after the input ended.
fn refuse_finishing(request: Option<SavepointRequest>) {
    if let Some(r) = request {
        let _ = r.reply.send(Err(
            "the job's input has ended; it is finishing and takes no more savepoints".into(),
        ));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A uid as a file name.
pub fn safe_name(uid: &str) -> String {
    uid.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A failpoint for tests of recovery: `SLUICE_CRASH_BEFORE_COMMIT=N` ends
/// the process abruptly once the attempt's Nth checkpoint is complete (its
/// manifest written) and before the sinks commit it: the moment a crash
/// leaves the most to recover.
fn crash_before_commit() -> Option<u64> {
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        std::env::var("SLUICE_CRASH_BEFORE_COMMIT")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// Why checkpoint `id` shows that an operator's subtasks hold different
/// broadcast state (their metas disagree on
/// [`super::BROADCAST_HASH`]), if they do: the broadcast side
/// of the function is not deterministic, and a restore would give each
/// subtask subtask 0's state.
fn broadcast_divergence(id: u64, operators: &super::Operators) -> Option<(String, String)> {
    let key = super::BROADCAST_HASH;
    for (uid, op) in operators {
        let mut hashes: Vec<(u32, &str)> = op
            .subtasks
            .iter()
            .filter_map(|s| Some((s.subtask, s.meta.get(key)?.as_str()?)))
            .collect();
        hashes.sort_unstable();
        let Some(&(first, h)) = hashes.first() else {
            continue;
        };
        if let Some(&(other, g)) = hashes.iter().find(|(_, g)| *g != h) {
            return Some((
                uid.clone(),
                format!(
                    "subtasks {first} and {other} hold different broadcast state at checkpoint {id} (digests {h} and {g}); the broadcast side of a keyed broadcast process function must change broadcast state the same way on every subtask, from the broadcast records alone (no clock, randomness, keyed state or subtask-specific input)"
                ),
            ));
        }
    }
    None
}
