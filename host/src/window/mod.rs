//! Event-time windows over keyed streams.
//!
//! The window operator runs behind a `key_by`: every record has a key and an
//! event time. It keeps, per key, one accumulator per pane (tumbling,
//! sliding, cumulate — see [`assigner`]) or per session, and registers one
//! timer per key and window. When the watermark passes a window's last
//! timestamp the window fires: its panes' accumulators are merged, the
//! aggregate's result becomes an output row
//! `{"<key>": .., "window_start": .., "window_end": .., <result fields>}`
//! whose event time is the window's last timestamp.
//!
//! Lateness follows Flink: a window stays for `allowed_lateness` after it
//! fired, and a record that still reaches it makes it fire again with the
//! updated result; a record whose windows have all expired goes to the
//! `late` side output. Sessions merge when a record's `[ts, ts + gap)`
//! overlaps or touches them.
//!
//! Wasm aggregator calls are batched: records are added to a pending batch
//! and handed to the aggregator when 2048 have gathered, or before a window
//! that needs them fires, turning tens of thousands of small calls into a
//! few large ones. A function the host computes (built-in `fn:` aggregates,
//! SQL aggregates of fixed size) works in place instead: each record is
//! added to its accumulator as it comes, and a window's panes are folded
//! straight from their slots (see [`aggregate::InPlace`]).

pub mod aggregate;
/// Which windows a timestamp belongs to (shared with the window join).
pub use crate::time::windows as assigner;
pub mod plan;

use crate::error::{RuntimeError, StateError, WasmError};
use crate::json;
use crate::runtime::batch::{Members, Span};
use crate::runtime::operator::FIRST_SIDE_PORT;
use crate::runtime::{
    Batch, ModuleRef, NodeMetrics, Operator, OperatorFactory, Origin, Output, RecordRef, Subtask,
};
use crate::state::keys::KeyTable;
use crate::state::timers::{TimeBuckets, TimerSet};
use crate::state::{Backend, Store};
use aggregate::{Aggregator, ByteList, WindowRef};
use assigner::{Aligned, Window};
use async_trait::async_trait;
use smallvec::SmallVec;
use std::sync::Arc;

/// The port of a window's late records.
pub const LATE_PORT: usize = FIRST_SIDE_PORT;

/// Pending records handed to the aggregator at once.
const MAX_PENDING: usize = 2048;

pub use crate::time::windows::WindowKind;

/// A window node's settings.
#[derive(Clone, Debug)]
pub struct WindowSettings {
    pub kind: WindowKind,
    pub allowed_lateness: i64,
    /// Output field names.
    pub key_field: String,
    pub start_field: String,
    pub end_field: String,
}

#[derive(Clone, Copy, Debug)]
struct Session {
    window: Window,
    slot: u32,
}

/// A key's windows: its value in the window's key table.
#[derive(Default)]
struct KeyEntry {
    /// Aligned windows: (pane start, accumulator slot).
    panes: SmallVec<[(i64, u32); 4]>,
    sessions: SmallVec<[Session; 2]>,
}

/// Forgets key `k` once it has no windows left.
fn release_if_empty(keys: &mut KeyTable<KeyEntry>, k: u32) {
    let e = keys.get(k);
    if e.panes.is_empty() && e.sessions.is_empty() {
        keys.release(k);
    }
}

/// Accumulators by slot.
struct Slots {
    accs: Accumulators,
    free: Vec<u32>,
    /// `pending_gen[slot] == generation` while the slot has pending records, and
    /// then `pending_idx[slot]` is its index in the pending accumulators.
    pending_gen: Vec<u64>,
    pending_idx: Vec<u32>,
}

/// Where accumulators live: on the heap, or in the job's state backend
/// (RocksDB), under the key group of their key and the slot number. The
/// window's bookkeeping (keys, panes, sessions, what fires when) stays on the
/// heap either way, like the timers of process functions.
enum Accumulators {
    Heap(Vec<Vec<u8>>),
    /// On the heap, all of one size (an in-place function's), end to end:
    /// slot `s` is `data[s * size..][..size]`.
    Fixed {
        size: usize,
        data: Vec<u8>,
    },
    Store {
        store: Box<dyn Store>,
        /// Key group of each slot.
        kgs: Vec<u32>,
        key: Vec<u8>,
        buf: Vec<u8>,
    },
}

/// Store keys of window accumulators: a namespace apart from process
/// functions' state, then the slot.
const ACC_NAMESPACE: u8 = 4;

impl Accumulators {
    fn key(key: &mut Vec<u8>, s: u32) -> &[u8] {
        key.clear();
        key.push(ACC_NAMESPACE);
        key.extend_from_slice(&s.to_be_bytes());
        key
    }
}

impl Slots {
    fn new(store: Option<Box<dyn Store>>) -> Slots {
        Slots::with(match store {
            None => Accumulators::Heap(Vec::new()),
            Some(store) => Accumulators::Store {
                store,
                kgs: Vec::new(),
                key: Vec::new(),
                buf: Vec::new(),
            },
        })
    }

    /// Slots on the heap for accumulators of `size` bytes.
    fn fixed(size: usize) -> Slots {
        Slots::with(Accumulators::Fixed {
            size,
            data: Vec::new(),
        })
    }

    fn with(accs: Accumulators) -> Slots {
        Slots {
            accs,
            free: Vec::new(),
            pending_gen: Vec::new(),
            pending_idx: Vec::new(),
        }
    }

