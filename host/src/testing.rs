//! Jobs in this process on records given in code: the harness for tests of
//! operators, planning, the runtime and checkpoints (Flink's
//! `MiniCluster` with `fromElements` and a collecting sink).
//!
//! A [`Harness`] plans a spec as `sluice run` would, then swaps sources for
//! in-memory inputs ([`Harness::input`]) and every sink for a collector
//! whose rows [`Harness::output`] returns. Processing time is a
//! [`ManualClock`] the test moves. A source can be told to stop after a
//! number of records ([`Harness::pause_after`]), so that a savepoint taken
//! there ([`Harness::savepoint`]) holds a known prefix of the input; a later
//! [`Harness::run`] after [`Harness::restore`] resumes from it.
//!
//! Collected rows are committed the way sluice's transactional sinks commit
//! them: a row counts once the checkpoint or savepoint after it completes,
//! or the input ends. So a run stopped at a savepoint and restored from it
//! shows each row once.
//!
//! ```
//! use sluice_host::testing::Harness;
//!
//! let mut h = Harness::plan(
//!     "sources: [{ uid: in, type: datagen, count: 0 }]\n\
//!      sinks: [{ uid: out, input: in, type: stdout }]\n",
//! )?;
//! h.input("in", ["{\"a\":1}", "{\"a\":2}"]);
//! h.run()?;
//! assert_eq!(h.output("out"), ["{\"a\":1}", "{\"a\":2}"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::checkpoint::{Barrier, Committer, OperatorState};
use crate::error::{PlanError, RuntimeError};
use crate::plan::{self, PlanOptions};
use crate::runtime::job::{self, Control, JobSummary, Start};
use crate::runtime::source::{Format, Positions, Source, SourceFactory, SourceOutput, SourcePoll};
use crate::runtime::{
    Batch, NodeInfo, NodeKind, Operator, OperatorFactory, Output, Pipeline, PositionKind, Subtask,
};
use crate::time::ManualClock;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A job planned from a spec, with in-memory inputs and collected outputs.
pub struct Harness {
    pipeline: Pipeline,
    clock: Arc<ManualClock>,
    inputs: BTreeMap<String, Arc<Input>>,
    outputs: BTreeMap<String, Arc<Collected>>,
    start: Start,
}

impl Harness {
    /// Plans `spec` (modules from `SLUICE_MODULE_PATH`, no variables).
    pub fn plan(spec: &str) -> Result<Harness, PlanError> {
        Harness::plan_with(spec, &PlanOptions::from_env(&[]))
    }

    pub fn plan_with(spec: &str, options: &PlanOptions) -> Result<Harness, PlanError> {
        let mut pipeline = load(spec, options)?;
        let checkpointed = pipeline.settings.checkpoints.is_some();
        let mut outputs = BTreeMap::new();
        for node in &mut pipeline.nodes {
            if node.kind.is_sink() {
                let collected = Arc::new(Collected::default());
                node.kind = NodeKind::Operator(Arc::new(CollectFactory {
                    collected: collected.clone(),
                    checkpointed,
                }));
                outputs.insert(node.uid.clone(), collected);
            }
        }
        Ok(Harness {
            pipeline,
            clock: ManualClock::new(0),
            inputs: BTreeMap::new(),
            outputs,
            start: Start::default(),
        })
    }

    /// Processing time, which moves only when the test moves it.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Makes source `uid` read `records` instead of its connector, keeping
    /// its event time and watermarks. The records are one split: its first
    /// subtask reads them, any others nothing.
    pub fn input<R: AsRef<[u8]>>(
        &mut self,
        uid: &str,
        records: impl IntoIterator<Item = R>,
    ) -> &mut Harness {
        let input = Arc::new(Input {
            records: records.into_iter().map(|r| r.as_ref().to_vec()).collect(),
            pause_at: AtomicUsize::new(usize::MAX),
            reached: AtomicUsize::new(0),
        });
        let node = self
            .pipeline
            .nodes
            .iter_mut()
            .find(|n| n.uid == uid && n.kind.is_source())
            .unwrap_or_else(|| panic!("the spec has no source `{uid}`"));
        let NodeKind::Source { event_time, .. } = &node.kind else {
            unreachable!("a source");
        };
        node.kind = NodeKind::Source {
            factory: Arc::new(InputFactory(input.clone())),
            event_time: event_time.clone(),
        };
        self.inputs.insert(uid.to_owned(), input);
        self
    }

    /// Makes source `uid` stop after its first `n` records, until
    /// [`Harness::restore`].
    pub fn pause_after(&mut self, uid: &str, n: usize) -> &mut Harness {
        self.inputs[uid].pause_at.store(n, Ordering::SeqCst);
        self
    }

