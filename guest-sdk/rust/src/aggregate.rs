//! [`Aggregate`]: incremental window aggregation over host-owned
//! accumulators, and what runs it.
//!
//! This is Flink's `AggregateFunction`. The host keeps one accumulator per
//! window and key, and hands batches of them to the guest only for the length
//! of a call, so an instance holds no state between calls and can be dropped
//! or restarted at any time.
//!
//! # Why accumulators are JSON
//!
//! The SDK encodes your `Acc` with serde_json whenever it crosses the
//! boundary. JSON is portable across languages (an operator rewritten in
//! another language can still read a savepoint), readable when you look into a
//! savepoint or a debugging dump, and tolerant of change: add a field with
//! `#[serde(default)]` and old accumulators still decode. The cost is small
//! next to the boundary itself, because only accumulators a call actually
//! touches are decoded and re-encoded; the others go back byte for byte.
//!
//! The [`add`], [`merge`] and [`get_result`] functions here are plain
//! functions over the WIT's plain structs; [`AggregateState`] is the
//! per-instance state behind `export_aggregate!`.

use std::cell::{Ref, RefCell};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::{self, Batch, ByteList, ByteListBuilder, RecordError, Span};
use crate::bindings::aggregate::exports::sluice::operator::aggregate::AddOutput;
use crate::projection::Projection;
use crate::transform::NOT_OPENED;
use crate::{Config, Error, Record};

/// A window aggregate function (Flink's `AggregateFunction`).
///
/// The host creates an accumulator per window (and key) with
/// [`create`](Aggregate::create), [`add`](Aggregate::add)s each of the
/// window's records to it, [`merge`](Aggregate::merge)s accumulators when
/// windows merge (session windows) or partial results meet, and asks for the
/// [`result`](Aggregate::result) when the window fires.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sluice_guest::{Aggregate, Config, Error, Record};
///
/// /// The largest `amount` in the window.
/// struct MaxAmount;
///
/// #[derive(Serialize, Deserialize)]
/// struct Max(Option<f64>);
///
/// impl Aggregate for MaxAmount {
///     type Acc = Max;
///     type Output = serde_json::Value;
///
///     fn open(_config: Config) -> Result<Self, Error> {
///         Ok(MaxAmount)
///     }
///     fn create(&self) -> Max {
///         Max(None)
///     }
///     fn add(&self, acc: &mut Max, record: &Record<'_>) -> Result<(), Error> {
///         #[derive(Deserialize)]
///         struct Order {
///             amount: f64,
///         }
///         let order: Order = record.json()?;
///         acc.0 = Some(acc.0.map_or(order.amount, |m| m.max(order.amount)));
///         Ok(())
///     }
///     fn merge(&self, acc: &mut Max, other: Max) {
///         if let Some(o) = other.0 {
///             acc.0 = Some(acc.0.map_or(o, |m| m.max(o)));
///         }
///     }
///     fn result(&self, acc: &Max) -> serde_json::Value {
///         serde_json::json!({ "max_amount": acc.0 })
///     }
/// }
///
/// sluice_guest::export_aggregate!(MaxAmount);
/// ```
///
/// With the JSON format, a result that is a JSON object has its fields added
/// to the window's output row; any other value is added as the field
/// `result`.
///
/// # Accumulators are JSON
///
/// Between calls the host stores each accumulator as the JSON encoding of
/// `Acc` (serde_json). JSON is portable across languages (an operator
/// rewritten in another language can still read a savepoint), readable when
/// you look into a savepoint, and tolerant of change: add a field with
/// `#[serde(default)]` and old accumulators still decode. A call decodes only
/// the accumulators its records touch and re-encodes only those it changed.
/// An accumulator that no longer decodes (say, after an incompatible change
/// to `Acc`) traps, naming the serde error.
///
/// # Errors
///
/// `add` returning an `Err` sends that record to the dead-letter sink and
/// leaves its accumulator exactly as it was before that record, even if `add`
/// had changed it before failing. That guarantee relies on `add` being
/// deterministic (the same accumulator and record always give the same
/// outcome), which replay after a failure needs anyway.
pub trait Aggregate: Sized + 'static {
    /// The accumulator: what the host stores per window, encoded as JSON.
    type Acc: Serialize + DeserializeOwned;
    /// The result of a window.
    type Output: Serialize;

    /// Builds the function from its config, once per instance before any other
    /// call. An error stops the job with its message.
    fn open(config: Config) -> Result<Self, Error>;

    /// The accumulator of an empty window.
    fn create(&self) -> Self::Acc;

    /// Adds a record to an accumulator.
    fn add(&self, acc: &mut Self::Acc, record: &Record<'_>) -> Result<(), Error>;

    /// Merges `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);

    /// The result of a window.
    fn result(&self, acc: &Self::Acc) -> Self::Output;
}

