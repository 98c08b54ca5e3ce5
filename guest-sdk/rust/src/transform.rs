//! [`Transform`]: map, filter and flat-map operators, and what runs them.
//!
//! An operator sees one input record at a time and writes zero or more output
//! records to an [`Output`]. The SDK does the batching: for each batch the
//! host sends it calls [`Transform::process`] once per record, in order, and
//! appends everything emitted to one flat output batch. This module owns that
//! loop ([`run`]) and the per-instance state behind `export_transform!`
//! ([`TransformState`]); it does not know about the Wasm ABI.

use std::cell::RefCell;

use serde::Serialize;

use crate::batch::{Batch, BatchBuilder, Mark, RecordError, RowKind, Span};
use crate::bindings::transform::exports::sluice::operator::transform::TransformOutput;
use crate::projection::Projection;
use crate::{Config, Error, Record};

/// The message of every record sent to an operator whose `open` has not
/// succeeded.
pub(crate) const NOT_OPENED: &str = "operator not opened";

/// A map, filter or flat-map operator.
///
/// Implement it and export the type with [`export_transform!`](crate::export_transform):
///
/// ```
/// use sluice_guest::{Config, Error, Output, Record, Transform};
///
/// /// Keeps records whose value mentions a word from the config.
/// struct Grep {
///     word: String,
/// }
///
/// impl Transform for Grep {
///     fn open(config: Config) -> Result<Self, Error> {
///         let word: Option<String> = config.parse()?;
///         Ok(Grep { word: word.ok_or("config must be a string: the word to keep")? })
///     }
///
///     fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
///         if record.value_str()?.contains(&self.word) {
///             out.forward();
///         }
///         Ok(())
///     }
/// }
///
/// sluice_guest::export_transform!(Grep);
/// ```
///
/// * Filter: emit nothing for the records you drop.
/// * Map: emit one record ([`Output::emit_json`] builds it from a value).
/// * Flat-map: emit several.
///
/// Returning an `Err` from `process` sends *that input record* to the
/// pipeline's dead-letter sink with your message; anything already emitted for
/// it is discarded, and the batch goes on with the next record. Panics are not
/// contained: a panic kills the instance, and the host fails or restarts the
/// job, so keep them for bugs.
pub trait Transform: Sized + 'static {
    /// Builds the operator from its config, once per instance before any
    /// record. An error stops the job with its message.
    fn open(config: Config) -> Result<Self, Error>;

    /// Handles one input record, emitting any number of output records.
    fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error>;
}

/// A record to emit with [`Output::emit`], every field chosen by you.
///
/// `Default` gives an insert with an empty value and no key, timestamp or headers, so:
///
/// ```
/// # use sluice_guest::{OutRecord, Record, Output};
/// # fn f(record: &Record<'_>, out: &mut Output<'_>) {
/// out.emit(OutRecord {
///     key: Some(b"c-1"),
///     value: b"{}",
///     timestamp: record.timestamp(),
///     ..OutRecord::default()
/// });
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OutRecord<'a> {
    /// The record's key; `None` for none.
    pub key: Option<&'a [u8]>,
    /// The record's value.
    pub value: &'a [u8],
    /// Event time in epoch milliseconds; `None` for none (not "the input's":
    /// pass `record.timestamp()` to keep it).
    pub timestamp: Option<i64>,
    /// Headers as `(name, value)`.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// The record's changelog kind; `RowKind::Insert` by default (not "the
    /// input's": pass `record.kind()` to keep it).
    pub kind: RowKind,
}

/// Where a [`Transform`] emits the records it makes from the current input
/// record.
///
/// [`emit_json`](Output::emit_json), [`emit_value`](Output::emit_value) and
/// [`forward`](Output::forward) give the new record the input's key,
/// timestamp, headers and changelog kind (a map of a changelog stays one:
/// a delete of a row maps to the delete of the mapped row); [`emit`](Output::emit)
/// sets them all. Every record
/// is written straight into the output batch: emitting does not allocate.
pub struct Output<'a> {
    sink: &'a mut Sink,
    input: Record<'a>,
    origin: u32,
}