    /// Runs the job to the end of its input.
    pub fn run(&mut self) -> Result<JobSummary, RuntimeError> {
        let (control, _handle) = Control::new();
        self.block_on(self.job(control))
    }

    /// Runs the job until every paused source has reached its pause, then
    /// stops it with a savepoint in `dir`; returns the savepoint's folder.
    pub fn savepoint(&mut self, dir: &Path) -> Result<PathBuf, RuntimeError> {
        let (control, handle) = Control::new();
        let inputs: Vec<Arc<Input>> = self.inputs.values().cloned().collect();
        let dir = dir.to_owned();
        self.block_on(async {
            let job = self.job(control);
            let take = async {
                // Bounded: a source that never reaches its pause fails the
                // test rather than hanging it.
                for _ in 0..2000 {
                    if inputs.iter().all(|i| i.paused()) {
                        return handle.savepoint(Some(dir), true).await;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err("the sources did not reach their pauses within 10 s".to_owned())
            };
            let (summary, taken) = tokio::join!(job, take);
            let taken = taken.map_err(RuntimeError::Checkpoint)?;
            summary?;
            Ok(taken)
        })
    }

    /// Makes the next run start from the savepoint or checkpoint `dir`, with
    /// every source's pause lifted.
    pub fn restore(&mut self, dir: &Path) -> &mut Harness {
        for input in self.inputs.values() {
            input.pause_at.store(usize::MAX, Ordering::SeqCst);
        }
        self.start.from_savepoint = Some(dir.to_owned());
        self
    }

    /// The committed rows of sink `uid`, as text, in the order they were
    /// committed (per subtask, the order they arrived).
    pub fn output(&self, uid: &str) -> Vec<String> {
        self.outputs[uid]
            .committed
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    }

    /// The committed rows of sink `uid`, with keys and timestamps.
    pub fn rows(&self, uid: &str) -> Vec<Row> {
        self.outputs[uid]
            .committed
            .lock()
            .expect("not poisoned")
            .clone()
    }

    async fn job(&self, control: Control) -> Result<JobSummary, RuntimeError> {
        let metrics = job::node_metrics(&self.pipeline);
        let clock = self.clock.clone();
        job::run_with(&self.pipeline, clock, &metrics, control, self.start.clone()).await
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(f)
    }
}

/// Plans a spec given in code, as `sluice run` would a file.
fn load(spec: &str, options: &PlanOptions) -> Result<Pipeline, PlanError> {
    plan::load_text(
        spec,
        Path::new("harness.yaml"),
        Path::new("."),
        &|_| None,
        options,
    )
}

/// One operator of a planned spec, on its own and driven call by call
/// (Flink's `OneInputStreamOperatorTestHarness`): the test gives it batches,
/// watermarks and flushes in the order it chooses, where a job's task
/// would choose by what its channels hold. What it emits is kept, per port.
///
/// ```no_run
/// use sluice_host::testing::OperatorHarness;
///
/// let mut h = OperatorHarness::plan(
///     "sources: [{ uid: in, type: datagen, count: 0, event_time: { timestamp: /ts } }]\n\
///      operators:\n\
///      \x20 - { uid: s, input: in, key_by: /k, process: { module: session_detector.wasm } }\n\
///      sinks: [{ uid: out, input: s, type: stdout }]\n",
///     "s",
/// )?;
/// h.records(0, [(r#"{"k":"a","ts":5}"#, 5)])?;
/// h.watermark(100_000)?;
/// h.flush()?;
/// h.close()?;
/// assert_eq!(h.take_output("").len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OperatorHarness {
    operator: Box<dyn Operator>,
    out: Output,
    clock: Arc<ManualClock>,
    runtime: tokio::runtime::Runtime,
    /// Port names: "" (main), `dead_letter`, then the side outputs.
    ports: Vec<String>,
    /// What the operator emitted, by port, as text.
    emitted: Vec<(usize, String)>,
    split: u32,
    position: u64,
}

impl OperatorHarness {
    /// Plans `spec` (modules from `SLUICE_MODULE_PATH`) and opens subtask 0
    /// of the operator `uid`, alone (parallelism 1).
    pub fn plan(spec: &str, uid: &str) -> Result<OperatorHarness, crate::Error> {
        OperatorHarness::plan_with(spec, uid, &PlanOptions::from_env(&[]))
    }

