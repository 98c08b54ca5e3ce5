//! `interval_join:` — Flink's interval join of two keyed streams.
//!
//! For every key, every left record `l` and right record `r` with
//! `l.ts + lower <= r.ts <= l.ts + upper` make one output row, whose event
//! time is `max(l.ts, r.ts)`. Either bound may be made exclusive; bounds may
//! be negative, and `lower == upper` is allowed (`lower > upper` is a plan
//! error). Pairs are emitted as soon as their second record arrives, so the
//! output does not wait for the watermark.
//!
//! Each side's records are buffered per key, in time order, until no record
//! of the other side can match them any more: a left record goes once the
//! watermark reaches `l.ts + upper`, a right one once it reaches
//! `r.ts - lower` (a cleanup timer per key and side, as Flink's). A record
//! that can match nothing that is still to come is not buffered at all.
//! After the final watermark nothing is left.
//!
//! The row bytes live in [`Slots`] (the heap, or the RocksDB store); the
//! key table, the per-key time lists and the timers stay on the heap, as
//! the window's bookkeeping does. Snapshots hold one entry per buffered
//! record under its key group, so a savepoint restores at any parallelism
//! and on either backend.

use super::{LATE_PORT, LEFT, RIGHT, ROW_NAMESPACE, Row, SIDES, Select};
use crate::checkpoint::format::{EntryWriter, KIND_JOIN_ROW, put_key, take_i64, take_key};
use crate::checkpoint::{Barrier, OperatorState, RestoredState};
use crate::error::{PlanError, RuntimeError, StateError};
use crate::runtime::kind::{self, OperatorKind, PlanContext, Planned, error, field};
use crate::runtime::{Batch, NodeMetrics, Operator, OperatorFactory, Output, Subtask};
use crate::state::Backend;
use crate::state::keys::KeyTable;
use crate::state::slots::Slots;
use crate::state::timers::TimerSet;
use crate::units::SignedDur;
use async_trait::async_trait;
use serde::Deserialize;
use smallvec::SmallVec;
use std::sync::Arc;

/// What the heap keeps per buffered record besides its bytes: its list
/// entry and its share of a cleanup timer.
const ROW_BOOKKEEPING: u64 = 16 + 40;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalSpec {
    lower: SignedDur,
    upper: SignedDur,
    #[serde(default)]
    lower_exclusive: bool,
    #[serde(default)]
    upper_exclusive: bool,
}

/// The join's bounds, inclusive, in milliseconds: `r.ts - l.ts` in
/// `lower..=upper`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub lower: i64,
    pub upper: i64,
}

impl Bounds {
    /// The times of the other side's records that match a record of `side`
    /// at `ts`.
    fn matching(self, side: usize, ts: i64) -> (i64, i64) {
        if side == LEFT {
            (ts.saturating_add(self.lower), ts.saturating_add(self.upper))
        } else {
            (ts.saturating_sub(self.upper), ts.saturating_sub(self.lower))
        }
    }

    /// The watermark at which a record of `side` at `ts` can match nothing
    /// more: every record of the other side still to come is later than
    /// its range.
    fn cleanup(self, side: usize, ts: i64) -> i64 {
        self.matching(side, ts).1
    }
}

pub struct IntervalJoinKind;

impl OperatorKind for IntervalJoinKind {
    fn tag(&self) -> &'static str {
        "interval_join"
    }

    fn what(&self) -> &'static str {
        "an interval join"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["select"]
    }

    fn inputs(&self) -> &'static [&'static str] {
        SIDES
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        kind::key(
            cx,
            "an interval join needs a `key_by` (one key, or one per input)",
        )?;
        let spec = field::<IntervalSpec>(cx, "interval_join")?.expect("the tag is set");
        let lower = spec.lower.0.saturating_add(spec.lower_exclusive as i64);
        let upper = spec.upper.0.saturating_sub(spec.upper_exclusive as i64);
        if lower > upper {
            return Err(error(
                cx,
                "interval_join",
                format!(
                    "the bounds admit no pair: `lower` ({} ms{}) is above `upper` ({} ms{})",
                    spec.lower.0,
                    if spec.lower_exclusive {
                        ", exclusive"
                    } else {
                        ""
                    },
                    spec.upper.0,
                    if spec.upper_exclusive {
                        ", exclusive"
                    } else {
                        ""
                    },
                ),
            ));
        }
        Ok(Planned {
            side_ports: vec!["late".to_owned()],
            needs_event_time: true,
            ..Planned::new(Arc::new(IntervalJoinFactory {
                bounds: Bounds { lower, upper },
                select: Arc::new(Select::plan(cx)?),
                backend: cx.backend()?,
                max_parallelism: cx.max_parallelism(),
            }))
        })
    }
}