/// An accumulator during one `add` call.
enum Slot<A> {
    /// No record targets it (yet): it is still only its original bytes.
    Untouched,
    Live {
        acc: A,
        /// Some add succeeded, so it must be re-encoded.
        modified: bool,
        /// For an accumulator that has already had a failed add in this call:
        /// its encoding as of the last successful add, to restore from on the
        /// next failure.
        last_good: Option<Vec<u8>>,
    },
}

/// The `add` export: adds record `i` of `input` to accumulator `targets[i]`,
/// in input order.
///
/// Accumulators are decoded lazily, the first time a record targets them, and
/// only modified ones are re-encoded; the others are returned byte for byte.
///
/// A failed `add` must leave its accumulator as it was before that record.
/// The common case (no failures) pays nothing for this: there is no snapshot
/// before each add. On an accumulator's first failure in a call, the SDK
/// rebuilds its previous state by decoding the original bytes again and
/// replaying this call's earlier successful adds to it; from then on, that
/// accumulator (and only it) is encoded after each successful add, so a later
/// failure restores by decoding that copy. Total extra work is bounded by one
/// replay plus one encode per add for accumulators that saw a failure.
///
/// An accumulator that does not decode, a target out of range or a `targets`
/// list of the wrong length are bugs (the host passes accumulators back
/// unchanged), so they trap.
pub(crate) fn add<A: Aggregate>(
    op: &A,
    accs: ByteList,
    input: &Batch,
    projection: &Projection,
    targets: &[u32],
) -> (ByteList, Vec<RecordError>) {
    assert_eq!(
        targets.len(),
        input.records.len(),
        "sluice: add called with {} targets for {} records",
        targets.len(),
        input.records.len()
    );
    let n = accs.spans.len();
    let mut slots: Vec<Slot<A::Acc>> = Vec::with_capacity(n);
    slots.resize_with(n, || Slot::Untouched);
    let mut errors: Vec<RecordError> = Vec::new();

    for (i, &target) in targets.iter().enumerate() {
        let t = target as usize;
        let Some(slot) = slots.get_mut(t) else {
            panic!("sluice: record {i} targets accumulator {t}, but add was given {n}");
        };
        if let Slot::Untouched = slot {
            *slot = Slot::Live {
                acc: decode_or_trap(&accs, t),
                modified: false,
                last_good: None,
            };
        }
        let Slot::Live {
            acc,
            modified,
            last_good,
        } = slot
        else {
            unreachable!()
        };
        let record = Record::projected(input, i, projection);
        match op.add(acc, &record) {
            Ok(()) => {
                *modified = true;
                if let Some(copy) = last_good {
                    copy.clear();
                    encode_or_trap(copy, &*acc, t);
                }
            }
            Err(e) => {
                errors.push(RecordError {
                    index: batch::to_u32(i),
                    message: e.to_string(),
                });
                *acc = match last_good {
                    Some(copy) => decode_bytes_or_trap(copy, t),
                    None => {
                        let restored = replay(op, &accs, input, targets, i);
                        let mut copy = Vec::new();
                        encode_or_trap(&mut copy, &restored, t);
                        *last_good = Some(copy);
                        restored
                    }
                };
            }
        }
    }

    if !slots
        .iter()
        .any(|s| matches!(s, Slot::Live { modified: true, .. }))
    {
        // Nothing changed: hand the host its own buffers back.
        return (accs, errors);
    }
    let mut out = ByteListBuilder::with_capacity(n, accs.data.len() + accs.data.len() / 4);
    for (k, slot) in slots.iter().enumerate() {
        match slot {
            Slot::Live {
                acc,
                modified: true,
                ..
            } => out
                .push_json(acc)
                .unwrap_or_else(|e| panic!("sluice: cannot encode accumulator {k} as JSON: {e}")),
            _ => out.push_bytes(batch::slice(&accs.data, accs.spans[k])),
        }
    }
    (out.finish(), errors)
}