    fn alloc(&mut self, kg: u32, bytes: &[u8]) -> Result<u32, StateError> {
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                self.pending_gen.push(0);
                self.pending_idx.push(0);
                match &mut self.accs {
                    Accumulators::Heap(accs) => accs.push(Vec::new()),
                    Accumulators::Fixed { size, data } => data.resize(data.len() + *size, 0),
                    Accumulators::Store { kgs, .. } => kgs.push(0),
                }
                (self.pending_gen.len() - 1) as u32
            }
        };
        if let Accumulators::Store { kgs, .. } = &mut self.accs {
            kgs[s as usize] = kg;
        }
        self.set(s, bytes)?;
        Ok(s)
    }

    fn release(&mut self, s: u32) {
        self.free.push(s);
    }

    /// Appends slot `s`'s accumulator to `list`.
    #[inline]
    fn push_to(&mut self, s: u32, list: &mut ByteList) -> Result<(), StateError> {
        match &mut self.accs {
            Accumulators::Heap(accs) => list.push(&accs[s as usize]),
            Accumulators::Fixed { .. } => list.push(self.fixed_slot(s)),
            Accumulators::Store {
                store,
                kgs,
                key,
                buf,
            } => {
                buf.clear();
                let kg = kgs[s as usize];
                if !store.get(kg, Accumulators::key(key, s), buf)? {
                    return Err(StateError::Corrupt(format!(
                        "window accumulator {s} is missing from the state store"
                    )));
                }
                list.push(buf);
            }
        }
        Ok(())
    }

    /// Slot `s` of fixed-size slots.
    #[inline]
    fn fixed_slot(&self, s: u32) -> &[u8] {
        match &self.accs {
            Accumulators::Fixed { size, data } => &data[s as usize * size..][..*size],
            _ => unreachable!("fixed-size slots"),
        }
    }

    #[inline]
    fn fixed_slot_mut(&mut self, s: u32) -> &mut [u8] {
        match &mut self.accs {
            Accumulators::Fixed { size, data } => &mut data[s as usize * *size..][..*size],
            _ => unreachable!("fixed-size slots"),
        }
    }

    #[inline]
    fn set(&mut self, s: u32, bytes: &[u8]) -> Result<(), StateError> {
        match &mut self.accs {
            Accumulators::Heap(accs) => {
                let acc = &mut accs[s as usize];
                acc.clear();
                acc.extend_from_slice(bytes);
                Ok(())
            }
            Accumulators::Fixed { size, .. } => {
                if bytes.len() != *size {
                    // A restored accumulator of another aggregate.
                    return Err(StateError::Corrupt(format!(
                        "window accumulator {s} has {} bytes, not the {size} of this aggregate's; was the aggregate changed?",
                        bytes.len()
                    )));
                }
                self.fixed_slot_mut(s).copy_from_slice(bytes);
                Ok(())
            }
            Accumulators::Store {
                store, kgs, key, ..
            } => {
                let kg = kgs[s as usize];
                store.put(kg, Accumulators::key(key, s), bytes)
            }
        }
    }
}

fn state_error(out: &Output, error: StateError) -> RuntimeError {
    RuntimeError::State {
        uid: out.info().uid.to_string(),
        error,
    }
}

pub struct WindowOperator {
    settings: Arc<WindowSettings>,
    agg: Box<dyn Aggregator>,
    max_parallelism: u32,
    /// The state backend to open in `open`, when it is not the heap.
    backend: Option<(Backend, String, u32)>,
    empty: Vec<u8>,
    /// The keys with windows, and each key's windows. Timers name keys by
    /// their ids here.
    keys: KeyTable<KeyEntry>,
    slots: Slots,
    /// Aligned: (last timestamp, key, start) of windows with data that have
    /// not fired.
    fire: TimeBuckets<i64>,
    /// Aligned: (time, key) when some of the key's panes may expire.
    cleanup: TimeBuckets,
    /// Sessions: (last timestamp, key) of sessions not yet fired.
    session_fire: TimerSet,
    /// Sessions: (expiry, key) of sessions fired but kept for lateness.
    session_cleanup: TimerSet,
    watermark: i64,
    pending: Batch,
    pending_targets: Vec<u32>,
    pending_slots: Vec<u32>,
    generation: u64,
    late: Batch,
    /// Records are added to accumulators in place as they come (a function
    /// of the host's with accumulators on the heap, see [`aggregate::InPlace`]) rather
    /// than queued for a batched `add`.
    in_place: bool,
}

impl WindowOperator {
    /// A window operator whose accumulators live on the heap, or, with the
    /// RocksDB backend, in a store opened for `(uid, subtask)`.
    pub fn new(
        settings: Arc<WindowSettings>,
        agg: Box<dyn Aggregator>,
        backend: Option<(Backend, String, u32)>,
        max_parallelism: u32,
    ) -> WindowOperator {
        WindowOperator {
            settings,
            agg,
            max_parallelism,
            backend,
            empty: Vec::new(),
            keys: KeyTable::default(),
            slots: Slots::new(None),
            fire: TimeBuckets::default(),
            cleanup: TimeBuckets::default(),
            session_fire: TimerSet::default(),
            session_cleanup: TimerSet::default(),
            watermark: i64::MIN,
            pending: Batch::default(),
            pending_targets: Vec::new(),
            pending_slots: Vec::new(),
            generation: 1,
            late: Batch::default(),
            in_place: false,
        }
    }

    fn lateness(&self) -> i64 {
        self.settings.allowed_lateness
    }

    /// Whether a window has expired: fired, and past its allowed lateness.
    fn expired(&self, w: Window) -> bool {
        w.max_timestamp().saturating_add(self.lateness()) <= self.watermark
    }

    fn fired(&self, w: Window) -> bool {
        w.max_timestamp() <= self.watermark
    }

