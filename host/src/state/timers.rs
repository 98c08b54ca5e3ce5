//! Timers of a keyed operator subtask: at most one per (domain, key, time),
//! kept in time order so that the ones a watermark (or the clock) passes are
//! found without a scan.
//!
//! [`TimerSet`] is keyed operators' ordered timer structure: a timer is two
//! integers (its time and its key's id in the operator's [`KeyTable`]) in a
//! B-tree; the window operator keeps its firing and cleanup times in them.
//!
//! The heap backend's timer service ([`Timers`]) interns keys with timers in
//! a key table too (an id per key, released with its last timer), and keeps
//! each domain's timers in a [`Queue`] that needs no search per change:
//! deleting and re-registering a timer — what a process function does for
//! every record that moves its timeout — is a look at the key's few timers
//! and a push, and the deleted timer's entry is dropped when it reaches the
//! front.
//!
//! Timers are state: [`Timers::bytes`] says about how much memory they take,
//! so that the operator counts them against its state budget.
//!
//! With RocksDB, timers live in the operator's database as Flink keeps them
//! ([`StoredTimers`]): one entry per timer, ordered by time within its key
//! group, and in memory only each key group's earliest time, so that a job
//! may hold more timers than memory.

use super::keys::KeyTable;
use super::{StateError, Store};
use hashbrown::HashMap;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    EventTime,
    ProcessingTime,
}

/// About what one timer costs: its 16 bytes in a B-tree node, with the
/// node's slack and bookkeeping (measured: ~35 bytes per timer).
const TIMER_BYTES: u64 = 40;

/// Timers in time order, at most one per `(time, key, namespace)`: the one
/// timer structure of keyed operators. A key is its id in the operator's
/// [`KeyTable`]; the namespace tells a key's timers at one time apart where
/// an operator needs that (an aligned window's start, as Flink's timers carry
/// their window), and is `()` where it does not.
pub struct TimerSet<N: Ord + Copy = ()> {
    set: BTreeSet<(i64, u32, N)>,
}

impl<N: Ord + Copy> Default for TimerSet<N> {
    fn default() -> Self {
        TimerSet {
            set: BTreeSet::new(),
        }
    }
}

impl<N: Ord + Copy> TimerSet<N> {
    /// Adds a timer; false if it was there.
    #[inline]
    pub fn insert(&mut self, time: i64, key: u32, ns: N) -> bool {
        self.set.insert((time, key, ns))
    }

    /// Removes a timer; false if it was not there.
    #[inline]
    pub fn remove(&mut self, time: i64, key: u32, ns: N) -> bool {
        self.set.remove(&(time, key, ns))
    }

    /// The earliest timer's time.
    #[inline]
    pub fn next(&self) -> Option<i64> {
        self.set.first().map(|t| t.0)
    }

    /// Removes and returns the earliest timer if its time is `<= until`.
    #[inline]
    pub fn pop_due(&mut self, until: i64) -> Option<(i64, u32, N)> {
        match self.set.first() {
            Some(t) if t.0 <= until => self.set.pop_first(),
            _ => None,
        }
    }

    /// The timers with `time <= until`, in order.
    pub fn due(&self, until: i64) -> impl Iterator<Item = (i64, u32, N)> + '_ {
        self.set.iter().take_while(move |t| t.0 <= until).copied()
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// About how many bytes of memory the timers take.
    pub fn bytes(&self) -> u64 {
        self.set.len() as u64 * (TIMER_BYTES + std::mem::size_of::<N>() as u64)
    }
}

/// Timers that fall on few distinct times, as aligned windows' do (every
/// key's window of one slide ends at the same time): one list of
/// `(key, namespace)` per time instead of one B-tree entry per timer, so
/// that adding one is a push. They come out as a [`TimerSet`]'s do — in
/// `(time, key, namespace)` order, each once: a time's list is sorted and
/// its repeats dropped when it comes due. Timers are not removed one by one.
pub struct TimeBuckets<N: Ord + Copy = ()> {
    buckets: BTreeMap<i64, Vec<(u32, N)>>,
    /// The due time being popped: its timers not yet popped, last first.
    ready: Vec<(i64, u32, N)>,
    /// Timers in `buckets` and `ready`.
    count: usize,
}

impl<N: Ord + Copy> Default for TimeBuckets<N> {
    fn default() -> Self {
        TimeBuckets {
            buckets: BTreeMap::new(),
            ready: Vec::new(),
            count: 0,
        }
    }
}

impl<N: Ord + Copy> TimeBuckets<N> {
    /// Adds a timer (nothing if it is there). While a time is being popped,
    /// a timer may not be added before it (windows add theirs at window
    /// ends the watermark has not passed): it would come out after it.
    #[inline]
    pub fn insert(&mut self, time: i64, key: u32, ns: N) {
        if let Some(&(t, _, _)) = self.ready.first()
            && t == time
        {
            // Its time is being popped: into its place among the rest.
            let rest = &self.ready;
            if let Err(i) = rest.binary_search_by(|&(_, k, n)| (key, ns).cmp(&(k, n))) {
                self.ready.insert(i, (time, key, ns));
                self.count += 1;
            }
            return;
        }
        self.buckets.entry(time).or_default().push((key, ns));
        self.count += 1;
    }

