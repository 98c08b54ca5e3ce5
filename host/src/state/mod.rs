//! Keyed state: what a keyed process function keeps per key, owned by the
//! host so that it outlives guest instances (and, with checkpoints, the
//! process).
//!
//! Two layers:
//!
//! - a [`Store`] is an ordered byte map per key group: the in-memory store
//!   ([`memory`]) keeps one table per key group, the RocksDB store
//!   ([`rocks`]) prefixes every key with its key group (two bytes, big
//!   endian), so a key-group range is a contiguous key range in both;
//! - [`KeyedState`] lays an operator's declared states out in a store and
//!   applies state TTL.
//!
//! The layout, within a key group (all integers big endian):
//!
//! | store key | value |
//! |---|---|
//! | `0x01 key` | the key's *row*: every value state of the key |
//! | `0x02 state:u32 key` | a list state's elements |
//! | `0x03 state:u32 len(key):u32 key user-key` | one map state entry |
//! | `0x04 domain:u8 time:u64 key` | a timer (RocksDB only; empty value) |
//!
//! A row holds, per value state in declaration order, a tag (0 absent,
//! 1 present, 2 present with an expiry time: i64 little endian) and then
//! `len:u32 LE` and the bytes. List and map values start with the same
//! expiry header (0, or 2 and the time); list elements are `len:u32 LE` and
//! bytes each. Value states share one row because a process function reads
//! most of them for every record: one lookup per key instead of one per
//! state.
//!
//! Timers are kept by [`timers::Timers`] on the heap backend, where they
//! count against `state.memory_limit`, and in the store itself with RocksDB
//! ([`timers::StoredTimers`]), as Flink keeps them. Snapshots carry them as
//! timer entries either way, so a savepoint moves between backends.

pub mod key_groups;
pub mod keys;
pub mod memory;
pub mod rocks;
pub mod slots;
pub mod timers;

pub use crate::error::StateError;
use crate::time::Clock;
use std::sync::Arc;
use timers::Domain;

/// Visits stored entries: `(key group, key, value)`.
pub type EntryVisitor<'a> = dyn FnMut(u32, &[u8], &[u8]) + 'a;

/// An ordered byte map per key group.
pub trait Store: Send {
    /// Appends the value under `key` to `out`; false when there is none.
    fn get(&mut self, kg: u32, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StateError>;
    fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), StateError>;
    /// Calls `f(key, value)` for every entry whose key starts with `prefix`,
    /// in key order.
    fn scan(
        &mut self,
        kg: u32,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError>;
    /// Like [`Store::scan`], but from the first key at or after `from`
    /// (which starts with `prefix`), and stopping when `f` returns false.
    /// RocksDB seeks there, past the tombstones of deleted keys before it.
    fn scan_from(
        &mut self,
        kg: u32,
        prefix: &[u8],
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let mut go = true;
        self.scan(kg, prefix, &mut |k, v| {
            if go && k >= from {
                go = f(k, v);
            }
        })
    }
    /// About how many bytes the store holds (for metrics).
    fn size_bytes(&self) -> u64;
    /// Calls `f(key group, key, value)` for every entry (for a snapshot).
    fn for_each(&mut self, f: &mut EntryVisitor<'_>) -> Result<(), StateError>;
}

/// Which store an operator's state goes to, from the spec's `state` section.
#[derive(Debug, Clone)]
pub enum Backend {
    /// On the heap; the job fails once the state outgrows `limit` bytes.
    Memory { limit: u64 },
    /// Embedded RocksDB under `dir`, with at most about `cache` bytes of
    /// block cache and `write_buffer` bytes of memtables per store. Timers
    /// are kept in it too, unless `heap_timers` says they stay on the heap
    /// with at most that many bytes.
    RocksDb {
        dir: std::path::PathBuf,
        cache: u64,
        write_buffer: u64,
        heap_timers: Option<u64>,
    },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory { .. } => "memory",
            Backend::RocksDb { .. } => "rocksdb",
        }
    }

    /// Checks that a keyed state's timers fit in the memory they may take
    /// (timers are state too): with the rest of the state on the heap
    /// backend, on their own when `state.timers: heap` keeps them on the heap
    /// beside RocksDB. Timers kept in RocksDB take none, and cost no check.
    pub fn check_timers(&self, state: &KeyedState) -> Result<(), StateError> {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        match self {
            Backend::Memory { limit } => {
                let timers = state.timers.bytes();
                if state.size_bytes() + timers <= *limit {
                    return Ok(());
                }
                Err(StateError::Full(format!(
                    "{} (timers take {:.1} MiB of it); raise the limit or use `state: {{ backend: rocksdb }}`, which keeps state and timers on disk",
                    memory::full(*limit),
                    mib(timers)
                )))
            }
            Backend::RocksDb {
                heap_timers: Some(limit),
                ..
            } => {
                let timers = state.timers.bytes();
                if timers <= *limit {
                    return Ok(());
                }
                Err(StateError::Full(format!(
                    "the timers on the heap take {:.1} MiB, more than `state.memory_limit` ({:.1} MiB): raise it, or leave out `state.timers: heap` to keep timers in RocksDB",
                    mib(timers),
                    mib(*limit)
                )))
            }
            Backend::RocksDb { .. } => Ok(()),
        }
    }

