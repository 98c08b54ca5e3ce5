//! Checkpoints and savepoints: consistent snapshots of a running job, by
//! asynchronous barrier snapshotting.
//!
//! The [`coordinator`] asks every source task to take a checkpoint. A
//! source finishes the batch it is cutting, notes its split positions, and
//! sends a [`Barrier`] down its chain and out of its channels, in order with
//! the records. A task with several inputs *aligns*: once an input has
//! delivered the barrier, what that input sends next waits in the task
//! until every input has delivered it. Then each operator of the chain
//! snapshots itself (a buffering operator first processes what it holds),
//! the barrier goes on, and the task acknowledges with what its operators
//! gave. Operators copy their state synchronously into the canonical
//! [`format`]; the coordinator writes the copies to [`storage`] while the
//! pipeline goes on. When every task has acknowledged and every object is
//! written, the coordinator writes the manifest (the checkpoint is now
//! complete), then commits the sinks' pending output ([`Committer`]).
//!
//! On restore, every operator subtask gets the state of the key groups it
//! owns now (the parallelism may differ), sources get their split
//! positions, and sinks' committers commit what the restored checkpoint
//! covered and discard anything written after it.

pub mod coordinator;
pub mod format;
pub mod storage;

use crate::error::StateError;
use format::{Manifest, SnapshotKind, SubtaskManifest};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use storage::{DirStorage, Storage};

/// A checkpoint barrier, as it travels with the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    pub id: u64,
    pub kind: BarrierKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierKind {
    Checkpoint,
    Savepoint,
    /// A savepoint after which the sources read nothing more: once it is
    /// complete the job stops.
    StopWithSavepoint,
}

/// The spec's `checkpoints` section.
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    pub dir: PathBuf,
    pub interval: Duration,
    /// The least time between the end of one checkpoint and the start of the
    /// next.
    pub min_pause: Duration,
    /// A checkpoint not complete after this long has failed.
    pub timeout: Duration,
    /// How many complete checkpoints to keep.
    pub retained: usize,
    /// How many checkpoints in a row may fail before the job fails.
    pub tolerable_failures: u32,
}

/// What to do when a task fails: restart from the latest complete
/// checkpoint after a delay, a bounded number of times.
#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    None,
    FixedDelay {
        attempts: u32,
        delay: Duration,
    },
    Exponential {
        attempts: u32,
        initial: Duration,
        max: Duration,
        multiplier: f64,
    },
}

impl RestartStrategy {
    /// The delay before restart number `n` (from 1), or `None` when no more
    /// restarts are allowed.
    pub fn delay(&self, n: u32) -> Option<Duration> {
        match *self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => (n <= attempts).then_some(delay),
            RestartStrategy::Exponential {
                attempts,
                initial,
                max,
                multiplier,
            } => (n <= attempts).then(|| {
                let f = multiplier.max(1.0).powi(n.saturating_sub(1).min(64) as i32);
                initial.mul_f64(f).min(max)
            }),
        }
    }

    pub fn attempts(&self) -> u32 {
        match *self {
            RestartStrategy::None => 0,
            RestartStrategy::FixedDelay { attempts, .. }
            | RestartStrategy::Exponential { attempts, .. } => attempts,
        }
    }
}

/// What one operator subtask puts into a snapshot.
#[derive(Debug, Default, Clone)]
pub struct OperatorState {
    /// Small, non-keyed facts: a source's positions, a watermark.
    pub meta: serde_json::Value,
    /// Keyed state in the canonical format (`None` without keyed state).
    pub keyed: Option<Vec<u8>>,
    /// A sink's output to commit once the checkpoint is complete.
    pub committables: Vec<serde_json::Value>,
}

/// Commits a sink's pending output: made once per sink node, called by the
/// coordinator.
pub trait Committer: Send + Sync {
    /// Makes the pending output of complete checkpoint `id` visible. Must be
    /// idempotent: after a crash the same items are committed again.
    fn commit(&self, id: u64, items: &[serde_json::Value]) -> Result<(), String>;