/// The state of accumulator `targets[failed]` just before record `failed`:
/// its original bytes plus every earlier record of this call that targeted it.
/// Only called on an accumulator's first failure in a call, so all those
/// earlier adds succeeded.
#[cold]
fn replay<A: Aggregate>(
    op: &A,
    accs: &ByteList,
    input: &Batch,
    targets: &[u32],
    failed: usize,
) -> A::Acc {
    let t = targets[failed];
    let mut acc = decode_or_trap(accs, t as usize);
    for (j, _) in targets[..failed]
        .iter()
        .enumerate()
        .filter(|&(_, &target)| target == t)
    {
        if let Err(e) = op.add(&mut acc, &Record::from_batch(input, j)) {
            panic!(
                "sluice: Aggregate::add is not deterministic: record {j} was added to \
                 accumulator {t}, then failed when replayed: {e}"
            );
        }
    }
    acc
}

/// Accumulator `k`, decoded.
fn decode<A: DeserializeOwned>(accs: &ByteList, k: usize) -> Result<A, String> {
    let span = *accs.spans.get(k).ok_or_else(|| {
        format!(
            "accumulator {k} does not exist (there are {})",
            accs.spans.len()
        )
    })?;
    let bytes = batch::get(&accs.data, span)
        .ok_or_else(|| format!("accumulator {k} is outside the accumulator buffer"))?;
    crate::json::from_slice(bytes)
        .map_err(|e| format!("accumulator {k} does not decode as this operator's Acc: {e}"))
}

#[track_caller]
fn decode_or_trap<A: DeserializeOwned>(accs: &ByteList, k: usize) -> A {
    decode(accs, k).unwrap_or_else(|e| panic!("sluice: {e}"))
}

fn decode_bytes_or_trap<A: DeserializeOwned>(bytes: &[u8], k: usize) -> A {
    crate::json::from_slice(bytes).unwrap_or_else(|e| {
        panic!("sluice: accumulator {k} does not decode after encoding it: {e}")
    })
}

fn encode_or_trap<A: Serialize>(out: &mut Vec<u8>, acc: &A, k: usize) {
    if let Err(e) = serde_json::to_writer(out, acc) {
        panic!("sluice: cannot encode accumulator {k} as JSON: {e}");
    }
}

/// The `merge` export: for each group, decodes its first accumulator, merges
/// the others into it in order and encodes it.
pub(crate) fn merge<A: Aggregate>(
    op: &A,
    accs: &ByteList,
    groups: &[Span],
) -> Result<ByteList, String> {
    let mut out = ByteListBuilder::with_capacity(groups.len(), accs.data.len());
    for (g, group) in groups.iter().enumerate() {
        let first = group.offset as usize;
        if group.len == 0 {
            return Err(format!("merge: group {g} is empty"));
        }
        let end = first
            .checked_add(group.len as usize)
            .filter(|&end| end <= accs.spans.len())
            .ok_or_else(|| {
                format!(
                    "merge: group {g} ({first}+{}) is outside the {} accumulators",
                    group.len,
                    accs.spans.len()
                )
            })?;
        let mut acc: A::Acc = decode(accs, first).map_err(|e| format!("merge: {e}"))?;
        for k in first + 1..end {
            let other = decode(accs, k).map_err(|e| format!("merge: {e}"))?;
            op.merge(&mut acc, other);
        }
        out.push_json(&acc)
            .map_err(|e| format!("merge: cannot encode the accumulator of group {g}: {e}"))?;
    }
    Ok(out.finish())
}

/// The `get-result` export: each accumulator's result, encoded as JSON.
pub(crate) fn get_result<A: Aggregate>(op: &A, accs: &ByteList) -> Result<ByteList, String> {
    let mut out = ByteListBuilder::with_capacity(accs.spans.len(), accs.data.len());
    for k in 0..accs.spans.len() {
        let acc: A::Acc = decode(accs, k).map_err(|e| format!("get-result: {e}"))?;
        out.push_json(&op.result(&acc))
            .map_err(|e| format!("get-result: cannot encode the result of accumulator {k}: {e}"))?;
    }
    Ok(out.finish())
}

/// One instance's aggregate function, behind the exports of
/// `export_aggregate!` (kept in a `thread_local` by the macro).
#[doc(hidden)]
pub struct AggregateState<A> {
    op: RefCell<Option<A>>,
    /// The members the host finds in each record (see [`crate::projection`]).
    projection: RefCell<Projection>,
}

