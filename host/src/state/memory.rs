//! The in-memory [`Store`]: one table per key group, on the heap.
//!
//! Point lookups (value rows, lists) go to a hash map; map-state entries,
//! which are scanned by prefix, to an ordered map. The store counts the bytes
//! it holds and refuses writes past its limit with an error that says to use
//! RocksDB: a job whose state outgrows memory stops with a clear message
//! instead of taking the machine down.

use super::{StateError, Store};
use hashbrown::{HashMap, HashTable};
use std::collections::BTreeMap;
use std::hash::BuildHasher;

/// Bookkeeping bytes per entry on top of its key and value (about its
/// table slot, a cache line, and for a long entry its block's header).
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Default)]
struct Table {
    points: Points,
    ordered: BTreeMap<Box<[u8]>, Vec<u8>>,
}

/// A key group's point entries. An entry's key and value are kept together:
/// in its table slot when they fit there (a lookup then reads one cache
/// line), else in a block of their own. A process function reads and writes
/// each key's row once per call, and between two calls its records have
/// pushed the rows out of the core's own cache, so each line a lookup reads
/// is a wait. Replacing a value with one that fits where the old one was
/// writes it in place.
#[derive(Default)]
struct Points {
    table: HashTable<Point>,
    hasher: hashbrown::DefaultHashBuilder,
}

/// Bytes of key and value a point keeps in its slot.
const INLINE: usize = 61;

/// One entry, a cache line in the table.
#[repr(align(64))]
enum Point {
    Inline {
        key_len: u8,
        len: u8,
        /// The key's bytes, then the value's.
        bytes: [u8; INLINE],
    },
    Block {
        key_len: u32,
        /// The key's bytes, then the value's.
        bytes: Box<[u8]>,
    },
}

// One line: the tag, the two lengths and the bytes.
const _: () = assert!(std::mem::size_of::<Point>() == 64);

impl Point {
    fn new(key: &[u8], value: &[u8]) -> Point {
        let len = key.len() + value.len();
        if len <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            bytes[key.len()..len].copy_from_slice(value);
            return Point::Inline {
                key_len: key.len() as u8,
                len: len as u8,
                bytes,
            };
        }
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Point::Block {
            key_len: key.len() as u32,
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// The key's and the value's bytes, and where the value starts.
    #[inline]
    fn parts(&self) -> (&[u8], usize) {
        match self {
            Point::Inline {
                key_len,
                len,
                bytes,
            } => (&bytes[..*len as usize], *key_len as usize),
            Point::Block { key_len, bytes } => (bytes, *key_len as usize),
        }
    }

    #[inline]
    fn key(&self) -> &[u8] {
        let (bytes, at) = self.parts();
        &bytes[..at]
    }

    #[inline]
    fn value(&self) -> &[u8] {
        let (bytes, at) = self.parts();
        &bytes[at..]
    }

    /// Whether this is the entry of `key`.
    #[inline]
    fn is(&self, key: &[u8]) -> bool {
        crate::json::same(self.key(), key)
    }

    /// Replaces the value, in place where the new one fits.
    fn set_value(&mut self, value: &[u8]) {
        match self {
            Point::Inline {
                key_len,
                len,
                bytes,
            } if *key_len as usize + value.len() <= INLINE => {
                let at = *key_len as usize;
                bytes[at..at + value.len()].copy_from_slice(value);
                *len = (at + value.len()) as u8;
            }
            Point::Block { key_len, bytes } if bytes.len() - *key_len as usize == value.len() => {
                bytes[*key_len as usize..].copy_from_slice(value);
            }
            _ => *self = Point::new(self.key(), value),
        }
    }
}

impl Points {
    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn get(&self, key: &[u8]) -> Option<&Point> {
        let hash = self.hash(key);
        self.table.find(hash, |p| p.is(key))
    }

    /// Sets `key`'s value, if `admit` (given the length of the value it
    /// replaces, if any) lets it.
    fn put<E>(
        &mut self,
        key: &[u8],
        value: &[u8],
        admit: impl FnOnce(Option<usize>) -> Result<(), E>,
    ) -> Result<(), E> {
        let hash = self.hash(key);
        match self.table.find_mut(hash, |p| p.is(key)) {
            Some(p) => {
                admit(Some(p.value().len()))?;
                p.set_value(value);
            }
            None => {
                admit(None)?;
                // A slot keeps no hash: growing the table hashes the keys
                // again.
                let hasher = &self.hasher;
                self.table
                    .insert_unique(hash, Point::new(key, value), |p| hasher.hash_one(p.key()));
            }
        }
        Ok(())
    }