pub struct IntervalJoinFactory {
    bounds: Bounds,
    select: Arc<Select>,
    backend: Backend,
    max_parallelism: u32,
}

impl OperatorFactory for IntervalJoinFactory {
    fn kind(&self) -> &'static str {
        "interval_join"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(IntervalJoin {
            bounds: self.bounds,
            select: self.select.clone(),
            max_parallelism: self.max_parallelism,
            backend: self.backend.clone(),
            uid: subtask.info.uid.to_string(),
            subtask: subtask.index,
            keys: KeyTable::default(),
            rows: None,
            cleanup: TimerSet::default(),
            watermark: i64::MIN,
            buf: Vec::new(),
        })
    }
}

/// A buffered record: its time and the slot of its bytes.
#[derive(Clone, Copy, Debug)]
struct Buffered {
    ts: i64,
    slot: u32,
}

/// A key's buffered records, per side, in time (then arrival) order.
#[derive(Default)]
struct KeyRows {
    sides: [SmallVec<[Buffered; 2]>; 2],
}

impl KeyRows {
    fn insert(&mut self, side: usize, b: Buffered) {
        let list = &mut self.sides[side];
        let at = list.partition_point(|x| x.ts <= b.ts);
        list.insert(at, b);
    }

    fn is_empty(&self) -> bool {
        self.sides.iter().all(|s| s.is_empty())
    }
}

pub struct IntervalJoin {
    bounds: Bounds,
    select: Arc<Select>,
    max_parallelism: u32,
    backend: Backend,
    uid: String,
    subtask: u32,
    keys: KeyTable<KeyRows>,
    rows: Option<Slots>,
    /// (time, key, side): when some of a key's records of a side can go.
    cleanup: TimerSet<u8>,
    watermark: i64,
    buf: Vec<u8>,
}

impl IntervalJoin {
    fn state_error(&self, error: StateError) -> RuntimeError {
        RuntimeError::State {
            uid: self.uid.clone(),
            error,
        }
    }

    fn rows(&mut self) -> &mut Slots {
        self.rows.as_mut().expect("opened")
    }

