//! The contract between a window and the aggregate function it runs.
//!
//! An [`Aggregator`] never owns state: the window operator keeps one
//! accumulator (bytes) per key and pane or session, and hands the aggregator
//! batches of them to update, merge and read. Two modules implement it: the
//! built-in functions in `window/aggregate.rs` and the Wasm aggregators in
//! `wasm/`. The contract sits here, below both, so that neither depends on
//! the other and a window's planning can ask for either.

use super::batch::Span;
use super::{Batch, ModuleRef, NodeInfo, Output};
use crate::error::RuntimeError;
use async_trait::async_trait;
use std::sync::Arc;

/// A built-in aggregate function (`fn:` in a spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NativeFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// One built-in function as a spec writes it: `{ fn: sum, field: /amount,
/// as: total }`.
#[derive(Debug, serde::Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct NativeAggSpec {
    #[serde(rename = "fn")]
    pub func: NativeFn,
    /// JSON pointer of the field (all but `count`, for which a field counts
    /// its non-null values where the kind allows it).
    #[serde(default)]
    pub field: Option<String>,
    /// Output field name; defaults to `count` or `<fn>_<field>`.
    #[serde(default, rename = "as")]
    pub name: Option<String>,
}

impl NativeAggSpec {
    /// The field's pointer and the output name.
    pub fn compile(&self) -> Result<(Option<crate::json::Pointer>, String), String> {
        let field = match (self.func, &self.field) {
            (NativeFn::Count, None) => None,
            (_, None) => return Err("this function needs a `field` (a JSON pointer)".into()),
            (_, Some(f)) => Some(crate::json::Pointer::parse(f)?),
        };
        let lower = format!("{:?}", self.func).to_lowercase();
        let default_name = match (self.func, &field) {
            (NativeFn::Count, None) => "count".to_owned(),
            (_, Some(p)) => format!("{lower}_{}", p.last_name().unwrap_or("value")),
            (_, None) => lower,
        };
        Ok((field, self.name.clone().unwrap_or(default_name)))
    }
}

/// Byte strings in one buffer, like the WIT `byte-list`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ByteList {
    pub data: Vec<u8>,
    pub spans: Vec<Span>,
}

impl ByteList {
    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.spans.push(Span {
            offset: self.data.len() as u32,
            len: bytes.len() as u32,
        });
        self.data.extend_from_slice(bytes);
    }

    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.spans[i].range()]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut [u8] {
        let r = self.spans[i].range();
        &mut self.data[r]
    }
}

#[async_trait]
pub trait Aggregator: Send {
    /// Prepares the function (instantiates a Wasm module).
    async fn open(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// The accumulator of an empty window.
    fn empty(&self) -> &[u8];

    /// Adds record `i` of `input` to accumulator `targets[i]`, in order.
    /// Records that cannot be added go to `out`'s dead-letter output.
    async fn add(
        &mut self,
        accs: &mut ByteList,
        input: &Batch,
        targets: &[u32],
        out: &mut Output,
    ) -> Result<(), RuntimeError>;

    /// One accumulator per group; a group is a range of indices into `accs`.
    async fn merge(&mut self, accs: &ByteList, groups: &[Span]) -> Result<ByteList, RuntimeError>;

    /// The result of each accumulator: a JSON object (its fields go into the
    /// window's output row) or any other JSON value (added as `result`).
    /// `windows[i]` is the window of `accs[i]` (a full-window function needs
    /// it; incremental aggregates do not).
    async fn results(
        &mut self,
        accs: &ByteList,
        windows: &[WindowRef<'_>],
    ) -> Result<ByteList, RuntimeError>;

    /// The function's in-place form, when it has one (see [`InPlace`]).
    fn in_place(&mut self) -> Option<&mut dyn InPlace> {
        None
    }

    /// Where to ask the sources feeding the window to find the members the
    /// function reads (see [`crate::runtime::batch::Members`]), for one
    /// whose factory [`asks_members`](AggregatorFactory::asks_members).
    fn ask_members_at(&mut self, request: Arc<crate::runtime::batch::MemberRequest>) {
        let _ = request;
    }
}

/// A function computed by the host whose accumulators all have the size of
/// [`Aggregator::empty`]: the window updates them where they lie, adding
/// each record as it comes and folding a window's panes straight from their
/// slots, instead of gathering copies into batches as a Wasm call needs.
/// Its results are the host's own JSON.
pub trait InPlace: Send {
    /// Adds one record to `acc`; the reason it cannot be added (the record
    /// then goes to the dead-letter output, `acc` unchanged).
    fn add_one(&mut self, acc: &mut [u8], record: &[u8]) -> Result<(), String>;

    /// Folds accumulator `other` into `acc`.
    fn fold(&self, acc: &mut [u8], other: &[u8]);
}

/// A window that fires: its key and bounds.
#[derive(Clone, Copy, Debug)]
pub struct WindowRef<'a> {
    pub key: &'a [u8],
    pub start: i64,
    pub end: i64,
}

/// Makes a window's aggregator, one per subtask.
pub trait AggregatorFactory: Send + Sync {
    fn create(&self, info: &Arc<NodeInfo>) -> Box<dyn Aggregator>;

    /// The Wasm module the aggregator runs, if any.
    fn module(&self) -> Option<ModuleRef<'_>> {
        None
    }

    /// Whether the function reads top-level members of the records that a
    /// JSON source could find for it (see
    /// [`OperatorFactory::asks_members`](crate::runtime::OperatorFactory::asks_members)).
    fn asks_members(&self) -> bool {
        false
    }
}
