//! The runtime: tasks that run chains of operators and talk over bounded
//! channels.
//!
//! A physical plan (see [`crate::plan`]) becomes one tokio task per subtask
//! of each chain. Tasks exchange [`Message`]s — data batches, watermarks and
//! the end of input, in order — over bounded channels: a task that cannot
//! send waits, which slows its inputs down in turn (backpressure). Inside a
//! task, chained operators hand batches to each other directly, without a
//! channel or a copy.
//!
//! Modules: [`batch`] (the data layout), [`operator`] (the trait every
//! operator implements and its [`Output`]), [`source`] (the source trait and
//! the batching, event-time and watermark logic all sources share),
//! [`keys`] (key extraction and key groups), [`router`] (how a task's output
//! reaches the next tasks), [`task`] (the loop of one task) and [`job`]
//! (deploying a plan and waiting for it).

pub mod batch;
pub mod job;
pub mod keys;
pub mod operator;
pub mod router;
pub mod source;
pub mod task;

pub use batch::{Batch, Origin, RecordRef};
pub use operator::{NodeInfo, Operator, Output};

use crate::time::watermark::Watermark;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What travels between tasks, in order.
#[derive(Debug, Clone)]
pub enum Message {
    Batch(Batch),
    Watermark(Watermark),
    /// The sender will send nothing more.
    EndOfInput,
}

/// How positions in a split are written in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositionKind {
    /// `file.jsonl:17`
    Line,
    /// `datagen orders split 0 record 17`
    Sequence,
}

/// The names of all source splits of a job, so that a record's [`Origin`]
/// can be told to a person.
#[derive(Debug, Default)]
pub struct Splits {
    names: Mutex<Vec<(String, PositionKind)>>,
}

impl Splits {
    pub fn register(&self, name: String, kind: PositionKind) -> u32 {
        let mut names = self.names.lock().expect("splits lock");
        names.push((name, kind));
        (names.len() - 1) as u32
    }

    pub fn describe(&self, origin: Origin) -> String {
        if origin == Origin::NONE {
            return "a record made by the pipeline".to_owned();
        }
        let names = self.names.lock().expect("splits lock");
        match names.get(origin.split as usize) {
            Some((name, PositionKind::Line)) => format!("{name}:{}", origin.position),
            Some((name, PositionKind::Sequence)) => format!("{name} record {}", origin.position),
            None => format!("split {} position {}", origin.split, origin.position),
        }
    }
}

/// Counters of one node (all its subtasks), read for the job summary.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Records dropped by a window because they came too late.
    pub late: AtomicU64,
    /// Records sent to the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// Time spent inside Wasm calls, nanoseconds.
    pub wasm_nanos: AtomicU64,
    /// When the node's first record arrived.
    pub first_record: std::sync::OnceLock<std::time::Instant>,
}

impl NodeMetrics {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts records arriving at the node.
    #[inline]
    pub fn arrived(&self, n: usize) {
        if self.first_record.get().is_none() {
            let _ = self.first_record.set(std::time::Instant::now());
        }
        Self::add(&self.records_in, n as u64);
    }
}