    fn report_size(&self, out: &Output) {
        if let (Some(rows), Some(gauge)) = (
            &self.rows,
            out.info().metrics.state_bytes.get(self.subtask as usize),
        ) {
            gauge.store(
                rows.bytes() + self.keys.bytes(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    async fn process(
        &mut self,
        side: usize,
        batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let mut rows = Batch::default();
        let mut late = Batch::default();
        let mut matches: SmallVec<[Buffered; 4]> = SmallVec::new();
        for i in 0..batch.len() {
            let record = batch.get(i);
            let (Some(ts), Some(key)) = (record.timestamp(), record.key()) else {
                out.dead_letter(
                    record,
                    "an interval join needs records with an event time and a key",
                )?;
                continue;
            };
            if ts <= self.watermark {
                late.push_record(record, None);
                continue;
            }
            let (from, to) = self.bounds.matching(side, ts);
            let other = 1 - side;
            matches.clear();
            if let Some(k) = self.keys.find(key) {
                let list = &self.keys.get(k).sides[other];
                let start = list.partition_point(|b| b.ts < from);
                matches.extend(list[start..].iter().take_while(|b| b.ts <= to).copied());
            }
            for m in &matches {
                let rows_out = &mut rows;
                let select = &self.select;
                let value = record.value();
                let out_ts = ts.max(m.ts);
                self.rows
                    .as_mut()
                    .expect("opened")
                    .with(m.slot, &mut self.buf, |stored| {
                        let mut sides = [None, None];
                        sides[side] = Some((value, ts));
                        sides[other] = Some((stored, m.ts));
                        rows_out.push_built(Some(key), Some(out_ts), record.origin(), |v| {
                            select.write(&Row { key, sides }, v)
                        });
                    })
                    .map_err(|e| RuntimeError::State {
                        uid: self.uid.clone(),
                        error: e,
                    })?;
            }
            let cleanup = self.bounds.cleanup(side, ts);
            if cleanup <= self.watermark {
                // Nothing still to come on the other side can match it.
                continue;
            }
            let k = self
                .keys
                .intern(key, self.max_parallelism, KeyRows::default);
            let kg = self.keys.key_group(k);
            let slot = self
                .rows()
                .alloc(kg, record.value(), ROW_BOOKKEEPING)
                .map_err(|e| self.state_error(e))?;
            self.keys.get_mut(k).insert(side, Buffered { ts, slot });
            self.cleanup.insert(cleanup, k, side as u8);
        }
        out.emit(rows);
        if !late.is_empty() {
            NodeMetrics::add(&out.info().metrics.late, late.len() as u64);
            out.emit_to(LATE_PORT, late);
        }
        self.report_size(out);
        Ok(())
    }

    /// Drops the records no future record can match.
    fn clean_up(&mut self) -> Result<(), StateError> {
        let watermark = self.watermark;
        let bounds = self.bounds;
        while let Some((_, k, side)) = self.cleanup.pop_due(watermark) {
            let side = side as usize;
            // A key released by an earlier timer of this advance.
            let Some(entry) = self.keys.live_mut(k) else {
                continue;
            };
            let list = &mut entry.sides[side];
            let gone = list.partition_point(|b| bounds.cleanup(side, b.ts) <= watermark);
            let slots = self.rows.as_mut().expect("opened");
            for b in list.drain(..gone) {
                slots.release(b.slot, ROW_BOOKKEEPING)?;
            }
            if entry.is_empty() {
                self.keys.release(k);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for IntervalJoin {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        let rows = Slots::open(&self.backend, &self.uid, self.subtask, ROW_NAMESPACE)
            .map_err(|e| self.state_error(e))?;
        self.rows = Some(rows);
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        self.process(LEFT, batch, out).await
    }

    async fn process_input(
        &mut self,
        input: usize,
        batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        debug_assert_eq!(input, RIGHT);
        self.process(input, batch, out).await
    }

    async fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), RuntimeError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.clean_up().map_err(|e| self.state_error(e))?;
        self.report_size(out);
        Ok(())
    }

    async fn snapshot(
        &mut self,
        _barrier: Barrier,
        _out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        let mut w = EntryWriter::new();
        let mut key = Vec::new();
        let rows = self.rows.as_mut().expect("opened");
        for (_, kg, record_key, entry) in self.keys.iter() {
            for (side, list) in entry.sides.iter().enumerate() {
                for b in list {
                    key.clear();
                    put_key(&mut key, record_key);
                    key.push(side as u8);
                    key.extend_from_slice(&b.ts.to_be_bytes());
                    rows.with(b.slot, &mut self.buf, |v| {
                        w.push(kg, KIND_JOIN_ROW, &key, v)
                    })
                    .map_err(|error| RuntimeError::State {
                        uid: self.uid.clone(),
                        error,
                    })?;
                }
            }
        }
        Ok(OperatorState {
            meta: serde_json::json!({ "watermark": self.watermark }),
            keyed: Some(w.finish()),
            committables: Vec::new(),
        })
    }

    async fn restore(&mut self, restored: RestoredState) -> Result<(), RuntimeError> {
        self.watermark = self.watermark.max(restored.watermark());
        let bounds = self.bounds;
        let (keys, cleanup) = (&mut self.keys, &mut self.cleanup);
        let rows = self.rows.as_mut().expect("opened");
        let result = restored.entries(&mut |e| {
            if e.kind != KIND_JOIN_ROW {
                return Err(StateError::Misuse(format!(
                    "the snapshot holds state of kind {} where an interval join keeps its buffered records",
                    e.kind
                )));
            }
            let bad = || StateError::Corrupt("corrupt interval join entry".to_owned());
            let (key, rest) = take_key(e.key).ok_or_else(bad)?;
            let (&side, rest) = rest.split_first().ok_or_else(bad)?;
            let (ts, _) = take_i64(rest).ok_or_else(bad)?;
            let side = side as usize;
            if side > RIGHT {
                return Err(bad());
            }
            let k = keys.intern_in_group(key, e.kg, KeyRows::default);
            let slot = rows.alloc(e.kg, e.value, ROW_BOOKKEEPING)?;
            keys.get_mut(k).insert(side, Buffered { ts, slot });
            cleanup.insert(bounds.cleanup(side, ts), k, side as u8);
            Ok(())
        });
        result.map_err(|e| self.state_error(e))?;
        // Records a lower restored watermark kept that this one drops.
        self.clean_up().map_err(|e| self.state_error(e))
    }
}
