//! The runtime: tasks that run chains of operators and talk over bounded
//! channels.
//!
//! A physical plan ([`graph`]) becomes one tokio task per subtask
//! of each chain. Tasks exchange [`Message`]s — data batches, watermarks,
//! checkpoint barriers and the end of input, in order — over bounded channels: a task that cannot
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

pub mod aggregate;
pub mod batch;
pub mod function;
pub mod graph;
pub mod job;
pub mod keys;
pub mod kind;
pub mod operator;
pub mod router;
pub mod source;
pub mod task;

pub use batch::{Batch, Origin, RecordRef};
pub use graph::{Chain, Edge, Node, NodeKind, Pipeline, Settings};
pub use operator::{ModuleRef, NodeInfo, Operator, OperatorFactory, Output, Subtask};

use crate::time::watermark::Watermark;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What travels between tasks, in order.
#[derive(Debug, Clone)]
pub enum Message {
    Batch(Batch),
    Watermark(Watermark),
    /// A checkpoint barrier: what came before it is in the checkpoint, what
    /// comes after is not.
    Barrier(crate::checkpoint::Barrier),
    /// The sender will send nothing more.
    EndOfInput,
    /// Flink's latency marker: made by a source every
    /// [`LATENCY_MARKER_INTERVAL`], passed on by every node as soon as it
    /// arrives (it overtakes records a node holds), and timed at each node
    /// on the way: the time it took from the source to there.
    LatencyMarker(Instant),
}

/// How often sources emit a [`Message::LatencyMarker`].
pub const LATENCY_MARKER_INTERVAL: Duration = Duration::from_secs(1);

/// How positions in a split are written in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositionKind {
    /// `file.jsonl:17`
    Line,
    /// `datagen orders split 0 record 17`
    Sequence,
    /// `kafka topic orders partition 3 offset 17`
    Offset,
    /// `postgres-cdc slot orders at LSN 0/16B3748`
    Lsn,
}

/// The names of all source splits of a job, so that a record's [`Origin`]
/// can be told to a person.
#[derive(Debug, Default)]
pub struct Splits {
    names: Mutex<Vec<(String, PositionKind)>>,
    /// The topic and partition of each split that is a Kafka partition
    /// (what SQL's metadata columns read).
    partitions: Mutex<Vec<Option<TopicPartition>>>,
}

/// A Kafka topic and one of its partitions.
pub type TopicPartition = (Arc<str>, i32);

impl Splits {
    pub fn register(&self, name: String, kind: PositionKind) -> u32 {
        let mut names = self.names.lock().expect("splits lock");
        names.push((name, kind));
        (names.len() - 1) as u32
    }

    /// Registers a split that is partition `partition` of `topic`.
    pub fn register_partition(&self, name: String, topic: &str, partition: i32) -> u32 {
        let split = self.register(name, PositionKind::Offset);
        let mut parts = self.partitions.lock().expect("splits lock");
        if parts.len() <= split as usize {
            parts.resize(split as usize + 1, None);
        }
        parts[split as usize] = Some((Arc::from(topic), partition));
        split
    }

    /// The topic and partition of a split registered as one.
    pub fn partition(&self, split: u32) -> Option<TopicPartition> {
        let parts = self.partitions.lock().expect("splits lock");
        parts.get(split as usize).cloned().flatten()
    }

    pub fn describe(&self, origin: Origin) -> String {
        if origin == Origin::NONE {
            return "a record made by the pipeline".to_owned();
        }
        let names = self.names.lock().expect("splits lock");
        match names.get(origin.split as usize) {
            Some((name, PositionKind::Line)) => format!("{name}:{}", origin.position),
            Some((name, PositionKind::Sequence)) => format!("{name} record {}", origin.position),
            Some((name, PositionKind::Offset)) => format!("{name} offset {}", origin.position),
            Some((name, PositionKind::Lsn)) => format!(
                "{name} at LSN {:X}/{:X}",
                origin.position >> 32,
                origin.position & 0xFFFF_FFFF
            ),
            None => format!("split {} position {}", origin.split, origin.position),
        }
    }
}

/// Counters and gauges of one node (all its subtasks), read for the job
/// summary, the API and `/metrics`.
#[derive(Debug)]
pub struct NodeMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Records dropped by a window because they came too late.
    pub late: AtomicU64,
    /// Records sent to the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// Time spent inside Wasm calls, nanoseconds.
    pub wasm_nanos: AtomicU64,
    /// A lookup join's lookups its cache answered, and those that went to
    /// the table.
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Time the node's subtasks waited for room in a full channel
    /// downstream (backpressure), nanoseconds.
    pub backpressured_nanos: AtomicU64,
    /// When the node's first record arrived.
    pub first_record: std::sync::OnceLock<std::time::Instant>,
    /// Per subtask: the last event-time watermark it passed on
    /// (`i64::MIN` before the first).
    pub watermarks: Box<[AtomicI64]>,
    /// Per subtask: bytes of keyed state it holds (as its backend
    /// estimates them).
    pub state_bytes: Box<[AtomicU64]>,
    /// Latency markers' time from their source to this node.
    pub latency: Histogram,
}

impl NodeMetrics {
    pub fn new(parallelism: u32) -> NodeMetrics {
        NodeMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            wasm_nanos: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            backpressured_nanos: AtomicU64::new(0),
            first_record: std::sync::OnceLock::new(),
            watermarks: (0..parallelism).map(|_| AtomicI64::new(i64::MIN)).collect(),
            state_bytes: (0..parallelism).map(|_| AtomicU64::new(0)).collect(),
            latency: Histogram::default(),
        }
    }

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

    /// The node's watermark: the least of its subtasks' (`None` until every
    /// subtask has passed one on).
    pub fn watermark(&self) -> Option<i64> {
        let min = self
            .watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()?;
        (min != i64::MIN).then_some(min)
    }

    pub fn state_size(&self) -> u64 {
        self.state_bytes
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

/// A histogram of durations with fixed buckets (Prometheus-style,
/// cumulative when read).
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; HISTOGRAM_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Upper bounds of the histogram buckets, seconds.
pub const HISTOGRAM_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = HISTOGRAM_BOUNDS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(HISTOGRAM_BOUNDS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is `+Inf`: the total), and the
    /// sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut acc = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                acc += c.load(Ordering::Relaxed);
                acc
            })
            .collect();
        (
            cumulative,
            self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        )
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), seconds;
    /// `None` without observations, infinity past the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (cumulative, _) = self.snapshot();
        let total = *cumulative.last()?;
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let i = cumulative.iter().position(|&c| c >= rank)?;
        Some(HISTOGRAM_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_into_buckets_and_finds_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..98 {
            h.observe(Duration::from_micros(300));
        }
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(30));
        let (cumulative, sum) = h.snapshot();
        assert_eq!(cumulative[0], 98);
        assert_eq!(cumulative[5], 99);
        assert_eq!(*cumulative.last().unwrap(), 100);
        assert!((sum - (98.0 * 0.0003 + 0.02 + 30.0)).abs() < 1e-6);
        assert_eq!(h.quantile(0.5), Some(0.0005));
        assert_eq!(h.quantile(0.99), Some(0.025));
        assert_eq!(h.quantile(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn node_watermark_is_the_least_of_its_subtasks() {
        let m = NodeMetrics::new(2);
        assert_eq!(m.watermark(), None);
        m.watermarks[0].store(10, Ordering::Relaxed);
        assert_eq!(m.watermark(), None);
        m.watermarks[1].store(7, Ordering::Relaxed);
        assert_eq!(m.watermark(), Some(7));
    }
}
