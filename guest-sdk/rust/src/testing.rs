//! Running an operator natively, for its unit tests.
//!
//! These functions drive your [`Transform`] or [`Aggregate`] through the same
//! code that runs inside the component (batching, rollback of failed records,
//! JSON accumulators), without a Wasm runtime, so `cargo test` on your
//! operator's crate works on the machine you develop on:
//!
//! ```
//! use sluice_guest::testing::run_transform;
//! use sluice_guest::{Config, Error, Output, Record, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn open(_: Config) -> Result<Self, Error> {
//!         Ok(Upper)
//!     }
//!     fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
//!         out.emit_value(record.value_str()?.to_uppercase().as_bytes());
//!         Ok(())
//!     }
//! }
//!
//! let mut op = Upper::open(Config::new("null")).unwrap();
//! let run = run_transform(&mut op, &["a", "b"]);
//! assert_eq!(run.values(), ["A", "B"]);
//! assert!(run.errors.is_empty());
//! ```
//!
//! Log lines go to standard error.

use crate::aggregate;
use crate::batch::{self, Batch, BatchBuilder, ByteListBuilder};
use crate::projection::Projection;
use crate::transform::{self, Sink, TransformState};
use crate::{Aggregate, OutRecord, Transform};

/// A record a transform emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// The index of the input record it was made from.
    pub origin: usize,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub value: Vec<u8>,
    /// The record's event time.
    pub timestamp: Option<i64>,
    /// The record's headers, `(name, value)`.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The record's changelog kind.
    pub kind: crate::RowKind,
}

impl Emitted {
    /// The value as text; panics if it is not UTF-8.
    pub fn value_str(&self) -> &str {
        std::str::from_utf8(&self.value).expect("emitted value is not UTF-8")
    }
}

/// What a transform did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransformRun {
    /// The emitted records, in order.
    pub records: Vec<Emitted>,
    /// The failed input records: `(index, message)`.
    pub errors: Vec<(usize, String)>,
}

impl TransformRun {
    /// The emitted values as text.
    pub fn values(&self) -> Vec<&str> {
        self.records.iter().map(Emitted::value_str).collect()
    }
}

/// Runs `op` over one batch of records with these values (no key, timestamp
/// or headers).
pub fn run_transform<T: Transform>(op: &mut T, values: &[&str]) -> TransformRun {
    let records: Vec<OutRecord<'_>> = values
        .iter()
        .map(|v| OutRecord {
            value: v.as_bytes(),
            ..OutRecord::default()
        })
        .collect();
    run_transform_records(op, &records)
}

/// Runs `op` over one batch of these records (an [`OutRecord`] describes each
/// input record here).
pub fn run_transform_records<T: Transform>(op: &mut T, records: &[OutRecord<'_>]) -> TransformRun {
    let input = batch_of(records);
    let mut sink = Sink::default();
    let mut errors = Vec::new();
    transform::run(Some(op), &input, &Projection::new(), &mut sink, &mut errors);
    let out = sink.batch.finish();
    let bytes = |span| batch::slice(&out.data, span).to_vec();
    TransformRun {
        records: out
            .records
            .iter()
            .zip(&sink.origins)
            .map(|(r, &origin)| Emitted {
                origin: origin as usize,
                key: r.key.map(bytes),
                value: bytes(r.value),
                timestamp: r.timestamp,
                headers: out.headers[r.headers_start as usize..][..r.headers_len as usize]
                    .iter()
                    .map(|h| (bytes(h.name), bytes(h.value)))
                    .collect(),
                kind: r.kind,
            })
            .collect(),
        errors: errors
            .into_iter()
            .map(|e| (e.index as usize, e.message))
            .collect(),
    }
}

/// A transform driven natively the way its component runs it: each call to
/// [`process`](NativeTransform::process) is the component's `process`
/// export, the same code (batch loop, output buffers reused from the last
/// input, rollback of failed records), without a Wasm runtime in between.
/// For measuring an operator's own cost beside its Wasm build.
///
/// ```
/// use sluice_guest::testing::{InputBatch, NativeTransform};
/// use sluice_guest::{Config, Error, Output, Record, Transform};
///
/// struct Keep;
///
/// impl Transform for Keep {
///     fn open(_: Config) -> Result<Self, Error> {
///         Ok(Keep)
///     }
///     fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
///         if record.value() != b"drop" {
///             out.forward();
///         }
///         Ok(())
///     }
/// }
///
/// let op = NativeTransform::<Keep>::open("null").unwrap();
/// let input = InputBatch::of_values([&b"a"[..], b"drop", b"b"]);
/// let out = op.process(&input);
/// assert_eq!(out.values().collect::<Vec<_>>(), [&b"a"[..], b"b"]);
/// assert_eq!(out.errors(), 0);
/// ```
pub struct NativeTransform<T: Transform> {
    state: TransformState<T>,
}

impl<T: Transform> NativeTransform<T> {
    /// Opens the operator with this config (JSON text), as the component's
    /// `open` export does.
    pub fn open(config: &str) -> Result<Self, String> {
        let state = TransformState::new();
        state.open(config.to_owned())?;
        Ok(NativeTransform { state })
    }

    /// One call: `input` is copied in (as the host copies a batch into the
    /// component's memory) and processed.
    pub fn process(&self, input: &InputBatch) -> OutputBatch {
        OutputBatch(self.state.process(input.0.clone()))
    }
}

/// A batch of input records for [`NativeTransform::process`].
#[derive(Clone)]
pub struct InputBatch(Batch);

impl InputBatch {
    /// A batch of records with these values (no key, timestamp or headers).
    pub fn of_values<'v>(values: impl IntoIterator<Item = &'v [u8]>) -> Self {
        let mut b = BatchBuilder::default();
        for value in values {
            let value = b.push_bytes(value);
            b.push_record(None, value, None, [], crate::RowKind::Insert);
        }
        InputBatch(b.finish())
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.0.records.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.0.records.is_empty()
    }
}

