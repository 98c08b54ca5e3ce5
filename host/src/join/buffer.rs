//! The records a join holds, per key and side, in time order — the state
//! of every join kind, and how it is snapshot and restored.
//!
//! The bytes of each record live in [`Slots`] (the heap, or the RocksDB
//! store); the key table, the per-key time lists and the timers stay on the
//! heap, as the window's bookkeeping does. A snapshot holds one entry per
//! held record under its key group (kind [`KIND_JOIN_ROW`]: the record key,
//! the side, the time; the value), so a savepoint restores at any
//! parallelism and on either backend, and the time lists come back in the
//! order they were in.

use super::{RIGHT, ROW_NAMESPACE};
use crate::checkpoint::RestoredState;
use crate::checkpoint::format::{EntryWriter, KIND_JOIN_ROW, put_key, take_i64, take_key};
use crate::error::StateError;
use crate::runtime::Output;
use crate::state::Backend;
use crate::state::keys::KeyTable;
use crate::state::slots::Slots;
use crate::state::timers::{TimeBuckets, TimerSet};
use smallvec::SmallVec;

/// Calls back with the timers (time, namespace) of a record of a side at a
/// time.
pub type TimersOf<'a> = dyn Fn(usize, i64, &mut dyn FnMut(i64, u8)) + 'a;

/// What the heap keeps per held record besides its bytes: its list entry
/// and its share of a timer.
const ROW_BOOKKEEPING: u64 = 16 + 40;

/// A held record: its time and the slot of its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub ts: i64,
    pub slot: u32,
}

/// A key's held records, per side, in time (then arrival) order.
#[derive(Default)]
pub struct KeyRows {
    pub sides: [SmallVec<[Held; 2]>; 2],
}

impl KeyRows {
    fn insert(&mut self, side: usize, h: Held) {
        let list = &mut self.sides[side];
        let at = list.partition_point(|x| x.ts <= h.ts);
        list.insert(at, h);
    }

    pub fn is_empty(&self) -> bool {
        self.sides.iter().all(|s| s.is_empty())
    }
}

/// A join's timers: (time, key, namespace), what the namespace means is the
/// join's. Exact, or with a grain of `g` ms: a timer then fires once the
/// watermark reaches its time rounded up to a multiple of `g`, and adding
/// one is a push to that time's list (a join whose timers only let go of
/// records no future record can match keeps them a little longer, and
/// saves a B-tree insert per record).
pub enum JoinTimers {
    Exact(TimerSet<u8>),
    Coarse {
        grain: i64,
        buckets: TimeBuckets<u8>,
    },
}

impl JoinTimers {
    /// Timers with a grain of `grain` ms (exact at 1 or below).
    pub fn new(grain: i64) -> JoinTimers {
        if grain > 1 {
            JoinTimers::Coarse {
                grain,
                buckets: TimeBuckets::default(),
            }
        } else {
            JoinTimers::Exact(TimerSet::default())
        }
    }

    #[inline]
    pub fn insert(&mut self, time: i64, key: u32, ns: u8) {
        match self {
            JoinTimers::Exact(set) => {
                set.insert(time, key, ns);
            }
            JoinTimers::Coarse { grain, buckets } => {
                let g = *grain;
                let up = match time.rem_euclid(g) {
                    0 => time,
                    r => time.saturating_add(g - r),
                };
                buckets.insert(up, key, ns);
            }
        }
    }

    /// Removes and returns a timer due at `until`, earliest first.
    #[inline]
    pub fn pop_due(&mut self, until: i64) -> Option<(i64, u32, u8)> {
        match self {
            JoinTimers::Exact(set) => set.pop_due(until),
            JoinTimers::Coarse { buckets, .. } => buckets.pop_due(until),
        }
    }

    /// Forgets every timer.
    fn clear(&mut self) {
        *self = match self {
            JoinTimers::Exact(_) => JoinTimers::new(1),
            JoinTimers::Coarse { grain, .. } => JoinTimers::new(*grain),
        };
    }

    fn bytes(&self) -> u64 {
        match self {
            JoinTimers::Exact(set) => set.bytes(),
            JoinTimers::Coarse { buckets, .. } => buckets.bytes(),
        }
    }
}

pub struct Buffers {
    /// Keys with held records; timers name keys by their ids here.
    pub keys: KeyTable<KeyRows>,
    /// When something is due for a key.
    pub timers: JoinTimers,
    rows: Option<Slots>,
    buf: Vec<u8>,
    max_parallelism: u32,
    backend: Backend,
    uid: String,
    subtask: u32,
}

