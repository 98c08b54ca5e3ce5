//! Uploaded modules, stored by content.
//!
//! A module's bytes live in `<dir>/<sha256>.wasm`; names are entries of
//! `<dir>/index.json` that point at a hash, so a name is never a path and
//! cannot reach outside the folder. An upload is checked in memory (a valid
//! component implementing at least one operator world, every world it claims
//! type-checked against the host) before anything is written; it is then
//! written aside and renamed into place, and the index is replaced the same
//! way ([`write_atomically`]), so a crash leaves either the old state or the
//! new.

use crate::checkpoint::storage::write_atomically;
use crate::plan::ModuleSource;
use crate::wasm::{self, Module};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One name in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub uploaded_at: i64,
    /// The operator worlds it implements (`transform`, `keyed-process`, ...).
    pub worlds: Vec<String>,
}

/// Why a store operation failed; the API turns each into a status code.
#[derive(Debug, PartialEq)]
pub enum StoreError {
    /// A name that is not allowed (400).
    BadName(String),
    /// Not a component sluice can run (422).
    Invalid(String),
    /// No such module (404).
    NotFound(String),
    /// Running jobs use it (409).
    InUse(String),
    /// The disk (500).
    Io(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::BadName(m)
            | StoreError::Invalid(m)
            | StoreError::NotFound(m)
            | StoreError::InUse(m)
            | StoreError::Io(m) => f.write_str(m),
        }
    }
}

pub struct ModuleStore {
    dir: PathBuf,
    index: Mutex<BTreeMap<String, Entry>>,
}

const INDEX: &str = "index.json";

impl ModuleStore {
    /// Opens (creating it if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<ModuleStore, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the module store {}: {e}", dir.display()))?;
        let path = dir.join(INDEX);
        let index = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Entry>>(&bytes)
                .map_err(|e| format!("{}: not a module index: {e}", path.display()))?
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(ModuleStore {
            dir: dir.to_owned(),
            index: Mutex::new(index),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn list(&self) -> Vec<Entry> {
        self.index
            .lock()
            .expect("store")
            .values()
            .cloned()
            .collect()
    }

    /// Checks and stores `bytes` as module `name` (replacing what the name
    /// pointed at). Returns the entry and whether the name is new.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<(Entry, bool), StoreError> {
        check_name(name)?;
        let sha256 = crate::wasm::sha256_hex(bytes);
        let file = self.file(&sha256);
        // Errors name the upload, not the file it would become.
        let modules = wasm::inspect(bytes, Path::new(name))
            .map_err(|m| StoreError::Invalid(format!("module `{name}` is not accepted: {m}")))?;
        if !file.exists() {
            write_atomically(&file, bytes)
                .map_err(|e| StoreError::Io(format!("cannot store module `{name}`: {e}")))?;
        }
        let entry = Entry {
            name: name.to_owned(),
            sha256,
            size: bytes.len() as u64,
            uploaded_at: now_ms(),
            worlds: modules.iter().map(|m| m.world.name().to_owned()).collect(),
        };
        let mut index = self.index.lock().expect("store");
        let replaced = index.insert(name.to_owned(), entry.clone());
        self.save(&index)?;
        if let Some(old) = &replaced
            && old.sha256 != entry.sha256
        {
            self.remove_unreferenced(&index, &old.sha256);
        }
        Ok((entry, replaced.is_none()))
    }

    /// The entry for a name, `sha256:<hex>`, or a hash (or a prefix of at
    /// least 12 hex digits).
    pub fn get(&self, name_or_hash: &str) -> Result<Entry, StoreError> {
        let index = self.index.lock().expect("store");
        if let Some(e) = index.get(name_or_hash) {
            return Ok(e.clone());
        }
        let hash = name_or_hash.strip_prefix("sha256:").unwrap_or(name_or_hash);
        let by_hash: Vec<&Entry> =
            if hash.len() >= 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                index
                    .values()
                    .filter(|e| e.sha256.starts_with(&hash.to_ascii_lowercase()))
                    .collect()
            } else {
                Vec::new()
            };
        match by_hash.as_slice() {
            [] => Err(StoreError::NotFound(format!(
                "module `{name_or_hash}` is not uploaded (`sluice module list` shows what is; `sluice module upload FILE` adds one)"
            ))),
            [e, rest @ ..] if rest.iter().all(|r| r.sha256 == e.sha256) => Ok((*e).clone()),
            _ => Err(StoreError::BadName(format!(
                "`{name_or_hash}` is the start of several modules' hashes; give more of it"
            ))),
        }
    }

