//! Where checkpoints and savepoints are kept.
//!
//! [`Storage`] is a flat namespace of objects (`chk-00000007/windows-0.state`)
//! with whole-object writes: what a directory and an S3-compatible bucket
//! both offer. A write is atomic (written aside, then renamed into place) and
//! durable (synced) before it returns, so an object is either absent or
//! complete. The directory store is the only one today; an object store
//! implements the same five calls.

use std::io::Write;
use std::path::{Path, PathBuf};

pub trait Storage: Send + Sync {
    /// Writes a whole object, atomically and durably.
    fn put(&self, name: &str, bytes: &[u8]) -> std::io::Result<()>;
    fn get(&self, name: &str) -> std::io::Result<Vec<u8>>;
    /// Names of the objects that start with `prefix`, sorted.
    fn list(&self, prefix: &str) -> std::io::Result<Vec<String>>;
    /// Removes every object that starts with `prefix`.
    fn delete_prefix(&self, prefix: &str) -> std::io::Result<()>;
    /// A name a person can find the object by (a path, a URL).
    fn describe(&self, name: &str) -> String;
}

/// Objects as files under a folder; `a/b` is the file `b` in the folder `a`.
pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    pub fn new(root: impl Into<PathBuf>) -> DirStorage {
        DirStorage { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Writes `bytes` to the file `path` atomically and durably: into a
/// temporary file beside it, named for this write alone (several writes of
/// one path may run at once), synced, then renamed into place; the folder is
/// created if missing and synced after the rename. A failed write leaves no
/// temporary file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself is durable once the folder is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Storage for DirStorage {
    fn put(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.path(name), bytes)
    }

    fn get(&self, name: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(name))
    }

    fn list(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let full = format!("{rel}{name}");
                if entry.file_type()?.is_dir() {
                    let sub = format!("{full}/");
                    if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                        stack.push((entry.path(), sub));
                    }
                } else if full.starts_with(prefix) {
                    out.push(full);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete_prefix(&self, prefix: &str) -> std::io::Result<()> {
        if let Some(dir) = prefix.strip_suffix('/') {
            return match std::fs::remove_dir_all(self.path(dir)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        for name in self.list(prefix)? {
            std::fs::remove_file(self.path(&name))?;
        }
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_storage_writes_lists_and_deletes_objects() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStorage::new(dir.path());
        s.put("chk-1/a.state", b"one").unwrap();
        s.put("chk-1/_manifest.json", b"{}").unwrap();
        s.put("chk-2/a.state", b"two").unwrap();
        assert_eq!(s.get("chk-2/a.state").unwrap(), b"two");
        assert_eq!(
            s.list("chk-1/").unwrap(),
            ["chk-1/_manifest.json", "chk-1/a.state"]
        );
        assert_eq!(s.list("").unwrap().len(), 3);
        s.delete_prefix("chk-1/").unwrap();
        assert_eq!(s.list("").unwrap(), ["chk-2/a.state"]);
        // No temporary files are left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("chk-2")).unwrap().count(),
            1
        );
    }
}
