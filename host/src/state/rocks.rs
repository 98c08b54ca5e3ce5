//! The RocksDB [`Store`]: embedded, on local disk, for state larger than
//! memory.
//!
//! One database per operator subtask, in a fresh folder under the backend's
//! `dir`, removed when the subtask ends (durable copies are the job of
//! checkpoints, not of this working copy: the write-ahead log is off, as in
//! Flink). Every key starts with its key group (u16, big endian), so a
//! key-group range is one contiguous key range. Memory is bounded by the
//! block cache and the memtables, both set from the spec. Expired TTL state is
//! dropped by a compaction filter as well as hidden on read. Timers are kept
//! here too ([`super::timers::StoredTimers`]) unless `state.timers: heap`.

use super::{StateError, Store};
use rocksdb::compaction_filter::Decision;
use rocksdb::{BlockBasedOptions, Cache, DB, Options, WriteOptions};
use std::path::{Path, PathBuf};

pub struct RocksStore {
    db: Option<DB>,
    path: PathBuf,
    write: WriteOptions,
    key: Vec<u8>,
}

impl RocksStore {
    pub fn open(
        base: &Path,
        uid: &str,
        subtask: u32,
        cache_bytes: u64,
        write_buffer: u64,
    ) -> Result<RocksStore, StateError> {
        let safe: String = uid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = base.join(format!(
            "sluice-{}-{safe}-{subtask}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(base).map_err(|e| {
            StateError::Backend(format!(
                "cannot create the RocksDB folder {}: {e}",
                base.display()
            ))
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(write_buffer as usize);
        opts.set_max_write_buffer_number(2);
        opts.set_max_open_files(256);
        let cache = Cache::new_lru_cache(cache_bytes as usize);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // Index and filter blocks stay out of the block cache: the cache is
        // sharded, and a filter block bigger than a shard (a few MB for a
        // file of a million keys) would be read from disk again for every
        // lookup. Outside it they cost ~1.3 bytes per key.
        table.set_cache_index_and_filter_blocks(false);
        table.set_bloom_filter(10.0, false);
        table.set_optimize_filters_for_memory(true);
        opts.set_block_based_table_factory(&table);
        opts.set_compaction_filter("sluice-ttl", |_level, key: &[u8], value: &[u8]| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            if key.len() > 2 && super::expired(&key[2..], value, now) {
                Decision::Remove
            } else {
                Decision::Keep
            }
        });
        let db = DB::open(&opts, &path).map_err(|e| {
            StateError::Backend(format!("cannot open RocksDB at {}: {e}", path.display()))
        })?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(RocksStore {
            db: Some(db),
            path,
            write,
            key: Vec::new(),
        })
    }

    fn db(&self) -> &DB {
        self.db.as_ref().expect("open until dropped")
    }

    fn full_key(&mut self, kg: u32, key: &[u8]) {
        self.key.clear();
        self.key.extend_from_slice(&(kg as u16).to_be_bytes());
        self.key.extend_from_slice(key);
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = DB::destroy(&Options::default(), &self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn err(e: rocksdb::Error) -> StateError {
    StateError::Backend(format!("RocksDB: {e}"))
}

impl Store for RocksStore {
    fn get(&mut self, kg: u32, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StateError> {
        self.full_key(kg, key);
        match self.db().get_pinned(&self.key).map_err(err)? {
            Some(v) => {
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.full_key(kg, key);
        self.db()
            .put_opt(&self.key, value, &self.write)
            .map_err(err)
    }

    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), StateError> {
        self.full_key(kg, key);
        self.db().delete_opt(&self.key, &self.write).map_err(err)
    }

    fn size_bytes(&self) -> u64 {
        let prop = |name: &str| {
            self.db()
                .property_int_value(name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        prop("rocksdb.estimate-live-data-size") + prop("rocksdb.cur-size-all-mem-tables")
    }

    fn for_each(&mut self, f: &mut super::EntryVisitor<'_>) -> Result<(), StateError> {
        // A RocksDB snapshot gives one consistent view while iterating.
        let snap = self.db().snapshot();
        let mut it = snap.raw_iterator();
        it.seek_to_first();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if k.len() >= 2 {
                f(u16::from_be_bytes([k[0], k[1]]) as u32, &k[2..], v);
            }
            it.next();
        }
        it.status().map_err(err)
    }

    fn scan(
        &mut self,
        kg: u32,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        self.scan_from(kg, prefix, prefix, &mut |k, v| {
            f(k, v);
            true
        })
    }

    fn scan_from(
        &mut self,
        kg: u32,
        prefix: &[u8],
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        debug_assert!(from.starts_with(prefix));
        self.full_key(kg, prefix);
        let end = self.key.len();
        self.key.truncate(2);
        self.key.extend_from_slice(from);
        let mut it = self.db().raw_iterator();
        it.seek(&self.key);
        let prefix = &self.key[..end.min(self.key.len())];
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !k.starts_with(prefix) || !f(&k[2..], v) {
                break;
            }
            it.next();
        }
        it.status().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_store_behaves_like_the_memory_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), "op/1", 0, 8 << 20, 4 << 20).unwrap();
        assert_eq!(
            super::super::tests::exercise(Box::new(store)),
            super::super::tests::EXPECTED
        );
        // The database folder goes away with the store.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
