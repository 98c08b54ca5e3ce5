//! Values by slot number: where an operator that keeps its bookkeeping on
//! the heap (key table, per-key lists, timers) puts the bytes that make up
//! most of its state — a join's buffered rows.
//!
//! On the heap backend the values are in a vector, counted against
//! `state.memory_limit` together with what the operator says its bookkeeping
//! takes; a write past the limit is [`StateError::Full`]. With RocksDB they
//! are in the operator's store, under their key group and
//! `namespace slot:u32` (big endian), so that state larger than memory
//! works. A released slot is reused by the next [`Slots::alloc`].

use super::{Backend, StateError, Store, memory};

/// Bookkeeping bytes of a heap value besides its bytes (its vector).
const HEAP_OVERHEAD: u64 = 24;

enum Values {
    Heap {
        values: Vec<Vec<u8>>,
        bytes: u64,
        limit: u64,
    },
    Store {
        store: Box<dyn Store>,
        /// Key group of each slot.
        kgs: Vec<u32>,
        namespace: u8,
        key: Vec<u8>,
    },
}

pub struct Slots {
    values: Values,
    free: Vec<u32>,
    len: u32,
}

impl Slots {
    /// Slots on `backend`, for subtask `subtask` of operator `uid`; values
    /// in a store have their keys start with `namespace`.
    pub fn open(
        backend: &Backend,
        uid: &str,
        subtask: u32,
        namespace: u8,
    ) -> Result<Slots, StateError> {
        let values = match backend {
            Backend::Memory { limit } => Values::Heap {
                values: Vec::new(),
                bytes: 0,
                limit: *limit,
            },
            Backend::RocksDb { .. } => Values::Store {
                store: backend.open(uid, subtask)?,
                kgs: Vec::new(),
                namespace,
                key: Vec::new(),
            },
        };
        Ok(Slots {
            values,
            free: Vec::new(),
            len: 0,
        })
    }

    fn store_key(key: &mut Vec<u8>, namespace: u8, s: u32) -> &[u8] {
        key.clear();
        key.push(namespace);
        key.extend_from_slice(&s.to_be_bytes());
        key
    }

    /// Keeps `value` (of key group `kg`); returns its slot. `extra` is what
    /// the caller's bookkeeping for it takes on the heap, counted against
    /// the heap backend's limit.
    pub fn alloc(&mut self, kg: u32, value: &[u8], extra: u64) -> Result<u32, StateError> {
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                self.len += 1;
                match &mut self.values {
                    Values::Heap { values, .. } => values.push(Vec::new()),
                    Values::Store { kgs, .. } => kgs.push(0),
                }
                self.len - 1
            }
        };
        match &mut self.values {
            Values::Heap {
                values,
                bytes,
                limit,
            } => {
                let cost = value.len() as u64 + HEAP_OVERHEAD + extra;
                if *bytes + cost > *limit {
                    self.free.push(s);
                    return Err(StateError::Full(format!(
                        "{}; raise the limit or use `state: {{ backend: rocksdb }}`, which keeps state on disk",
                        memory::full(*limit)
                    )));
                }
                *bytes += cost;
                values[s as usize] = value.to_vec();
            }
            Values::Store {
                store,
                kgs,
                namespace,
                key,
            } => {
                kgs[s as usize] = kg;
                store.put(kg, Self::store_key(key, *namespace, s), value)?;
            }
        }
        Ok(s)
    }

    /// Calls `f` with the value in slot `s`; `buf` holds it when it comes
    /// from a store.
    pub fn with<R>(
        &mut self,
        s: u32,
        buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, StateError> {
        match &mut self.values {
            Values::Heap { values, .. } => Ok(f(&values[s as usize])),
            Values::Store {
                store,
                kgs,
                namespace,
                key,
            } => {
                buf.clear();
                let kg = kgs[s as usize];
                if !store.get(kg, Self::store_key(key, *namespace, s), buf)? {
                    return Err(StateError::Corrupt(format!(
                        "value {s} is missing from the state store"
                    )));
                }
                Ok(f(buf))
            }
        }
    }

    /// Frees slot `s`; `extra` is what was counted for it with
    /// [`Slots::alloc`].
    pub fn release(&mut self, s: u32, extra: u64) -> Result<(), StateError> {
        match &mut self.values {
            Values::Heap { values, bytes, .. } => {
                let v = std::mem::take(&mut values[s as usize]);
                *bytes -= v.len() as u64 + HEAP_OVERHEAD + extra;
            }
            Values::Store {
                store,
                kgs,
                namespace,
                key,
            } => {
                let kg = kgs[s as usize];
                store.delete(kg, Self::store_key(key, *namespace, s))?;
            }
        }
        self.free.push(s);
        Ok(())
    }

    /// How many values are kept.
    pub fn live(&self) -> usize {
        self.len as usize - self.free.len()
    }

    /// About how many bytes the values take.
    pub fn bytes(&self) -> u64 {
        match &self.values {
            Values::Heap { bytes, .. } => *bytes,
            Values::Store { store, .. } => store.size_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(limit: u64) -> Slots {
        Slots::open(&Backend::Memory { limit }, "j", 0, 5).unwrap()
    }

    #[test]
    fn values_come_back_and_slots_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = Backend::RocksDb {
            dir: dir.path().to_owned(),
            cache: 1 << 20,
            write_buffer: 1 << 20,
            heap_timers: None,
        };
        for mut slots in [heap(1 << 20), Slots::open(&rocks, "j", 0, 5).unwrap()] {
            let mut buf = Vec::new();
            let a = slots.alloc(3, b"alpha", 0).unwrap();
            let b = slots.alloc(7, b"beta", 0).unwrap();
            assert_eq!(slots.with(a, &mut buf, |v| v.to_vec()).unwrap(), b"alpha");
            assert_eq!(slots.with(b, &mut buf, |v| v.to_vec()).unwrap(), b"beta");
            slots.release(a, 0).unwrap();
            assert_eq!(slots.live(), 1);
            let c = slots.alloc(3, b"gamma", 0).unwrap();
            assert_eq!(c, a, "a freed slot is reused");
            assert_eq!(slots.with(c, &mut buf, |v| v.to_vec()).unwrap(), b"gamma");
            slots.release(b, 0).unwrap();
            slots.release(c, 0).unwrap();
            assert_eq!(slots.live(), 0);
        }
    }

    #[test]
    fn the_heap_refuses_values_past_its_limit_and_frees_what_is_released() {
        let mut slots = heap(200);
        let a = slots.alloc(0, &[0; 100], 16).unwrap();
        let e = slots.alloc(0, &[0; 100], 16).unwrap_err();
        assert!(matches!(e, StateError::Full(_)), "{e:?}");
        assert!(e.to_string().contains("rocksdb"), "{e}");
        slots.release(a, 16).unwrap();
        assert_eq!(slots.bytes(), 0);
        slots.alloc(0, &[0; 100], 16).unwrap();
    }
}