    fn queue(&mut self, record: RecordRef<'_>, slot: u32, from: Option<(&Members, usize)>) {
        self.pending.push_record(record, None);
        if let Some((m, i)) = from {
            m.copy_record(i, &mut self.pending.members);
        }
        let s = slot as usize;
        if self.slots.pending_gen[s] != self.generation {
            self.slots.pending_gen[s] = self.generation;
            self.slots.pending_idx[s] = self.pending_slots.len() as u32;
            self.pending_slots.push(slot);
        }
        self.pending_targets.push(self.slots.pending_idx[s]);
    }

    /// Adds a record to slot `slot`'s accumulator: at once where the
    /// function works in place, else queued for the next batch.
    ///
    /// `from`: the members its source found in the record's batch, and
    /// the record's index there, which go with a queued copy.
    fn add_to(
        &mut self,
        record: RecordRef<'_>,
        slot: u32,
        from: Option<(&Members, usize)>,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        if !self.in_place {
            self.queue(record, slot, from);
            return Ok(());
        }
        let acc = self.slots.fixed_slot_mut(slot);
        let f = self.agg.in_place().expect("an in-place function");
        if let Err(reason) = f.add_one(acc, record.value()) {
            out.dead_letter(record, &reason)?;
        }
        Ok(())
    }

    /// Merges each window's panes in place: one accumulator per window
    /// that has panes, and the windows they are for.
    fn merge_in_place(&mut self, due: &[(Window, u32)]) -> (ByteList, Vec<(Window, u32)>) {
        let f = self.agg.in_place().expect("an in-place function");
        let mut accs = ByteList::default();
        let mut fired = Vec::with_capacity(due.len());
        for &(w, k) in due {
            let mut merged = None;
            for &(p, slot) in &self.keys.get(k).panes {
                if !(w.start <= p && p < w.end) {
                    continue;
                }
                let pane = self.slots.fixed_slot(slot);
                match merged {
                    None => {
                        accs.push(pane);
                        merged = Some(accs.len() - 1);
                    }
                    Some(i) => f.fold(accs.get_mut(i), pane),
                }
            }
            if merged.is_some() {
                fired.push((w, k));
            }
        }
        (accs, fired)
    }

    fn is_pending(&self, slot: u32) -> bool {
        self.slots.pending_gen[slot as usize] == self.generation
    }

    /// Hands the pending records to the aggregator.
    async fn flush(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut accs = ByteList::default();
        for &s in &self.pending_slots {
            self.slots
                .push_to(s, &mut accs)
                .map_err(|m| state_error(out, m))?;
        }
        self.agg
            .add(&mut accs, &self.pending, &self.pending_targets, out)
            .await?;
        if accs.len() != self.pending_slots.len() {
            return Err(Self::contract(
                out,
                format!(
                    "add returned {} accumulators for {}",
                    accs.len(),
                    self.pending_slots.len()
                ),
            ));
        }
        for (i, &s) in self.pending_slots.iter().enumerate() {
            self.slots
                .set(s, accs.get(i))
                .map_err(|m| state_error(out, m))?;
        }
        self.pending.clear();
        self.pending_targets.clear();
        self.pending_slots.clear();
        self.generation += 1;
        Ok(())
    }

    /// The aggregate function broke its contract (a wrong count, a result
    /// that is not JSON).
    fn contract(out: &Output, message: String) -> RuntimeError {
        RuntimeError::Wasm(WasmError::Contract {
            uid: out.info().uid.to_string(),
            message,
        })
    }

    async fn add_aligned(
        &mut self,
        a: Aligned,
        record: RecordRef<'_>,
        ts: i64,
        key: &[u8],
        from: Option<(&Members, usize)>,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let last = Window {
            start: 0,
            end: a.last_end(ts),
        };
        if self.expired(last) {
            self.late.push_record(record, None);
            return Ok(());
        }
        let pane = a.pane_of(ts);
        let k = self
            .keys
            .intern(key, self.max_parallelism, KeyEntry::default);
        let existing = self
            .keys
            .get(k)
            .panes
            .iter()
            .find(|p| p.0 == pane)
            .map(|p| p.1);
        let slot = match existing {
            Some(s) => s,
            None => {
                let kg = self.keys.key_group(k);
                let slot = self
                    .slots
                    .alloc(kg, &self.empty)
                    .map_err(|m| state_error(out, m))?;
                let entry = self.keys.get_mut(k);
                let watermark = self.watermark;
                let fire = &mut self.fire;
                a.for_each_window(pane, |w| {
                    let has_other = entry.panes.iter().any(|&(p, _)| w.start <= p && p < w.end);
                    if !has_other && w.max_timestamp() > watermark {
                        fire.insert(w.max_timestamp(), k, w.start);
                    }
                });
                entry.panes.push((pane, slot));
                let expiry = (a.last_end(pane) - 1).saturating_add(self.lateness());
                self.cleanup.insert(expiry, k, ());
                slot
            }
        };
        self.add_to(record, slot, from, out)?;
        if self.lateness() > 0 {
            // Windows that already fired but are within their lateness fire
            // again, with this record.
            let mut refire = SmallVec::<[Window; 4]>::new();
            a.for_each_window(pane, |w| {
                if self.fired(w) && !self.expired(w) {
                    refire.push(w);
                }
            });
            if !refire.is_empty() {
                self.flush(out).await?;
                let due: Vec<(Window, u32)> = refire.into_iter().map(|w| (w, k)).collect();
                self.fire_aligned(&due, out).await?;
            }
        }
        if self.pending.len() >= MAX_PENDING {
            self.flush(out).await?;
        }
        Ok(())
    }