    /// Removes `key`; the length of its value, if it was there.
    fn remove(&mut self, key: &[u8]) -> Option<usize> {
        let hash = self.hash(key);
        let (p, _) = self.table.find_entry(hash, |p| p.is(key)).ok()?.remove();
        Some(p.value().len())
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.table.iter().map(|p| (p.key(), p.value()))
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
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
            t.ordered.get(key).map(|v| &v[..])
        } else {
            t.points.get(key).map(Point::value)
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
        let (bytes, limit) = (&mut self.bytes, self.limit);
        // The bytes held after the write: refused past the limit, unless
        // the write frees some.
        let mut admit = |old: Option<usize>| {
            let after = match old {
                Some(old) => *bytes - old as u64 + value.len() as u64,
                None => *bytes + cost(key, value),
            };
            if after > limit && after > *bytes {
                return Err(limit_error(limit));
            }
            *bytes = after;
            Ok(())
        };
        if !Self::ordered(key) {
            return t.points.put(key, value, admit);
        }
        match t.ordered.get_mut(key) {
            Some(v) => {
                admit(Some(v.len()))?;
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                admit(None)?;
                t.ordered.insert(key.into(), value.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), StateError> {
        let Some(t) = self.tables.get_mut(&kg) else {
            return Ok(());
        };
        let old = if Self::ordered(key) {
            t.ordered.remove(key).map(|v| v.len())
        } else {
            t.points.remove(key)
        };
        if let Some(len) = old {
            self.bytes -= key.len() as u64 + len as u64 + ENTRY_OVERHEAD;
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
            for (k, v) in t.points.iter() {
                f(kg, k, v);
            }
            for (k, v) in &t.ordered {
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
    use proptest::prelude::*;

    proptest! {
        /// Puts (of values as long as the one they replace, and not),
        /// deletes, reads, scans and the byte count agree with a map.
        #[test]
        fn keeps_what_a_map_keeps(
            ops in proptest::collection::vec((0u8..3, 0u32..3, 0u8..2, 0u8..6, 0usize..4), 0..200),
        ) {
            let mut s = MemoryStore::new(u64::MAX);
            let mut model: std::collections::BTreeMap<(u32, Vec<u8>), Vec<u8>> = Default::default();
            for (i, (op, kg, kind, k, len)) in ops.into_iter().enumerate() {
                // Point keys (rows) and ordered keys (map entries); values
                // of 0 to 60 bytes, which with their key fit in a point's
                // slot or not.
                let kind = if kind == 0 { super::super::ROW } else { super::super::MAP };
                let key = vec![kind, k, k];
                match op {
                    0 => {
                        let value = vec![i as u8; len * 20];
                        s.put(kg, &key, &value).unwrap();
                        model.insert((kg, key.clone()), value);
                    }
                    1 => {
                        s.delete(kg, &key).unwrap();
                        model.remove(&(kg, key.clone()));
                    }
                    _ => {}
                }
                let mut got = Vec::new();
                let found = s.get(kg, &key, &mut got).unwrap();
                prop_assert_eq!(found.then_some(got), model.get(&(kg, key.clone())).cloned());
                let want: u64 = model.iter().map(|((_, k), v)| cost(k, v)).sum();
                prop_assert_eq!(s.size_bytes(), want);
            }
            let mut all = Vec::new();
            s.for_each(&mut |kg, k, v| all.push(((kg, k.to_vec()), v.to_vec()))).unwrap();
            all.sort();
            prop_assert_eq!(&all, &model.clone().into_iter().collect::<Vec<_>>());
            for kg in 0..3 {
                for prefix in [super::super::ROW, super::super::MAP] {
                    let mut got = Vec::new();
                    s.scan(kg, &[prefix], &mut |k, v| got.push((k.to_vec(), v.to_vec()))).unwrap();
                    let want: Vec<_> = model
                        .iter()
                        .filter(|((g, k), _)| *g == kg && k[0] == prefix)
                        .map(|((_, k), v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }

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
