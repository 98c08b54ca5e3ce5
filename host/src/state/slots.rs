//! Values by slot number: where an operator that keeps its bookkeeping on
//! the heap (key table, per-key lists, timers) puts the bytes that make up
//! most of its state — a join's buffered rows.
//!
//! On the heap backend the values are appended to chunks of 256 KiB (no
//! allocation per value; a chunk goes with its last value), counted against
//! `state.memory_limit` together with what the operator says its bookkeeping
//! takes; a write past the limit is [`StateError::Full`]. The count is of
//! the values' bytes: a chunk kept for a few long-lived values holds more. With RocksDB they
//! are in the operator's store, under their key group and
//! `namespace slot:u32` (big endian), so that state larger than memory
//! works. A released slot is reused by the next [`Slots::alloc`].

use super::{Backend, StateError, Store, memory};

/// Bookkeeping bytes of a heap value besides its bytes (where it is).
const HEAP_OVERHEAD: u64 = 12;

/// Bytes of a heap chunk: values are appended to one until it is full.
const CHUNK: usize = 256 << 10;

/// Values larger than this get a chunk of their own.
const LARGE: usize = CHUNK / 8;

/// Emptied chunks kept for reuse; more are given back to the allocator.
const SPARE_CHUNKS: usize = 4;

/// Where a heap value is.
#[derive(Clone, Copy, Default)]
struct Span {
    chunk: u32,
    offset: u32,
    len: u32,
}

/// A buffer of values, and how many of them are still kept.
struct Chunk {
    data: Vec<u8>,
    live: u32,
}

/// Heap values, appended to chunks: a value costs no allocation of its
/// own, and a chunk goes when its last value does. Values of one class
/// (see [`Slots::alloc`]) share chunks, so that values let go of in about
/// the order they came free whole chunks.
struct Heap {
    spans: Vec<Span>,
    chunks: Vec<Chunk>,
    /// Chunks whose values all went, for reuse by id.
    free_chunks: Vec<u32>,
    spare: Vec<Vec<u8>>,
    /// The chunk each class appends to.
    current: Vec<Option<u32>>,
    bytes: u64,
    limit: u64,
}

impl Heap {
    fn new(limit: u64) -> Heap {
        Heap {
            spans: Vec::new(),
            chunks: Vec::new(),
            free_chunks: Vec::new(),
            spare: Vec::new(),
            current: Vec::new(),
            bytes: 0,
            limit,
        }
    }

    /// A chunk with room for `len` bytes.
    fn new_chunk(&mut self, len: usize) -> u32 {
        let data = match self.spare.pop_if(|_| len <= CHUNK) {
            Some(data) => data,
            None => Vec::with_capacity(if len > LARGE { len } else { CHUNK }),
        };
        let chunk = Chunk { data, live: 0 };
        match self.free_chunks.pop() {
            Some(c) => {
                self.chunks[c as usize] = chunk;
                c
            }
            None => {
                self.chunks.push(chunk);
                self.chunks.len() as u32 - 1
            }
        }
    }

    /// Lets go of chunk `c`, whose values all went.
    fn drop_chunk(&mut self, c: u32) {
        let mut data = std::mem::take(&mut self.chunks[c as usize].data);
        if data.capacity() == CHUNK && self.spare.len() < SPARE_CHUNKS {
            data.clear();
            self.spare.push(data);
        }
        self.free_chunks.push(c);
    }

    fn put(&mut self, class: usize, s: u32, value: &[u8]) {
        let len = value.len();
        let c = if len > LARGE {
            self.new_chunk(len)
        } else {
            if self.current.len() <= class {
                self.current.resize(class + 1, None);
            }
            match self.current[class] {
                Some(c) if self.chunks[c as usize].data.len() + len <= CHUNK => c,
                full => {
                    if let Some(c) = full
                        && self.chunks[c as usize].live == 0
                    {
                        self.drop_chunk(c);
                    }
                    let c = self.new_chunk(CHUNK);
                    self.current[class] = Some(c);
                    c
                }
            }
        };
        let chunk = &mut self.chunks[c as usize];
        self.spans[s as usize] = Span {
            chunk: c,
            offset: chunk.data.len() as u32,
            len: len as u32,
        };
        chunk.data.extend_from_slice(value);
        chunk.live += 1;
    }

    #[inline]
    fn get(&self, s: u32) -> &[u8] {
        let span = self.spans[s as usize];
        let at = span.offset as usize;
        &self.chunks[span.chunk as usize].data[at..at + span.len as usize]
    }

    /// Lets go of slot `s`'s value; returns its length.
    fn take(&mut self, s: u32) -> u32 {
        let span = self.spans[s as usize];
        let chunk = &mut self.chunks[span.chunk as usize];
        chunk.live -= 1;
        if chunk.live == 0 && !self.current.contains(&Some(span.chunk)) {
            self.drop_chunk(span.chunk);
        }
        span.len
    }
}

