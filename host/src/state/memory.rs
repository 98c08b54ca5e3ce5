//! The in-memory [`Store`]: one table per key group, on the heap.
//!
//! Point lookups (value rows, lists) go to a hash map; map-state entries,
//! which are scanned by prefix, to an ordered map. The store counts the bytes
//! it holds and refuses writes past its limit with an error that says to use
//! RocksDB: a job whose state outgrows memory stops with a clear message
//! instead of taking the machine down.

use super::{StateError, Store};
use hashbrown::HashMap;
use std::collections::BTreeMap;

/// Bookkeeping bytes per entry on top of its key and value (two heap
/// allocations and the table slot).
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Default)]
struct Table {
    points: HashMap<Box<[u8]>, Vec<u8>>,
    ordered: BTreeMap<Box<[u8]>, Vec<u8>>,
}

pub struct MemoryStore {
    tables: HashMap<u32, Table>,
    bytes: u64,
    limit: u64,
}

impl MemoryStore {
    pub fn new(limit: u64) -> MemoryStore {
        MemoryStore {
            tables: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    fn ordered(key: &[u8]) -> bool {
        key.first() == Some(&super::MAP)
    }
}

fn cost(key: &[u8], value: &[u8]) -> u64 {
    key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
}

impl Store for MemoryStore {
    fn get(&mut self, kg: u32, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StateError> {
        let Some(t) = self.tables.get(&kg) else {
            return Ok(false);
        };
        let v = if Self::ordered(key) {
            t.ordered.get(key)
        } else {
            t.points.get(key)
        };
        Ok(match v {
            Some(v) => {
                out.extend_from_slice(v);
                true
            }
            None => false,
        })
    }

    fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let t = self.tables.entry(kg).or_default();
        let ordered = Self::ordered(key);
        let old = if ordered {
            t.ordered.get_mut(key)
        } else {
            t.points.get_mut(key)
        };
        if let Some(old) = old {
            let grow = value.len().saturating_sub(old.len()) as u64;
            if grow > 0 && self.bytes + grow > self.limit {
                return Err(limit_error(self.limit));
            }
            self.bytes = self.bytes + value.len() as u64 - old.len() as u64;
            old.clear();
            old.extend_from_slice(value);
            return Ok(());
        }
        let c = cost(key, value);
        if self.bytes + c > self.limit {
            return Err(limit_error(self.limit));
        }
        self.bytes += c;
        if ordered {
            t.ordered.insert(key.into(), value.to_vec());
        } else {
            t.points.insert(key.into(), value.to_vec());
        }
        Ok(())
    }

    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), StateError> {
        let Some(t) = self.tables.get_mut(&kg) else {
            return Ok(());
        };
        let old = if Self::ordered(key) {
            t.ordered.remove(key)
        } else {
            t.points.remove(key)
        };
        if let Some(v) = old {
            self.bytes -= cost(key, &v);
        }
        if t.points.is_empty() && t.ordered.is_empty() {
            self.tables.remove(&kg);
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.bytes
    }

    fn for_each(&mut self, f: &mut super::EntryVisitor<'_>) -> Result<(), StateError> {
        let mut kgs: Vec<u32> = self.tables.keys().copied().collect();
        kgs.sort_unstable();
        for kg in kgs {
            let t = &self.tables[&kg];
            for (k, v) in t.points.iter().chain(t.ordered.iter()) {
                f(kg, k, v);
            }
        }
        Ok(())
    }

    fn scan(
        &mut self,
        kg: u32,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        let Some(t) = self.tables.get(&kg) else {
            return Ok(());
        };
        if Self::ordered(prefix) {
            let from: Box<[u8]> = prefix.into();
            for (k, v) in t.ordered.range(from..) {
                if !k.starts_with(prefix) {
                    break;
                }
                f(k, v);
            }
        } else {
            let mut hits: Vec<_> = t
                .points
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .collect();
            hits.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in hits {
                f(k, v);
            }
        }
        Ok(())
    }
}

fn limit_error(limit: u64) -> StateError {
    StateError::Full(format!(
        "{}; raise the limit or use `state: {{ backend: rocksdb }}`, which keeps state on disk",
        full(limit)
    ))
}

/// The start of every message that says the heap backend is full.
pub(crate) fn full(limit: u64) -> String {
    format!(
        "the in-memory state backend is full ({} MiB, `state.memory_limit`)",
        limit >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_writes_past_its_limit_and_frees_deleted_bytes() {
        let mut s = MemoryStore::new(200);
        s.put(1, b"\x01a", &[0; 50]).unwrap();
        let e = s.put(1, b"\x01b", &[0; 100]).unwrap_err();
        assert!(
            matches!(&e, StateError::Full(m) if m.contains("rocksdb")),
            "{e}"
        );
        // The same input fills it again: restarting does not help.
        assert_eq!(e.fault(), crate::Fault::User);
        s.delete(1, b"\x01a").unwrap();
        assert_eq!(s.bytes, 0);
        s.put(1, b"\x01b", &[0; 100]).unwrap();
    }
}