    /// The module loaded for each world it implements.
    pub fn load(&self, entry: &Entry) -> Result<Vec<Arc<Module>>, StoreError> {
        let file = self.file(&entry.sha256);
        let bytes = std::fs::read(&file)
            .map_err(|e| StoreError::Io(format!("cannot read {}: {e}", file.display())))?;
        wasm::inspect(&bytes, &file).map_err(StoreError::Invalid)
    }

    /// Removes a name (or, given a hash, every name of that content) unless
    /// `in_use` says a running job uses the content.
    pub fn remove(
        &self,
        name_or_hash: &str,
        in_use: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Entry>, StoreError> {
        let entry = self.get(name_or_hash)?;
        if let Some(job) = in_use(&entry.sha256) {
            return Err(StoreError::InUse(format!(
                "module `{}` is used by running job {job}; cancel it first",
                entry.name
            )));
        }
        let mut index = self.index.lock().expect("store");
        let by_name = index.contains_key(name_or_hash);
        let removed: Vec<Entry> = if by_name {
            index.remove(name_or_hash).into_iter().collect()
        } else {
            let names: Vec<String> = index
                .values()
                .filter(|e| e.sha256 == entry.sha256)
                .map(|e| e.name.clone())
                .collect();
            names.iter().filter_map(|n| index.remove(n)).collect()
        };
        self.save(&index)?;
        self.remove_unreferenced(&index, &entry.sha256);
        Ok(removed)
    }

    fn file(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    fn remove_unreferenced(&self, index: &BTreeMap<String, Entry>, sha256: &str) {
        if !index.values().any(|e| e.sha256 == sha256) {
            let _ = std::fs::remove_file(self.file(sha256));
        }
    }

    fn save(&self, index: &BTreeMap<String, Entry>) -> Result<(), StoreError> {
        let entries: Vec<&Entry> = index.values().collect();
        let text = serde_json::to_vec_pretty(&entries).expect("entries serialize");
        write_atomically(&self.dir.join(INDEX), &text)
            .map_err(|e| StoreError::Io(format!("cannot write the module index: {e}")))
    }
}

impl ModuleSource for ModuleStore {
    fn find(&self, name: &str) -> Result<PathBuf, String> {
        let entry = self.get(name).map_err(|e| e.to_string())?;
        Ok(self.file(&entry.sha256))
    }
}

/// A module name: 1–128 characters of letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit (so never `..`, a path, or a dot-file).
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(format!(
            "`{name}` is not a module name: use 1 to 128 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )))
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_be_paths() {
        for bad in [
            "",
            "..",
            "../x.wasm",
            "a/b",
            ".hidden",
            "a\\b",
            "x y",
            "é",
            &"a".repeat(129),
        ] {
            assert!(
                matches!(check_name(bad), Err(StoreError::BadName(_))),
                "{bad:?}"
            );
        }
        for good in ["usd_orders.wasm", "counter-v2", "A1", &"a".repeat(128)] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn garbage_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let e = store.upload("junk", b"not wasm at all").unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(m) if m.contains("module `junk` is not accepted")),
            "{e:?}"
        );
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(files.is_empty(), "{files:?}");
        assert!(matches!(store.get("junk"), Err(StoreError::NotFound(_))));
    }
}
