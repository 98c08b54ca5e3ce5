//! The operator lifecycle and where an operator's output goes.
//!
//! Every node that processes records — a Wasm transform, a window, a sink —
//! implements [`Operator`]. The runtime calls `open` once, then
//! `process_batch` and `on_watermark` as messages arrive in order, and
//! `close` at the end of input (after the final watermark). When a
//! checkpoint barrier arrives, `snapshot` copies the operator's state (a
//! buffering operator has been flushed first); a restored job calls
//! `restore` after `open`. Only `process_batch` is required.
//!
//! An operator writes what it produces to an [`Output`]: the main output,
//! side outputs by port (a window's `late` records), and the dead-letter
//! output for records it cannot handle. The task then hands each batch to
//! the chained operators or channels behind that port.

use super::batch::{Batch, RecordRef};
use super::{NodeMetrics, Splits};
use crate::checkpoint::{Committer, RestorePoint};
use crate::error::RuntimeError;
use crate::json;
use crate::time::Clock;
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;

/// Port of the main output.
pub const MAIN_PORT: usize = 0;
/// Port of the dead-letter output, which every node has.
pub const DEAD_LETTER_PORT: usize = 1;
/// The first port of a node's own side outputs (a window's `late`).
pub const FIRST_SIDE_PORT: usize = 2;

#[async_trait]
pub trait Operator: Send {
    /// Prepares the operator (instantiates a Wasm module, opens a file).
    async fn open(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError>;

    /// A batch from logical input `input` (`1..`) of an operator with
    /// several inputs (input 0 arrives through [`Operator::process_batch`]).
    /// Its kind names the inputs ([`crate::runtime::kind::OperatorKind::inputs`]).
    async fn process_input(
        &mut self,
        input: usize,
        batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let _ = input;
        self.process_batch(batch, out).await
    }

    /// The event-time watermark advanced to `watermark`. The runtime passes
    /// the watermark on after this returns.
    async fn on_watermark(
        &mut self,
        _watermark: i64,
        _out: &mut Output,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// End of input: emit what is left.
    async fn close(&mut self, _out: &mut Output) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// A barrier arrived: everything before it has been processed. Returns
    /// the operator's state, copied (the pipeline goes on while it is
    /// written).
    async fn snapshot(
        &mut self,
        _barrier: crate::checkpoint::Barrier,
        _out: &mut Output,
    ) -> Result<crate::checkpoint::OperatorState, RuntimeError> {
        Ok(crate::checkpoint::OperatorState::default())
    }

    /// Takes back the state of a snapshot (after `open`, before any input).
    async fn restore(
        &mut self,
        _state: crate::checkpoint::RestoredState,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Checkpoint `id` is complete (its output is committed).
    fn notify_checkpoint_complete(&mut self, _id: u64) {}

    /// After `close`: a sink's last output, to commit when the job ends.
    fn take_final_committables(&mut self) -> Vec<serde_json::Value> {
        Vec::new()
    }

    /// Whether the operator collects input until [`Operator::flush`]. The
    /// task then does not pass watermarks on by itself: `flush` returns the
    /// watermark to pass on once its output is out.
    fn buffers(&self) -> bool {
        false
    }

    /// Whether a buffering operator gains from input collected over several
    /// channel items before [`Operator::flush`] when its input is
    /// backlogged: a keyed process function, whose per-call work per key
    /// (reading and writing the key's state) is then spread over more
    /// records. A transform does not: a call of a few thousand records
    /// costs it more per record than one of a thousand.
    fn takes_bursts(&self) -> bool {
        false
    }

    /// How soon the operator wants [`Operator::flush`] called even without
    /// input: its first processing-time timer, or (an async enricher) soon,
    /// while it has work under way whose results should leave.
    fn wakeup(&self) -> Option<std::time::Duration> {
        None
    }

    /// The end of a burst of input (one channel item, one source poll), for
    /// an operator that [`Operator::buffers`] or has a [`Operator::wakeup`]:
    /// process what was collected, emit what is ready. Returns the watermark
    /// to pass on, if one arrived since the last flush (buffering operators
    /// only).
    async fn flush(&mut self, _out: &mut Output) -> Result<Option<i64>, RuntimeError> {
        Ok(None)
    }
}

/// What a factory is given to make the operator of one subtask.
pub struct Subtask<'a> {
    pub index: u32,
    pub parallelism: u32,
    pub info: &'a Arc<NodeInfo>,
    pub clock: &'a Arc<dyn Clock>,
    /// The names of the node's side outputs (ports from
    /// [`FIRST_SIDE_PORT`] on).
    pub side_ports: &'a [String],
    /// For an operator that [`OperatorFactory::asks_members`] and is fed
    /// by JSON sources alone: where it asks them to find the members it
    /// reads.
    pub members: Option<&'a Arc<crate::runtime::batch::MemberRequest>>,
}

/// The module an operator runs.
#[derive(Clone, Copy, Debug)]
pub struct ModuleRef<'a> {
    pub path: &'a Path,
    pub sha256: &'a str,
}

/// Makes a node's operator, one per subtask. The planner builds one per
/// node, from the spec, with everything the operator needs already checked
/// and resolved; the runtime knows operators only through it.
#[async_trait]
pub trait OperatorFactory: Send + Sync {
    /// The kind of node, as plans and summaries name it (`window`, `sink`).
    fn kind(&self) -> &'static str;

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator>;