impl<A: Aggregate> AggregateState<A> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        AggregateState {
            op: RefCell::new(None),
            projection: RefCell::new(Projection::new()),
        }
    }

    fn get(&self) -> Option<Ref<'_, A>> {
        Ref::filter_map(self.op.borrow(), Option::as_ref).ok()
    }

    /// The `open` export.
    pub fn open(&self, config: String) -> Result<(), String> {
        let mut op = self.op.borrow_mut();
        *op = None;
        *op = Some(A::open(Config::new(config)).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// The `create-accumulator` export. The WIT gives it no error, so calling
    /// it before `open` traps.
    pub fn create_accumulator(&self) -> Vec<u8> {
        let op = self
            .get()
            .unwrap_or_else(|| panic!("sluice: create-accumulator called before open"));
        serde_json::to_vec(&op.create())
            .unwrap_or_else(|e| panic!("sluice: cannot encode a new accumulator as JSON: {e}"))
    }

    /// The `add` export. Before `open`, every record fails and the
    /// accumulators go back unchanged.
    pub fn add(&self, accumulators: ByteList, input: Batch, targets: Vec<u32>) -> AddOutput {
        let Some(op) = self.get() else {
            let errors = (0..input.records.len())
                .map(|i| RecordError {
                    index: batch::to_u32(i),
                    message: NOT_OPENED.to_owned(),
                })
                .collect();
            return AddOutput {
                accumulators,
                errors,
            };
        };
        let mut projection = self.projection.borrow_mut();
        projection.begin(input.records.len(), crate::projection::host_found);
        let (accumulators, errors) = add(&*op, accumulators, &input, &projection, &targets);
        projection.end(crate::projection::host_project);
        AddOutput {
            accumulators,
            errors,
        }
    }

    /// The `merge` export.
    pub fn merge(&self, accumulators: ByteList, groups: Vec<Span>) -> Result<ByteList, String> {
        let op = self.get().ok_or(NOT_OPENED)?;
        merge(&*op, &accumulators, &groups)
    }

    /// The `get-result` export.
    pub fn get_result(&self, accumulators: ByteList) -> Result<ByteList, String> {
        let op = self.get().ok_or(NOT_OPENED)?;
        get_result(&*op, &accumulators)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde::Deserialize;

    use super::*;
    use crate::batch::tests::{byte_list, items, values};

    /// Sums integer values. `"fail"` fails without touching the accumulator;
    /// `"mutate-then-fail"` corrupts it first, so restoring it is observable.
    struct Sum {
        adds: Cell<usize>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Acc {
        n: u64,
        sum: i64,
    }

    impl Aggregate for Sum {
        type Acc = Acc;
        type Output = serde_json::Value;

        fn open(config: Config) -> Result<Self, Error> {
            match config.raw() {
                "\"fail\"" => Err("bad config".into()),
                _ => Ok(Sum { adds: Cell::new(0) }),
            }
        }
        fn create(&self) -> Acc {
            Acc { n: 0, sum: 0 }
        }
        fn add(&self, acc: &mut Acc, record: &Record<'_>) -> Result<(), Error> {
            self.adds.set(self.adds.get() + 1);
            match record.value_str()? {
                "fail" => Err("cannot add".into()),
                "mutate-then-fail" => {
                    acc.n += 1000;
                    acc.sum = -1;
                    Err("failed half way".into())
                }
                v => {
                    acc.sum += v.parse::<i64>().map_err(|e| format!("{v:?}: {e}"))?;
                    acc.n += 1;
                    Ok(())
                }
            }
        }
        fn merge(&self, acc: &mut Acc, other: Acc) {
            acc.n += other.n;
            acc.sum += other.sum;
        }
        fn result(&self, acc: &Acc) -> serde_json::Value {
            serde_json::json!({ "count": acc.n, "total": acc.sum })
        }
    }

    fn sum() -> Sum {
        Sum::open(Config::new("null")).unwrap()
    }

    fn errors(errors: &[RecordError]) -> Vec<(u32, &str)> {
        errors.iter().map(|e| (e.index, &*e.message)).collect()
    }

    #[test]
    fn adds_in_input_order_to_the_targeted_accumulators() {
        let accs = byte_list(&[r#"{"n":0,"sum":0}"#, r#"{"n":1,"sum":10}"#]);
        let (out, errs) = add(
            &sum(),
            accs,
            &values(&["1", "2", "3"]),
            &Projection::new(),
            &[1, 0, 1],
        );
        assert!(errs.is_empty());
        assert_eq!(items(&out), [r#"{"n":1,"sum":2}"#, r#"{"n":3,"sum":14}"#]);
    }

    #[test]
    fn untouched_accumulators_go_back_byte_for_byte_and_are_never_decoded() {
        // Accumulator 1 is not even valid JSON: decoding it would trap.
        let accs = byte_list(&[
            r#"{ "n" : 0 , "sum" : 0 }"#,
            "not json",
            r#"{ "sum":1, "n":1 }"#,
        ]);
        let (out, errs) = add(&sum(), accs, &values(&["5"]), &Projection::new(), &[2]);
        assert!(errs.is_empty());
        assert_eq!(
            items(&out),
            [
                r#"{ "n" : 0 , "sum" : 0 }"#,
                "not json",
                r#"{"n":2,"sum":6}"#
            ]
        );
    }

    #[test]
    fn a_batch_that_changes_nothing_returns_the_same_buffers() {
        let accs = byte_list(&[r#"{ "n":0, "sum":0 }"#, "{}"]);
        let data_ptr = accs.data.as_ptr();
        let (out, errs) = add(
            &sum(),
            accs,
            &values(&["fail", "x"]),
            &Projection::new(),
            &[0, 0],
        );
        assert_eq!(out.data.as_ptr(), data_ptr);
        assert_eq!(items(&out), [r#"{ "n":0, "sum":0 }"#, "{}"]);
        assert_eq!(errors(&errs)[0], (0, "cannot add"));
        assert!(
            errs[1].message.starts_with("\"x\": invalid digit"),
            "{errs:?}"
        );
        let (out, errs) = add(
            &sum(),
            byte_list(&["1"]),
            &values(&[]),
            &Projection::new(),
            &[],
        );
        assert!(errs.is_empty());
        assert_eq!(items(&out), ["1"]);
    }

    #[test]
    fn a_failed_add_leaves_its_accumulator_as_it_was() {
        let accs = byte_list(&[r#"{"n":0,"sum":0}"#, r#"{"n":0,"sum":100}"#]);
        let input = values(&[
            "1",
            "mutate-then-fail", // first failure of acc 0: restored by replay
            "2",
            "mutate-then-fail", // second failure: restored from the saved copy
            "4",
            "mutate-then-fail", // acc 1's only record fails: it stays as it was
        ]);
        let (out, errs) = add(
            &sum(),
            accs,
            &input,
            &Projection::new(),
            &[0, 0, 0, 0, 0, 1],
        );
        assert_eq!(
            errors(&errs),
            [
                (1, "failed half way"),
                (3, "failed half way"),
                (5, "failed half way")
            ]
        );
        assert_eq!(items(&out), [r#"{"n":3,"sum":7}"#, r#"{"n":0,"sum":100}"#]);
    }

    #[test]
    fn replay_covers_only_the_failed_accumulator_and_happens_once() {
        let accs = byte_list(&[r#"{"n":0,"sum":0}"#, r#"{"n":0,"sum":0}"#]);
        let input = values(&[
            "1",                // acc 0
            "10",               // acc 1
            "2",                // acc 0
            "mutate-then-fail", // acc 0: replays records 0 and 2
            "fail",             // acc 0: restored from the copy, no replay
            "4",                // acc 0
        ]);
        let op = sum();
        let (out, errs) = add(&op, accs, &input, &Projection::new(), &[0, 1, 0, 0, 0, 0]);
        assert_eq!(errs.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(items(&out), [r#"{"n":3,"sum":7}"#, r#"{"n":1,"sum":10}"#]);
        assert_eq!(op.adds.get(), 6 + 2);
    }

    #[test]
    #[should_panic(expected = "add is not deterministic")]
    fn a_nondeterministic_add_traps_on_replay() {
        struct Flaky(Cell<bool>);
        impl Aggregate for Flaky {
            type Acc = u32;
            type Output = u32;
            fn open(_: Config) -> Result<Self, Error> {
                Ok(Flaky(Cell::new(false)))
            }
            fn create(&self) -> u32 {
                0
            }
            // Succeeds once, then fails forever.
            fn add(&self, acc: &mut u32, _: &Record<'_>) -> Result<(), Error> {
                if self.0.replace(true) {
                    return Err("no more".into());
                }
                *acc += 1;
                Ok(())
            }
            fn merge(&self, _: &mut u32, _: u32) {}
            fn result(&self, acc: &u32) -> u32 {
                *acc
            }
        }
        add(
            &Flaky(Cell::new(false)),
            byte_list(&["0"]),
            &values(&["a", "b"]),
            &Projection::new(),
            &[0, 0],
        );
    }

    #[test]
    #[should_panic(expected = "accumulator 1 does not decode")]
    fn a_targeted_accumulator_that_does_not_decode_traps() {
        let accs = byte_list(&[r#"{"n":0,"sum":0}"#, r#"{"n":"zero"}"#]);
        add(&sum(), accs, &values(&["1"]), &Projection::new(), &[1]);
    }

    #[test]
    #[should_panic(expected = "targets accumulator 2, but add was given 2")]
    fn a_target_out_of_range_traps() {
        let accs = byte_list(&["{}", "{}"]);
        add(&sum(), accs, &values(&["1"]), &Projection::new(), &[2]);
    }

    #[test]
    fn merge_folds_each_group_in_order() {
        let accs = byte_list(&[
            r#"{"n":1,"sum":1}"#,
            r#"{"n":2,"sum":20}"#,
            r#"{"n":3,"sum":300}"#,
            r#"{ "n":4, "sum":4000 }"#,
        ]);
        let groups = [
            Span { offset: 0, len: 3 },
            Span { offset: 3, len: 1 },
            Span { offset: 1, len: 2 },
        ];
        let out = merge(&sum(), &accs, &groups).unwrap();
        assert_eq!(
            items(&out),
            [
                r#"{"n":6,"sum":321}"#,
                r#"{"n":4,"sum":4000}"#,
                r#"{"n":5,"sum":320}"#
            ]
        );
    }

    #[test]
    fn merge_errors_name_the_problem() {
        let accs = byte_list(&[r#"{"n":1,"sum":1}"#, "oops"]);
        let err = |groups: &[Span]| merge(&sum(), &accs, groups).unwrap_err();
        assert_eq!(
            err(&[Span { offset: 0, len: 0 }]),
            "merge: group 0 is empty"
        );
        assert!(
            err(&[Span { offset: 1, len: 2 }]).contains("outside the 2 accumulators"),
            "{}",
            err(&[Span { offset: 1, len: 2 }])
        );
        let e = err(&[Span { offset: 0, len: 2 }]);
        assert!(e.starts_with("merge: accumulator 1 does not decode"), "{e}");
    }

    #[test]
    fn get_result_encodes_each_result() {
        let accs = byte_list(&[r#"{"n":2,"sum":5}"#, r#"{"n":0,"sum":0}"#]);
        let out = get_result(&sum(), &accs).unwrap();
        assert_eq!(
            items(&out),
            [r#"{"count":2,"total":5}"#, r#"{"count":0,"total":0}"#]
        );
        let e = get_result(&sum(), &byte_list(&["[]"])).unwrap_err();
        assert!(
            e.starts_with("get-result: accumulator 0 does not decode"),
            "{e}"
        );
    }

    #[test]
    fn state_before_and_after_open() {
        let state = AggregateState::<Sum>::new();
        let out = state.add(byte_list(&["x"]), values(&["1", "2"]), vec![0, 0]);
        assert_eq!(items(&out.accumulators), ["x"]);
        assert_eq!(errors(&out.errors), [(0, NOT_OPENED), (1, NOT_OPENED)]);
        assert_eq!(
            state.merge(byte_list(&["x"]), vec![]).unwrap_err(),
            NOT_OPENED
        );
        assert_eq!(state.get_result(byte_list(&[])).unwrap_err(), NOT_OPENED);
        assert_eq!(state.open("\"fail\"".into()), Err("bad config".to_owned()));

        state.open("null".into()).unwrap();
        let created = state.create_accumulator();
        assert_eq!(created, br#"{"n":0,"sum":0}"#);
        let accs = byte_list(&[std::str::from_utf8(&created).unwrap()]);
        let out = state.add(accs, values(&["7"]), vec![0]);
        assert!(out.errors.is_empty());
        let out = state.get_result(out.accumulators).unwrap();
        assert_eq!(items(&out), [r#"{"count":1,"total":7}"#]);
    }

    #[test]
    #[should_panic(expected = "create-accumulator called before open")]
    fn create_before_open_traps() {
        AggregateState::<Sum>::new().create_accumulator();
    }
}
