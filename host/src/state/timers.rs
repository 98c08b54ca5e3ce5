//! Timers of a keyed operator subtask: at most one per (domain, key, time),
//! kept in time order so that the ones a watermark (or the clock) passes are
//! found without a scan.
//!
//! Keys with timers are interned (an id per key, released with its last
//! timer), so that a timer is two integers in an ordered set and deleting and
//! re-registering one — what a process function does for every record that
//! moves its timeout — costs two set operations and no allocation.
//!
//! Timers are state: [`Timers::bytes`] says about how much memory they take,
//! so that the operator counts them against its state budget.

use hashbrown::HashMap;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    EventTime,
    ProcessingTime,
}

struct KeyEntry {
    key: Box<[u8]>,
    kg: u32,
    timers: u32,
}

/// About what one timer costs: its 16 bytes in a B-tree node, with the
/// node's slack and bookkeeping (measured: ~35 bytes per timer).
const TIMER_BYTES: u64 = 40;
/// About what a key with timers costs besides its bytes: its entry, the
/// interning table's slot and two allocations.
const KEY_BYTES: u64 = 96;

#[derive(Default)]
pub struct Timers {
    ids: HashMap<Box<[u8]>, u32>,
    keys: Vec<Option<KeyEntry>>,
    free: Vec<u32>,
    event: BTreeSet<(i64, u32)>,
    processing: BTreeSet<(i64, u32)>,
    /// Bytes of the interned keys.
    key_bytes: u64,
}

impl Timers {
    fn set(&mut self, d: Domain) -> &mut BTreeSet<(i64, u32)> {
        match d {
            Domain::EventTime => &mut self.event,
            Domain::ProcessingTime => &mut self.processing,
        }
    }

    fn intern(&mut self, kg: u32, key: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let entry = KeyEntry {
            key: key.into(),
            kg,
            timers: 0,
        };
        self.key_bytes += key.len() as u64 + KEY_BYTES;
        let id = match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = Some(entry);
                id
            }
            None => {
                self.keys.push(Some(entry));
                self.keys.len() as u32 - 1
            }
        };
        self.ids.insert(key.into(), id);
        id
    }

    fn release(&mut self, id: u32) {
        let e = self.keys[id as usize].as_mut().expect("live key");
        e.timers -= 1;
        if e.timers == 0 {
            let e = self.keys[id as usize].take().expect("live key");
            self.key_bytes -= e.key.len() as u64 + KEY_BYTES;
            self.ids.remove(&e.key);
            self.free.push(id);
        }
    }

    /// Registers a timer; registering an existing one does nothing.
    pub fn register(&mut self, d: Domain, time: i64, kg: u32, key: &[u8]) {
        let id = self.intern(kg, key);
        if self.set(d).insert((time, id)) {
            self.keys[id as usize].as_mut().expect("live key").timers += 1;
        }
    }

    /// Deletes a timer, if it exists.
    pub fn delete(&mut self, d: Domain, time: i64, key: &[u8]) {
        let Some(&id) = self.ids.get(key) else {
            return;
        };
        if self.set(d).remove(&(time, id)) {
            self.release(id);
        }
    }

    /// The timers with `time <= until`, in (time, key id) order:
    /// `(time, key group, key)`.
    pub fn due(&self, d: Domain, until: i64) -> impl Iterator<Item = (i64, u32, &[u8])> + '_ {
        let set = match d {
            Domain::EventTime => &self.event,
            Domain::ProcessingTime => &self.processing,
        };
        set.range(..=(until, u32::MAX)).map(|&(t, id)| {
            let e = self.keys[id as usize].as_ref().expect("live key");
            (t, e.kg, &e.key[..])
        })
    }

    /// About how many bytes of memory the timers take.
    pub fn bytes(&self) -> u64 {
        (self.event.len() + self.processing.len()) as u64 * TIMER_BYTES + self.key_bytes
    }

    /// The earliest timer's time.
    pub fn next(&self, d: Domain) -> Option<i64> {
        match d {
            Domain::EventTime => self.event.first().map(|t| t.0),
            Domain::ProcessingTime => self.processing.first().map(|t| t.0),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet as Model;

    #[test]
    fn one_timer_per_key_and_time_in_time_order() {
        let mut t = Timers::default();
        t.register(Domain::EventTime, 30, 1, b"a");
        t.register(Domain::EventTime, 10, 2, b"b");
        t.register(Domain::EventTime, 10, 2, b"b");
        t.register(Domain::ProcessingTime, 5, 1, b"a");
        assert_eq!(t.len(), 3);
        let due: Vec<_> = t
            .due(Domain::EventTime, 30)
            .map(|(t, kg, k)| (t, kg, k.to_vec()))
            .collect();
        assert_eq!(due, [(10, 2, b"b".to_vec()), (30, 1, b"a".to_vec())]);
        assert_eq!(t.due(Domain::EventTime, 9).count(), 0);
        t.delete(Domain::EventTime, 10, b"b");
        t.delete(Domain::EventTime, 10, b"nobody");
        assert_eq!(t.next(Domain::EventTime), Some(30));
        assert_eq!(t.next(Domain::ProcessingTime), Some(5));
        t.delete(Domain::EventTime, 30, b"a");
        t.delete(Domain::ProcessingTime, 5, b"a");
        assert!(t.is_empty());
        // Every key was released.
        assert!(t.ids.is_empty());
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
            let mut got: Vec<(i64, u8)> = t.due(Domain::EventTime, i64::MAX).map(|(tm, _, k)| (tm, k[0])).collect();
            got.sort();
            let want: Vec<(i64, u8)> = model.into_iter().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(t.ids.len(), t.keys.iter().filter(|k| k.is_some()).count());
            prop_assert_eq!(t.bytes(), t.len() as u64 * TIMER_BYTES + t.ids.len() as u64 * (1 + KEY_BYTES));
        }
    }
}