    pub fn plan_with(
        spec: &str,
        uid: &str,
        options: &PlanOptions,
    ) -> Result<OperatorHarness, crate::Error> {
        let pipeline = load(spec, options)?;
        let node = pipeline
            .nodes
            .iter()
            .find(|n| n.uid == uid)
            .unwrap_or_else(|| panic!("the spec has no node `{uid}`"));
        let NodeKind::Operator(factory) = &node.kind else {
            panic!("`{uid}` is a source, not an operator");
        };
        let splits = Arc::new(crate::runtime::Splits::default());
        let split = splits.register(SPLIT.to_owned(), PositionKind::Sequence);
        let info = Arc::new(NodeInfo {
            uid: uid.into(),
            has_dead_letter: pipeline.has_dead_letter,
            splits,
            metrics: Arc::new(crate::runtime::NodeMetrics::new(1)),
            changelog: node.changelog,
        });
        let manual = ManualClock::new(0);
        let clock: Arc<dyn crate::time::Clock> = manual.clone();
        let operator = factory.create(&Subtask {
            index: 0,
            parallelism: 1,
            info: &info,
            clock: &clock,
            side_ports: &node.side_ports,
            members: None,
        });
        let mut ports = vec![String::new(), "dead_letter".to_owned()];
        ports.extend(node.side_ports.iter().cloned());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut h = OperatorHarness {
            operator,
            out: Output::new(info),
            clock: manual,
            runtime,
            ports,
            emitted: Vec::new(),
            split,
            position: 0,
        };
        let opened = h.runtime.block_on(h.operator.open());
        h.collect(opened)?;
        Ok(h)
    }

    /// Processing time, which moves only when the test moves it.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Hands the operator one batch of input `input` (0 for a one-input
    /// operator): JSON values with their event times.
    pub fn records<R: AsRef<[u8]>>(
        &mut self,
        input: usize,
        records: impl IntoIterator<Item = (R, i64)>,
    ) -> Result<(), RuntimeError> {
        let mut batch = Batch::default();
        for (value, timestamp) in records {
            let origin = crate::runtime::Origin {
                split: self.split,
                position: self.position,
            };
            self.position += 1;
            batch.push(None, value.as_ref(), Some(timestamp), origin);
        }
        let (op, out) = (&mut self.operator, &mut self.out);
        let result = self.runtime.block_on(match input {
            0 => op.process_batch(batch, out),
            n => op.process_input(n, batch, out),
        });
        self.collect(result)
    }

    /// The watermark advanced to `t`.
    pub fn watermark(&mut self, t: i64) -> Result<(), RuntimeError> {
        let result = self
            .runtime
            .block_on(self.operator.on_watermark(t, &mut self.out));
        self.collect(result)
    }

    /// The end of a burst of input, as a task flushes after a channel item;
    /// returns the watermark the operator lets pass, if any.
    pub fn flush(&mut self) -> Result<Option<i64>, RuntimeError> {
        let result = self.runtime.block_on(self.operator.flush(&mut self.out));
        self.collect(result)
    }

    /// The end of input.
    pub fn close(&mut self) -> Result<(), RuntimeError> {
        let result = self.runtime.block_on(self.operator.close(&mut self.out));
        self.collect(result)
    }

    /// The rows emitted to `port` ("" for the main output, else a side
    /// output's name or `dead_letter`) since the last call, as text.
    pub fn take_output(&mut self, port: &str) -> Vec<String> {
        let at = self
            .ports
            .iter()
            .position(|p| p == port)
            .unwrap_or_else(|| panic!("the operator has no output `{port}`"));
        let (taken, kept) = std::mem::take(&mut self.emitted)
            .into_iter()
            .partition(|(p, _)| *p == at);
        self.emitted = kept;
        taken.into_iter().map(|(_, value)| value).collect()
    }

    /// Keeps what the last call emitted.
    fn collect<T>(&mut self, result: Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        for (port, batch) in self.out.drain() {
            let values = batch
                .iter()
                .map(|r| String::from_utf8_lossy(r.value()).into_owned());
            self.emitted.extend(values.map(|v| (port, v)));
        }
        result
    }
}

/// A record a sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: Option<i64>,
}

/// Records given in code, read as one split whose position is the number
/// of records read.
struct Input {
    records: Vec<Vec<u8>>,
    /// Read no further than this many records.
    pause_at: AtomicUsize,
    /// How far the reader got.
    reached: AtomicUsize,
}

impl Input {
    fn paused(&self) -> bool {
        let pause = self.pause_at.load(Ordering::SeqCst);
        pause != usize::MAX && self.reached.load(Ordering::SeqCst) >= pause.min(self.records.len())
    }
}

struct InputFactory(Arc<Input>);