impl Buffers {
    /// Buffers whose timers have a grain of `timer_grain` ms (see
    /// [`JoinTimers`]).
    pub fn new(
        backend: Backend,
        uid: String,
        subtask: u32,
        max_parallelism: u32,
        timer_grain: i64,
    ) -> Buffers {
        Buffers {
            keys: KeyTable::default(),
            timers: JoinTimers::new(timer_grain),
            rows: None,
            buf: Vec::new(),
            max_parallelism,
            backend,
            uid,
            subtask,
        }
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Opens the store of the record bytes.
    pub fn open(&mut self) -> Result<(), StateError> {
        self.rows = Some(Slots::open(
            &self.backend,
            &self.uid,
            self.subtask,
            ROW_NAMESPACE,
        )?);
        Ok(())
    }

    fn slots(&mut self) -> &mut Slots {
        self.rows.as_mut().expect("opened")
    }

    /// Holds `value`, a record of `side` with key `key` at `ts`; returns the
    /// key's id.
    pub fn add(
        &mut self,
        side: usize,
        key: &[u8],
        ts: i64,
        value: &[u8],
    ) -> Result<u32, StateError> {
        let k = self.intern(key);
        self.hold(k, side, ts, value)?;
        Ok(k)
    }

    /// The id of `key`, added (holding nothing yet) if it is new: the caller
    /// holds a record under it next.
    pub fn intern(&mut self, key: &[u8]) -> u32 {
        self.keys
            .intern(key, self.max_parallelism, KeyRows::default)
    }

    /// Holds `value`, a record of `side` at `ts`, under key id `k`.
    pub fn hold(&mut self, k: u32, side: usize, ts: i64, value: &[u8]) -> Result<(), StateError> {
        let kg = self.keys.key_group(k);
        let slot = self.slots().alloc(side, kg, value, ROW_BOOKKEEPING)?;
        self.keys.get_mut(k).insert(side, Held { ts, slot });
        Ok(())
    }

    /// Calls `f` with the bytes of a held record.
    pub fn with<R>(&mut self, slot: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, StateError> {
        let rows = self.rows.as_mut().expect("opened");
        rows.with(slot, &mut self.buf, f)
    }

    /// Lets go of the records of `side` of key `k` at list positions
    /// `range`, and of the key when it holds nothing more.
    pub fn drop_range(
        &mut self,
        k: u32,
        side: usize,
        range: std::ops::Range<usize>,
    ) -> Result<(), StateError> {
        let entry = self.keys.get_mut(k);
        let slots = self.rows.as_mut().expect("opened");
        for h in entry.sides[side].drain(range) {
            slots.release(h.slot, ROW_BOOKKEEPING)?;
        }
        if entry.is_empty() {
            self.keys.release(k);
        }
        Ok(())
    }

    /// Lets go of everything held.
    pub fn drop_all(&mut self) -> Result<(), StateError> {
        let slots = self.rows.as_mut().expect("opened");
        for (.., entry) in self.keys.iter() {
            for h in entry.sides.iter().flatten() {
                slots.release(h.slot, ROW_BOOKKEEPING)?;
            }
        }
        self.keys.clear();
        self.timers.clear();
        Ok(())
    }

    /// Tells the node's metrics how much state the subtask holds.
    pub fn report_size(&self, out: &Output) {
        if let (Some(rows), Some(gauge)) = (
            &self.rows,
            out.info().metrics.state_bytes.get(self.subtask as usize),
        ) {
            gauge.store(
                rows.bytes() + self.keys.bytes() + self.timers.bytes(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Every held record, as a keyed-state object.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, StateError> {
        let mut w = EntryWriter::new();
        let mut key = Vec::new();
        let rows = self.rows.as_mut().expect("opened");
        for (_, kg, record_key, entry) in self.keys.iter() {
            for (side, list) in entry.sides.iter().enumerate() {
                for h in list {
                    key.clear();
                    put_key(&mut key, record_key);
                    key.push(side as u8);
                    key.extend_from_slice(&h.ts.to_be_bytes());
                    rows.with(h.slot, &mut self.buf, |v| {
                        w.push(kg, KIND_JOIN_ROW, &key, v)
                    })?;
                }
            }
        }
        Ok(w.finish())
    }

    /// Takes back the records of a snapshot; `timers(side, ts, add)` adds
    /// the timers (time, namespace) of a restored record.
    pub fn restore(
        &mut self,
        restored: &RestoredState,
        what: &str,
        timers: &TimersOf<'_>,
    ) -> Result<(), StateError> {
        let timers_of = timers;
        let (keys, timer_set) = (&mut self.keys, &mut self.timers);
        let rows = self.rows.as_mut().expect("opened");
        restored.entries(&mut |e| {
            if e.kind != KIND_JOIN_ROW {
                return Err(StateError::Misuse(format!(
                    "the snapshot holds state of kind {} where {what} keeps its records",
                    e.kind
                )));
            }
            let bad = || StateError::Corrupt(format!("a corrupt entry of {what}"));
            let (key, rest) = take_key(e.key).ok_or_else(bad)?;
            let (&side, rest) = rest.split_first().ok_or_else(bad)?;
            let (ts, _) = take_i64(rest).ok_or_else(bad)?;
            let side = side as usize;
            if side > RIGHT {
                return Err(bad());
            }
            let k = keys.intern_in_group(key, e.kg, KeyRows::default);
            let slot = rows.alloc(side, e.kg, e.value, ROW_BOOKKEEPING)?;
            keys.get_mut(k).insert(side, Held { ts, slot });
            timers_of(side, ts, &mut |time, ns| {
                timer_set.insert(time, k, ns);
            });
            Ok(())
        })
    }
}