enum Values {
    Heap(Heap),
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
            Backend::Memory { limit } => Values::Heap(Heap::new(*limit)),
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
    /// the heap backend's limit. On the heap, values of one `class` (a
    /// small number: a join's side) share chunks of memory: give values
    /// that go in about the order they come a class of their own.
    pub fn alloc(
        &mut self,
        class: usize,
        kg: u32,
        value: &[u8],
        extra: u64,
    ) -> Result<u32, StateError> {
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                self.len += 1;
                match &mut self.values {
                    Values::Heap(heap) => heap.spans.push(Span::default()),
                    Values::Store { kgs, .. } => kgs.push(0),
                }
                self.len - 1
            }
        };
        match &mut self.values {
            Values::Heap(heap) => {
                let cost = value.len() as u64 + HEAP_OVERHEAD + extra;
                if heap.bytes + cost > heap.limit {
                    self.free.push(s);
                    return Err(StateError::Full(format!(
                        "{}; raise the limit or use `state: {{ backend: rocksdb }}`, which keeps state on disk",
                        memory::full(heap.limit)
                    )));
                }
                heap.bytes += cost;
                heap.put(class, s, value);
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
            Values::Heap(heap) => Ok(f(heap.get(s))),
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
            Values::Heap(heap) => {
                let len = heap.take(s);
                heap.bytes -= len as u64 + HEAP_OVERHEAD + extra;
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
            Values::Heap(heap) => heap.bytes,
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
            let a = slots.alloc(0, 3, b"alpha", 0).unwrap();
            let b = slots.alloc(0, 7, b"beta", 0).unwrap();
            assert_eq!(slots.with(a, &mut buf, |v| v.to_vec()).unwrap(), b"alpha");
            assert_eq!(slots.with(b, &mut buf, |v| v.to_vec()).unwrap(), b"beta");
            slots.release(a, 0).unwrap();
            assert_eq!(slots.live(), 1);
            let c = slots.alloc(0, 3, b"gamma", 0).unwrap();
            assert_eq!(c, a, "a freed slot is reused");
            assert_eq!(slots.with(c, &mut buf, |v| v.to_vec()).unwrap(), b"gamma");
            slots.release(b, 0).unwrap();
            slots.release(c, 0).unwrap();
            assert_eq!(slots.live(), 0);
        }
    }

    /// Heap values are appended to chunks per class; a chunk goes with its
    /// last value (all but a few spares given back), large values have
    /// chunks of their own, and every value reads back whatever went
    /// around it.
    #[test]
    fn heap_values_share_chunks_per_class_and_chunks_go_with_their_last_value() {
        let mut slots = heap(1 << 30);
        let value = |class: usize, i: usize| -> Vec<u8> {
            let len = if class == 0 { 200 } else { 100 } + i % 7;
            (0..len).map(|j| (i * 31 + j + class) as u8).collect()
        };
        let chunks_live = |slots: &Slots| match &slots.values {
            Values::Heap(h) => h.chunks.len() - h.free_chunks.len(),
            Values::Store { .. } => unreachable!(),
        };
        let mut held = Vec::new();
        for i in 0..3000 {
            for class in [0, 1] {
                held.push((
                    class,
                    i,
                    slots.alloc(class, 0, &value(class, i), 0).unwrap(),
                ));
            }
        }
        let large = vec![7u8; LARGE + 1];
        let big = slots.alloc(0, 0, &large, 0).unwrap();
        let mut buf = Vec::new();
        for &(class, i, s) in &held {
            assert_eq!(
                slots.with(s, &mut buf, <[u8]>::to_vec).unwrap(),
                value(class, i)
            );
        }
        // ~630 KB and ~310 KB, 256 KB a chunk, and one for the large value.
        assert_eq!(chunks_live(&slots), 3 + 2 + 1);
        slots.release(big, 0).unwrap();
        for &(class, _, s) in &held {
            if class == 0 {
                slots.release(s, 0).unwrap();
            }
        }
        // Class 0's current chunk stays for the next value.
        assert_eq!(chunks_live(&slots), 1 + 2);
        for &(class, i, s) in &held {
            if class == 1 {
                assert_eq!(
                    slots.with(s, &mut buf, <[u8]>::to_vec).unwrap(),
                    value(1, i)
                );
            }
        }
        let again = slots.alloc(0, 0, b"again", 0).unwrap();
        assert_eq!(
            slots.with(again, &mut buf, <[u8]>::to_vec).unwrap(),
            b"again"
        );
        for &(class, _, s) in &held {
            if class == 1 {
                slots.release(s, 0).unwrap();
            }
        }
        slots.release(again, 0).unwrap();
        assert_eq!((slots.live(), slots.bytes()), (0, 0));
        assert_eq!(chunks_live(&slots), 2, "the current chunks");
    }

    #[test]
    fn the_heap_refuses_values_past_its_limit_and_frees_what_is_released() {
        let mut slots = heap(200);
        let a = slots.alloc(0, 0, &[0; 100], 16).unwrap();
        let e = slots.alloc(0, 0, &[0; 100], 16).unwrap_err();
        assert!(matches!(e, StateError::Full(_)), "{e:?}");
        assert!(e.to_string().contains("rocksdb"), "{e}");
        slots.release(a, 16).unwrap();
        assert_eq!(slots.bytes(), 0);
        slots.alloc(0, 0, &[0; 100], 16).unwrap();
    }
}