impl SourceFactory for InputFactory {
    fn splits(&self) -> Option<usize> {
        Some(1)
    }

    fn format(&self) -> Format {
        Format::Json
    }

    fn create(&self, subtask: u32, _parallelism: u32) -> Box<dyn Source> {
        Box::new(InputReader {
            input: self.0.clone(),
            next: 0,
            split: None,
            reads: subtask == 0,
        })
    }
}

struct InputReader {
    input: Arc<Input>,
    next: usize,
    split: Option<crate::runtime::source::SplitId>,
    /// Whether this subtask has the split.
    reads: bool,
}

const SPLIT: &str = "input";

impl Source for InputReader {
    fn open(&mut self, out: &mut SourceOutput) -> Result<(), RuntimeError> {
        if self.reads {
            self.split = Some(out.add_split(SPLIT.to_owned(), PositionKind::Sequence));
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput) -> Result<SourcePoll, RuntimeError> {
        let Some(split) = self.split else {
            return Ok(SourcePoll::Finished);
        };
        let records = &self.input.records;
        let pause = self.input.pause_at.load(Ordering::SeqCst);
        while self.next < records.len() && self.next < pause && !out.is_full() {
            out.push(split, None, &records[self.next], self.next as u64)?;
            self.next += 1;
        }
        self.input.reached.store(self.next, Ordering::SeqCst);
        if self.next == records.len() {
            out.finish_split(split);
            return Ok(SourcePoll::Finished);
        }
        if self.next >= pause {
            return Ok(SourcePoll::Wait(Duration::from_millis(5)));
        }
        Ok(SourcePoll::More)
    }

    fn snapshot(&self) -> Positions {
        let mut p = Positions::new();
        if self.reads {
            p.insert(SPLIT.to_owned(), (self.next as u64).into());
        }
        p
    }

    fn restore(&mut self, positions: &Positions) -> Result<(), RuntimeError> {
        if let Some(n) = positions.get(SPLIT).and_then(|v| v.as_u64()) {
            self.next = n as usize;
        }
        Ok(())
    }
}

/// What a collecting sink has received: rows staged per barrier (and at the
/// end of input) by its subtasks, and those committed.
#[derive(Default)]
struct Collected {
    committed: Mutex<Vec<Row>>,
    staged: Mutex<BTreeMap<String, Vec<Row>>>,
}

impl Committer for Collected {
    /// Commits staged rows; an id committed before is gone from `staged`,
    /// so committing it again does nothing.
    fn commit(&self, _id: u64, items: &[serde_json::Value]) -> Result<(), String> {
        let mut staged = self.staged.lock().expect("not poisoned");
        let mut committed = self.committed.lock().expect("not poisoned");
        for item in items {
            let id = item
                .as_str()
                .ok_or("a collector's committable is a string")?;
            committed.extend(staged.remove(id).unwrap_or_default());
        }
        Ok(())
    }

    fn recover(&self, _restored: Option<u64>, items: &[serde_json::Value]) -> Result<(), String> {
        self.commit(0, items)?;
        self.staged.lock().expect("not poisoned").clear();
        Ok(())
    }
}

struct CollectFactory {
    collected: Arc<Collected>,
    /// Whether the job checkpoints: then the end of input too stages its
    /// rows for the final commit; otherwise it commits them itself.
    checkpointed: bool,
}

#[async_trait]
impl OperatorFactory for CollectFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(Collector {
            collected: self.collected.clone(),
            checkpointed: self.checkpointed,
            subtask: subtask.index,
            pending: Vec::new(),
            final_ids: Vec::new(),
        })
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(self.collected.clone())
    }
}

/// A sink that keeps rows in memory, staging them at each barrier for the
/// committer, as a transactional sink stages its output. (Without
/// checkpoints, only a savepoint's barrier comes.)
struct Collector {
    collected: Arc<Collected>,
    checkpointed: bool,
    subtask: u32,
    /// Rows since the last barrier.
    pending: Vec<Row>,
    /// What the end of input staged.
    final_ids: Vec<serde_json::Value>,
}

impl Collector {
    fn stage(&mut self, id: String) -> serde_json::Value {
        let rows = std::mem::take(&mut self.pending);
        self.collected
            .staged
            .lock()
            .expect("not poisoned")
            .insert(id.clone(), rows);
        id.into()
    }
}