/// What one [`NativeTransform::process`] call returned.
pub struct OutputBatch(
    crate::bindings::transform::exports::sluice::operator::transform::TransformOutput,
);

impl OutputBatch {
    /// The emitted records' values, in order.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        let out = &self.0.records;
        out.records.iter().map(|r| batch::slice(&out.data, r.value))
    }

    /// The number of emitted records.
    pub fn len(&self) -> usize {
        self.0.records.records.len()
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.0.records.records.is_empty()
    }

    /// The number of input records that failed.
    pub fn errors(&self) -> usize {
        self.0.errors.len()
    }
}

/// What an aggregate function made of a window.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateRun {
    /// The window's result, as the host would receive it.
    pub result: serde_json::Value,
    /// The accumulator at the end, as the host would store it.
    pub accumulator: serde_json::Value,
    /// The records that could not be added: `(index, message)`.
    pub errors: Vec<(usize, String)>,
}

/// Adds one batch of records with these values to a new accumulator, as the
/// host does for one window, and gets the result. The accumulator goes
/// through its JSON encoding in between, as in the component.
pub fn run_aggregate<A: Aggregate>(op: &A, values: &[&str]) -> AggregateRun {
    let records: Vec<OutRecord<'_>> = values
        .iter()
        .map(|v| OutRecord {
            value: v.as_bytes(),
            ..OutRecord::default()
        })
        .collect();
    let input = batch_of(&records);
    let mut accs = ByteListBuilder::with_capacity(1, 0);
    accs.push_json(&op.create())
        .expect("the accumulator does not encode as JSON");
    let targets = vec![0; values.len()];
    let (accs, errors) = aggregate::add(op, accs.finish(), &input, &Projection::new(), &targets);
    let results = aggregate::get_result(op, &accs).expect("get-result failed");
    let json = |list: &crate::batch::ByteList| {
        serde_json::from_slice(batch::slice(&list.data, list.spans[0])).expect("not JSON")
    };
    AggregateRun {
        result: json(&results),
        accumulator: json(&accs),
        errors: errors
            .into_iter()
            .map(|e| (e.index as usize, e.message))
            .collect(),
    }
}

fn batch_of(records: &[OutRecord<'_>]) -> Batch {
    let mut b = BatchBuilder::default();
    for r in records {
        let value = b.push_bytes(r.value);
        b.push_record(r.key, value, r.timestamp, r.headers.iter().copied(), r.kind);
    }
    b.finish()
}

/// A [`Setup`](crate::Setup) to call a [`KeyedProcess`](crate::KeyedProcess)'s
/// `open` with in a native test: states are declared in a per-thread store.
pub fn setup() -> crate::Setup {
    crate::Setup::new()
}