    /// Before a job (re)starts: commits `items` (from the checkpoint it
    /// restores, `restored`, if any) and discards every other pending
    /// output.
    fn recover(&self, restored: Option<u64>, items: &[serde_json::Value]) -> Result<(), String>;
}

/// Counters of a job's checkpoints, for the API and `/metrics`.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub last_id: AtomicU64,
    pub last_duration_ms: AtomicU64,
    pub last_size_bytes: AtomicU64,
    pub restarts: AtomicU64,
    /// The checkpoint the job last restored from (0: none).
    pub restored_from: AtomicU64,
}

impl CheckpointStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A complete snapshot to start from.
#[derive(Clone)]
pub struct RestorePoint {
    pub manifest: Arc<Manifest>,
    pub storage: Arc<dyn Storage>,
    /// The snapshot's folder within `storage` (`chk-00000007/`, or empty).
    pub prefix: String,
    /// Where it is, for messages.
    pub location: String,
    /// Whether state of operators the job no longer has may be dropped.
    pub drop_unclaimed: bool,
}

/// The state one operator subtask restores.
pub struct RestoredState {
    /// The operator it is for.
    pub uid: String,
    /// `meta` of every subtask that wrote the snapshot.
    pub metas: Vec<serde_json::Value>,
    /// Whether state no one claims may be dropped (else it is an error).
    pub drop_unclaimed: bool,
    /// Where the snapshot is, for messages.
    pub location: String,
    objects: Vec<(String, Vec<u8>)>,
    key_groups: RangeInclusive<u32>,
}

impl RestoredState {
    /// Calls `f` with every keyed-state entry of the key groups this subtask
    /// owns.
    pub fn entries(
        &self,
        f: &mut dyn FnMut(format::Entry<'_>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        for (name, bytes) in &self.objects {
            let mut failed = None;
            let read = format::read_entries(bytes, &mut |e| {
                if !self.key_groups.contains(&e.kg) {
                    return Ok(());
                }
                f(e).map_err(|error| {
                    let message = error.to_string();
                    failed = Some(error);
                    message
                })
            });
            match (read, failed) {
                (Ok(()), _) => {}
                (Err(_), Some(error)) => return Err(error.context(name)),
                (Err(e), None) => return Err(StateError::Corrupt(format!("{name}: {e}"))),
            }
        }
        Ok(())
    }

    /// The least watermark any old subtask had (`meta.watermark`).
    pub fn watermark(&self) -> i64 {
        self.metas
            .iter()
            .filter_map(|m| m.get("watermark").and_then(|w| w.as_i64()))
            .min()
            .unwrap_or(i64::MIN)
    }
}