#[async_trait]
impl Operator for Collector {
    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        self.pending.extend(batch.iter().map(|r| Row {
            key: r.key().map(<[u8]>::to_vec),
            value: r.value().to_vec(),
            timestamp: r.timestamp(),
        }));
        Ok(())
    }

    async fn snapshot(
        &mut self,
        barrier: Barrier,
        _out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        let id = self.stage(format!("{}-{}", self.subtask, barrier.id));
        Ok(OperatorState {
            committables: vec![id],
            ..OperatorState::default()
        })
    }

    async fn close(&mut self, _out: &mut Output) -> Result<(), RuntimeError> {
        if self.checkpointed {
            let id = self.stage(format!("{}-end", self.subtask));
            self.final_ids.push(id);
        } else {
            let rows = std::mem::take(&mut self.pending);
            self.collected
                .committed
                .lock()
                .expect("not poisoned")
                .extend(rows);
        }
        Ok(())
    }

    fn take_final_committables(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.final_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per key, 10 ms tumbling windows counting records, on 300 records of
    /// 3 keys one millisecond apart.
    fn windows() -> Harness {
        windows_with("")
    }

    /// `windows()` with `extra` lines at the top of the spec.
    fn windows_with(extra: &str) -> Harness {
        windows_of(extra, "{ type: tumbling, size: 10ms }")
    }

    /// `windows_with(extra)` with another `window`.
    fn windows_of(extra: &str, window: &str) -> Harness {
        let mut h = Harness::plan(&format!(
            "{extra}sources:\n\
             \x20 - uid: in\n    type: datagen\n    count: 0\n\
             \x20   event_time: {{ timestamp: /ts, watermark: {{ emit: per_event }} }}\n\
             operators:\n\
             \x20 - uid: w\n    input: in\n    key_by: /k\n\
             \x20   window: {window}\n\
             \x20   aggregate: {{ native: [{{ fn: count }}] }}\n\
             sinks: [{{ uid: out, input: w, type: stdout }}]\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let records: Vec<String> = (0..300)
            .map(|i| format!("{{\"k\":\"k{}\",\"ts\":{i}}}", i % 3))
            .collect();
        h.input("in", &records);
        h
    }

    fn sorted(mut rows: Vec<String>) -> Vec<String> {
        rows.sort();
        rows
    }

    #[test]
    fn a_run_stopped_at_a_savepoint_and_restored_gives_the_uninterrupted_output() {
        let mut whole = windows();
        whole.run().unwrap();
        let expected = sorted(whole.output("out"));
        // 30 windows of 3 keys; each key has 3 or 4 records per window.
        assert_eq!(expected.len(), 90);
        assert!(
            expected
                .contains(&r#"{"k":"k0","window_start":0,"window_end":10,"count":4}"#.to_owned())
        );

        let dir = tempfile::tempdir().unwrap();
        let mut h = windows();
        h.pause_after("in", 155);
        let savepoint = h.savepoint(dir.path()).unwrap();
        // Windows the watermark passed before the savepoint are out; the
        // rest are in the savepoint's state.
        let before = h.output("out").len();
        assert!(
            (40..=50).contains(&before),
            "{before} rows before the savepoint"
        );
        h.restore(&savepoint).run().unwrap();
        assert_eq!(sorted(h.output("out")), expected);

        // With checkpoints, rows are committed with them and at the end.
        let checkpoints = tempfile::tempdir().unwrap();
        let mut h = windows_with(&format!(
            "checkpoints: {{ dir: {}, interval: 1ms }}\n",
            checkpoints.path().display()
        ));
        h.run().unwrap();
        assert_eq!(sorted(h.output("out")), expected);
    }

    #[test]
    fn a_window_restored_from_another_window_types_savepoint_fails_at_once_as_incompatible() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = windows();
        h.pause_after("in", 155);
        let savepoint = h.savepoint(dir.path()).unwrap();
        let mut h = windows_of("", "{ type: session, gap: 10ms }");
        let e = h.restore(&savepoint).run().unwrap_err();
        assert!(matches!(e, RuntimeError::Incompatible(_)), "{e:?}");
        assert_eq!(e.fault(), crate::Fault::User);
        assert!(
            e.to_string().contains("was the window type changed?"),
            "{e}"
        );
    }

    #[test]
    fn a_source_that_is_not_given_input_reads_its_connector_and_rows_keep_their_time() {
        let mut h = Harness::plan(
            "sources: [{ uid: gen, type: datagen, count: 20, event_time: { timestamp: /event_ts } }]\n\
             sinks: [{ uid: out, input: gen, type: stdout }]\n",
        )
        .unwrap();
        h.run().unwrap();
        let rows = h.rows("out");
        assert_eq!(rows.len(), 20);
        assert!(rows.iter().all(|r| r.timestamp.is_some()));
    }
}
