//! `group_aggregate:` — a keyed aggregate without windows over a changelog
//! (Flink SQL's `GROUP BY` without a window, its `GroupAggFunction`).
//!
//! Each record adds its row to its key's group (`+I`, `+U`) or takes it
//! back (`-U`, `-D`). After each record the operator compares the group's
//! result with the one before: the first result of a key is an insert
//! (`+I`), a changed one an update (`-U` of the old row, `+U` of the new),
//! an unchanged one emits nothing, and a group that empties is deleted
//! (`-D` of its last row, and its state is cleared). The output is a
//! changelog; an upsert sink keyed by the group key materialises it.
//!
//! State per key, on either backend, in one [`KeyedState`]: a value state
//! with the number of rows and, per function, its non-null count and sums;
//! `min` and `max` keep a map from value to how many rows hold it (a
//! retraction of the current minimum must find the next one). With `ttl`,
//! a key's state expires that long after its last change (Flink's idle
//! state retention): expired state reads as absent, so a key that comes
//! back starts a new group, and a retraction the group cannot hold (its
//! row's state expired, or the changelog began after the row was added) is
//! skipped and counted in the log, as Flink does.

use crate::checkpoint::{Barrier, OperatorState, RestoredState};
use crate::error::{PlanError, RuntimeError, StateError};
use crate::json::{self, Number, Pointer};
use crate::runtime::aggregate::{NativeAggSpec, NativeFn};
use crate::runtime::batch::RowKind;
use crate::runtime::kind::{OperatorKind, PlanContext, Planned, error, field};
use crate::runtime::operator::ChangelogInput;
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Subtask};
use crate::state::{Backend, Descriptor, KeyedState, Kind, Row, SlotWrite};
use crate::time::Clock;
use crate::units::Dur;
use async_trait::async_trait;
use smallvec::SmallVec;
use std::sync::Arc;

/// One function of the aggregate.
#[derive(Debug, Clone)]
struct Func {
    func: NativeFn,
    field: Option<Pointer>,
    name: String,
    /// The map state of a `min` or `max`.
    map: Option<u32>,
}

/// A function's field in one record: its raw JSON and, for the functions
/// that add numbers, the number.
type Field<'a> = (&'a [u8], Option<Number>);

/// Bytes per function in the accumulator: non-null count (i64), integer
/// sum (i128), float sum (f64), non-integer values (i64).
const FUNC_BYTES: usize = 40;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Acc {
    nonnull: i64,
    int_sum: i128,
    float_sum: f64,
    floats: i64,
}

fn read_acc(b: &[u8], i: usize) -> Acc {
    let b = &b[8 + i * FUNC_BYTES..8 + (i + 1) * FUNC_BYTES];
    Acc {
        nonnull: i64::from_le_bytes(b[0..8].try_into().expect("8")),
        int_sum: i128::from_le_bytes(b[8..24].try_into().expect("16")),
        float_sum: f64::from_le_bytes(b[24..32].try_into().expect("8")),
        floats: i64::from_le_bytes(b[32..40].try_into().expect("8")),
    }
}

fn write_acc(b: &mut [u8], i: usize, a: Acc) {
    let b = &mut b[8 + i * FUNC_BYTES..8 + (i + 1) * FUNC_BYTES];
    b[0..8].copy_from_slice(&a.nonnull.to_le_bytes());
    b[8..24].copy_from_slice(&a.int_sum.to_le_bytes());
    b[24..32].copy_from_slice(&a.float_sum.to_le_bytes());
    b[32..40].copy_from_slice(&a.floats.to_le_bytes());
}

/// A number as map key bytes that sort as the numbers do (the f64's bits,
/// ordered), then its text (`1` and `1.0` stay apart; min and max give the
/// text back as it came).
fn order_key(raw: &[u8], f: f64) -> Vec<u8> {
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    let mut k = ordered.to_be_bytes().to_vec();
    k.extend_from_slice(raw);
    k
}

