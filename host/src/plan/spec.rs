//! The pipeline spec: the YAML a user writes, as Rust types.
//!
//! This module only describes and parses the file. Checking that the parts fit
//! together (inputs exist, windows have event time, modules implement their
//! worlds) is the planner's job, in `plan/mod.rs`. Connector options are kept
//! as raw YAML here and parsed by each connector, which owns them.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::units::{ByteSize, Dur};

/// A whole pipeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub name: Option<String>,
    /// Default parallelism of every node.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Number of key groups: the upper bound for the parallelism of keyed
    /// nodes, fixed for the life of the job's state.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u32,
    /// Records per batch formed by sources.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a source may hold a partial batch when input is slow.
    #[serde(default = "default_buffer_timeout")]
    pub buffer_timeout: Dur,
    /// Messages (batches or control messages) each task's input queue holds
    /// before upstream tasks wait: the backpressure bound.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Defaults for every Wasm module of the pipeline.
    #[serde(default)]
    pub wasm: WasmDefaults,
    /// Where keyed state lives.
    #[serde(default)]
    pub state: StateSpec,
    /// Periodic checkpoints: on when `dir` is set.
    #[serde(default)]
    pub checkpoints: CheckpointsSpec,
    /// What happens when a task fails.
    #[serde(default)]
    pub restart: RestartSpec,
    pub sources: Vec<SourceSpec>,
    #[serde(default)]
    pub operators: Vec<OperatorSpec>,
    pub sinks: Vec<SinkSpec>,
    /// Where malformed records and records an operator rejected go. Without
    /// it, such a record stops the job.
    #[serde(default)]
    pub dead_letter: Option<ConnectorSpec>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_max_parallelism() -> u32 {
    128
}
fn default_batch_size() -> usize {
    1024
}
fn default_buffer_timeout() -> Dur {
    Dur(Duration::from_millis(100))
}
fn default_channel_capacity() -> usize {
    32
}

/// The `checkpoints` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsSpec {
    /// The folder checkpoints go to; checkpointing is off without one (an
    /// empty value counts as none).
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default = "default_checkpoint_interval")]
    pub interval: Dur,
    /// Least time between the end of a checkpoint and the next start.
    #[serde(default = "zero")]
    pub min_pause: Dur,
    #[serde(default = "default_checkpoint_timeout")]
    pub timeout: Dur,
    /// Complete checkpoints kept.
    #[serde(default = "default_retained")]
    pub retained: usize,
    /// Checkpoints that may fail in a row before the job fails.
    #[serde(default)]
    pub tolerable_failures: u32,
}

impl Default for CheckpointsSpec {
    fn default() -> Self {
        CheckpointsSpec {
            dir: None,
            interval: default_checkpoint_interval(),
            min_pause: zero(),
            timeout: default_checkpoint_timeout(),
            retained: default_retained(),
            tolerable_failures: 0,
        }
    }
}

fn default_checkpoint_interval() -> Dur {
    Dur(Duration::from_secs(10))
}
fn zero() -> Dur {
    Dur(Duration::ZERO)
}
fn default_checkpoint_timeout() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_retained() -> usize {
    3
}

/// The `restart` section: Flink's restart strategies.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    /// `none`, `fixed_delay` or `exponential`; the default is `fixed_delay`
    /// with checkpointing and `none` without.
    #[serde(default)]
    pub strategy: Option<RestartKind>,
    /// Restarts allowed (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Delay before a restart; with `exponential`, before the first (default
    /// 1 s).
    #[serde(default)]
    pub delay: Option<Dur>,
    /// `exponential`: the longest delay (default 1 min).
    #[serde(default)]
    pub max_delay: Option<Dur>,
    /// `exponential`: the factor between delays (default 2).
    #[serde(default)]
    pub multiplier: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestartKind {
    None,
    FixedDelay,
    Exponential,
}

/// The state backend of keyed process functions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// `memory` (on the heap, per key group) or `rocksdb` (embedded, on
    /// local disk).
    #[serde(default = "default_backend")]
    pub backend: StateBackendKind,
    /// The in-memory backend's limit per operator subtask; past it the job
    /// fails with a message that says to use RocksDB.
    #[serde(default = "default_state_memory")]
    pub memory_limit: ByteSize,
    /// Where RocksDB keeps its working files (default: the system's
    /// temporary folder).
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    /// RocksDB block cache per operator subtask.
    #[serde(default = "default_rocksdb_cache")]
    pub rocksdb_cache: ByteSize,
    /// RocksDB memtable size per operator subtask (two at most).
    #[serde(default = "default_rocksdb_write_buffer")]
    pub rocksdb_write_buffer: ByteSize,
    /// Where a RocksDB backend keeps timers: `rocksdb` (the default, as
    /// Flink's `timer-service.factory`) or `heap` (faster; bounded by
    /// `memory_limit`). The heap backend keeps them on the heap.
    #[serde(default)]
    pub timers: Option<TimerStoreKind>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TimerStoreKind {
    Rocksdb,
    Heap,
}