    /// Removes and returns the earliest timer if its time is `<= until`.
    #[inline]
    pub fn pop_due(&mut self, until: i64) -> Option<(i64, u32, N)> {
        if self.ready.is_empty() {
            let mut first = self.buckets.first_entry()?;
            if *first.key() > until {
                return None;
            }
            let time = *first.key();
            let mut timers = std::mem::take(first.get_mut());
            first.remove();
            timers.sort_unstable();
            let added = timers.len();
            timers.dedup();
            self.count -= added - timers.len();
            self.ready
                .extend(timers.into_iter().rev().map(|(k, n)| (time, k, n)));
        }
        match self.ready.last() {
            Some(t) if t.0 <= until => {
                self.count -= 1;
                self.ready.pop()
            }
            _ => None,
        }
    }

    /// Timers added and not popped (a repeat counts until its time is due).
    pub fn len(&self) -> usize {
        self.count
    }

    /// About how many bytes of memory the timers take: each is an entry of
    /// its time's list (with the list's slack).
    pub fn bytes(&self) -> u64 {
        self.count as u64 * 2 * std::mem::size_of::<(u32, N)>() as u64
            + self.buckets.len() as u64 * TIMER_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.buckets.is_empty()
    }
}

/// The heap timer service of a keyed state: its keys with timers (each
/// with its timers, released with its last) and a [`Queue`] per domain.
#[derive(Default)]
pub struct Timers {
    keys: KeyTable<KeyTimers>,
    /// By domain ([`slot`]).
    queues: [Queue; 2],
}

/// A key's timers: a list while it has at most [`FEW`] (a process function
/// mostly keeps one, which it moves), a set past that. They say which of
/// the entries of the domains' queues are live.
enum KeyTimers {
    Few(smallvec::SmallVec<[(i64, Domain); 2]>),
    /// Once the key had more than [`FEW`], until it has none.
    Many(BTreeSet<(i64, Domain)>),
}

impl Default for KeyTimers {
    fn default() -> Self {
        KeyTimers::Few(Default::default())
    }
}

impl KeyTimers {
    fn count(&self) -> usize {
        match self {
            KeyTimers::Few(few) => few.len(),
            KeyTimers::Many(many) => many.len(),
        }
    }

    #[inline]
    fn has(&self, time: i64, d: Domain) -> bool {
        match self {
            KeyTimers::Few(few) => few.contains(&(time, d)),
            KeyTimers::Many(many) => many.contains(&(time, d)),
        }
    }

    /// Registers (`true`) or deletes a timer; whether that changed anything.
    fn change(&mut self, time: i64, d: Domain, register: bool) -> bool {
        match self {
            KeyTimers::Many(many) if register => many.insert((time, d)),
            KeyTimers::Many(many) => many.remove(&(time, d)),
            KeyTimers::Few(few) => match (register, few.iter().position(|&t| t == (time, d))) {
                (true, None) if few.len() == FEW => {
                    let mut many: BTreeSet<_> = few.iter().copied().collect();
                    many.insert((time, d));
                    *self = KeyTimers::Many(many);
                    true
                }
                (true, None) => {
                    few.push((time, d));
                    true
                }
                (false, Some(i)) => {
                    few.swap_remove(i);
                    true
                }
                _ => false,
            },
        }
    }
}

const FEW: usize = 4;

/// Times within 2^BUCKET_BITS ms share a bucket of a [`Queue`].
const BUCKET_BITS: u32 = 8;

/// One domain's timers of the heap timer service, in time order without a
/// search of an ordered set per change: what a process function that moves
/// its timeout with every record does is, per record, a delete and a
/// register, which here are a look at the key's list and a push.
///
/// Entries `(time, key id)` are not removed when their timer is deleted:
/// an entry is live while its key lists its timer ([`KeyTimers`]), and the
/// dead ones are dropped as they come to the front. The earliest buckets
/// (every time up to the end of bucket `covers`) are in `ready`, sorted and
/// without repeats, its first entry (`ready[head]`) live: the next timer.
/// Later ones wait in buckets of 2^[`BUCKET_BITS`] ms, unordered, and are
/// sorted when their bucket comes to the front or is due. When dead entries
/// outnumber live timers by far (timers far ahead registered and deleted
/// again and again), the queue drops them all at once.
#[derive(Default)]
struct Queue {
    ready: Vec<(i64, u32)>,
    head: usize,
    /// The last bucket `ready` holds; `None` while no timer is live.
    covers: Option<i64>,
    buckets: BTreeMap<i64, Vec<(i64, u32)>>,
    /// Entries in `ready[head..]` and the buckets, live or dead.
    stored: usize,
    /// Live timers.
    live: usize,
}

/// Dead entries a queue keeps before it drops them at once: up to this
/// many beyond [`DEAD_PER_LIVE`] per live timer.
const DEAD_SLACK: usize = if cfg!(test) { 16 } else { 4096 };
const DEAD_PER_LIVE: usize = 8;

/// About what an entry of a [`Queue`] costs (with its vector's slack), and a
/// bucket besides its entries.
const ENTRY_BYTES: u64 = 24;
const BUCKET_BYTES: u64 = 64;

impl Queue {
    #[inline]
    fn bucket(time: i64) -> i64 {
        time >> BUCKET_BITS
    }

