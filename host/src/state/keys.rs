//! The key table of a keyed operator: each key it holds something for gets a
//! small id, so that timers and per-key bookkeeping name a key with a `u32`
//! and the key's bytes are hashed once.
//!
//! One type serves every keyed operator: the window keeps its panes and
//! sessions as a key's value, the heap timer service a count of the key's
//! timers, a keyed process function the distinct keys of one call (cleared
//! after the call). A key's bytes live in one buffer; an id is freed with
//! [`KeyTable::release`] and reused, and the buffer is compacted when freed
//! bytes outweigh live ones, so ids stay put and no key costs an allocation
//! of its own.
//!
//! Keys are hashed with xxh3-64, the hash [`super::key_groups`] takes a key
//! group from, so a new key's group comes from the same hash.

use super::key_groups;
use hashbrown::HashTable;

/// Where a key's bytes are in the table's buffer.
#[derive(Clone, Copy)]
struct Span {
    offset: u32,
    len: u32,
}

impl Span {
    #[inline]
    fn range(self) -> std::ops::Range<usize> {
        self.offset as usize..(self.offset + self.len) as usize
    }
}

/// About what a key costs besides its bytes: its entry and its index slot.
pub const ENTRY_BYTES: u64 = 48;

struct Entry<V> {
    span: Span,
    hash: u64,
    kg: u32,
    /// `None` once released.
    value: Option<V>,
}

pub struct KeyTable<V> {
    index: HashTable<u32>,
    entries: Vec<Entry<V>>,
    free: Vec<u32>,
    data: Vec<u8>,
    /// Bytes of `data` that belong to released keys.
    garbage: usize,
    live: usize,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable {
            index: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
            data: Vec::new(),
            garbage: 0,
            live: 0,
        }
    }
}

impl<V> KeyTable<V> {
    /// The id of `key`, if it is in the table.
    #[inline]
    pub fn find(&self, key: &[u8]) -> Option<u32> {
        self.find_hashed(key, xxhash_rust::xxh3::xxh3_64(key))
    }

    #[inline]
    fn find_hashed(&self, key: &[u8], hash: u64) -> Option<u32> {
        let (data, entries) = (&self.data, &self.entries);
        self.index
            .find(hash, |&i| {
                let e = &entries[i as usize];
                e.hash == hash && crate::json::same(&data[e.span.range()], key)
            })
            .copied()
    }

    /// The id of `key`, added with the value `make()` if it is new. Its key
    /// group is the one `key_groups::key_group(key, max_parallelism)` gives,
    /// from the hash the lookup takes.
    #[inline]
    pub fn intern(&mut self, key: &[u8], max_parallelism: u32, make: impl FnOnce() -> V) -> u32 {
        let hash = xxhash_rust::xxh3::xxh3_64(key);
        match self.find_hashed(key, hash) {
            Some(id) => id,
            None => {
                let kg = (hash % max_parallelism as u64) as u32;
                debug_assert_eq!(kg, key_groups::key_group(key, max_parallelism));
                self.add(key, hash, kg, make())
            }
        }
    }

    /// The id of `key`, whose key group the caller knows, added with the
    /// value `make()` if it is new.
    #[inline]
    pub fn intern_in_group(&mut self, key: &[u8], kg: u32, make: impl FnOnce() -> V) -> u32 {
        let hash = xxhash_rust::xxh3::xxh3_64(key);
        match self.find_hashed(key, hash) {
            Some(id) => id,
            None => self.add(key, hash, kg, make()),
        }
    }