    /// The keyed state of one subtask of one operator: its store, and its
    /// timers where the backend keeps them.
    pub fn keyed_state(
        &self,
        uid: &str,
        subtask: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyedState, StateError> {
        let state = KeyedState::new(self.open(uid, subtask)?, clock);
        Ok(match self {
            Backend::RocksDb {
                heap_timers: None, ..
            } => state.with_timers(Box::new(timers::StoredTimers::default())),
            _ => state,
        })
    }

    /// A store for one subtask of one operator.
    pub fn open(&self, uid: &str, subtask: u32) -> Result<Box<dyn Store>, StateError> {
        Ok(match self {
            Backend::Memory { limit } => Box::new(memory::MemoryStore::new(*limit)),
            Backend::RocksDb {
                dir,
                cache,
                write_buffer,
                ..
            } => Box::new(rocks::RocksStore::open(
                dir,
                uid,
                subtask,
                *cache,
                *write_buffer,
            )?),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Value,
    List,
    Map,
}

impl Kind {
    /// As the WIT and the snapshot format name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Value => "value",
            Kind::List => "list",
            Kind::Map => "map",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        [Kind::Value, Kind::List, Kind::Map]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    pub kind: Kind,
    pub ttl_ms: Option<u64>,
    /// The layout version of the state's bytes, as the module numbers it.
    pub version: u32,
}

const ROW: u8 = 1;
const LIST: u8 = 2;
const MAP: u8 = 3;

const ABSENT: u8 = 0;
const PRESENT: u8 = 1;
const EXPIRING: u8 = 2;

/// One key's value states, decoded from a row: per state, the bytes' range
/// in the row buffer and the expiry time.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub slots: Vec<Option<(std::ops::Range<usize>, Option<i64>)>>,
}

/// A state's items taken out of the store to be migrated: see
/// [`KeyedState::take_for_migration`].
pub struct Migration {
    handle: u32,
    /// Per stored entry: key group, store key, expiry, and how many items.
    entries: Vec<(u32, Vec<u8>, Option<i64>, usize)>,
    /// The items, in entry order.
    pub items: Vec<Vec<u8>>,
}

/// One value slot of a row to write: the value (none: absent), the expiry
/// it had, and whether it was written now (then its TTL starts again).
pub type SlotWrite<'a> = (Option<&'a [u8]>, Option<i64>, bool);

/// An operator subtask's keyed state.
pub struct KeyedState {
    store: Box<dyn Store>,
    descriptors: Vec<Descriptor>,
    /// For each handle, its slot among the value states (value states only).
    value_slot: Vec<Option<u32>>,
    /// TTL per value slot.
    value_ttl: Vec<Option<u64>>,
    clock: Arc<dyn Clock>,
    key_buf: Vec<u8>,
    buf: Vec<u8>,
    /// While journaling: what each list and map write replaced, in order
    /// (key group, store key, old value), so that a failed call's writes can
    /// be undone.
    journal: Option<Vec<Undo>>,
    /// List and map writes so far (journaled or not).
    entry_writes: u64,
    timers: Box<dyn timers::TimerQueue>,
}

/// What a journaled write replaced: key group, store key, old value.
type Undo = (u32, Vec<u8>, Option<Vec<u8>>);

impl KeyedState {
    pub fn new(store: Box<dyn Store>, clock: Arc<dyn Clock>) -> KeyedState {
        KeyedState {
            descriptors: Vec::new(),
            value_slot: Vec::new(),
            value_ttl: Vec::new(),
            clock,
            key_buf: Vec::new(),
            buf: Vec::new(),
            journal: None,
            entry_writes: 0,
            timers: Box::new(timers::Timers::default()),
            store,
        }
    }

    /// The same state with its timers kept by `timers` (on the heap
    /// otherwise).
    pub fn with_timers(mut self, timers: Box<dyn timers::TimerQueue>) -> KeyedState {
        self.timers = timers;
        self
    }

    /// Registers a timer; registering an existing one does nothing.
    pub fn register_timer(
        &mut self,
        d: Domain,
        t: i64,
        kg: u32,
        key: &[u8],
    ) -> Result<(), StateError> {
        self.timers.register(&mut *self.store, d, t, kg, key)
    }

    /// Deletes a timer, if it exists.
    pub fn delete_timer(
        &mut self,
        d: Domain,
        t: i64,
        kg: u32,
        key: &[u8],
    ) -> Result<(), StateError> {
        self.timers.delete(&mut *self.store, d, t, kg, key)
    }

    /// Registers (`true`) and deletes (`false`) timers of one key, in
    /// order.
    pub fn change_timers(
        &mut self,
        kg: u32,
        key: &[u8],
        changes: &[(Domain, i64, bool)],
    ) -> Result<(), StateError> {
        self.timers.change_key(&mut *self.store, kg, key, changes)
    }

    /// Calls `f(time, key group, key)` for every timer with `time <= until`,
    /// in time order.
    pub fn due_timers(
        &mut self,
        d: Domain,
        until: i64,
        f: &mut dyn FnMut(i64, u32, &[u8]),
    ) -> Result<(), StateError> {
        self.timers.due(&mut *self.store, d, until, f)
    }

    /// The earliest timer's time.
    pub fn next_timer(&self, d: Domain) -> Option<i64> {
        self.timers.next(d)
    }

    /// Starts recording list and map writes (the writes a guest makes
    /// through the imports during a call), so that [`KeyedState::rollback`]
    /// can undo them. Value states are written after a call and need none.
    pub fn begin(&mut self) {
        match &mut self.journal {
            Some(j) => j.clear(),
            None => self.journal = Some(Vec::new()),
        }
    }

    /// Keeps the writes since [`KeyedState::begin`] and stops recording.
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes the writes since [`KeyedState::begin`], newest first, and stops
    /// recording.
    pub fn rollback(&mut self) -> Result<(), StateError> {
        let Some(journal) = self.journal.take() else {
            return Ok(());
        };
        for (kg, key, old) in journal.into_iter().rev() {
            match old {
                Some(v) => self.store.put(kg, &key, &v)?,
                None => self.store.delete(kg, &key)?,
            }
        }
        Ok(())
    }

    /// How many list and map writes the state has had: a call that changed
    /// it wrote some.
    pub fn entry_writes(&self) -> u64 {
        self.entry_writes
    }

    /// Puts (`Some`) or deletes (`None`) the entry under `key`, journaled.
    fn write_entry(&mut self, kg: u32, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        self.entry_writes += 1;
        if let Some(journal) = &mut self.journal {
            let mut old = Vec::new();
            let had = self.store.get(kg, key, &mut old)?;
            journal.push((kg, key.to_vec(), had.then_some(old)));
        }
        match value {
            Some(v) => self.store.put(kg, key, v),
            None => self.store.delete(kg, key),
        }
    }

    /// [`KeyedState::write_entry`] at the key in `key_buf`.
    fn write_here(&mut self, kg: u32, value: Option<&[u8]>) -> Result<(), StateError> {
        let key = std::mem::take(&mut self.key_buf);
        let r = self.write_entry(kg, &key, value);
        self.key_buf = key;
        r
    }

    /// About how many bytes the state takes in its store.
    pub fn size_bytes(&self) -> u64 {
        self.store.size_bytes()
    }

    /// The declared states, by handle.
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    /// Every stored entry of the states in the layout above (not the
    /// timers, see [`KeyedState::due_timers`]): what a snapshot copies.
    pub fn for_each_entry(&mut self, f: &mut EntryVisitor<'_>) -> Result<(), StateError> {
        self.store.for_each(&mut |kg, k, v| {
            if k.first() != Some(&timers::TIMER) {
                f(kg, k, v)
            }
        })
    }

    /// Puts back an entry of a snapshot taken with the states `old`,
    /// translated to the states declared now: list and map entries carry
    /// their state's handle, rows their value states in declaration order.
    /// `map[old handle]` is the new handle (`None`: the state is dropped).
    pub fn restore_entry(
        &mut self,
        kg: u32,
        key: &[u8],
        value: &[u8],
        old: &[Descriptor],
        map: &[Option<u32>],
    ) -> Result<(), StateError> {
        let corrupt = || StateError::Corrupt("corrupt state entry in the snapshot".to_owned());
        match key.first() {
            Some(&ROW) => {
                let mut slots = Vec::new();
                // Read with no clock: keep expired values as they are (their
                // expiry is kept and checked on read).
                decode_row(value, 0, i64::MIN, &mut slots)
                    .map_err(|e| StateError::Corrupt(e.to_string()))?;
                let old_values: Vec<u32> = (0..old.len() as u32)
                    .filter(|&h| old[h as usize].kind == Kind::Value)
                    .collect();
                let mut writes: Vec<SlotWrite<'_>> = vec![(None, None, false); self.value_states()];
                for (slot, found) in slots.into_iter().enumerate() {
                    let (Some((range, expiry)), Some(&h)) = (found, old_values.get(slot)) else {
                        continue;
                    };
                    let Some(Some(nh)) = map.get(h as usize) else {
                        continue;
                    };
                    let Some(ns) = self.value_slot(*nh) else {
                        continue;
                    };
                    // Not written now: the expiry stays as it was.
                    writes[ns as usize] = (Some(&value[range]), expiry, false);
                }
                self.write_row(kg, &key[1..], 0, writes.into_iter())
            }
            Some(&LIST) | Some(&MAP) => {
                let h =
                    u32::from_be_bytes(key.get(1..5).ok_or_else(corrupt)?.try_into().expect("4"));
                let Some(Some(nh)) = map.get(h as usize) else {
                    return Ok(());
                };
                let mut new_key = key.to_vec();
                new_key[1..5].copy_from_slice(&nh.to_be_bytes());
                if !matches!(value.first(), Some(&ABSENT) | Some(&EXPIRING)) {
                    return Err(corrupt());
                }
                self.store.put(kg, &new_key, value)
            }
            _ => Err(corrupt()),
        }
    }

    /// Takes every stored item of the state `handle` out for migration (a
    /// module swap): each value of a value state, each element of a list
    /// state, each value of a map state. Expiry times are kept aside and go
    /// back unchanged with [`KeyedState::put_migrated`].
    pub fn take_for_migration(&mut self, handle: u32) -> Result<Migration, StateError> {
        let kind = self
            .descriptors
            .get(handle as usize)
            .ok_or_else(|| StateError::Misuse(format!("no state #{handle} was declared")))?
            .kind;
        let slot = self.value_slot(handle);
        let mut m = Migration {
            handle,
            entries: Vec::new(),
            items: Vec::new(),
        };
        let mut corrupt = None;
        let tag = match kind {
            Kind::Value => ROW,
            Kind::List => LIST,
            Kind::Map => MAP,
        };
        self.store.for_each(&mut |kg, key, value| {
            if corrupt.is_some() || key.first() != Some(&tag) {
                return;
            }
            if kind != Kind::Value && key.get(1..5) != Some(&handle.to_be_bytes()[..]) {
                return;
            }
            let before = m.items.len();
            let expiry = match kind {
                Kind::Value => {
                    let mut slots = Vec::new();
                    if decode_row(value, 0, i64::MIN, &mut slots).is_err() {
                        corrupt = Some("corrupt state row");
                        return;
                    }
                    let Some(Some((range, expiry))) = slot.and_then(|s| slots.get(s as usize))
                    else {
                        return;
                    };
                    m.items.push(value[range.clone()].to_vec());
                    *expiry
                }
                Kind::List | Kind::Map => {
                    let Ok(Some(mut body)) = live_body(value, i64::MIN) else {
                        corrupt = Some("corrupt state value header");
                        return;
                    };
                    let expiry = (value[0] == EXPIRING)
                        .then(|| i64::from_le_bytes(value[1..9].try_into().expect("8 bytes")));
                    if kind == Kind::Map {
                        m.items.push(body.to_vec());
                    } else {
                        while !body.is_empty() {
                            let Some((item, rest)) = split_item(body) else {
                                corrupt = Some("corrupt list state");
                                return;
                            };
                            m.items.push(item.to_vec());
                            body = rest;
                        }
                    }
                    expiry
                }
            };
            m.entries
                .push((kg, key.to_vec(), expiry, m.items.len() - before));
        })?;
        match corrupt {
            Some(c) => Err(StateError::Corrupt(c.to_owned())),
            None => Ok(m),
        }
    }

    /// Stores what migration made of the items of [`take_for_migration`]:
    /// `items` holds one new item per item taken, in order.
    ///
    /// [`take_for_migration`]: KeyedState::take_for_migration
    pub fn put_migrated(&mut self, m: Migration, items: Vec<Vec<u8>>) -> Result<(), StateError> {
        if items.len() != m.items.len() {
            return Err(StateError::Misuse(format!(
                "migration returned {} items for {}",
                items.len(),
                m.items.len()
            )));
        }
        let kind = self.descriptors[m.handle as usize].kind;
        let slot = self.value_slot(m.handle);
        let mut items = items.into_iter();
        let mut row = Vec::new();
        for (kg, key, expiry, n) in m.entries {
            let mut out = Vec::new();
            match kind {
                Kind::Value => {
                    let new = items.next().expect("counted");
                    row.clear();
                    self.store.get(kg, &key, &mut row)?;
                    let mut slots = Vec::new();
                    decode_row(&row, 0, i64::MIN, &mut slots)
                        .map_err(|e| StateError::Corrupt(e.to_owned()))?;
                    slots.resize(self.value_states(), None);
                    let writes: Vec<SlotWrite<'_>> = slots
                        .iter()
                        .enumerate()
                        .map(|(v, found)| match found {
                            _ if Some(v as u32) == slot => (Some(&new[..]), expiry, false),
                            Some((range, e)) => (Some(&row[range.clone()]), *e, false),
                            None => (None, None, false),
                        })
                        .collect();
                    self.write_row(kg, &key[1..], 0, writes.into_iter())?;
                    continue;
                }
                Kind::List | Kind::Map => {
                    match expiry {
                        None => out.push(ABSENT),
                        Some(t) => {
                            out.push(EXPIRING);
                            out.extend_from_slice(&t.to_le_bytes());
                        }
                    }
                    for item in items.by_ref().take(n) {
                        if kind == Kind::List {
                            out.extend_from_slice(&(item.len() as u32).to_le_bytes());
                        }
                        out.extend_from_slice(&item);
                    }
                }
            }
            self.store.put(kg, &key, &out)?;
        }
        Ok(())
    }

    /// Declares a state (during `open`); the same name and kind again gives
    /// the same handle, as after a guest restart.
    pub fn declare(&mut self, d: Descriptor) -> Result<u32, StateError> {
        if d.name.is_empty() {
            return Err(StateError::Misuse("a state needs a name".into()));
        }
        if let Some(i) = self.descriptors.iter().position(|x| x.name == d.name) {
            let old = &self.descriptors[i];
            return if old.kind == d.kind && old.ttl_ms == d.ttl_ms && old.version == d.version {
                Ok(i as u32)
            } else {
                Err(StateError::Misuse(format!(
                    "state `{}` is already declared as a {} state with ttl {:?}, version {}",
                    d.name,
                    old.kind.name(),
                    old.ttl_ms,
                    old.version
                )))
            };
        }
        if d.ttl_ms == Some(0) {
            return Err(StateError::Misuse(format!(
                "state `{}`: a TTL must be positive",
                d.name
            )));
        }
        let slot = (d.kind == Kind::Value).then(|| {
            self.value_ttl.push(d.ttl_ms);
            self.value_ttl.len() as u32 - 1
        });
        self.value_slot.push(slot);
        self.descriptors.push(d);
        Ok(self.descriptors.len() as u32 - 1)
    }

    pub fn value_states(&self) -> usize {
        self.value_ttl.len()
    }

    /// The value slot of a handle, if it is a value state.
    pub fn value_slot(&self, handle: u32) -> Option<u32> {
        self.value_slot.get(handle as usize).copied().flatten()
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn check(&self, handle: u32, kind: Kind) -> Result<&Descriptor, StateError> {
        match self.descriptors.get(handle as usize) {
            Some(d) if d.kind == kind => Ok(d),
            Some(d) => Err(StateError::Misuse(format!(
                "state #{handle} (`{}`) is a {:?} state, not a {kind:?} state",
                d.name, d.kind
            ))),
            None => Err(StateError::Misuse(format!(
                "no state #{handle} was declared"
            ))),
        }
    }

    /// Reads `key`'s row, appending its bytes to `buf` and decoding it into
    /// `row` (one slot per value state; expired values are absent).
    pub fn read_row(
        &mut self,
        kg: u32,
        key: &[u8],
        now: i64,
        buf: &mut Vec<u8>,
        row: &mut Row,
    ) -> Result<(), StateError> {
        row.slots.clear();
        self.key_buf.clear();
        self.key_buf.push(ROW);
        self.key_buf.extend_from_slice(key);
        let start = buf.len();
        if self.store.get(kg, &self.key_buf, buf)? {
            decode_row(&buf[start..], start, now, &mut row.slots)
                .map_err(|e| StateError::Corrupt(format!("corrupt state row: {e}")))?;
        }
        row.slots.resize(self.value_states(), None);
        Ok(())
    }

    /// Writes `key`'s row: slot `v` is `values(v)`, with the expiry of the
    /// old row unless `written(v)` (then now + TTL). A row with nothing left
    /// is deleted.
    pub fn write_row<'a>(
        &mut self,
        kg: u32,
        key: &[u8],
        now: i64,
        slots: impl Iterator<Item = SlotWrite<'a>>,
    ) -> Result<(), StateError> {
        self.buf.clear();
        let mut any = false;
        for (v, (value, expiry, written)) in slots.enumerate() {
            match value {
                None => self.buf.push(ABSENT),
                Some(bytes) => {
                    any = true;
                    let expiry = if written {
                        self.value_ttl[v].map(|ttl| now.saturating_add(ttl as i64))
                    } else {
                        expiry
                    };
                    match expiry {
                        None => self.buf.push(PRESENT),
                        Some(t) => {
                            self.buf.push(EXPIRING);
                            self.buf.extend_from_slice(&t.to_le_bytes());
                        }
                    }
                    self.buf
                        .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    self.buf.extend_from_slice(bytes);
                }
            }
        }
        self.key_buf.clear();
        self.key_buf.push(ROW);
        self.key_buf.extend_from_slice(key);
        if any {
            self.store.put(kg, &self.key_buf, &self.buf)
        } else {
            self.store.delete(kg, &self.key_buf)
        }
    }

    fn list_key(&mut self, handle: u32, key: &[u8]) {
        self.key_buf.clear();
        self.key_buf.push(LIST);
        self.key_buf.extend_from_slice(&handle.to_be_bytes());
        self.key_buf.extend_from_slice(key);
    }

    fn map_prefix(&mut self, handle: u32, key: &[u8]) {
        self.key_buf.clear();
        self.key_buf.push(MAP);
        self.key_buf.extend_from_slice(&handle.to_be_bytes());
        self.key_buf
            .extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.key_buf.extend_from_slice(key);
    }

    fn header(&self, ttl: Option<u64>, out: &mut Vec<u8>) {
        match ttl {
            None => out.push(ABSENT),
            Some(ttl) => {
                out.push(EXPIRING);
                out.extend_from_slice(&self.now().saturating_add(ttl as i64).to_le_bytes());
            }
        }
    }

    /// A list's elements (after the expiry header), or none when absent or
    /// expired.
    pub fn list_get(
        &mut self,
        handle: u32,
        kg: u32,
        key: &[u8],
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), StateError> {
        self.check(handle, Kind::List)?;
        self.list_key(handle, key);
        self.buf.clear();
        if !self.store.get(kg, &self.key_buf, &mut self.buf)? {
            return Ok(());
        }
        let now = self.now();
        let Some(body) = live_body(&self.buf, now)? else {
            return Ok(());
        };
        let mut rest = body;
        while !rest.is_empty() {
            let (item, tail) =
                split_item(rest).ok_or_else(|| StateError::Corrupt("corrupt list state".into()))?;
            f(item);
            rest = tail;
        }
        Ok(())
    }

    pub fn list_add(
        &mut self,
        handle: u32,
        kg: u32,
        key: &[u8],
        element: &[u8],
    ) -> Result<(), StateError> {
        let ttl = self.check(handle, Kind::List)?.ttl_ms;
        self.list_key(handle, key);
        self.buf.clear();
        let found = self.store.get(kg, &self.key_buf, &mut self.buf)?;
        let mut out = Vec::with_capacity(self.buf.len() + element.len() + 13);
        self.header(ttl, &mut out);
        if found && let Some(body) = live_body(&self.buf, self.now())? {
            out.extend_from_slice(body);
        }
        out.extend_from_slice(&(element.len() as u32).to_le_bytes());
        out.extend_from_slice(element);
        self.write_here(kg, Some(&out))
    }

    pub fn list_update<'a>(
        &mut self,
        handle: u32,
        kg: u32,
        key: &[u8],
        elements: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), StateError> {
        let ttl = self.check(handle, Kind::List)?.ttl_ms;
        self.list_key(handle, key);
        let mut out = Vec::new();
        self.header(ttl, &mut out);
        let mut any = false;
        for e in elements {
            any = true;
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(e);
        }
        self.write_here(kg, any.then_some(&out[..]))
    }

    pub fn map_get(
        &mut self,
        handle: u32,
        kg: u32,
        key: &[u8],
        user_key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError> {
        self.check(handle, Kind::Map)?;
        self.map_prefix(handle, key);
        self.key_buf.extend_from_slice(user_key);
        self.buf.clear();
        if !self.store.get(kg, &self.key_buf, &mut self.buf)? {
            return Ok(false);
        }
        match live_body(&self.buf, self.now())? {
            Some(v) => {
                out.extend_from_slice(v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn map_put(
        &mut self,
        handle: u32,
        kg: u32,
        key: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let ttl = self.check(handle, Kind::Map)?.ttl_ms;
        self.map_prefix(handle, key);
        self.key_buf.extend_from_slice(user_key);
        let mut out = Vec::with_capacity(value.len() + 9);
        self.header(ttl, &mut out);
        out.extend_from_slice(value);
        self.write_here(kg, Some(&out))
    }

    pub fn map_remove(
        &mut self,
        handle: u32,
        kg: u32,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        self.check(handle, Kind::Map)?;
        self.map_prefix(handle, key);
        self.key_buf.extend_from_slice(user_key);
        self.write_here(kg, None)
    }

    /// Live entries of a map, by user key bytes.
    pub fn map_entries(
        &mut self,
        handle: u32,
        kg: u32,
        key: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        self.check(handle, Kind::Map)?;
        self.map_prefix(handle, key);
        let now = self.now();
        let prefix_len = self.key_buf.len();
        let mut bad = None;
        self.store
            .scan(kg, &self.key_buf, &mut |k, v| match live_body(v, now) {
                Ok(Some(body)) => f(&k[prefix_len..], body),
                Ok(None) => {}
                Err(e) => bad = Some(e),
            })?;
        bad.map_or(Ok(()), Err)
    }

    /// Clears a list or map state for a key (value states are cleared
    /// through their row).
    pub fn clear(&mut self, handle: u32, kg: u32, key: &[u8]) -> Result<(), StateError> {
        let kind = match self.descriptors.get(handle as usize) {
            Some(d) => d.kind,
            None => {
                return Err(StateError::Misuse(format!(
                    "no state #{handle} was declared"
                )));
            }
        };
        match kind {
            Kind::Value => Err(StateError::Misuse(
                "value states are cleared through the call's value writes".into(),
            )),
            Kind::List => {
                self.list_key(handle, key);
                self.write_here(kg, None)
            }
            Kind::Map => {
                self.map_prefix(handle, key);
                let mut keys = Vec::new();
                self.store
                    .scan(kg, &self.key_buf, &mut |k, _| keys.push(k.to_vec()))?;
                for k in keys {
                    self.write_entry(kg, &k, None)?;
                }
                Ok(())
            }
        }
    }
}

/// The body of a list or map value after its expiry header; `None` when it
/// has expired.
fn live_body(v: &[u8], now: i64) -> Result<Option<&[u8]>, StateError> {
    match v.first() {
        Some(&ABSENT) => Ok(Some(&v[1..])),
        Some(&EXPIRING) if v.len() >= 9 => {
            let t = i64::from_le_bytes(v[1..9].try_into().expect("8 bytes"));
            Ok((t > now).then(|| &v[9..]))
        }
        _ => Err(StateError::Corrupt("corrupt state value header".into())),
    }
}

fn split_item(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let item = v.get(4..4 + len)?;
    Some((item, &v[4 + len..]))
}

/// Decodes a row into slots (ranges offset by `base`); expired values are
/// absent.
fn decode_row(
    mut v: &[u8],
    base: usize,
    now: i64,
    slots: &mut Vec<Option<(std::ops::Range<usize>, Option<i64>)>>,
) -> Result<(), &'static str> {
    let total = v.len();
    while let Some((&tag, rest)) = v.split_first() {
        v = rest;
        let expiry = match tag {
            ABSENT => {
                slots.push(None);
                continue;
            }
            PRESENT => None,
            EXPIRING => {
                let t = v.get(..8).ok_or("truncated expiry")?;
                v = &v[8..];
                Some(i64::from_le_bytes(t.try_into().expect("8 bytes")))
            }
            _ => return Err("bad tag"),
        };
        let (item, rest) = split_item(v).ok_or("truncated value")?;
        let start = base + (total - v.len()) + 4;
        v = rest;
        if expiry.is_some_and(|t| t <= now) {
            slots.push(None);
        } else {
            slots.push(Some((start..start + item.len(), expiry)));
        }
    }
    Ok(())
}

/// Whether a stored value has expired (for RocksDB's compaction filter):
/// a row whose values all expired, or an expired list or map value.
pub(crate) fn expired(store_key: &[u8], value: &[u8], now: i64) -> bool {
    match store_key.first() {
        Some(&ROW) => {
            let mut slots = Vec::new();
            decode_row(value, 0, now, &mut slots).is_ok() && slots.iter().all(Option::is_none)
        }
        Some(&LIST) | Some(&MAP) => matches!(live_body(value, now), Ok(None)),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::time::ManualClock;

    /// The same script on a store must give the same observations.
    pub(crate) fn exercise(store: Box<dyn Store>) -> Vec<String> {
        let clock = ManualClock::new(1_000);
        let mut s = KeyedState::new(store, clock.clone());
        let mut seen = Vec::new();
        let count = s
            .declare(Descriptor {
                name: "count".into(),
                kind: Kind::Value,
                ttl_ms: None,
                version: 1,
            })
            .unwrap();
        let seen_at = s
            .declare(Descriptor {
                name: "seen".into(),
                kind: Kind::Value,
                ttl_ms: Some(100),
                version: 1,
            })
            .unwrap();
        let list = s
            .declare(Descriptor {
                name: "list".into(),
                kind: Kind::List,
                ttl_ms: None,
                version: 1,
            })
            .unwrap();
        let map = s
            .declare(Descriptor {
                name: "map".into(),
                kind: Kind::Map,
                ttl_ms: Some(50),
                version: 1,
            })
            .unwrap();
        assert_eq!(
            s.declare(Descriptor {
                name: "count".into(),
                kind: Kind::Value,
                ttl_ms: None,
                version: 1,
            })
            .unwrap(),
            count
        );
        assert!(matches!(
            s.declare(Descriptor {
                name: "count".into(),
                kind: Kind::List,
                ttl_ms: None,
                version: 1,
            }),
            Err(StateError::Misuse(_))
        ));
        assert_eq!(
            (s.value_slot(count), s.value_slot(seen_at)),
            (Some(0), Some(1))
        );
        assert_eq!(s.value_slot(list), None);

        let now = s.now();
        s.write_row(
            7,
            b"k1",
            now,
            [(Some(&b"1"[..]), None, true), (Some(&b"x"[..]), None, true)].into_iter(),
        )
        .unwrap();
        let row_str = |s: &mut KeyedState, key: &[u8]| {
            let mut buf = Vec::new();
            let mut row = Row::default();
            let now = s.now();
            s.read_row(7, key, now, &mut buf, &mut row).unwrap();
            row.slots
                .iter()
                .map(|slot| match slot {
                    None => "-".to_owned(),
                    Some((r, _)) => String::from_utf8_lossy(&buf[r.clone()]).into_owned(),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        seen.push(row_str(&mut s, b"k1"));
        seen.push(row_str(&mut s, b"k2"));
        clock.advance(100);
        // `seen` expired; `count` has no TTL.
        seen.push(row_str(&mut s, b"k1"));

        for e in [&b"a"[..], b"bb", b""] {
            s.list_add(list, 7, b"k1", e).unwrap();
        }
        let mut items = Vec::new();
        s.list_get(list, 7, b"k1", &mut |e| {
            items.push(String::from_utf8_lossy(e).into_owned())
        })
        .unwrap();
        seen.push(format!("{items:?}"));
        s.list_update(list, 7, b"k1", [&b"z"[..]].into_iter())
            .unwrap();
        items.clear();
        s.list_get(list, 7, b"k1", &mut |e| {
            items.push(String::from_utf8_lossy(e).into_owned())
        })
        .unwrap();
        seen.push(format!("{items:?}"));

        s.map_put(map, 7, b"k1", b"u2", b"two").unwrap();
        s.map_put(map, 7, b"k1", b"u1", b"one").unwrap();
        s.map_put(map, 7, b"k10", b"u1", b"other key").unwrap();
        s.map_put(map, 8, b"k1", b"u1", b"other group").unwrap();
        s.map_remove(map, 7, b"k1", b"u2").unwrap();
        let mut entries = Vec::new();
        s.map_entries(map, 7, b"k1", &mut |k, v| {
            entries.push(format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            ))
        })
        .unwrap();
        seen.push(format!("{entries:?}"));
        let mut v = Vec::new();
        seen.push(format!(
            "{}",
            s.map_get(map, 7, b"k10", b"u1", &mut v).unwrap()
        ));
        clock.advance(50);
        seen.push(format!(
            "{}",
            s.map_get(map, 7, b"k10", b"u1", &mut v).unwrap()
        ));
        s.map_put(map, 7, b"k1", b"u3", b"three").unwrap();
        s.clear(map, 7, b"k1").unwrap();
        entries.clear();
        s.map_entries(map, 7, b"k1", &mut |k, _| {
            entries.push(String::from_utf8_lossy(k).into_owned())
        })
        .unwrap();
        seen.push(format!("{entries:?}"));
        s.clear(list, 7, b"k1").unwrap();
        let mut n = 0;
        s.list_get(list, 7, b"k1", &mut |_| n += 1).unwrap();
        seen.push(format!("{n}"));
        seen
    }

    pub(crate) const EXPECTED: [&str; 10] = [
        "1,x",
        "-,-",
        "1,-",
        "[\"a\", \"bb\", \"\"]",
        "[\"z\"]",
        "[\"u1=one\"]",
        "true",
        "false",
        "[]",
        "0",
    ];

    #[test]
    fn a_rollback_undoes_list_and_map_writes_since_begin() {
        let clock = ManualClock::new(1_000);
        let mut s = KeyedState::new(Box::new(memory::MemoryStore::new(1 << 20)), clock);
        let d = |name: &str, kind| Descriptor {
            name: name.into(),
            kind,
            ttl_ms: None,
            version: 1,
        };
        let list = s.declare(d("list", Kind::List)).unwrap();
        let map = s.declare(d("map", Kind::Map)).unwrap();
        s.list_add(list, 3, b"k", b"kept").unwrap();
        s.map_put(map, 3, b"k", b"a", b"1").unwrap();
        s.map_put(map, 3, b"k", b"b", b"2").unwrap();
        let mut before = Vec::new();
        s.for_each_entry(&mut |kg, k, v| before.push((kg, k.to_vec(), v.to_vec())))
            .unwrap();
        s.begin();
        s.list_add(list, 3, b"k", b"x").unwrap();
        s.list_add(list, 3, b"k", b"y").unwrap();
        s.list_add(list, 4, b"new", b"z").unwrap();
        s.map_put(map, 3, b"k", b"a", b"changed").unwrap();
        s.map_remove(map, 3, b"k", b"b").unwrap();
        s.map_put(map, 3, b"k", b"c", b"3").unwrap();
        s.clear(map, 3, b"k").unwrap();
        s.rollback().unwrap();
        let mut after = Vec::new();
        s.for_each_entry(&mut |kg, k, v| after.push((kg, k.to_vec(), v.to_vec())))
            .unwrap();
        before.sort();
        after.sort();
        assert_eq!(before, after);
        // Committed writes stay, and nothing is journaled after a commit.
        s.begin();
        s.list_add(list, 3, b"k", b"x").unwrap();
        s.commit();
        s.list_add(list, 3, b"k", b"y").unwrap();
        s.rollback().unwrap();
        let mut items = Vec::new();
        s.list_get(list, 3, b"k", &mut |e| items.push(e.to_vec()))
            .unwrap();
        assert_eq!(items, [&b"kept"[..], b"x", b"y"]);
    }

    #[test]
    fn memory_store_keeps_state_per_key_group_with_ttl() {
        assert_eq!(
            exercise(Box::new(memory::MemoryStore::new(1 << 30))),
            EXPECTED
        );
    }

    #[test]
    fn migration_rewrites_one_state_and_keeps_the_rest() {
        let clock = ManualClock::new(1_000);
        let mut s = KeyedState::new(Box::new(memory::MemoryStore::new(1 << 30)), clock.clone());
        let d = |name: &str, kind, ttl_ms| Descriptor {
            name: name.into(),
            kind,
            ttl_ms,
            version: 1,
        };
        let other = s.declare(d("other", Kind::Value, None)).unwrap();
        let count = s.declare(d("count", Kind::Value, Some(500))).unwrap();
        let list = s.declare(d("list", Kind::List, None)).unwrap();
        let map = s.declare(d("map", Kind::Map, Some(100))).unwrap();
        s.write_row(
            3,
            b"k",
            1_000,
            [(Some(&b"o"[..]), None, true), (Some(&b"7"[..]), None, true)].into_iter(),
        )
        .unwrap();
        s.write_row(
            4,
            b"j",
            1_000,
            [(Some(&b"p"[..]), None, true), (None, None, false)].into_iter(),
        )
        .unwrap();
        s.list_update(list, 3, b"k", [&b"a"[..], b"bb"].into_iter())
            .unwrap();
        s.map_put(map, 4, b"j", b"u", b"x").unwrap();
        let upper = |s: &mut KeyedState, h| {
            let m = s.take_for_migration(h).unwrap();
            let items = m
                .items
                .iter()
                .map(|i| i.to_ascii_uppercase())
                .collect::<Vec<_>>();
            let shown = String::from_utf8(m.items.concat()).unwrap();
            s.put_migrated(m, items).unwrap();
            shown
        };
        assert_eq!(upper(&mut s, count), "7");
        assert_eq!(upper(&mut s, list), "abb");
        assert_eq!(upper(&mut s, map), "x");
        let row = |s: &mut KeyedState, kg, key: &[u8]| {
            let (mut buf, mut row) = (Vec::new(), Row::default());
            s.read_row(kg, key, clock.now_ms(), &mut buf, &mut row)
                .unwrap();
            row.slots
                .iter()
                .map(|v| {
                    v.as_ref().map_or("-".to_owned(), |(r, _)| {
                        String::from_utf8_lossy(&buf[r.clone()]).into()
                    })
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        // Digits have no upper case: migrate the value state once more to see
        // that only it changed.
        let m = s.take_for_migration(count).unwrap();
        s.put_migrated(m, vec![b"eight".to_vec()]).unwrap();
        assert_eq!(row(&mut s, 3, b"k"), "o,eight");
        assert_eq!(row(&mut s, 4, b"j"), "p,-");
        let mut elements = Vec::new();
        s.list_get(list, 3, b"k", &mut |e| {
            elements.push(String::from_utf8_lossy(e).into_owned())
        })
        .unwrap();
        assert_eq!(elements, ["A", "BB"]);
        let mut v = Vec::new();
        assert!(s.map_get(map, 4, b"j", b"u", &mut v).unwrap());
        assert_eq!(v, b"X");
        // Expiry times were kept, not restarted: the map entry (ttl 100) and
        // the count (ttl 500) expire when they would have.
        clock.advance(150);
        assert!(!s.map_get(map, 4, b"j", b"u", &mut v).unwrap());
        assert_eq!(row(&mut s, 3, b"k"), "o,eight");
        clock.advance(400);
        assert_eq!(row(&mut s, 3, b"k"), "o,-");
        let m = s.take_for_migration(list).unwrap();
        assert!(s.put_migrated(m, Vec::new()).is_err());
        let _ = other;
    }

    #[test]
    fn expired_values_are_recognised_for_compaction() {
        assert!(expired(&[LIST], &[EXPIRING, 1, 0, 0, 0, 0, 0, 0, 0], 5));
        assert!(!expired(&[LIST], &[EXPIRING, 9, 0, 0, 0, 0, 0, 0, 0], 5));
        assert!(!expired(&[MAP], &[ABSENT, b'x'], 5));
        // A row with one live value stays.
        let row = [ABSENT, PRESENT, 1, 0, 0, 0, b'v'];
        assert!(!expired(&[ROW], &row, 5));
        assert!(expired(&[ROW], &[ABSENT, ABSENT], 5));
    }
}