impl RestorePoint {
    /// The latest complete snapshot in a checkpoint folder, if any.
    pub fn latest(dir: &Path) -> Result<Option<RestorePoint>, String> {
        let storage: Arc<dyn Storage> = Arc::new(DirStorage::new(dir));
        let names = storage
            .list("chk-")
            .map_err(|e| format!("cannot read the checkpoint folder {}: {e}", dir.display()))?;
        let mut ids: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_suffix(&format!("/{}", format::MANIFEST)))
            .collect();
        ids.sort();
        let Some(latest) = ids.last() else {
            return Ok(None);
        };
        let prefix = format!("{latest}/");
        Self::open(storage, prefix).map(Some)
    }

    /// The snapshot in a savepoint (or checkpoint) folder.
    pub fn savepoint(dir: &Path) -> Result<RestorePoint, String> {
        if !dir.join(format::MANIFEST).is_file() {
            return Err(format!(
                "{} is not a complete savepoint or checkpoint (it has no {})",
                dir.display(),
                format::MANIFEST
            ));
        }
        Self::open(Arc::new(DirStorage::new(dir)), String::new())
    }

    fn open(storage: Arc<dyn Storage>, prefix: String) -> Result<RestorePoint, String> {
        let name = format!("{prefix}{}", format::MANIFEST);
        let location = storage.describe(&name);
        let bytes = storage
            .get(&name)
            .map_err(|e| format!("cannot read {location}: {e}"))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{location} is not a snapshot manifest: {e}"))?;
        if manifest.format != Manifest::FORMAT || manifest.version > format::FORMAT_VERSION {
            return Err(format!(
                "{location}: snapshot format {} version {} is not readable by this sluice (it reads {} up to version {})",
                manifest.format,
                manifest.version,
                Manifest::FORMAT,
                format::FORMAT_VERSION
            ));
        }
        Ok(RestorePoint {
            manifest: Arc::new(manifest),
            storage,
            prefix,
            location: location
                .strip_suffix(format::MANIFEST)
                .unwrap_or(&location)
                .trim_end_matches('/')
                .to_owned(),
            drop_unclaimed: false,
        })
    }

    pub fn id(&self) -> u64 {
        self.manifest.id
    }

    pub fn finished(&self) -> bool {
        self.manifest.kind == SnapshotKind::Final
    }

    /// What operator `uid`'s subtask `subtask` of `parallelism` restores.
    pub fn state_for(
        &self,
        uid: &str,
        subtask: u32,
        parallelism: u32,
    ) -> Result<Option<RestoredState>, String> {
        let Some(op) = self.manifest.operators.get(uid) else {
            return Ok(None);
        };
        let key_groups = crate::state::key_groups::key_group_range(
            subtask,
            self.manifest.max_parallelism,
            parallelism,
        );
        let mut objects = Vec::new();
        for s in &op.subtasks {
            if let Some(name) = &s.state {
                let full = format!("{}{name}", self.prefix);
                let bytes = self
                    .storage
                    .get(&full)
                    .map_err(|e| format!("cannot read {}: {e}", self.storage.describe(&full)))?;
                objects.push((self.storage.describe(&full), bytes));
            }
        }
        Ok(Some(RestoredState {
            uid: uid.to_owned(),
            metas: op.subtasks.iter().map(|s| s.meta.clone()).collect(),
            drop_unclaimed: self.drop_unclaimed,
            location: self.location.clone(),
            objects,
            key_groups,
        }))
    }

    /// The committables the snapshot holds for sink `uid`.
    pub fn committables(&self, uid: &str) -> Vec<serde_json::Value> {
        self.manifest
            .operators
            .get(uid)
            .map(|o| {
                o.subtasks
                    .iter()
                    .flat_map(|s: &SubtaskManifest| s.committables.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `meta` every subtask of operator `uid` recorded (empty when the
    /// snapshot has none of it).
    pub fn metas(&self, uid: &str) -> Vec<serde_json::Value> {
        self.manifest
            .operators
            .get(uid)
            .map(|o| o.subtasks.iter().map(|s| s.meta.clone()).collect())
            .unwrap_or_default()
    }

    /// Operators with state in the snapshot that are not in `uids`.
    pub fn unclaimed<'a>(&'a self, uids: &[&str]) -> Vec<&'a str> {
        self.manifest
            .operators
            .iter()
            .filter(|(uid, op)| {
                !uids.contains(&uid.as_str())
                    && op
                        .subtasks
                        .iter()
                        .any(|s| s.state.is_some() || !s.meta.is_null())
            })
            .map(|(uid, _)| uid.as_str())
            .collect()
    }
}

/// Operators' subtask manifests, by uid, as a checkpoint collects them.
pub type Operators = BTreeMap<String, format::OperatorManifest>;

/// The key of a subtask's snapshot meta that holds a digest of state every
/// subtask of the operator must hold alike (a broadcast process function's
/// broadcast state): a checkpoint whose subtasks disagree on it fails the
/// job.
pub const BROADCAST_HASH: &str = "broadcast_hash";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_strategies_bound_attempts_and_back_off() {
        let fixed = RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_millis(10),
        };
        assert_eq!(fixed.delay(1), Some(Duration::from_millis(10)));
        assert_eq!(fixed.delay(2), Some(Duration::from_millis(10)));
        assert_eq!(fixed.delay(3), None);
        let exp = RestartStrategy::Exponential {
            attempts: 10,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
        };
        let delays: Vec<_> = (1..=5).map(|n| exp.delay(n).unwrap().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(RestartStrategy::None.delay(1), None);
    }
}