    fn add(&mut self, key: &[u8], hash: u64, kg: u32, value: V) -> u32 {
        let span = Span {
            offset: self.data.len() as u32,
            len: key.len() as u32,
        };
        self.data.extend_from_slice(key);
        let entry = Entry {
            span,
            hash,
            kg,
            value: Some(value),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                self.entries.len() as u32 - 1
            }
        };
        let entries = &self.entries;
        self.index
            .insert_unique(hash, id, |&i| entries[i as usize].hash);
        self.live += 1;
        id
    }

    /// The bytes of key `id`.
    #[inline]
    pub fn key(&self, id: u32) -> &[u8] {
        &self.data[self.entries[id as usize].span.range()]
    }

    /// The key group of key `id`.
    #[inline]
    pub fn key_group(&self, id: u32) -> u32 {
        self.entries[id as usize].kg
    }

    /// Key `id`'s value. Panics on a released id: a caller's bug.
    #[inline]
    pub fn get(&self, id: u32) -> &V {
        self.entries[id as usize]
            .value
            .as_ref()
            .expect("a live key")
    }

    #[inline]
    pub fn get_mut(&mut self, id: u32) -> &mut V {
        self.entries[id as usize]
            .value
            .as_mut()
            .expect("a live key")
    }

    /// Key `id`'s value, unless the id has been released.
    #[inline]
    pub fn live(&self, id: u32) -> Option<&V> {
        self.entries.get(id as usize)?.value.as_ref()
    }

    /// Key `id`'s value, unless the id has been released.
    #[inline]
    pub fn live_mut(&mut self, id: u32) -> Option<&mut V> {
        self.entries.get_mut(id as usize)?.value.as_mut()
    }

    /// Key `id` and its key group, if the id names a key of the table (for
    /// an id from outside: a guest's).
    #[inline]
    pub fn entry(&self, id: u32) -> Option<(&[u8], u32)> {
        let e = self.entries.get(id as usize)?;
        e.value.as_ref()?;
        Some((&self.data[e.span.range()], e.kg))
    }

    /// The buffer of the keys' bytes, and where key `id` is in it: the
    /// table as a WIT `byte-list` of keys by id, while none was released.
    pub fn buffer(&self) -> &[u8] {
        &self.data
    }

    /// `(offset, length)` of key `id` in [`KeyTable::buffer`].
    pub fn span(&self, id: u32) -> (u32, u32) {
        let s = self.entries[id as usize].span;
        (s.offset, s.len)
    }

    /// Whether `id` names a key of the table.
    pub fn contains(&self, id: u32) -> bool {
        self.entries
            .get(id as usize)
            .is_some_and(|e| e.value.is_some())
    }

    /// Forgets key `id`; its id is given to a later key.
    pub fn release(&mut self, id: u32) -> V {
        let e = &mut self.entries[id as usize];
        let value = e.value.take().expect("a live key");
        let (hash, span) = (e.hash, e.span);
        self.index
            .find_entry(hash, |&i| i == id)
            .expect("an indexed key")
            .remove();
        self.free.push(id);
        self.live -= 1;
        self.garbage += span.len as usize;
        if self.live == 0 {
            self.clear();
        } else if self.garbage > 4096 && self.garbage > self.data.len() / 2 {
            self.compact();
        }
        value
    }

    /// Copies the live keys to a new buffer.
    fn compact(&mut self) {
        let mut data = Vec::with_capacity(self.data.len() - self.garbage);
        for e in self.entries.iter_mut().filter(|e| e.value.is_some()) {
            let offset = data.len() as u32;
            data.extend_from_slice(&self.data[e.span.range()]);
            e.span.offset = offset;
        }
        self.data = data;
        self.garbage = 0;
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.free.clear();
        self.data.clear();
        self.garbage = 0;
        self.live = 0;
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The highest id given out, plus one.
    pub fn ids(&self) -> usize {
        self.entries.len()
    }

    /// About how many bytes of memory the keys take.
    pub fn bytes(&self) -> u64 {
        (self.data.len() - self.garbage) as u64 + self.live as u64 * ENTRY_BYTES
    }

    /// Every key: `(id, key group, key, value)`, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, &[u8], &V)> + '_ {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            let v = e.value.as_ref()?;
            Some((i as u32, e.kg, &self.data[e.span.range()], v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_are_stable_reused_after_release_and_keys_survive_compaction() {
        let mut t: KeyTable<u32> = KeyTable::default();
        let a = t.intern(b"alpha", 128, || 1);
        let b = t.intern(b"beta", 128, || 2);
        assert_eq!(t.intern(b"alpha", 128, || 99), a);
        assert_eq!(*t.get(a), 1);
        assert_eq!(t.key_group(b), key_groups::key_group(b"beta", 128));
        assert_eq!(t.release(a), 1);
        assert!(!t.contains(a) && t.find(b"alpha").is_none());
        let c = t.intern(b"gamma", 128, || 3);
        assert_eq!(c, a, "a released id is reused");
        assert_eq!(t.bytes(), 9 + 2 * ENTRY_BYTES);
        // Enough churn to compact the buffer several times.
        for i in 0..10_000u32 {
            let k = format!("key-{i}-{}", "x".repeat(i as usize % 50));
            let id = t.intern(k.as_bytes(), 128, || i);
            assert_eq!(t.key(id), k.as_bytes());
            t.release(id);
        }
        assert_eq!((t.key(b), t.key(c)), (&b"beta"[..], &b"gamma"[..]));
        assert_eq!(t.find(b"beta"), Some(b));
        assert_eq!(t.len(), 2);
        assert_eq!(t.bytes(), 9 + 2 * ENTRY_BYTES);
        assert!(t.data.len() < 8192, "compacted: {}", t.data.len());
    }

    proptest! {
        /// The table agrees with a map under any sequence of interns and
        /// releases.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((0u8..40, any::<bool>()), 0..400)) {
            let mut t: KeyTable<u8> = KeyTable::default();
            let mut model = std::collections::HashMap::new();
            for (k, add) in ops {
                let key = vec![k; k as usize % 7 + 1];
                if add {
                    let id = t.intern(&key, 16, || k);
                    let known = *model.entry(key.clone()).or_insert(id);
                    prop_assert_eq!(known, id);
                } else if let Some(id) = model.remove(&key) {
                    prop_assert_eq!(t.release(id), k);
                }
            }
            prop_assert_eq!(t.len(), model.len());
            for (key, id) in &model {
                prop_assert_eq!(t.key(*id), &key[..]);
                prop_assert_eq!(t.find(key), Some(*id));
            }
        }
    }
}