    /// Whether the operator reads top-level members of its input records
    /// that a JSON source feeding it could find as it checks them (see
    /// [`crate::runtime::batch::Members`]).
    fn asks_members(&self) -> bool {
        false
    }

    /// The members it asks for, when they are known before the job starts
    /// (a query's columns); an operator that learns them later (a Wasm
    /// transform, from its module) asks through [`Subtask::members`].
    fn known_members(&self) -> Option<&[Box<[u8]>]> {
        None
    }

    /// The Wasm module the operator runs, if any.
    fn module(&self) -> Option<ModuleRef<'_>> {
        None
    }

    /// Checks, before a job starts from `restore`, that the operator can take
    /// over the state its node (`uid`) has there; the error says why not.
    async fn check_restore(&self, _uid: &str, _restore: &RestorePoint) -> Result<(), String> {
        Ok(())
    }

    /// What the operator does with a changelog (records that update or
    /// delete rows of earlier ones): by default it takes only inserts, and
    /// the plan refuses to feed it a changelog.
    fn changelog(&self) -> ChangelogInput {
        ChangelogInput::Refused
    }

    /// A key its input must be partitioned by, when the operator has no
    /// `key_by` of its own: an upsert sink's primary key, so that the
    /// changes of one key reach one subtask, in order.
    fn input_key(&self) -> Option<super::keys::KeySelector> {
        None
    }

    /// Whether the operator's output is a changelog whatever its input.
    fn emits_changelog(&self) -> bool {
        false
    }

    /// What commits the operator's output when a checkpoint completes (a
    /// transactional sink's); `None`: output is visible as it is written.
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        None
    }
}

/// How an operator takes a changelog ([`OperatorFactory::changelog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangelogInput {
    /// Append-only: it would read a retraction as one more row.
    Refused,
    /// Each output record keeps the kind of the record it came from (a
    /// stateless map): its output is a changelog when its input is.
    Kept,
    /// It applies the changes (an upsert sink, a changelog aggregate).
    Applied,
}

/// What an operator knows about the node it runs for.
#[derive(Debug)]
pub struct NodeInfo {
    pub uid: Arc<str>,
    /// Whether the pipeline has a dead-letter sink.
    pub has_dead_letter: bool,
    pub splits: Arc<Splits>,
    pub metrics: Arc<NodeMetrics>,
    /// Whether the node's output may be a changelog (the plan follows
    /// changelogs from where they start): a node whose output is
    /// append-only must emit inserts only.
    pub changelog: bool,
}

impl NodeInfo {
    /// A record error, for when there is no dead-letter sink.
    pub fn bad_record(&self, record: RecordRef<'_>, message: &str) -> RuntimeError {
        RuntimeError::BadRecord {
            uid: self.uid.to_string(),
            origin: self.splits.describe(record.origin()),
            message: message.to_owned(),
        }
    }
}

/// Collects what an operator emits during one call.
#[derive(Debug)]
pub struct Output {
    info: Arc<NodeInfo>,
    items: Vec<(usize, Batch)>,
    dead: Batch,
    /// Watermarks to pass on, each after the first `n` items.
    watermarks: Vec<(usize, i64)>,
}

impl Output {
    pub fn new(info: Arc<NodeInfo>) -> Output {
        Output {
            info,
            items: Vec::new(),
            dead: Batch::default(),
            watermarks: Vec::new(),
        }
    }

    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// Emits to the main output.
    pub fn emit(&mut self, batch: Batch) {
        self.emit_to(MAIN_PORT, batch);
    }

    /// Emits to a port.
    pub fn emit_to(&mut self, port: usize, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        if port == MAIN_PORT {
            NodeMetrics::add(&self.info.metrics.records_out, batch.len() as u64);
        }
        self.items.push((port, batch));
    }