    /// Adds the entry of a timer that just became live.
    fn insert(&mut self, time: i64, id: u32, live: &impl Fn(i64, u32) -> bool) {
        self.live += 1;
        let b = Self::bucket(time);
        match self.covers {
            None => {
                // No timer was live: every entry is dead.
                self.ready.clear();
                self.buckets.clear();
                self.ready.push((time, id));
                self.head = 0;
                self.covers = Some(b);
                self.stored = 1;
            }
            Some(c) if b <= c => match self.ready[self.head..].binary_search(&(time, id)) {
                // Its dead entry is live again.
                Ok(_) => {}
                Err(0) if self.head > 0 => {
                    self.head -= 1;
                    self.ready[self.head] = (time, id);
                    self.stored += 1;
                }
                Err(i) => {
                    self.ready.insert(self.head + i, (time, id));
                    self.stored += 1;
                }
            },
            Some(_) => {
                self.buckets.entry(b).or_default().push((time, id));
                self.stored += 1;
            }
        }
        if self.stored > DEAD_PER_LIVE * self.live + DEAD_SLACK {
            self.drop_dead(live);
        }
    }

    /// Makes `ready[head]` live again, if a timer is: skips dead entries,
    /// and when `ready` runs out takes the next bucket with a live timer.
    fn settle(&mut self, live: &impl Fn(i64, u32) -> bool) {
        while let Some(&(time, id)) = self.ready.get(self.head) {
            if live(time, id) {
                if self.head > 64 && self.head * 2 > self.ready.len() {
                    self.ready.drain(..self.head);
                    self.head = 0;
                }
                return;
            }
            self.head += 1;
            self.stored -= 1;
        }
        self.ready.clear();
        self.head = 0;
        self.covers = None;
        while let Some((b, mut entries)) = self.buckets.pop_first() {
            self.stored -= entries.len();
            sort_live(&mut entries, live);
            if !entries.is_empty() {
                self.stored += entries.len();
                self.ready = entries;
                self.covers = Some(b);
                return;
            }
        }
    }

    /// Calls `f(time, key id)` for the live timers with `time <= until`, in
    /// (time, key id) order.
    fn due(&mut self, until: i64, live: &impl Fn(i64, u32) -> bool, f: &mut impl FnMut(i64, u32)) {
        for &(time, id) in &self.ready[self.head..] {
            if time > until {
                return;
            }
            if live(time, id) {
                f(time, id);
            }
        }
        let last = Self::bucket(until);
        if self.covers.is_none_or(|c| c >= last) {
            return;
        }
        for entries in self.buckets.range_mut(..=last).map(|(_, e)| e) {
            let before = entries.len();
            sort_live(entries, live);
            self.stored -= before - entries.len();
            for &(time, id) in entries.iter() {
                if time > until {
                    return;
                }
                f(time, id);
            }
        }
    }

    fn next(&self) -> Option<i64> {
        self.ready.get(self.head).map(|e| e.0)
    }

    /// Drops every dead entry.
    fn drop_dead(&mut self, live: &impl Fn(i64, u32) -> bool) {
        self.ready.drain(..self.head);
        self.head = 0;
        self.ready.retain(|&(time, id)| live(time, id));
        self.buckets.retain(|_, entries| {
            sort_live(entries, live);
            !entries.is_empty()
        });
        self.stored = self.ready.len() + self.buckets.values().map(Vec::len).sum::<usize>();
        self.settle(live);
    }

    fn bytes(&self) -> u64 {
        self.stored as u64 * ENTRY_BYTES + self.buckets.len() as u64 * BUCKET_BYTES
    }
}

/// Whether a queue's entry `(time, key id)` of domain `d` is a live timer:
/// its key (not released) lists it.
fn live_in(keys: &KeyTable<KeyTimers>, d: Domain) -> impl Fn(i64, u32) -> bool + '_ {
    move |time, id| keys.live(id).is_some_and(|k| k.has(time, d))
}

/// Sorts a bucket's entries, without repeats or dead ones.
fn sort_live(entries: &mut Vec<(i64, u32)>, live: &impl Fn(i64, u32) -> bool) {
    entries.sort_unstable();
    entries.dedup();
    entries.retain(|&(time, id)| live(time, id));
}

impl Timers {
    /// Registers a timer; registering an existing one does nothing.
    pub fn register(&mut self, d: Domain, time: i64, kg: u32, key: &[u8]) {
        self.change_key(kg, key, &[(d, time, true)]);
    }

    /// Deletes a timer, if it exists.
    pub fn delete(&mut self, d: Domain, time: i64, key: &[u8]) {
        if let Some(id) = self.keys.find(key) {
            self.changes(id, &[(d, time, false)]);
        }
    }

    /// Registers (`true`) and deletes (`false`) timers of one key, in order:
    /// the key is looked up once.
    pub fn change_key(&mut self, kg: u32, key: &[u8], changes: &[(Domain, i64, bool)]) {
        let id = if changes.iter().any(|c| c.2) {
            self.keys.intern_in_group(key, kg, KeyTimers::default)
        } else {
            match self.keys.find(key) {
                Some(id) => id,
                None => return,
            }
        };
        self.changes(id, changes);
    }

    /// Registers and deletes timers of key `id`, then releases it if it has
    /// none left and settles the queues it deleted from.
    fn changes(&mut self, id: u32, changes: &[(Domain, i64, bool)]) {
        let Timers { keys, queues } = self;
        let mut deleted = [false; 2];
        for &(d, time, register) in changes {
            if !keys.get_mut(id).change(time, d, register) {
                continue;
            }
            let queue = &mut queues[slot(d)];
            if register {
                queue.insert(time, id, &live_in(keys, d));
            } else {
                queue.live -= 1;
                deleted[slot(d)] = true;
            }
        }
        if keys.get(id).count() == 0 {
            keys.release(id);
        }
        for d in [Domain::EventTime, Domain::ProcessingTime] {
            if deleted[slot(d)] {
                queues[slot(d)].settle(&live_in(keys, d));
            }
        }
    }

