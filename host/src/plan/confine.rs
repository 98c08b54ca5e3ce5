//! Which host paths a submitted job may use. `sluice run` trusts its spec
//! (it is the user's own); `sluice serve` runs specs that arrive over the
//! network, and a file source, sink, dead-letter file, checkpoint or state
//! folder, or a folder granted to a module, is a read or a write as the
//! server's user. The server confines them to the folders its operator
//! allows (`--allow-dir`, by default its working folder).
//!
//! A path is inside a folder when, resolved against the spec's base folder
//! with every symbolic link in its existing part followed, it starts with
//! that folder (itself resolved the same way). `..` is refused outright: a
//! glob after it could not be resolved before it runs.

use std::path::{Component, Path, PathBuf};

/// The folders submitted jobs may use.
#[derive(Debug, Clone)]
pub struct AllowedDirs {
    dirs: Vec<PathBuf>,
}

impl AllowedDirs {
    /// The folders, resolved now; each must exist.
    pub fn new(dirs: &[PathBuf]) -> Result<AllowedDirs, String> {
        let dirs = dirs
            .iter()
            .map(|d| {
                d.canonicalize()
                    .map_err(|e| format!("cannot allow folder {}: {e}", d.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedDirs { dirs })
    }

    /// Checks that `path` (relative to `base`; it may be a glob) is inside an
    /// allowed folder; the error names the path and the folders.
    pub fn check(&self, path: &Path, base: &Path) -> Result<(), String> {
        let refuse = |why: &str| {
            Err(format!(
                "`{}` {why}; this server lets jobs use files in {} only (`sluice serve --allow-dir DIR` allows more)",
                path.display(),
                self.list()
            ))
        };
        if path.components().any(|c| c == Component::ParentDir) {
            return refuse("climbs out of its folder with `..`");
        }
        let full = base.join(path);
        if self.dirs.iter().any(|d| resolve(&full).starts_with(d)) {
            Ok(())
        } else {
            refuse("is outside the folders jobs may use")
        }
    }

    fn list(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `path` with the symbolic links of its longest existing ancestor resolved
/// (the rest, which does not exist yet or is a glob, appended as it is).
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(real, |p, c: &std::ffi::OsString| p.join(c));
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            // Nothing of it exists (a relative path from a missing base):
            // compared as written.
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_allowed_folders_pass_and_others_are_named() {
        let root = tempfile::tempdir().unwrap();
        let ok = root.path().join("ok");
        let other = root.path().join("other");
        std::fs::create_dir_all(ok.join("sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(&other, ok.join("link")).unwrap();
        let allowed = AllowedDirs::new(std::slice::from_ref(&ok)).unwrap();
        for good in ["out.jsonl", "sub/new/out.jsonl", "sub/*.jsonl", "./x"] {
            assert_eq!(allowed.check(Path::new(good), &ok), Ok(()), "{good}");
        }
        assert_eq!(allowed.check(&ok.join("sub/a.jsonl"), &other), Ok(()));
        for bad in [
            other.join("x.jsonl"),
            PathBuf::from("/etc/passwd"),
            ok.join("link/x.jsonl"),
            ok.join("sub/../../other/x"),
            PathBuf::from("../other/x"),
        ] {
            let e = allowed.check(&bad, &ok).unwrap_err();
            assert!(e.contains(&bad.display().to_string()), "{e}");
            assert!(e.contains("--allow-dir"), "{e}");
        }
        // Relative paths start at the base.
        assert!(allowed.check(Path::new("x.jsonl"), &other).is_err());
        assert!(AllowedDirs::new(&[root.path().join("missing")]).is_err());
    }
}