impl Output<'_> {
    /// Emits `value` encoded as JSON, with the input's key, timestamp,
    /// headers and kind.
    ///
    /// Fails only if `value` cannot be JSON (a map with non-string keys, a
    /// failing `Serialize` impl); nothing is emitted then.
    pub fn emit_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let value = self.sink.batch.push_json_bytes(value)?;
        self.push_like_input(value);
        Ok(())
    }

    /// Emits a JSON object written member by member, with the input's key,
    /// timestamp, headers and kind: the fast way to build an output record
    /// (no `Serialize` impl in between; the text is what
    /// [`emit_json`](Output::emit_json) would write for the same members).
    ///
    /// ```
    /// # use sluice_guest::{Error, Output};
    /// # fn f(out: &mut Output<'_>) -> Result<(), Error> {
    /// out.emit_object(|o| {
    ///     o.str("order_id", "o-1").f64("amount_usd", 151.272);
    ///     Ok(())
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// When `write` fails, nothing is emitted and its error is returned.
    pub fn emit_object(
        &mut self,
        write: impl FnOnce(&mut crate::json::ObjectWriter<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = crate::json::ObjectWriter::append(&mut self.sink.batch.data, write)?;
        let value = self.sink.batch.span_since(start);
        self.push_like_input(value);
        Ok(())
    }

    /// Emits these bytes as the value, with the input's key, timestamp,
    /// headers and kind.
    pub fn emit_value(&mut self, value: &[u8]) {
        let value = self.sink.batch.push_bytes(value);
        self.push_like_input(value);
    }

    /// Emits the input record unchanged.
    pub fn forward(&mut self) {
        self.emit_value(self.input.value());
    }

    /// Emits a record built entirely from `record`.
    pub fn emit(&mut self, record: OutRecord<'_>) {
        let batch = &mut self.sink.batch;
        let value = batch.push_bytes(record.value);
        batch.push_record(
            record.key,
            value,
            record.timestamp,
            record.headers.iter().copied(),
            record.kind,
        );
        self.sink.origins.push(self.origin);
    }

    fn push_like_input(&mut self, value: Span) {
        let input = self.input;
        self.sink.batch.push_record(
            input.key(),
            value,
            input.timestamp(),
            input.headers(),
            input.kind(),
        );
        self.sink.origins.push(self.origin);
    }
}

/// An output batch under construction, with each record's origin.
#[derive(Default)]
pub(crate) struct Sink {
    pub(crate) batch: BatchBuilder,
    pub(crate) origins: Vec<u32>,
}

impl Sink {
    fn mark(&self) -> (Mark, usize) {
        (self.batch.mark(), self.origins.len())
    }

    fn rollback(&mut self, (mark, origins): (Mark, usize)) {
        self.batch.rollback(mark);
        self.origins.truncate(origins);
    }
}

/// Runs `op` over every record of `input`, appending to `sink` and `errors`.
///
/// `None` (an operator that was never opened) fails every record.
pub(crate) fn run<T: Transform>(
    op: Option<&mut T>,
    input: &Batch,
    projection: &Projection,
    sink: &mut Sink,
    errors: &mut Vec<RecordError>,
) {
    let Some(op) = op else {
        errors.extend((0..input.records.len()).map(|i| RecordError {
            index: crate::batch::to_u32(i),
            message: NOT_OPENED.to_owned(),
        }));
        return;
    };
    for i in 0..input.records.len() {
        let record = Record::projected(input, i, projection);
        let index = crate::batch::to_u32(i);
        let mark = sink.mark();
        let mut out = Output {
            sink: &mut *sink,
            input: record,
            origin: index,
        };
        if let Err(e) = op.process(&record, &mut out) {
            sink.rollback(mark);
            errors.push(RecordError {
                index,
                message: e.to_string(),
            });
        }
    }
}

/// One instance's transform operator, behind the exports of
/// `export_transform!`.
///
/// The macro keeps one of these per component instance in a `thread_local`
/// (a plain static on single-threaded Wasm).
#[doc(hidden)]
pub struct TransformState<T> {
    inner: RefCell<Inner<T>>,
}

struct Inner<T> {
    op: Option<T>,
    /// The members the host finds in each record (see [`crate::projection`]).
    projection: Projection,
    /// The last input batch's buffers, to build the next output in.
    spare: BatchBuilder,
}