    /// Calls `f(time, key group, key)` for the timers with `time <= until`,
    /// in (time, key id) order.
    pub fn due(&mut self, d: Domain, until: i64, f: &mut dyn FnMut(i64, u32, &[u8])) {
        let Timers { keys, queues } = self;
        queues[slot(d)].due(until, &live_in(keys, d), &mut |time, id| {
            f(time, keys.key_group(id), keys.key(id))
        });
    }

    /// The earliest timer's time.
    pub fn next(&self, d: Domain) -> Option<i64> {
        self.queues[slot(d)].next()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queues.iter().map(|q| q.live).sum()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A keyed state's timer service: where its timers are kept. The store is
/// the state's own; the heap's service does not use it.
pub trait TimerQueue: Send {
    /// Registers a timer; registering an existing one does nothing.
    fn register(
        &mut self,
        store: &mut dyn Store,
        d: Domain,
        time: i64,
        kg: u32,
        key: &[u8],
    ) -> Result<(), StateError>;
    /// Deletes a timer, if it exists.
    fn delete(
        &mut self,
        store: &mut dyn Store,
        d: Domain,
        time: i64,
        kg: u32,
        key: &[u8],
    ) -> Result<(), StateError>;
    /// Registers (`true`) and deletes (`false`) timers of one key, in
    /// order.
    fn change_key(
        &mut self,
        store: &mut dyn Store,
        kg: u32,
        key: &[u8],
        changes: &[(Domain, i64, bool)],
    ) -> Result<(), StateError> {
        for &(d, time, register) in changes {
            if register {
                self.register(store, d, time, kg, key)?;
            } else {
                self.delete(store, d, time, kg, key)?;
            }
        }
        Ok(())
    }

    /// Calls `f(time, key group, key)` for the timers with `time <= until`,
    /// in time order.
    fn due(
        &mut self,
        store: &mut dyn Store,
        d: Domain,
        until: i64,
        f: &mut dyn FnMut(i64, u32, &[u8]),
    ) -> Result<(), StateError>;
    /// The earliest timer's time.
    fn next(&self, d: Domain) -> Option<i64>;
    /// About how many bytes of memory the timers take.
    fn bytes(&self) -> u64;
}

impl TimerQueue for Timers {
    fn register(
        &mut self,
        _: &mut dyn Store,
        d: Domain,
        time: i64,
        kg: u32,
        key: &[u8],
    ) -> Result<(), StateError> {
        Timers::register(self, d, time, kg, key);
        Ok(())
    }

    fn delete(
        &mut self,
        _: &mut dyn Store,
        d: Domain,
        time: i64,
        _: u32,
        key: &[u8],
    ) -> Result<(), StateError> {
        Timers::delete(self, d, time, key);
        Ok(())
    }

    fn change_key(
        &mut self,
        _: &mut dyn Store,
        kg: u32,
        key: &[u8],
        changes: &[(Domain, i64, bool)],
    ) -> Result<(), StateError> {
        Timers::change_key(self, kg, key, changes);
        Ok(())
    }

    fn due(
        &mut self,
        _: &mut dyn Store,
        d: Domain,
        until: i64,
        f: &mut dyn FnMut(i64, u32, &[u8]),
    ) -> Result<(), StateError> {
        Timers::due(self, d, until, f);
        Ok(())
    }

    fn next(&self, d: Domain) -> Option<i64> {
        Timers::next(self, d)
    }

    /// About how many bytes of memory the timers take.
    fn bytes(&self) -> u64 {
        self.queues.iter().map(Queue::bytes).sum::<u64>() + self.keys.bytes()
    }
}

/// Timers in a [`Store`], under the key `TIMER domain time key` of their key
/// group (the time with its sign bit flipped, big endian, so that byte order
/// is time order), with an empty value.
///
/// As Flink's RocksDB timer queue does, each key group keeps its earliest
/// timers (up to [`CACHED`]) in memory as well, so that finding what is due
/// and what comes next seldom reads the store: a read seeks past deleted
/// timers' tombstones, which is what makes a queue in RocksDB slow.
pub struct StoredTimers {
    /// Per domain: each key group's timers.
    groups: [HashMap<u32, Group>; 2],
    /// Per domain: (earliest time, key group) of every key group with
    /// timers.
    heads: [BTreeSet<(i64, u32)>; 2],
    /// How many timers a key group keeps in memory.
    cached: usize,
    key: Vec<u8>,
}

impl Default for StoredTimers {
    fn default() -> StoredTimers {
        StoredTimers::with_cache(CACHED)
    }
}

/// Timers kept in memory per key group and domain.
pub const CACHED: usize = 128;
/// About what a key group with timers costs besides its cached timers.
const GROUP_BYTES: u64 = 96;

/// A key group's earliest timers: the first `cache.len()` of its timers in
/// (time, key) order; `complete` when the store has no others.
struct Group {
    cache: BTreeSet<(i64, Box<[u8]>)>,
    complete: bool,
    /// Bytes of the cached keys.
    bytes: u64,
}

/// The first byte of a timer's store key.
pub const TIMER: u8 = 4;

fn slot(d: Domain) -> usize {
    match d {
        Domain::EventTime => 0,
        Domain::ProcessingTime => 1,
    }
}

/// The store key of a timer: `TIMER domain time key`.
pub fn timer_key(out: &mut Vec<u8>, d: Domain, time: i64, key: &[u8]) {
    out.clear();
    out.push(TIMER);
    out.push(slot(d) as u8);
    out.extend_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(key);
}

/// A timer's domain, time and key from its store key.
pub fn parse_timer_key(k: &[u8]) -> Option<(Domain, i64, &[u8])> {
    if k.len() < 10 || k[0] != TIMER {
        return None;
    }
    let d = match k[1] {
        0 => Domain::EventTime,
        1 => Domain::ProcessingTime,
        _ => return None,
    };
    let t = (u64::from_be_bytes(k[2..10].try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
    Some((d, t, &k[10..]))
}

impl Group {
    fn insert(&mut self, t: i64, key: &[u8]) {
        if self.cache.insert((t, key.into())) {
            self.bytes += key.len() as u64;
        }
    }

    fn remove(&mut self, t: i64, key: &[u8]) -> bool {
        // Found from its time on without boxing `key` (an empty box does not
        // allocate): a process function deletes a timer per record.
        let from = (t, Box::<[u8]>::default());
        let removed = self
            .cache
            .extract_if(from.., |(time, k)| *time == t && **k == *key)
            .next()
            .is_some();
        if removed {
            self.bytes -= key.len() as u64;
        }
        removed
    }

    fn evict_last(&mut self) {
        if let Some((_, k)) = self.cache.pop_last() {
            self.bytes -= k.len() as u64;
            self.complete = false;
        }
    }

    /// Reads the timers after `after` (a store key) from the store into the
    /// cache, up to `cached`.
    fn refill(
        &mut self,
        store: &mut dyn Store,
        (kg, d): (u32, Domain),
        after: &[u8],
        cached: usize,
    ) -> Result<(), StateError> {
        let prefix = [TIMER, slot(d) as u8];
        let mut from = after.to_vec();
        // The first key after `after`.
        from.push(0);
        let mut loaded = Vec::new();
        store.scan_from(kg, &prefix, &from, &mut |k, _| {
            if let Some((_, t, key)) = parse_timer_key(k) {
                loaded.push((t, key.to_vec()));
            }
            loaded.len() <= cached
        })?;
        self.complete = loaded.len() <= cached;
        for (t, key) in loaded.into_iter().take(cached) {
            self.insert(t, &key);
        }
        Ok(())
    }
}

impl StoredTimers {
    /// Timers that keep `cached` per key group in memory.
    pub fn with_cache(cached: usize) -> StoredTimers {
        StoredTimers {
            groups: Default::default(),
            heads: Default::default(),
            cached: cached.max(1),
            key: Vec::new(),
        }
    }

    /// Keeps `heads` in step with key group `kg`'s earliest timer, which was
    /// `before`.
    fn rehead(&mut self, i: usize, kg: u32, before: Option<i64>) {
        let group = self.groups[i].get(&kg);
        let now = group.and_then(|g| g.cache.first().map(|f| f.0));
        if now != before {
            if let Some(b) = before {
                self.heads[i].remove(&(b, kg));
            }
            if let Some(n) = now {
                self.heads[i].insert((n, kg));
            }
        }
        if group.is_some_and(|g| g.cache.is_empty() && g.complete) {
            self.groups[i].remove(&kg);
        }
    }

    fn head(&self, i: usize, kg: u32) -> Option<i64> {
        self.groups[i]
            .get(&kg)
            .and_then(|g| g.cache.first().map(|f| f.0))
    }
}

impl TimerQueue for StoredTimers {
    fn register(
        &mut self,
        store: &mut dyn Store,
        d: Domain,
        time: i64,
        kg: u32,
        key: &[u8],
    ) -> Result<(), StateError> {
        timer_key(&mut self.key, d, time, key);
        store.put(kg, &self.key, b"")?;
        let i = slot(d);
        let before = self.head(i, kg);
        let g = self.groups[i].entry(kg).or_insert_with(|| Group {
            cache: BTreeSet::new(),
            complete: true,
            bytes: 0,
        });
        // The cache holds the earliest timers: a later one than all of them
        // goes to the store alone, unless the cache holds every timer.
        let earlier = g
            .cache
            .last()
            .is_none_or(|(t, k)| (time, key) < (*t, &k[..]));
        if g.complete || earlier {
            g.insert(time, key);
            if g.cache.len() > self.cached {
                g.evict_last();
            }
        }
        self.rehead(i, kg, before);
        Ok(())
    }

    fn delete(
        &mut self,
        store: &mut dyn Store,
        d: Domain,
        time: i64,
        kg: u32,
        key: &[u8],
    ) -> Result<(), StateError> {
        timer_key(&mut self.key, d, time, key);
        store.delete(kg, &self.key)?;
        let i = slot(d);
        let before = self.head(i, kg);
        if let Some(g) = self.groups[i].get_mut(&kg)
            && g.remove(time, key)
            && g.cache.is_empty()
            && !g.complete
        {
            // Every timer left comes after this one.
            g.refill(store, (kg, d), &self.key, self.cached)?;
        }
        self.rehead(i, kg, before);
        Ok(())
    }

    fn due(
        &mut self,
        store: &mut dyn Store,
        d: Domain,
        until: i64,
        f: &mut dyn FnMut(i64, u32, &[u8]),
    ) -> Result<(), StateError> {
        let i = slot(d);
        let mut found: Vec<(i64, Vec<u8>, u32)> = Vec::new();
        let prefix = [TIMER, i as u8];
        let mut from = Vec::new();
        for &(_, kg) in self.heads[i].range(..=(until, u32::MAX)) {
            let g = &self.groups[i][&kg];
            let mut beyond = true;
            for (t, key) in &g.cache {
                if *t > until {
                    beyond = false;
                    break;
                }
                found.push((*t, key.to_vec(), kg));
            }
            if beyond && !g.complete {
                // Due past the cache: read on from its last timer.
                let (t, key) = g.cache.last().expect("a head");
                timer_key(&mut from, d, *t, key);
                from.push(0);
                store.scan_from(kg, &prefix, &from, &mut |k, _| match parse_timer_key(k) {
                    Some((_, t, key)) if t <= until => {
                        found.push((t, key.to_vec(), kg));
                        true
                    }
                    _ => false,
                })?;
            }
        }
        found.sort_unstable();
        for (t, key, kg) in &found {
            f(*t, *kg, key);
        }
        Ok(())
    }

    fn next(&self, d: Domain) -> Option<i64> {
        self.heads[slot(d)].first().map(|h| h.0)
    }

    /// The cached timers: the rest are in the store.
    fn bytes(&self) -> u64 {
        self.groups
            .iter()
            .flat_map(|m| m.values())
            .map(|g| g.cache.len() as u64 * TIMER_BYTES + g.bytes + GROUP_BYTES)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet as Model;

    proptest! {
        /// Buckets pop what a timer set pops, in its order: inserts at few
        /// times, repeats, and inserts at the time being popped.
        #[test]
        fn buckets_pop_as_a_timer_set(
            ops in proptest::collection::vec((0i64..6, 0u32..5, 0i64..3, 0u8..4), 0..300),
        ) {
            let (mut buckets, mut set) = (TimeBuckets::default(), TimerSet::default());
            let mut until = 0;
            for (time, key, ns, pop) in ops {
                // Never below what is being popped, as windows insert.
                let time = until + time;
                buckets.insert(time, key, ns);
                set.insert(time, key, ns);
                if pop == 0 {
                    until += 1;
                    for _ in 0..3 {
                        prop_assert_eq!(buckets.pop_due(until), set.pop_due(until));
                    }
                }
                // Repeats count until they are due.
                prop_assert!(buckets.len() >= set.len());
                prop_assert_eq!(buckets.len().min(1), set.len().min(1));
            }
            loop {
                let (a, b) = (buckets.pop_due(i64::MAX), set.pop_due(i64::MAX));
                prop_assert_eq!(a, b);
                if a.is_none() {
                    break;
                }
            }
            prop_assert!(buckets.is_empty());
            prop_assert_eq!((buckets.len(), buckets.bytes()), (0, 0));
        }
    }

    pub(super) fn due(t: &mut Timers, d: Domain, until: i64) -> Vec<(i64, u32, Vec<u8>)> {
        let mut v = Vec::new();
        t.due(d, until, &mut |tm, kg, k| v.push((tm, kg, k.to_vec())));
        v
    }

    #[test]
    fn one_timer_per_key_and_time_in_time_order() {
        let mut t = Timers::default();
        t.register(Domain::EventTime, 30, 1, b"a");
        t.register(Domain::EventTime, 10, 2, b"b");
        t.register(Domain::EventTime, 10, 2, b"b");
        t.register(Domain::ProcessingTime, 5, 1, b"a");
        assert_eq!(t.len(), 3);
        let got = due(&mut t, Domain::EventTime, 30);
        assert_eq!(got, [(10, 2, b"b".to_vec()), (30, 1, b"a".to_vec())]);
        assert_eq!(due(&mut t, Domain::EventTime, 9).len(), 0);
        t.delete(Domain::EventTime, 10, b"b");
        t.delete(Domain::EventTime, 10, b"nobody");
        assert_eq!(t.next(Domain::EventTime), Some(30));
        assert_eq!(t.next(Domain::ProcessingTime), Some(5));
        t.delete(Domain::EventTime, 30, b"a");
        t.delete(Domain::ProcessingTime, 5, b"a");
        assert!(t.is_empty());
        // Every key was released.
        assert!(t.keys.is_empty());
        assert_eq!(t.bytes(), 0);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_timers(ops in proptest::collection::vec((any::<bool>(), 0i64..20, 0u8..5), 0..200)) {
            let mut t = Timers::default();
            let mut model = Model::new();
            for (register, time, key) in ops {
                let k = [key];
                if register {
                    t.register(Domain::EventTime, time, key as u32, &k);
                    model.insert((time, key));
                } else {
                    t.delete(Domain::EventTime, time, &k);
                    model.remove(&(time, key));
                }
            }
            let mut got: Vec<(i64, u8)> = due(&mut t, Domain::EventTime, i64::MAX).into_iter().map(|(tm, _, k)| (tm, k[0])).collect();
            got.sort();
            let want: Vec<(i64, u8)> = model.into_iter().collect();
            prop_assert_eq!(got, want);
            // A key stays while it has timers.
            let keys: std::collections::BTreeSet<u8> = due(&mut t, Domain::EventTime, i64::MAX).into_iter().map(|(_, _, k)| k[0]).collect();
            prop_assert_eq!(t.keys.len(), keys.len());
            prop_assert!(t.bytes() >= t.len() as u64 * ENTRY_BYTES + t.keys.len() as u64 * (1 + crate::state::keys::ENTRY_BYTES));
        }
    }

    proptest! {
        /// A key's changes applied together (a list while it has few
        /// timers, a set past that) leave the timers one by one would:
        /// both domains, up to 24 timers a key, deletes of timers it lacks.
        #[test]
        fn changes_of_a_key_together_behave_like_a_set_of_timers(
            calls in proptest::collection::vec(
                (0u8..4, proptest::collection::vec((any::<bool>(), 0i64..12, any::<bool>()), 0..12)),
                0..80,
            ),
        ) {
            let mut t = Timers::default();
            let mut model = Model::new();
            let domain = |p: bool| if p { Domain::ProcessingTime } else { Domain::EventTime };
            for (key, changes) in calls {
                let changes: Vec<(Domain, i64, bool)> =
                    changes.iter().map(|&(r, time, p)| (domain(p), time, r)).collect();
                t.change_key(u32::from(key), &[key], &changes);
                for (d, time, register) in changes {
                    if register {
                        model.insert((d, time, key));
                    } else {
                        model.remove(&(d, time, key));
                    }
                }
                let mut got: Vec<(Domain, i64, u8)> = Vec::new();
                for d in [Domain::EventTime, Domain::ProcessingTime] {
                    for (tm, kg, k) in due(&mut t, d, i64::MAX) {
                        prop_assert_eq!(kg, u32::from(k[0]));
                        got.push((d, tm, k[0]));
                    }
                }
                got.sort();
                let want: Vec<_> = model.iter().copied().collect();
                prop_assert_eq!(got, want);
                // A key is kept while it has timers, and its count is right.
                let keys: Model<u8> = model.iter().map(|m| m.2).collect();
                prop_assert_eq!(t.keys.len(), keys.len());
                for k in keys {
                    let id = t.keys.find(&[k]).expect("a key with timers");
                    let n = model.iter().filter(|m| m.2 == k).count();
                    prop_assert_eq!(t.keys.get(id).count(), n);
                }
            }
        }
    }

    #[test]
    fn timers_moved_far_ahead_again_and_again_leave_few_dead_entries() {
        let mut t = Timers::default();
        t.register(Domain::EventTime, 0, 7, b"near");
        let mut at = 1_000;
        t.register(Domain::EventTime, at, 7, b"k");
        for _ in 0..10_000 {
            t.change_key(
                7,
                b"k",
                &[
                    (Domain::EventTime, at, false),
                    (Domain::EventTime, at + 300, true),
                ],
            );
            at += 300;
        }
        let q = &t.queues[slot(Domain::EventTime)];
        assert_eq!(q.live, 2);
        assert!(
            q.stored <= DEAD_PER_LIVE * 2 + DEAD_SLACK + 1,
            "{}",
            q.stored
        );
        assert!(t.bytes() < 2_000, "{}", t.bytes());
        assert_eq!(t.next(Domain::EventTime), Some(0));
        let got = due(&mut t, Domain::EventTime, i64::MAX);
        assert_eq!(got, [(0, 7, b"near".to_vec()), (at, 7, b"k".to_vec())]);
    }

    proptest! {
        /// Timers across many buckets, moved, deleted and fired as a
        /// process function does, come due in time order, exactly the live
        /// ones, with `next` the earliest; the dead entries left behind are
        /// dropped (at the front, and all at once past their slack).
        #[test]
        fn a_queue_gives_the_live_timers_in_time_order(
            ops in proptest::collection::vec((0u8..4, 0u8..6, -600i64..3000, any::<bool>()), 0..400),
        ) {
            let mut t = Timers::default();
            let mut model: Model<(Domain, i64, u8)> = Model::new();
            let mut clock = [-1000i64; 2];
            for (op, key, time, processing) in ops {
                let d = if processing { Domain::ProcessingTime } else { Domain::EventTime };
                let k = [key];
                match op {
                    0 => {
                        t.register(d, time, u32::from(key), &k);
                        model.insert((d, time, key));
                    }
                    // Move the key's earliest timer of the domain later, as
                    // a session's timeout moves.
                    1 => {
                        let old = model.iter().find(|m| m.0 == d && m.2 == key).copied();
                        let mut changes = Vec::new();
                        if let Some((_, at, _)) = old {
                            changes.push((d, at, false));
                            model.remove(&(d, at, key));
                        }
                        let to = old.map_or(time, |o| o.1 + time.rem_euclid(700));
                        changes.push((d, to, true));
                        model.insert((d, to, key));
                        t.change_key(u32::from(key), &k, &changes);
                    }
                    2 => {
                        t.delete(d, time, &k);
                        model.remove(&(d, time, key));
                    }
                    // Fire what the clock passes, deleting each.
                    _ => {
                        let c = &mut clock[usize::from(processing)];
                        *c += time.rem_euclid(400);
                        let fired = due(&mut t, d, *c);
                        let want: Vec<(i64, u8)> =
                            model.iter().filter(|m| m.0 == d && m.1 <= *c).map(|m| (m.1, m.2)).collect();
                        let mut got: Vec<(i64, u8)> = fired.iter().map(|f| (f.0, f.2[0])).collect();
                        prop_assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "out of order: {:?}", got);
                        got.sort();
                        prop_assert_eq!(got, want);
                        for (tm, _, key) in fired {
                            t.delete(d, tm, &key);
                            model.remove(&(d, tm, key[0]));
                        }
                    }
                }
                for d in [Domain::EventTime, Domain::ProcessingTime] {
                    let first = model.iter().find(|m| m.0 == d).map(|m| m.1);
                    prop_assert_eq!(t.next(d), first);
                }
                for q in &t.queues {
                    prop_assert!(q.stored >= q.live);
                    prop_assert!(q.stored <= DEAD_PER_LIVE * q.live + DEAD_SLACK + 1);
                }
            }
            let mut all: Vec<(Domain, i64, u8)> = Vec::new();
            for d in [Domain::EventTime, Domain::ProcessingTime] {
                let got = due(&mut t, d, i64::MAX);
                prop_assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
                all.extend(got.into_iter().map(|(tm, _, k)| (d, tm, k[0])));
            }
            all.sort();
            prop_assert_eq!(all.clone(), model.iter().copied().collect::<Vec<_>>());
            for (d, tm, key) in all {
                t.delete(d, tm, &[key]);
            }
            prop_assert!(t.is_empty());
            prop_assert!(t.keys.is_empty());
            prop_assert_eq!(t.bytes(), 0);
        }
    }
}

#[cfg(test)]
mod stored_tests {
    use super::*;
    use proptest::prelude::*;

    fn rocks() -> (tempfile::TempDir, crate::state::rocks::RocksStore) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::state::rocks::RocksStore::open(dir.path(), "timers", 0, 8 << 20, 4 << 20)
                .unwrap();
        (dir, store)
    }

    fn due(
        t: &mut StoredTimers,
        s: &mut dyn Store,
        d: Domain,
        until: i64,
    ) -> Vec<(i64, u32, Vec<u8>)> {
        let mut v = Vec::new();
        t.due(s, d, until, &mut |tm, kg, k| v.push((tm, kg, k.to_vec())))
            .unwrap();
        v
    }

    #[test]
    fn timer_keys_sort_by_time_and_round_trip() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (x, y) in [(-5i64, 3i64), (i64::MIN, -1), (0, 1), (1, i64::MAX)] {
            timer_key(&mut a, Domain::EventTime, x, b"k");
            timer_key(&mut b, Domain::EventTime, y, b"a");
            assert!(a < b, "{x} {y}");
            assert_eq!(parse_timer_key(&a), Some((Domain::EventTime, x, &b"k"[..])));
        }
    }

    #[test]
    fn many_timers_take_no_more_memory_than_their_key_groups() {
        let (_dir, mut store) = rocks();
        let mut t = StoredTimers::default();
        for i in 0..50_000u32 {
            t.register(
                &mut store,
                Domain::ProcessingTime,
                i64::from(i % 977),
                i % 8,
                &i.to_be_bytes(),
            )
            .unwrap();
        }
        // At most CACHED timers of each of the 8 key groups in memory.
        assert!(
            t.bytes() <= 8 * (CACHED as u64 * (TIMER_BYTES + 4) + GROUP_BYTES),
            "{}",
            t.bytes()
        );
        assert_eq!(t.next(Domain::ProcessingTime), Some(0));
        let want = (0..50_000).filter(|i| i % 977 <= 1).count();
        assert_eq!(
            due(&mut t, &mut store, Domain::ProcessingTime, 1).len(),
            want
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The same operations give the same timers, due in the same order,
        /// as the heap's timer service.
        #[test]
        fn behave_like_the_heap_timers(ops in proptest::collection::vec((0u8..3, any::<bool>(), -3i64..8, 0u8..6), 0..300)) {
            let (_dir, mut store) = rocks();
            // A cache of two timers per key group, so that reading the
            // store past it is exercised too.
            let mut stored = StoredTimers::with_cache(2);
            let mut heap = Timers::default();
            for (op, event, time, key) in ops {
                let d = if event { Domain::EventTime } else { Domain::ProcessingTime };
                let (k, kg) = ([key], u32::from(key % 2));
                match op {
                    0 => {
                        stored.register(&mut store, d, time, kg, &k).unwrap();
                        heap.register(d, time, kg, &k);
                    }
                    1 => {
                        stored.delete(&mut store, d, time, kg, &k).unwrap();
                        heap.delete(d, time, &k);
                    }
                    // What an operator does: fire what is due, deleting it.
                    _ => {
                        let fired: Vec<_> = super::tests::due(&mut heap, d, time);
                        for (t, kg, k) in fired {
                            stored.delete(&mut store, d, t, kg, &k).unwrap();
                            heap.delete(d, t, &k);
                        }
                    }
                }
                for d in [Domain::EventTime, Domain::ProcessingTime] {
                    prop_assert_eq!(stored.next(d), heap.next(d));
                    let mut want: Vec<_> = super::tests::due(&mut heap, d, 3);
                    let mut got = due(&mut stored, &mut store, d, 3);
                    want.sort();
                    got.sort();
                    prop_assert_eq!(got, want);
                }
            }
            for d in [Domain::EventTime, Domain::ProcessingTime] {
                for until in [-6, 0, 7, i64::MAX] {
                    let want: Vec<_> = super::tests::due(&mut heap, d, until);
                    let mut got = due(&mut stored, &mut store, d, until);
                    // The heap orders equal times by key id, the store by key.
                    let mut w = want.clone();
                    w.sort();
                    got.sort();
                    prop_assert_eq!(got, w);
                }
            }
        }
    }
}