    async fn add_session(
        &mut self,
        gap: i64,
        record: RecordRef<'_>,
        ts: i64,
        key: &[u8],
        from: Option<(&Members, usize)>,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let new = Window {
            start: ts,
            end: ts.saturating_add(gap),
        };
        let overlapping: SmallVec<[usize; 2]> = match self.keys.find(key) {
            Some(k) => self
                .keys
                .get(k)
                .sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| s.window.start <= new.end && s.window.end >= new.start)
                .map(|(i, _)| i)
                .collect(),
            None => SmallVec::new(),
        };
        if overlapping.is_empty() && self.expired(new) {
            self.late.push_record(record, None);
            return Ok(());
        }
        let k = self
            .keys
            .intern(key, self.max_parallelism, KeyEntry::default);
        let lateness = self.lateness();
        let (slot, window) = if overlapping.is_empty() {
            let kg = self.keys.key_group(k);
            let slot = self
                .slots
                .alloc(kg, &self.empty)
                .map_err(|m| state_error(out, m))?;
            self.keys
                .get_mut(k)
                .sessions
                .push(Session { window: new, slot });
            if !self.fired(new) {
                self.session_fire.insert(new.max_timestamp(), k, ());
            }
            (slot, new)
        } else {
            if overlapping.len() > 1 {
                self.flush(out).await?;
            }
            let sessions = &self.keys.get(k).sessions;
            let survivor = sessions[overlapping[0]];
            let mut merged = new;
            let mut merge_accs = ByteList::default();
            for &i in &overlapping {
                let s = sessions[i];
                merged.start = merged.start.min(s.window.start);
                merged.end = merged.end.max(s.window.end);
                self.slots
                    .push_to(s.slot, &mut merge_accs)
                    .map_err(|m| state_error(out, m))?;
            }
            let removed: SmallVec<[Session; 2]> =
                overlapping.iter().map(|&i| sessions[i]).collect();
            if overlapping.len() > 1 {
                let one = self
                    .agg
                    .merge(
                        &merge_accs,
                        &[Span {
                            offset: 0,
                            len: overlapping.len() as u32,
                        }],
                    )
                    .await?;
                if one.len() != 1 {
                    return Err(Self::contract(
                        out,
                        format!("merge returned {} accumulators for 1 group", one.len()),
                    ));
                }
                self.slots
                    .set(survivor.slot, one.get(0))
                    .map_err(|m| state_error(out, m))?;
            }
            for s in &removed {
                let t = s.window.max_timestamp();
                self.session_fire.remove(t, k, ());
                self.session_cleanup
                    .remove(t.saturating_add(lateness), k, ());
                if s.slot != survivor.slot {
                    self.slots.release(s.slot);
                }
            }
            let entry = self.keys.get_mut(k);
            entry
                .sessions
                .retain(|s| !removed.iter().any(|r| r.window == s.window));
            entry.sessions.push(Session {
                window: merged,
                slot: survivor.slot,
            });
            if self.fired(merged) {
                self.session_cleanup
                    .insert(merged.max_timestamp().saturating_add(lateness), k, ());
            } else {
                self.session_fire.insert(merged.max_timestamp(), k, ());
            }
            (survivor.slot, merged)
        };
        self.add_to(record, slot, from, out)?;
        if self.fired(window) {
            // Within the allowed lateness: fire again with this record.
            self.flush(out).await?;
            self.emit_results(&[(window, k, slot)], out).await?;
        } else if self.pending.len() >= MAX_PENDING {
            self.flush(out).await?;
        }
        Ok(())
    }

    /// Fires aligned windows for keys: merges each window's panes and emits
    /// the results.
    async fn fire_aligned(
        &mut self,
        due: &[(Window, u32)],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        if self.in_place {
            let (accs, fired) = self.merge_in_place(due);
            if fired.is_empty() {
                return Ok(());
            }
            return self.emit_rows(&fired, &accs, out).await;
        }
        let pending = due.iter().any(|&(w, k)| {
            self.keys
                .get(k)
                .panes
                .iter()
                .any(|&(p, slot)| w.start <= p && p < w.end && self.is_pending(slot))
        });
        if pending {
            self.flush(out).await?;
        }
        let mut pane_accs = ByteList::default();
        let mut groups = Vec::with_capacity(due.len());
        let mut fired = Vec::with_capacity(due.len());
        for &(w, k) in due {
            let start = pane_accs.len() as u32;
            for &(p, slot) in &self.keys.get(k).panes {
                if w.start <= p && p < w.end {
                    self.slots
                        .push_to(slot, &mut pane_accs)
                        .map_err(|m| state_error(out, m))?;
                }
            }
            let len = pane_accs.len() as u32 - start;
            if len > 0 {
                groups.push(Span { offset: start, len });
                fired.push((w, k));
            }
        }
        if fired.is_empty() {
            return Ok(());
        }
        let accs = if groups.iter().all(|g| g.len == 1) {
            pane_accs
        } else {
            let merged = self.agg.merge(&pane_accs, &groups).await?;
            if merged.len() != groups.len() {
                return Err(Self::contract(
                    out,
                    format!(
                        "merge returned {} accumulators for {} groups",
                        merged.len(),
                        groups.len()
                    ),
                ));
            }
            merged
        };
        self.emit_rows(&fired, &accs, out).await
    }

    /// Emits results for (window, key, slot) triples.
    async fn emit_results(
        &mut self,
        due: &[(Window, u32, u32)],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let mut accs = ByteList::default();
        for &(_, _, slot) in due {
            self.slots
                .push_to(slot, &mut accs)
                .map_err(|m| state_error(out, m))?;
        }
        let fired: Vec<(Window, u32)> = due.iter().map(|&(w, k, _)| (w, k)).collect();
        self.emit_rows(&fired, &accs, out).await
    }

    async fn emit_rows(
        &mut self,
        fired: &[(Window, u32)],
        accs: &ByteList,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let windows: Vec<WindowRef<'_>> = fired
            .iter()
            .map(|&(w, k)| WindowRef {
                key: self.keys.key(k),
                start: w.start,
                end: w.end,
            })
            .collect();
        let results = self.agg.results(accs, &windows).await?;
        if results.len() != fired.len() {
            return Err(Self::contract(
                out,
                format!("{} results for {} accumulators", results.len(), fired.len()),
            ));
        }
        let mut rows = Batch::with_capacity(fired.len(), fired.len() * 96);
        let s = &self.settings;
        for (i, &(w, k)) in fired.iter().enumerate() {
            let result = results.get(i);
            if !self.in_place {
                // A module's result; an in-place function's is the host's.
                json::validate(result)
                    .map_err(|e| Self::contract(out, format!("a result is not JSON: {e}")))?;
            }
            let key = self.keys.key(k);
            rows.push_built(Some(key), Some(w.max_timestamp()), Origin::NONE, |v| {
                v.push(b'{');
                json::write_str(v, s.key_field.as_bytes());
                v.push(b':');
                v.extend_from_slice(key);
                v.push(b',');
                json::write_str(v, s.start_field.as_bytes());
                v.push(b':');
                json::write_i64(v, w.start);
                v.push(b',');
                json::write_str(v, s.end_field.as_bytes());
                v.push(b':');
                json::write_i64(v, w.end);
                let trimmed = result.trim_ascii();
                match trimmed {
                    [b'{', inner @ .., b'}'] => {
                        if !inner.trim_ascii().is_empty() {
                            v.push(b',');
                            v.extend_from_slice(inner);
                        }
                    }
                    other => {
                        v.extend_from_slice(b",\"result\":");
                        v.extend_from_slice(other);
                    }
                }
                v.push(b'}');
            });
        }
        out.emit(rows);
        Ok(())
    }

    async fn advance_aligned(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        let mut due = Vec::new();
        while let Some((last, k, start)) = self.fire.pop_due(self.watermark) {
            due.push((
                Window {
                    start,
                    end: last + 1,
                },
                k,
            ));
        }
        if !due.is_empty() {
            self.fire_aligned(&due, out).await?;
        }
        let WindowKind::Aligned(a) = self.settings.kind else {
            unreachable!("aligned windows");
        };
        while let Some((_, k, ())) = self.cleanup.pop_due(self.watermark) {
            // A key released by an earlier cleanup of the same advance.
            let Some(e) = self.keys.live_mut(k) else {
                continue;
            };
            let lateness = self.settings.allowed_lateness;
            let watermark = self.watermark;
            let slots = &mut self.slots;
            e.panes.retain(|&mut (p, slot)| {
                let expired = (a.last_end(p) - 1).saturating_add(lateness) <= watermark;
                if expired {
                    slots.release(slot);
                }
                !expired
            });
            release_if_empty(&mut self.keys, k);
        }
        Ok(())
    }

    async fn advance_sessions(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        let mut due = Vec::new();
        while let Some((t, k, ())) = self.session_fire.pop_due(self.watermark) {
            if let Some(s) = self
                .keys
                .get(k)
                .sessions
                .iter()
                .find(|s| s.window.max_timestamp() == t)
            {
                due.push((s.window, k, s.slot));
            }
        }
        if !due.is_empty() {
            if due.iter().any(|&(_, _, slot)| self.is_pending(slot)) {
                self.flush(out).await?;
            }
            self.emit_results(&due, out).await?;
            let lateness = self.lateness();
            for &(w, k, _) in &due {
                self.session_cleanup
                    .insert(w.max_timestamp().saturating_add(lateness), k, ());
            }
        }
        while let Some((_, k, ())) = self.session_cleanup.pop_due(self.watermark) {
            let lateness = self.lateness();
            let watermark = self.watermark;
            let slots = &mut self.slots;
            let Some(e) = self.keys.live_mut(k) else {
                continue;
            };
            e.sessions.retain(|s| {
                let expired = s.window.max_timestamp().saturating_add(lateness) <= watermark;
                if expired {
                    slots.release(s.slot);
                }
                !expired
            });
            release_if_empty(&mut self.keys, k);
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for WindowOperator {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        if let Some((backend, uid, subtask)) = self.backend.take() {
            let store = backend
                .open(&uid, subtask)
                .map_err(|error| RuntimeError::State { uid, error })?;
            self.slots = Slots::new(Some(store));
        }
        self.agg.open().await?;
        self.empty = self.agg.empty().to_vec();
        if matches!(self.slots.accs, Accumulators::Heap(_)) && self.agg.in_place().is_some() {
            self.slots = Slots::fixed(self.empty.len());
            self.in_place = true;
        }
        Ok(())
    }

    async fn process_batch(
        &mut self,
        mut batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let members = batch.members.take().filter(|m| m.fit(&batch));
        for i in 0..batch.len() {
            let record = batch.get(i);
            let from = members.as_ref().map(|m| (m, i));
            let (Some(ts), Some(key)) = (record.timestamp(), record.key()) else {
                out.dead_letter(
                    record,
                    "a window needs records with an event time and a key",
                )?;
                continue;
            };
            match self.settings.kind {
                WindowKind::Aligned(a) => self.add_aligned(a, record, ts, key, from, out).await?,
                WindowKind::Session { gap } => {
                    self.add_session(gap, record, ts, key, from, out).await?
                }
            }
        }
        if !self.late.is_empty() {
            let late = std::mem::take(&mut self.late);
            NodeMetrics::add(&out.info().metrics.late, late.len() as u64);
            out.emit_to(LATE_PORT, late);
        }
        Ok(())
    }

    async fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), RuntimeError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        match self.settings.kind {
            WindowKind::Aligned(_) => self.advance_aligned(out).await,
            WindowKind::Session { .. } => self.advance_sessions(out).await,
        }
    }

    async fn close(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        self.flush(out).await
    }

    async fn snapshot(
        &mut self,
        _barrier: crate::checkpoint::Barrier,
        out: &mut Output,
    ) -> Result<crate::checkpoint::OperatorState, RuntimeError> {
        use crate::checkpoint::format::{EntryWriter, KIND_PANE, KIND_SESSION, put_key};
        self.flush(out).await?;
        let mut w = EntryWriter::new();
        let mut key = Vec::new();
        let mut acc = ByteList::default();
        for (_, kg, record_key, e) in self.keys.iter() {
            for &(pane, slot) in &e.panes {
                acc.clear();
                self.slots
                    .push_to(slot, &mut acc)
                    .map_err(|m| state_error(out, m))?;
                key.clear();
                put_key(&mut key, record_key);
                key.extend_from_slice(&pane.to_be_bytes());
                w.push(kg, KIND_PANE, &key, acc.get(0));
            }
            for s in &e.sessions {
                acc.clear();
                self.slots
                    .push_to(s.slot, &mut acc)
                    .map_err(|m| state_error(out, m))?;
                key.clear();
                put_key(&mut key, record_key);
                key.extend_from_slice(&s.window.start.to_be_bytes());
                key.extend_from_slice(&s.window.end.to_be_bytes());
                w.push(kg, KIND_SESSION, &key, acc.get(0));
            }
        }
        Ok(crate::checkpoint::OperatorState {
            meta: serde_json::json!({ "watermark": self.watermark }),
            keyed: Some(w.finish()),
            committables: Vec::new(),
        })
    }

    async fn restore(
        &mut self,
        restored: crate::checkpoint::RestoredState,
    ) -> Result<(), RuntimeError> {
        use crate::checkpoint::format::{KIND_PANE, KIND_SESSION, take_i64, take_key};
        self.watermark = self.watermark.max(restored.watermark());
        let watermark = self.watermark;
        let lateness = self.lateness();
        let kind = self.settings.kind;
        let max_parallelism = self.max_parallelism;
        let (keys, slots) = (&mut self.keys, &mut self.slots);
        let (fire, cleanup, session_fire, session_cleanup) = (
            &mut self.fire,
            &mut self.cleanup,
            &mut self.session_fire,
            &mut self.session_cleanup,
        );
        let result = restored.entries(&mut |e| {
                let bad = || StateError::Corrupt("corrupt window entry".to_owned());
                let (key, rest) = take_key(e.key).ok_or_else(bad)?;
                let k = keys.intern(key, max_parallelism, KeyEntry::default);
                let slot = slots.alloc(e.kg, e.value)?;
                match (e.kind, kind) {
                    (KIND_PANE, WindowKind::Aligned(a)) => {
                        let (pane, _) = take_i64(rest).ok_or_else(bad)?;
                        keys.get_mut(k).panes.push((pane, slot));
                        a.for_each_window(pane, |w| {
                            if w.max_timestamp() > watermark {
                                fire.insert(w.max_timestamp(), k, w.start);
                            }
                        });
                        let expiry = (a.last_end(pane) - 1).saturating_add(lateness);
                        cleanup.insert(expiry, k, ());
                    }
                    (KIND_SESSION, WindowKind::Session { .. }) => {
                        let (start, rest) = take_i64(rest).ok_or_else(bad)?;
                        let (end, _) = take_i64(rest).ok_or_else(bad)?;
                        let window = Window { start, end };
                        keys.get_mut(k).sessions.push(Session { window, slot });
                        if window.max_timestamp() > watermark {
                            session_fire.insert(window.max_timestamp(), k, ());
                        } else {
                            session_cleanup.insert(
                                window.max_timestamp().saturating_add(lateness),
                                k,
                                (),
                            );
                        }
                    }
                    (other, _) => {
                        // The only misuse: the snapshot is another window's.
                        return Err(StateError::Misuse(format!(
                            "the snapshot's window entries (kind {other}) do not fit this window ({kind:?}); was the window type changed?"
                        )));
                    }
                }
                Ok(())
            });
        let context = format!("cannot restore from {}", restored.location);
        match result {
            Ok(()) => Ok(()),
            Err(StateError::Misuse(misfit)) => Err(RuntimeError::Incompatible(format!(
                "`{}` {context}: {misfit}",
                restored.uid
            ))),
            Err(error) => Err(RuntimeError::State {
                uid: restored.uid.clone(),
                error: error.context(context),
            }),
        }
    }
}