impl<T: Transform> TransformState<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        TransformState {
            inner: RefCell::new(Inner {
                op: None,
                projection: Projection::new(),
                spare: BatchBuilder {
                    data: Vec::new(),
                    records: Vec::new(),
                    headers: Vec::new(),
                },
            }),
        }
    }

    /// The `open` export.
    pub fn open(&self, config: String) -> Result<(), String> {
        let mut inner = self.inner.borrow_mut();
        // Drop a previous instance before building the next.
        inner.op = None;
        inner.op = Some(T::open(Config::new(config)).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// The `process` export.
    pub fn process(&self, input: Batch) -> TransformOutput {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let mut sink = Sink {
            batch: inner.spare.take_sized_for(&input),
            origins: Vec::with_capacity(input.records.len()),
        };
        let mut errors = Vec::new();
        let projection = &mut inner.projection;
        projection.begin(input.records.len(), crate::projection::host_found);
        run(
            inner.op.as_mut(),
            &input,
            projection,
            &mut sink,
            &mut errors,
        );
        projection.end(crate::projection::host_project);
        inner.spare.recycle(input);
        TransformOutput {
            records: sink.batch.finish(),
            origins: sink.origins,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::values;
    use crate::batch::{BatchBuilder, slice};

    /// Value → what the operator does with it.
    struct Scripted;

    impl Transform for Scripted {
        fn open(config: Config) -> Result<Self, Error> {
            match config.raw() {
                "\"fail\"" => Err("bad config".into()),
                _ => Ok(Scripted),
            }
        }

        fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
            match record.value_str()? {
                "drop" => {}
                "twice" => {
                    out.forward();
                    out.forward();
                }
                // Emits, then fails: the emitted records must be rolled back.
                "emit-then-fail" => {
                    out.emit_value(b"partial");
                    out.emit(OutRecord {
                        key: Some(b"k"),
                        value: b"partial2",
                        timestamp: None,
                        headers: &[(b"h", b"v")],
                        kind: RowKind::Insert,
                    });
                    return Err(Error::new("failed after emitting"));
                }
                "json" => out.emit_json(&serde_json::json!({"n": 1, "s": "x"}))?,
                "custom" => out.emit(OutRecord {
                    key: None,
                    value: b"c",
                    timestamp: Some(42),
                    headers: &[(b"a", b"1"), (b"b", b"2")],
                    kind: RowKind::Delete,
                }),
                other => out.emit_value(format!("<{other}>").as_bytes()),
            }
            Ok(())
        }
    }

    fn run_values(input: &Batch) -> (Batch, Vec<u32>, Vec<(u32, String)>) {
        let mut sink = Sink::default();
        let mut errors = Vec::new();
        run(
            Some(&mut Scripted),
            input,
            &Projection::new(),
            &mut sink,
            &mut errors,
        );
        let errors = errors.into_iter().map(|e| (e.index, e.message)).collect();
        (sink.batch.finish(), sink.origins, errors)
    }

    fn out_values(batch: &Batch) -> Vec<&str> {
        batch
            .records
            .iter()
            .map(|r| std::str::from_utf8(slice(&batch.data, r.value)).unwrap())
            .collect()
    }

    #[test]
    fn origins_follow_inputs_through_filter_and_flat_map() {
        let input = values(&["a", "drop", "twice", "b"]);
        let (out, origins, errors) = run_values(&input);
        assert_eq!(out_values(&out), ["<a>", "twice", "twice", "<b>"]);
        assert_eq!(origins, [0, 2, 2, 3]);
        assert!(errors.is_empty());
    }

    #[test]
    fn a_failed_record_is_rolled_back_and_reported() {
        let input = values(&["a", "emit-then-fail", "b"]);
        let (out, origins, errors) = run_values(&input);
        assert_eq!(out_values(&out), ["<a>", "<b>"]);
        assert_eq!(origins, [0, 2]);
        assert_eq!(errors, [(1, "failed after emitting".to_owned())]);
        // Nothing of the rolled-back records is left in the buffers.
        assert_eq!(out.data, b"<a><b>");
        assert!(out.headers.is_empty());
    }

    #[test]
    fn user_errors_from_question_mark_carry_the_message() {
        let mut b = BatchBuilder::default();
        b.push(None, b"\xff", None, []);
        let (out, origins, errors) = run_values(&b.finish());
        assert!(out.records.is_empty() && origins.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].1.contains("not UTF-8"), "{errors:?}");
    }

    #[test]
    fn emitted_records_copy_key_timestamp_and_headers_from_the_input() {
        let mut b = BatchBuilder::default();
        b.push(Some(b"key"), b"json", Some(99), [(&b"h"[..], &b"v"[..])]);
        b.push(Some(b"key2"), b"x", None, []);
        let (out, _, errors) = run_values(&b.finish());
        assert!(errors.is_empty());
        assert_eq!(out_values(&out), [r#"{"n":1,"s":"x"}"#, "<x>"]);
        let r0 = out.records[0];
        assert_eq!(slice(&out.data, r0.key.unwrap()), b"key");
        assert_eq!(r0.timestamp, Some(99));
        assert_eq!((r0.headers_start, r0.headers_len), (0, 1));
        assert_eq!(slice(&out.data, out.headers[0].name), b"h");
        assert_eq!(slice(&out.data, out.headers[0].value), b"v");
        let r1 = out.records[1];
        assert_eq!(slice(&out.data, r1.key.unwrap()), b"key2");
        assert_eq!(r1.timestamp, None);
        assert_eq!((r1.headers_start, r1.headers_len), (1, 0));
    }

    #[test]
    fn forward_is_the_input_unchanged() {
        let mut b = BatchBuilder::default();
        b.push(Some(b"k"), b"twice", Some(5), [(&b"n"[..], &b"v"[..])]);
        let (out, _, _) = run_values(&b.finish());
        assert_eq!(out.records.len(), 2);
        for r in &out.records {
            assert_eq!(slice(&out.data, r.value), b"twice");
            assert_eq!(slice(&out.data, r.key.unwrap()), b"k");
            assert_eq!(r.timestamp, Some(5));
            let h = out.headers[r.headers_start as usize];
            assert_eq!(r.headers_len, 1);
            assert_eq!(slice(&out.data, h.name), b"n");
        }
    }

    #[test]
    fn emit_sets_every_field() {
        let mut b = BatchBuilder::default();
        b.push(
            Some(b"input-key"),
            b"custom",
            Some(7),
            [(&b"x"[..], &b"y"[..])],
        );
        let (out, origins, _) = run_values(&b.finish());
        assert_eq!(origins, [0]);
        let r = out.records[0];
        assert!(r.key.is_none());
        assert_eq!(r.timestamp, Some(42));
        assert_eq!(r.kind, RowKind::Delete);
        let headers: Vec<_> = out.headers[r.headers_start as usize..][..r.headers_len as usize]
            .iter()
            .map(|h| (slice(&out.data, h.name), slice(&out.data, h.value)))
            .collect();
        assert_eq!(headers, [(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"2"[..])]);
    }

    #[test]
    fn a_map_of_a_changelog_keeps_each_record_kind() {
        let mut b = BatchBuilder::default();
        for (value, kind) in [
            ("a", RowKind::Insert),
            ("b", RowKind::UpdateBefore),
            ("json", RowKind::UpdateAfter),
            ("twice", RowKind::Delete),
        ] {
            let value = b.push_bytes(value.as_bytes());
            b.push_record(None, value, None, [], kind);
        }
        let input = b.finish();
        assert_eq!(Record::from_batch(&input, 1).kind(), RowKind::UpdateBefore);
        let (out, _, _) = run_values(&input);
        let kinds: Vec<_> = out.records.iter().map(|r| r.kind.short()).collect();
        assert_eq!(kinds, ["+I", "-U", "+U", "-D", "-D"]);
    }

    #[test]
    fn emit_json_failure_emits_nothing() {
        use std::collections::BTreeMap;
        struct BadJson;
        impl Transform for BadJson {
            fn open(_: Config) -> Result<Self, Error> {
                Ok(BadJson)
            }
            fn process(&mut self, _: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
                let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
                assert!(out.emit_json(&bad).is_err());
                out.emit_value(b"after");
                Ok(())
            }
        }
        let mut sink = Sink::default();
        let mut errors = Vec::new();
        run(
            Some(&mut BadJson),
            &values(&["x"]),
            &Projection::new(),
            &mut sink,
            &mut errors,
        );
        let out = sink.batch.finish();
        assert_eq!(out.data, b"after");
        assert_eq!(out_values(&out), ["after"]);
    }

    #[test]
    fn state_fails_every_record_until_opened() {
        let state = TransformState::<Scripted>::new();
        let out = state.process(values(&["a", "b"]));
        assert!(out.records.records.is_empty() && out.origins.is_empty());
        let errors: Vec<_> = out.errors.iter().map(|e| (e.index, &*e.message)).collect();
        assert_eq!(errors, [(0, NOT_OPENED), (1, NOT_OPENED)]);

        assert_eq!(state.open("\"fail\"".into()), Err("bad config".to_owned()));
        assert_eq!(state.process(values(&["a"])).errors.len(), 1);

        state.open("null".into()).unwrap();
        let out = state.process(values(&["a", "emit-then-fail"]));
        assert_eq!(out_values(&out.records), ["<a>"]);
        assert_eq!(out.origins, [0]);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 1);
    }

    #[test]
    fn state_output_is_independent_of_recycled_buffers() {
        let state = TransformState::<Scripted>::new();
        state.open("null".into()).unwrap();
        let first = state.process(values(&["a-long-value-to-grow-the-buffer", "b"]));
        let second = state.process(values(&["c"]));
        assert_eq!(
            out_values(&first.records),
            ["<a-long-value-to-grow-the-buffer>", "<b>"]
        );
        assert_eq!(out_values(&second.records), ["<c>"]);
        assert_eq!(second.records.data, b"<c>");
        assert_eq!(second.origins, [0]);
    }
}