impl Default for StateSpec {
    fn default() -> Self {
        StateSpec {
            backend: default_backend(),
            memory_limit: default_state_memory(),
            dir: None,
            rocksdb_cache: default_rocksdb_cache(),
            rocksdb_write_buffer: default_rocksdb_write_buffer(),
            timers: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StateBackendKind {
    Memory,
    Rocksdb,
}

fn default_backend() -> StateBackendKind {
    StateBackendKind::Memory
}
fn default_state_memory() -> ByteSize {
    ByteSize(1 << 30)
}
fn default_rocksdb_cache() -> ByteSize {
    ByteSize(64 << 20)
}
/// Small: a keyed operator writes each key's row or accumulator again and
/// again, and every write is an insert into the memtable's skip list, which
/// costs more the larger the list (with 32 MiB, inserts were ~45 % of W2's
/// window thread). Flushes and compactions run on RocksDB's own threads.
fn default_rocksdb_write_buffer() -> ByteSize {
    ByteSize(4 << 20)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmDefaults {
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    #[serde(default = "default_call_timeout")]
    pub call_timeout: Dur,
}

impl Default for WasmDefaults {
    fn default() -> Self {
        WasmDefaults {
            memory_limit: default_memory_limit(),
            call_timeout: default_call_timeout(),
        }
    }
}

fn default_memory_limit() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_call_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// A source node. `type` selects the connector; the connector reads the
/// remaining keys.
#[derive(Debug, Deserialize)]
pub struct SourceSpec {
    pub uid: String,
    #[serde(default)]
    pub parallelism: Option<u32>,
    #[serde(default)]
    pub event_time: Option<EventTimeSpec>,
    #[serde(flatten)]
    pub connector: ConnectorSpec,
}

/// A connector's `type` and its own options.
#[derive(Debug, Deserialize)]
pub struct ConnectorSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub options: serde_yaml::Mapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// JSON pointer to the event time (epoch milliseconds) in each record;
    /// without it, the timestamp the source reads with each record (a
    /// Kafka record's timestamp).
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub watermark: WatermarkSpec,
    /// A split that delivers nothing for this long stops holding the
    /// watermark back until it delivers again.
    #[serde(default)]
    pub idleness: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    #[serde(default)]
    pub strategy: WatermarkStrategyKind,
    /// For `bounded_out_of_orderness`: how late a record may be.
    #[serde(default)]
    pub max_out_of_orderness: Dur,
    #[serde(default)]
    pub emit: WatermarkEmit,
    /// For `periodic`: how often, in processing time.
    #[serde(default = "default_watermark_interval")]
    pub interval: Dur,
}

impl Default for WatermarkSpec {
    fn default() -> Self {
        WatermarkSpec {
            strategy: WatermarkStrategyKind::default(),
            max_out_of_orderness: Dur::default(),
            emit: WatermarkEmit::default(),
            interval: default_watermark_interval(),
        }
    }
}

fn default_watermark_interval() -> Dur {
    Dur(Duration::from_millis(200))
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WatermarkStrategyKind {
    /// Flink's `forBoundedOutOfOrderness`: max timestamp - delay - 1 ms.
    #[default]
    BoundedOutOfOrderness,
    /// Flink's `forMonotonousTimestamps`: max timestamp - 1 ms.
    Monotonous,
    /// Flink SQL's `WATERMARK FOR ts AS ts - INTERVAL …`: max timestamp -
    /// `max_out_of_orderness`, without the 1 ms.
    MaxMinusDelay,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WatermarkEmit {
    /// Every `interval` of processing time (Flink's default, 200 ms).
    #[default]
    Periodic,
    /// Whenever the watermark advances: results depend only on the input,
    /// not on the machine's speed.
    PerEvent,
    /// `per_event`, each watermark held back with its batch while the
    /// records after it are later than it (for tumbling, sliding and
    /// cumulating windows only: what `sluice sql` gives their tables).
    PerEventDeferred,
}

impl From<WatermarkStrategyKind> for crate::time::watermark::StrategyKind {
    fn from(k: WatermarkStrategyKind) -> Self {
        match k {
            WatermarkStrategyKind::BoundedOutOfOrderness => Self::BoundedOutOfOrderness,
            WatermarkStrategyKind::Monotonous => Self::Monotonous,
            WatermarkStrategyKind::MaxMinusDelay => Self::MaxMinusDelay,
        }
    }
}

impl From<WatermarkEmit> for crate::time::watermark::Emit {
    fn from(e: WatermarkEmit) -> Self {
        match e {
            WatermarkEmit::Periodic => Self::Periodic,
            WatermarkEmit::PerEvent => Self::PerEvent,
            WatermarkEmit::PerEventDeferred => Self::PerEventDeferred,
        }
    }
}

/// How an operator's inputs are distributed over its subtasks when it has no
/// `key_by`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PartitionSpec {
    Forward,
    Rebalance,
    Broadcast,
}

/// An operator node: the keys every operator has, and the keys of its kind
/// (`wasm: …`, `window: … aggregate: …`, …), which the kind's
/// [`crate::runtime::kind::OperatorKind`] reads. Which kinds there are, and
/// which keys go together, is the planner's registry's to say.
#[derive(Debug, Deserialize)]
pub struct OperatorSpec {
    pub uid: String,
    #[serde(default)]
    pub input: Option<InputSpec>,
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub parallelism: Option<u32>,
    #[serde(default)]
    pub partition: Option<PartitionSpec>,
    /// `false` starts a new task at this node even where it could share its
    /// input's task (Flink's `disableChaining`): the two then run side by
    /// side on their own threads, at the cost of a channel between them.
    #[serde(default = "yes")]
    pub chain: bool,
    #[serde(default)]
    pub key_by: Option<KeyBySpec>,
    /// `lowest_watermark`: with several input channels, read the one with
    /// the lowest watermark first (deterministic replays).
    #[serde(default)]
    pub input_selection: crate::runtime::graph::InputSelection,
    /// The kind's keys, in the order the spec writes them.
    #[serde(flatten)]
    pub kind: serde_yaml::Mapping,
}

/// An operator's `input`: a node (`orders`, `w.late`), or for a kind with
/// named inputs one node per name (`{ left: orders, right: payments }`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum InputSpec {
    One(String),
    Named(BTreeMap<String, String>),
}

/// One JSON pointer, or several for a composite key; for an operator with
/// named inputs, also one key per input (`{ left: /a, right: /b }`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum KeyBySpec {
    One(String),
    Many(Vec<String>),
    PerInput(BTreeMap<String, KeyBySpec>),
}

impl KeyBySpec {
    /// The pointers of one key (none for a key per input).
    pub fn pointers(&self) -> Vec<&str> {
        match self {
            KeyBySpec::One(p) => vec![p.as_str()],
            KeyBySpec::Many(ps) => ps.iter().map(String::as_str).collect(),
            KeyBySpec::PerInput(_) => Vec::new(),
        }
    }
}

/// A sink node: `input`/`inputs` plus a connector.
#[derive(Debug, Deserialize)]
pub struct SinkSpec {
    pub uid: String,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// `false` gives the sink a task of its own where it could share its
    /// input's (as an operator's `chain`): its writes then run beside the
    /// operator that produces them instead of after it on one thread.
    #[serde(default = "yes")]
    pub chain: bool,
    #[serde(flatten)]
    pub connector: ConnectorSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_spec() {
        let yaml = r#"
name: t
parallelism: 2
buffer_timeout: 50ms
wasm: { memory_limit: 32MiB, call_timeout: 2s }
sources:
  - uid: orders
    type: file
    path: in.jsonl
    event_time:
      timestamp: /event_ts
      watermark: { max_out_of_orderness: 5s, emit: per_event }
      idleness: 1m
operators:
  - uid: usd
    input: orders
    wasm: { module: usd.wasm, config: { min_amount: 100 }, grants: { clock: true } }
  - uid: w
    input: usd
    key_by: /customer_id
    window: { type: sliding, size: 10m, slide: 1m }
    allowed_lateness: 2000
    aggregate:
      native:
        - { fn: count }
        - { fn: sum, field: /amount, as: total }
sinks:
  - { uid: out, input: w, type: stdout }
dead_letter: { type: file, path: dlq.jsonl }
"#;
        let s: Spec = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(s.parallelism, 2);
        assert_eq!(s.buffer_timeout.0, Duration::from_millis(50));
        assert_eq!(s.wasm.memory_limit, ByteSize(32 << 20));
        assert_eq!(s.state.rocksdb_write_buffer, ByteSize(4 << 20));
        let et = s.sources[0].event_time.as_ref().unwrap();
        assert_eq!(et.watermark.emit, WatermarkEmit::PerEvent);
        assert_eq!(et.watermark.max_out_of_orderness.millis(), 5000);
        assert_eq!(s.sources[0].connector.kind, "file");
        assert!(s.sources[0].connector.options.contains_key("path"));
        let w = &s.operators[1];
        let keys: Vec<&str> = w.kind.keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(keys, ["window", "allowed_lateness", "aggregate"]);
        assert_eq!(w.key_by.as_ref().unwrap().pointers(), ["/customer_id"]);
        assert!(s.operators[0].kind.contains_key("wasm"));
        assert_eq!(s.dead_letter.unwrap().kind, "file");
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let e =
            serde_yaml::from_str::<Spec>("sources: []\nsinks: []\nparalelism: 2\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `paralelism`"), "{e}");
        let e = serde_yaml::from_str::<OperatorSpec>("uid: a\nparallelism: many\n").unwrap_err();
        assert!(e.to_string().contains("parallelism"), "{e}");
        assert!(
            Dur::parse("5 parsecs")
                .unwrap_err()
                .contains("not a duration")
        );
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert!(ByteSize::parse("1 lightyear").is_err());
    }
}