/// Makes a window's subtasks.
pub struct WindowFactory {
    pub settings: Arc<WindowSettings>,
    pub aggregator: Arc<dyn aggregate::AggregatorFactory>,
    /// Window accumulators go to RocksDB with that backend; with the heap
    /// backend they stay in the window's own slots.
    pub backend: Backend,
    pub max_parallelism: u32,
}

impl OperatorFactory for WindowFactory {
    fn kind(&self) -> &'static str {
        "window"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        let backend = match &self.backend {
            Backend::Memory { .. } => None,
            b @ Backend::RocksDb { .. } => {
                Some((b.clone(), subtask.info.uid.to_string(), subtask.index))
            }
        };
        let mut aggregator = self.aggregator.create(subtask.info);
        if let Some(request) = subtask.members {
            aggregator.ask_members_at(request.clone());
        }
        Box::new(WindowOperator::new(
            self.settings.clone(),
            aggregator,
            backend,
            self.max_parallelism,
        ))
    }

    fn asks_members(&self) -> bool {
        self.aggregator.asks_members()
    }

    fn module(&self) -> Option<ModuleRef<'_>> {
        self.aggregator.module()
    }
}

#[cfg(test)]
mod tests {
    use super::aggregate::{NativeAgg, NativeAggregator};
    use super::*;
    use crate::runtime::{NodeInfo, Splits};
    use crate::window::aggregate::NativeFn;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// (key, start, end, count) rows and the number of late records.
    type Rows = Vec<(u8, i64, i64, u64)>;

