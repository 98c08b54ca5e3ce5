//! The contract between `sluice sql` and the modules that hold its
//! user-defined functions (`CREATE FUNCTION … LANGUAGE WASM`). The `sql`
//! module calls functions through it; the `wasm` module implements it; the
//! planner, above both, hands one to the other. It sits here so that neither
//! knows the other, and speaks in flat columns (as the WIT `sql-function`
//! interface does) rather than SQL values, which only `sql` knows.

use super::ModuleRef;
use super::aggregate::ByteList;
use super::batch::Span;
use crate::error::RuntimeError;
use async_trait::async_trait;
use std::sync::Arc;

/// One function a module offers, as the module declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub aggregate: bool,
    /// Parameter types, as Flink SQL writes them (`DECIMAL(10, 2)`).
    pub params: Vec<String>,
    pub returns: String,
}

/// One SQL value per row, laid out as the WIT `column` says: a NULL flag
/// per row, fixed-width little-endian values in `data` (or, for text,
/// `spans` into it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Column {
    pub nulls: Vec<u8>,
    pub data: Vec<u8>,
    pub spans: Vec<Span>,
}

impl Column {
    pub fn clear(&mut self) {
        self.nulls.clear();
        self.data.clear();
        self.spans.clear();
    }

    pub fn len(&self) -> usize {
        self.nulls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nulls.is_empty()
    }
}

/// A row (or an input of `accumulate`) a function could not take: its
/// index and the function's message.
pub type RowError = (u32, String);

/// The functions of one module, as the planner found them.
pub trait FunctionsFactory: Send + Sync {
    /// What the module offers; a function is named by its index here.
    fn signatures(&self) -> &[Signature];

    /// An instance for one operator (a subtask's `sql` operator or window).
    fn create(&self) -> Box<dyn Functions>;

    /// The module file.
    fn module(&self) -> ModuleRef<'_>;
}

/// An instance of a module's functions. Calls are batched by argument
/// columns; a row that fails (or makes the module trap) costs only itself.
#[async_trait]
pub trait Functions: Send {
    /// Scalar function `f` on `rows` rows: the result column and the rows
    /// that failed (their values are NULL in the column).
    async fn call(
        &mut self,
        f: u32,
        args: &[Column],
        rows: usize,
    ) -> Result<(Column, Vec<RowError>), RuntimeError>;

    /// The accumulator of an empty group, for aggregate `f`.
    async fn create_accumulator(&mut self, f: u32) -> Result<Vec<u8>, RuntimeError>;

    /// Adds row `i` of `args` to `accs[targets[i]]`; the rows that could
    /// not be added (their accumulators unchanged).
    async fn accumulate(
        &mut self,
        f: u32,
        accs: &mut ByteList,
        args: &[Column],
        targets: &[u32],
    ) -> Result<Vec<RowError>, RuntimeError>;

    /// One accumulator per group of `accs`.
    async fn merge(
        &mut self,
        f: u32,
        accs: &ByteList,
        groups: &[Span],
    ) -> Result<ByteList, RuntimeError>;

    /// The value of each accumulator.
    async fn get_value(&mut self, f: u32, accs: &ByteList) -> Result<Column, RuntimeError>;
}

/// The modules a `sql` operator or window calls, in the order the spec
/// lists them.
pub type FunctionModules = Vec<Arc<dyn FunctionsFactory>>;