pub struct GroupAggregateFactory {
    funcs: Arc<Vec<Func>>,
    key_field: String,
    ttl: Option<u64>,
    backend: Backend,
    max_parallelism: u32,
}

impl OperatorFactory for GroupAggregateFactory {
    fn kind(&self) -> &'static str {
        "group_aggregate"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(GroupAggregate {
            funcs: self.funcs.clone(),
            key_field: self.key_field.clone(),
            ttl: self.ttl,
            backend: self.backend.clone(),
            max_parallelism: self.max_parallelism,
            uid: subtask.info.uid.to_string(),
            subtask: subtask.index,
            clock: subtask.clock.clone(),
            state: None,
            skipped: 0,
            scratch: Default::default(),
        })
    }

    fn changelog(&self) -> ChangelogInput {
        ChangelogInput::Applied
    }

    fn emits_changelog(&self) -> bool {
        true
    }
}

pub struct GroupAggregate {
    funcs: Arc<Vec<Func>>,
    key_field: String,
    ttl: Option<u64>,
    backend: Backend,
    max_parallelism: u32,
    uid: String,
    subtask: u32,
    clock: Arc<dyn Clock>,
    state: Option<KeyedState>,
    /// Retractions of rows the group did not hold.
    skipped: u64,
    /// A state row's bytes and slots, reused from record to record.
    scratch: (Vec<u8>, Row),
}

impl GroupAggregate {
    fn descriptors(&self) -> Vec<Descriptor> {
        let mut d = vec![
            Descriptor {
                name: "acc".into(),
                kind: Kind::Value,
                ttl_ms: self.ttl,
                version: 1,
            },
            Descriptor {
                name: "extremes".into(),
                kind: Kind::Value,
                ttl_ms: self.ttl,
                version: 1,
            },
        ];
        for f in self.funcs.iter().filter(|f| f.map.is_some()) {
            d.push(Descriptor {
                name: format!("values_{}", f.name),
                kind: Kind::Map,
                ttl_ms: self.ttl,
                version: 1,
            });
        }
        d
    }

    fn state_err(&self, error: StateError) -> RuntimeError {
        RuntimeError::State {
            uid: self.uid.clone(),
            error,
        }
    }

    /// The group's result row, or none for an empty group.
    fn result(&self, key: &[u8], acc: &[u8], extremes: &[Option<Vec<u8>>]) -> Option<Vec<u8>> {
        let rows = i64::from_le_bytes(acc[0..8].try_into().expect("8"));
        if rows <= 0 {
            return None;
        }
        let mut v = Vec::with_capacity(64);
        v.push(b'{');
        json::write_str(&mut v, self.key_field.as_bytes());
        v.push(b':');
        v.extend_from_slice(key);
        for (i, f) in self.funcs.iter().enumerate() {
            let a = read_acc(acc, i);
            v.push(b',');
            json::write_str(&mut v, f.name.as_bytes());
            v.push(b':');
            match f.func {
                NativeFn::Count if f.field.is_none() => json::write_i64(&mut v, rows),
                NativeFn::Count => json::write_i64(&mut v, a.nonnull),
                _ if a.nonnull <= 0 => v.extend_from_slice(b"null"),
                NativeFn::Sum if a.floats == 0 => {
                    v.extend_from_slice(a.int_sum.to_string().as_bytes())
                }
                NativeFn::Sum => write_f64(&mut v, a.int_sum as f64 + a.float_sum),
                NativeFn::Avg => {
                    write_f64(&mut v, (a.int_sum as f64 + a.float_sum) / a.nonnull as f64)
                }
                NativeFn::Min | NativeFn::Max => match &extremes[i] {
                    Some(k) => v.extend_from_slice(&k[8..]),
                    None => v.extend_from_slice(b"null"),
                },
            }
        }
        v.push(b'}');
        Some(v)
    }