    /// A native function without its in-place form: the window batches
    /// its records and copies its accumulators, as for a Wasm function.
    struct Batched(NativeAggregator);

    #[async_trait]
    impl Aggregator for Batched {
        fn empty(&self) -> &[u8] {
            self.0.empty()
        }

        async fn add(
            &mut self,
            accs: &mut ByteList,
            input: &Batch,
            targets: &[u32],
            out: &mut Output,
        ) -> Result<(), RuntimeError> {
            self.0.add(accs, input, targets, out).await
        }

        async fn merge(
            &mut self,
            accs: &ByteList,
            groups: &[Span],
        ) -> Result<ByteList, RuntimeError> {
            self.0.merge(accs, groups).await
        }

        async fn results(
            &mut self,
            accs: &ByteList,
            windows: &[WindowRef<'_>],
        ) -> Result<ByteList, RuntimeError> {
            self.0.results(accs, windows).await
        }
    }

    /// A window counting records, and summing `/x` as `sum`; in place or
    /// batched.
    fn operator(kind: WindowKind, lateness: i64, in_place: bool) -> (WindowOperator, Output) {
        let settings = Arc::new(WindowSettings {
            kind,
            allowed_lateness: lateness,
            key_field: "k".into(),
            start_field: "s".into(),
            end_field: "e".into(),
        });
        let agg = NativeAggregator::new(vec![
            NativeAgg {
                func: NativeFn::Count,
                field: None,
                name: "n".into(),
            },
            NativeAgg {
                func: NativeFn::Sum,
                field: Some(json::Pointer::parse("/x").unwrap()),
                name: "sum".into(),
            },
        ]);
        let agg: Box<dyn Aggregator> = if in_place {
            Box::new(agg)
        } else {
            Box::new(Batched(agg))
        };
        let info = Arc::new(NodeInfo {
            uid: "w".into(),
            has_dead_letter: true,
            splits: Arc::new(Splits::default()),
            metrics: Arc::new(crate::runtime::NodeMetrics::new(1)),
            changelog: false,
        });
        (
            WindowOperator::new(settings, agg, None, 128),
            Output::new(info),
        )
    }