    /// Passes event-time watermark `t` on after everything emitted so far
    /// (and before what is emitted next): for an operator that
    /// [`buffers`](Operator::buffers) records across watermarks and keeps
    /// each watermark where it was among them.
    pub fn emit_watermark(&mut self, t: i64) {
        self.watermarks.push((self.items.len(), t));
    }

    /// The watermarks of [`Output::emit_watermark`], each with the number
    /// of items emitted before it; taken before [`Output::drain`].
    pub(crate) fn take_watermarks(&mut self) -> Vec<(usize, i64)> {
        std::mem::take(&mut self.watermarks)
    }

    /// Sets a record aside with the reason. Without a dead-letter sink this is
    /// an error that stops the job: nothing is dropped silently.
    pub fn dead_letter(
        &mut self,
        record: RecordRef<'_>,
        message: &str,
    ) -> Result<(), RuntimeError> {
        if !self.info.has_dead_letter {
            return Err(self.info.bad_record(record, message));
        }
        NodeMetrics::add(&self.info.metrics.dead_lettered, 1);
        let origin = self.info.splits.describe(record.origin());
        let mut v = Vec::with_capacity(record.value().len() + 128);
        v.extend_from_slice(b"{\"node\":");
        json::write_str(&mut v, self.info.uid.as_bytes());
        v.extend_from_slice(b",\"origin\":");
        json::write_str(&mut v, origin.as_bytes());
        v.extend_from_slice(b",\"error\":");
        json::write_str(&mut v, message.as_bytes());
        if let Some(k) = record.key() {
            write_bytes_field(&mut v, "key", k);
        }
        write_bytes_field(&mut v, "value", record.value());
        v.push(b'}');
        self.dead
            .push(None, &v, record.timestamp(), record.origin());
        Ok(())
    }

    /// Everything emitted since the last call, dead letters last.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (usize, Batch)> + '_ {
        if !self.dead.is_empty() {
            let dead = std::mem::take(&mut self.dead);
            self.items.push((DEAD_LETTER_PORT, dead));
        }
        self.items.drain(..)
    }
}

/// `,"name":"text"` for UTF-8 bytes, `,"name_base64":"..."` otherwise, so
/// that no byte of a rejected record is lost.
fn write_bytes_field(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    out.push(b',');
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            json::write_str(out, name.as_bytes());
            out.push(b':');
            json::write_str(out, s.as_bytes());
        }
        Err(_) => {
            json::write_str(out, format!("{name}_base64").as_bytes());
            out.push(b':');
            out.push(b'"');
            base64_into(out, bytes);
            out.push(b'"');
        }
    }
}

fn base64_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Origin, PositionKind};

    fn info(dead: bool) -> Arc<NodeInfo> {
        let splits = Arc::new(Splits::default());
        splits.register("in.jsonl".into(), PositionKind::Line);
        Arc::new(NodeInfo {
            uid: "parse".into(),
            has_dead_letter: dead,
            splits,
            metrics: Arc::new(crate::runtime::NodeMetrics::new(1)),
            changelog: false,
        })
    }

    #[test]
    fn dead_letters_keep_the_record_and_say_where_it_came_from() {
        let mut b = Batch::default();
        b.push(
            None,
            b"{oops",
            None,
            Origin {
                split: 0,
                position: 3,
            },
        );
        b.push(
            Some(b"k"),
            &[0xff, 0x00, 0x41],
            None,
            Origin {
                split: 0,
                position: 4,
            },
        );
        let mut out = Output::new(info(true));
        out.dead_letter(b.get(0), "not JSON").unwrap();
        out.dead_letter(b.get(1), "binary").unwrap();
        let items: Vec<_> = out.drain().collect();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, DEAD_LETTER_PORT);
        let d = &items[0].1;
        let first: serde_json::Value = serde_json::from_slice(d.get(0).value()).unwrap();
        assert_eq!(first["node"], "parse");
        assert_eq!(first["origin"], "in.jsonl:3");
        assert_eq!(first["error"], "not JSON");
        assert_eq!(first["value"], "{oops");
        let second: serde_json::Value = serde_json::from_slice(d.get(1).value()).unwrap();
        assert_eq!(second["value_base64"], "/wBB");
        assert_eq!(second["key"], "k");
    }

    #[test]
    fn without_a_dead_letter_sink_a_bad_record_is_an_error() {
        let mut b = Batch::default();
        b.push(
            None,
            b"{oops",
            None,
            Origin {
                split: 0,
                position: 9,
            },
        );
        let mut out = Output::new(info(false));
        let e = out
            .dead_letter(b.get(0), "not JSON")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`parse`") && e.contains("in.jsonl:9") && e.contains("dead_letter"),
            "{e}"
        );
    }
}