    /// Applies one record to its group; returns the rows to emit.
    fn apply(
        &mut self,
        key: &[u8],
        value: &[u8],
        kind: RowKind,
        emit: &mut Vec<(RowKind, Vec<u8>)>,
    ) -> Result<Result<(), String>, StateError> {
        // Read the fields first: a record that does not fit changes nothing.
        let pointers: SmallVec<[&Pointer; 8]> =
            self.funcs.iter().filter_map(|f| f.field.as_ref()).collect();
        let mut found: SmallVec<[Option<&[u8]>; 8]> = smallvec::smallvec![None; pointers.len()];
        if let Err(e) = json::find_many(value, &pointers, &mut found) {
            return Ok(Err(e.to_string()));
        }
        let mut values: SmallVec<[Option<Field<'_>>; 8]> = SmallVec::new();
        let mut next = 0;
        for f in self.funcs.iter() {
            let Some(p) = &f.field else {
                values.push(None);
                continue;
            };
            let raw = found[next].filter(|r| *r != b"null");
            next += 1;
            match raw {
                None => values.push(None),
                Some(raw) if f.func == NativeFn::Count => values.push(Some((raw, None))),
                Some(raw) => match Number::parse(raw) {
                    Some(n) => values.push(Some((raw, Some(n)))),
                    None => {
                        return Ok(Err(format!(
                            "`{}` needs a number at {p}, not {}",
                            f.name,
                            String::from_utf8_lossy(raw)
                        )));
                    }
                },
            }
        }
        let kg = crate::state::key_groups::key_group(key, self.max_parallelism);
        let state = self.state.as_mut().expect("opened");
        let now = state.now();
        // Scratch kept from record to record (taken back at the end).
        let (mut buf, mut row) = std::mem::take(&mut self.scratch);
        buf.clear();
        state.read_row(kg, key, now, &mut buf, &mut row)?;
        let mut acc = match &row.slots[0] {
            Some((range, _)) if range.len() == 8 + FUNC_BYTES * self.funcs.len() => {
                buf[range.clone()].to_vec()
            }
            Some(_) => {
                return Err(StateError::Corrupt(
                    "a group accumulator of the wrong size".into(),
                ));
            }
            None => vec![0; 8 + FUNC_BYTES * self.funcs.len()],
        };
        let mut extremes = match &row.slots[1] {
            Some((range, _)) => decode_extremes(&buf[range.clone()], self.funcs.len())?,
            None => vec![None; self.funcs.len()],
        };
        let funcs = self.funcs.clone();
        let before = self.result(key, &acc, &extremes);
        let sign: i64 = if kind.is_addition() { 1 } else { -1 };
        let rows = i64::from_le_bytes(acc[0..8].try_into().expect("8")) + sign;
        if rows < 0 {
            self.skipped += 1;
            if self.skipped == 1 || self.skipped.is_power_of_two() {
                tracing::warn!(
                    "`{}`: a {} of a row its group does not hold (its state expired, or the changelog began after the row); skipped ({} so far)",
                    self.uid,
                    kind.short(),
                    self.skipped
                );
            }
            return Ok(Ok(()));
        }
        acc[0..8].copy_from_slice(&rows.to_le_bytes());
        let state = self.state.as_mut().expect("opened");
        for (i, (f, v)) in funcs.iter().zip(&values).enumerate() {
            let Some((raw, number)) = v else { continue };
            let mut a = read_acc(&acc, i);
            a.nonnull += sign;
            match number {
                Some(Number::Decimal { mantissa, scale: 0 }) => {
                    a.int_sum += sign as i128 * mantissa
                }
                Some(n) => {
                    a.float_sum += sign as f64 * n.to_f64();
                    a.floats += sign;
                }
                None => {}
            }
            if a.floats == 0 {
                a.float_sum = 0.0;
            }
            write_acc(&mut acc, i, a);
            if let (Some(map), Some(n)) = (f.map, number) {
                let k = order_key(raw, n.to_f64());
                let mut c = Vec::new();
                let held = if state.map_get(map, kg, key, &k, &mut c)? {
                    i64::from_le_bytes(
                        c[..8]
                            .try_into()
                            .map_err(|_| StateError::Corrupt("a bad count".into()))?,
                    )
                } else {
                    0
                };
                let is_min = f.func == NativeFn::Min;
                if held + sign > 0 {
                    state.map_put(map, kg, key, &k, &(held + sign).to_le_bytes())?;
                    let better = match &extremes[i] {
                        None => true,
                        Some(cur) => {
                            if is_min {
                                k < *cur
                            } else {
                                k > *cur
                            }
                        }
                    };
                    if sign > 0 && better {
                        extremes[i] = Some(k);
                    }
                } else {
                    state.map_remove(map, kg, key, &k)?;
                    if extremes[i].as_ref() == Some(&k) {
                        // The last row holding the extreme is gone: find
                        // the next one (the only time the map is scanned).
                        let mut found: Option<Vec<u8>> = None;
                        state.map_entries(map, kg, key, &mut |mk, _| {
                            if found.is_none() || !is_min {
                                found = Some(mk.to_vec());
                            }
                        })?;
                        extremes[i] = found;
                    }
                }
            }
        }
        if rows == 0 {
            // The group is empty: its state goes.
            for f in funcs.iter() {
                if let Some(map) = f.map {
                    state.clear(map, kg, key)?;
                }
            }
            let none: [SlotWrite<'_>; 2] = [(None, None, true), (None, None, true)];
            state.write_row(kg, key, now, none.into_iter())?;
        } else {
            let ext = encode_extremes(&extremes);
            let slots: [SlotWrite<'_>; 2] = [(Some(&acc), None, true), (Some(&ext), None, true)];
            state.write_row(kg, key, now, slots.into_iter())?;
        }
        let after = self.result(key, &acc, &extremes);
        self.scratch = (buf, row);
        match (before, after) {
            (None, Some(a)) => emit.push((RowKind::Insert, a)),
            (Some(b), Some(a)) if a != b => {
                emit.push((RowKind::UpdateBefore, b));
                emit.push((RowKind::UpdateAfter, a));
            }
            (Some(b), None) => emit.push((RowKind::Delete, b)),
            _ => {}
        }
        Ok(Ok(()))
    }
}

/// The cached extremes of the `min` and `max` functions (their map keys),
/// by function index: a length (u32, `u32::MAX` for none) and the bytes.
fn encode_extremes(e: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in e {
        match x {
            None => v.extend_from_slice(&u32::MAX.to_le_bytes()),
            Some(k) => {
                v.extend_from_slice(&(k.len() as u32).to_le_bytes());
                v.extend_from_slice(k);
            }
        }
    }
    v
}

fn decode_extremes(mut b: &[u8], n: usize) -> Result<Vec<Option<Vec<u8>>>, StateError> {
    let bad = || StateError::Corrupt("corrupt group extremes".into());
    let mut e = Vec::with_capacity(n);
    for _ in 0..n {
        let len = u32::from_le_bytes(b.get(..4).ok_or_else(bad)?.try_into().expect("4"));
        b = &b[4..];
        if len == u32::MAX {
            e.push(None);
        } else {
            let k = b.get(..len as usize).ok_or_else(bad)?;
            e.push(Some(k.to_vec()));
            b = &b[len as usize..];
        }
    }
    Ok(e)
}

fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(serde_json::to_string(&f).expect("finite").as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[async_trait]
impl Operator for GroupAggregate {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        let mut state = self
            .backend
            .keyed_state(&self.uid, self.subtask, self.clock.clone())
            .map_err(|e| self.state_err(e))?;
        for d in self.descriptors() {
            state.declare(d).map_err(|e| self.state_err(e))?;
        }
        self.state = Some(state);
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        let mut rows = Batch::with_capacity(batch.len(), batch.data.len());
        let mut emit = Vec::new();
        for r in batch.iter() {
            let Some(key) = r.key() else {
                out.dead_letter(r, "a record without a key (the aggregate needs a `key_by`)")?;
                continue;
            };
            emit.clear();
            match self.apply(key, r.value(), r.kind(), &mut emit) {
                Ok(Ok(())) => {}
                Ok(Err(m)) => out.dead_letter(r, &m)?,
                Err(e) => return Err(self.state_err(e)),
            }
            for (kind, row) in emit.drain(..) {
                rows.push(Some(key), &row, r.timestamp(), r.origin());
                rows.set_last_kind(kind);
            }
        }
        if !rows.is_empty() {
            out.emit(rows);
        }
        Ok(())
    }

    async fn snapshot(
        &mut self,
        _barrier: Barrier,
        _out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        use crate::checkpoint::format::{EntryWriter, KIND_STATE};
        let mut w = EntryWriter::new();
        let state = self.state.as_mut().expect("opened");
        let r = state.for_each_entry(&mut |kg, k, v| w.push(kg, KIND_STATE, k, v));
        r.map_err(|e| self.state_err(e))?;
        Ok(OperatorState {
            keyed: Some(w.finish()),
            ..Default::default()
        })
    }

    async fn restore(&mut self, restored: RestoredState) -> Result<(), RuntimeError> {
        use crate::checkpoint::format::KIND_STATE;
        let descriptors = self.descriptors();
        let map: Vec<Option<u32>> = (0..descriptors.len() as u32).map(Some).collect();
        let state = self.state.as_mut().expect("opened");
        let r = restored.entries(&mut |e| match e.kind {
            KIND_STATE => state.restore_entry(e.kg, e.key, e.value, &descriptors, &map),
            k => Err(StateError::Corrupt(format!(
                "a group aggregate has no entries of kind {k}"
            ))),
        });
        r.map_err(|e| {
            self.state_err(e.context(format!("cannot restore from {}", restored.location)))
        })
    }
}

/// `group_aggregate: [ { fn: count }, { fn: sum, field: /amount, as: total } ]`
/// with `key_by`, and optionally `ttl` and `output: { key: name }`.
pub struct GroupAggregateKind;

#[derive(Debug, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OutputSpec {
    #[serde(default)]
    key: Option<String>,
}

impl OperatorKind for GroupAggregateKind {
    fn tag(&self) -> &'static str {
        "group_aggregate"
    }

    fn what(&self) -> &'static str {
        "a group aggregate"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["ttl", "output"]
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let tag = self.tag();
        let Some(key) = cx.key() else {
            return Err(error(
                cx,
                "",
                "a group aggregate needs a `key_by`: the field whose values form the groups",
            ));
        };
        let list = field::<Vec<NativeAggSpec>>(cx, tag)?.unwrap_or_default();
        if list.is_empty() {
            return Err(error(cx, tag, "list at least one aggregate function"));
        }
        let mut funcs = Vec::new();
        // Handles: 0 and 1 are the value states (`acc`, `extremes`).
        let mut maps = 2u32;
        for (j, a) in list.iter().enumerate() {
            let at = format!("{tag}[{j}]");
            let (field, name) = a.compile().map_err(|m| error(cx, &at, m))?;
            let map = matches!(a.func, NativeFn::Min | NativeFn::Max).then(|| {
                maps += 1;
                maps - 1
            });
            if funcs.iter().any(|f: &Func| f.name == name) {
                return Err(error(
                    cx,
                    &at,
                    format!("two functions give `{name}`: name one with `as`"),
                ));
            }
            funcs.push(Func {
                func: a.func,
                field,
                name,
                map,
            });
        }
        let output = field::<OutputSpec>(cx, "output")?.unwrap_or_default();
        let key_field = match output.key {
            Some(k) => k,
            None => key.field_name().to_owned(),
        };
        let ttl = field::<Dur>(cx, "ttl")?.map(|d| d.0.as_millis() as u64);
        Ok(Planned::new(Arc::new(GroupAggregateFactory {
            funcs: Arc::new(funcs),
            key_field,
            ttl,
            backend: cx.backend()?,
            max_parallelism: cx.max_parallelism(),
        })))
    }
}