    /// Feeds events in order with the benchmark's per-event watermark
    /// (max - delay - 1, before each event), then the end of input, in
    /// batches of `batch` records; returns the rows and the late count.
    async fn drive(
        op: &mut WindowOperator,
        out: &mut Output,
        events: &[(u8, i64)],
        delay: i64,
        batch: usize,
    ) -> (Rows, usize) {
        op.open().await.unwrap();
        let mut rows = Vec::new();
        let mut late = 0;
        let collect = |out: &mut Output, rows: &mut Rows, late: &mut usize| {
            for (port, b) in out.drain() {
                if port == LATE_PORT {
                    *late += b.len();
                    continue;
                }
                for r in b.iter() {
                    let v: serde_json::Value = serde_json::from_slice(r.value()).unwrap();
                    rows.push((
                        v["k"].as_u64().unwrap() as u8,
                        v["s"].as_i64().unwrap(),
                        v["e"].as_i64().unwrap(),
                        v["n"].as_u64().unwrap(),
                    ));
                }
            }
        };
        let mut max = i64::MIN;
        let mut pending = Batch::default();
        for &(k, ts) in events {
            if max > i64::MIN && pending.len() >= batch {
                op.process_batch(std::mem::take(&mut pending), out)
                    .await
                    .unwrap();
                collect(out, &mut rows, &mut late);
            }
            pending.push(
                Some(k.to_string().as_bytes()),
                b"{}",
                Some(ts),
                Origin::NONE,
            );
            if ts > max {
                max = ts;
                op.process_batch(std::mem::take(&mut pending), out)
                    .await
                    .unwrap();
                op.on_watermark(max - delay - 1, out).await.unwrap();
                collect(out, &mut rows, &mut late);
            }
        }
        op.process_batch(pending, out).await.unwrap();
        op.on_watermark(i64::MAX, out).await.unwrap();
        op.close(out).await.unwrap();
        collect(out, &mut rows, &mut late);
        rows.sort();
        (rows, late)
    }

    /// Flink's per-window semantics, written plainly: every window of every
    /// event, fired once when the watermark passes it, again for each record
    /// that reaches it within the allowed lateness.
    fn model_aligned(a: Aligned, lateness: i64, events: &[(u8, i64)], delay: i64) -> (Rows, usize) {
        let mut state: BTreeMap<(u8, Window), (u64, bool)> = BTreeMap::new();
        let mut rows = Vec::new();
        let mut late = 0;
        let mut wm = i64::MIN;
        let advance =
            |wm: i64, state: &mut BTreeMap<(u8, Window), (u64, bool)>, rows: &mut Rows| {
                for ((k, w), (n, fired)) in state.iter_mut() {
                    if !*fired && w.max_timestamp() <= wm {
                        rows.push((*k, w.start, w.end, *n));
                        *fired = true;
                    }
                }
                state.retain(|(_, w), _| w.max_timestamp().saturating_add(lateness) > wm);
            };
        for &(k, ts) in events {
            let mut any = false;
            a.for_each_window(ts, |w| {
                if w.max_timestamp().saturating_add(lateness) <= wm {
                    return;
                }
                any = true;
                let e = state.entry((k, w)).or_insert((0, false));
                e.0 += 1;
                if w.max_timestamp() <= wm {
                    rows.push((k, w.start, w.end, e.0));
                    e.1 = true;
                }
            });
            if !any {
                late += 1;
            }
            // The watermark follows each event that raises the maximum.
            if ts - delay - 1 > wm {
                wm = ts - delay - 1;
                advance(wm, &mut state, &mut rows);
            }
        }
        advance(i64::MAX, &mut state, &mut rows);
        rows.sort();
        (rows, late)
    }

    /// Event-time session windows, as bench/README's W4 defines them.
    fn model_sessions(gap: i64, events: &[(u8, i64)], delay: i64) -> (Rows, usize) {
        let mut live: BTreeMap<u8, Vec<(i64, i64, u64)>> = BTreeMap::new();
        let mut rows = Vec::new();
        let mut late = 0;
        let mut max = i64::MIN;
        for &(k, ts) in events {
            let wm = if max == i64::MIN {
                i64::MIN
            } else {
                max - delay - 1
            };
            for (key, sessions) in live.iter_mut() {
                sessions.retain(|&(s, e, n)| {
                    if e - 1 <= wm {
                        rows.push((*key, s, e, n));
                        false
                    } else {
                        true
                    }
                });
            }
            let sessions = live.entry(k).or_default();
            let (mut ns, mut ne, mut nc) = (ts, ts + gap, 1u64);
            let mut merged = false;
            sessions.retain(|&(s, e, n)| {
                if s <= ne && e >= ns {
                    ns = ns.min(s);
                    ne = ne.max(e);
                    nc += n;
                    merged = true;
                    false
                } else {
                    true
                }
            });
            if !merged && ne - 1 <= wm {
                late += 1;
            } else {
                sessions.push((ns, ne, nc));
            }
            max = max.max(ts);
        }
        for (key, sessions) in live {
            for (s, e, n) in sessions {
                rows.push((key, s, e, n));
            }
        }
        rows.sort();
        (rows, late)
    }

    fn events() -> impl Strategy<Value = Vec<(u8, i64)>> {
        // Mostly increasing timestamps with disorder and a few very late ones.
        // Small steps make exact boundary cases (a timestamp equal to a
        // window's end or expiry) common.
        proptest::collection::vec(
            (0u8..3, 0i64..6, 0i64..8, prop::bool::weighted(0.1)),
            1..120,
        )
        .prop_map(|raw| {
            let mut clock = 1000;
            raw.into_iter()
                .map(|(k, step, jitter, very_late)| {
                    clock += step;
                    (
                        k,
                        if very_late {
                            clock - 40 - jitter * 5
                        } else {
                            clock - jitter
                        },
                    )
                })
                .collect()
        })
    }

    fn aligned() -> impl Strategy<Value = Aligned> {
        prop_oneof![
            (5i64..60).prop_map(|s| Aligned::tumbling(s, 0).unwrap()),
            (2i64..20, 1i64..4)
                .prop_map(|(slide, n)| Aligned::sliding(slide * n, slide, 3).unwrap()),
            (2i64..15, 1i64..5).prop_map(|(step, n)| Aligned::cumulate(step * n, step, 0).unwrap()),
        ]
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A record the function cannot add goes to the dead-letter output and
    /// leaves its window as it was, in place or batched.
    #[test]
    fn a_record_that_cannot_be_added_is_set_aside_alone() {
        for in_place in [true, false] {
            let sliding = Aligned::sliding(20, 10, 0).unwrap();
            let (mut op, mut out) = operator(WindowKind::Aligned(sliding), 0, in_place);
            let mut input = Batch::default();
            for (ts, value) in [(1, r#"{"x":2}"#), (2, r#"{"x":"two"}"#), (12, r#"{"x":3}"#)] {
                input.push(Some(b"7"), value.as_bytes(), Some(ts), Origin::NONE);
            }
            let rows = block_on(async {
                op.open().await.unwrap();
                op.process_batch(input, &mut out).await.unwrap();
                op.on_watermark(i64::MAX, &mut out).await.unwrap();
                op.close(&mut out).await.unwrap();
                let mut rows = Vec::new();
                for (port, b) in out.drain() {
                    for r in b.iter() {
                        rows.push((port, String::from_utf8(r.value().to_vec()).unwrap()));
                    }
                }
                rows
            });
            assert_eq!(op.in_place, in_place);
            let dead: Vec<_> = rows.iter().filter(|(p, _)| *p != 0).collect();
            assert_eq!(dead.len(), 1, "{rows:?}");
            assert!(dead[0].1.contains("two"), "{dead:?}");
            let results: Vec<&str> = rows
                .iter()
                .filter(|(p, _)| *p == 0)
                .map(|(_, r)| r.as_str())
                .collect();
            assert_eq!(
                results,
                [
                    r#"{"k":7,"s":-10,"e":10,"n":1,"sum":2}"#,
                    r#"{"k":7,"s":0,"e":20,"n":2,"sum":5}"#,
                    r#"{"k":7,"s":10,"e":30,"n":1,"sum":3}"#,
                ]
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Panes plus timers give exactly the per-window results, whatever
        /// the batch size, with and without allowed lateness.
        #[test]
        fn aligned_windows_equal_the_per_window_model(
            a in aligned(), evs in events(), delay in 0i64..12, lateness in prop_oneof![Just(0i64), 1i64..30], batch in 1usize..9, in_place: bool
        ) {
            let (mut op, mut out) = operator(WindowKind::Aligned(a), lateness, in_place);
            let got = block_on(drive(&mut op, &mut out, &evs, delay, batch));
            prop_assert_eq!(got, model_aligned(a, lateness, &evs, delay));
        }

        /// Merging sessions give exactly W4's results.
        #[test]
        fn session_windows_equal_the_w4_model(gap in 1i64..40, evs in events(), delay in 0i64..12, batch in 1usize..9, in_place: bool) {
            let (mut op, mut out) = operator(WindowKind::Session { gap }, 0, in_place);
            let got = block_on(drive(&mut op, &mut out, &evs, delay, batch));
            prop_assert_eq!(got, model_sessions(gap, &evs, delay));
        }
    }
}
