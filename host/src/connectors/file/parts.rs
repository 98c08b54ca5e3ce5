//! The exactly-once file sink: part files in a folder, made visible with
//! the checkpoint that covers them (Flink's `FileSink` protocol).
//!
//! Each subtask writes what it receives to a hidden in-progress file
//! (`.inprogress-…`). At a barrier it syncs and closes the file, and
//! reports it as a committable: the hidden name and the part name it will
//! get (`part-<subtask>-<checkpoint>.jsonl`). When the checkpoint is
//! complete the coordinator renames it into place; a rename is atomic, so a
//! reader of the folder sees whole parts or nothing. Every file whose name
//! does not begin with `.` is committed output, and nothing else is.
//!
//! A committable stays the subtask's until it hears that a checkpoint
//! covering it completed, so output behind a failed checkpoint is
//! committed with the next one. On recovery the committer renames what the
//! restored checkpoint covers (again, if it was not yet) and deletes every
//! hidden file: output written after that checkpoint is written again by
//! the restored job.

use crate::checkpoint::{Barrier, Committer, OperatorState};
use crate::connectors::{Pending, append_lines, io_error};
use crate::error::RuntimeError;
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Subtask};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FLUSH_AT: usize = 256 << 10;
const HIDDEN_PREFIX: &str = ".inprogress-";

pub struct PartsFactory {
    dir: PathBuf,
}

impl PartsFactory {
    pub fn new(dir: PathBuf) -> PartsFactory {
        PartsFactory { dir }
    }
}

#[async_trait]
impl OperatorFactory for PartsFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        let subtask = subtask.index;
        Box::new(PartSink {
            dir: self.dir.clone(),
            subtask,
            file: None,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            pending: Pending::default(),
        })
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(Arc::new(PartsCommitter {
            dir: self.dir.clone(),
        }))
    }
}

pub struct PartSink {
    dir: PathBuf,
    subtask: u32,
    /// The in-progress file and its hidden name.
    file: Option<(File, String)>,
    buf: Vec<u8>,
    pending: Pending,
}

impl PartSink {
    fn write_out(&mut self) -> Result<(), RuntimeError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let name = format!(
                "{HIDDEN_PREFIX}{}-{}-{:x}",
                self.subtask,
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            );
            let path = self.dir.join(&name);
            let f = File::create(&path)
                .map_err(io_error(format!("cannot create {}", path.display())))?;
            self.file = Some((f, name));
        }
        let (f, name) = self.file.as_mut().expect("file");
        f.write_all(&self.buf).map_err(io_error(format!(
            "cannot write {}",
            self.dir.join(&*name).display()
        )))?;
        self.buf.clear();
        Ok(())
    }

    /// Closes the in-progress file as the part of checkpoint `id`.
    fn seal(&mut self, id: u64) -> Result<(), RuntimeError> {
        self.write_out()?;
        if let Some((f, name)) = self.file.take() {
            f.sync_all().map_err(io_error(format!(
                "cannot sync {}",
                self.dir.join(&name).display()
            )))?;
            let part = format!("part-{:04}-{id:08}.jsonl", self.subtask);
            self.pending.push(id, json!({ "file": name, "part": part }));
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for PartSink {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.dir).map_err(io_error(format!(
            "cannot create folder {}",
            self.dir.display()
        )))
    }

    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        append_lines(&mut self.buf, &batch);
        if self.buf.len() >= FLUSH_AT {
            self.write_out()?;
        }
        Ok(())
    }

    async fn snapshot(
        &mut self,
        barrier: Barrier,
        _out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        self.pending.barrier(barrier.id);
        self.seal(barrier.id)?;
        Ok(self.pending.state())
    }

    fn notify_checkpoint_complete(&mut self, id: u64) {
        self.pending.completed(id);
    }

    async fn close(&mut self, _out: &mut Output) -> Result<(), RuntimeError> {
        self.seal(self.pending.final_epoch())
    }

    fn take_final_committables(&mut self) -> Vec<Value> {
        self.pending.take()
    }
}

pub struct PartsCommitter {
    dir: PathBuf,
}

fn field<'a>(item: &'a Value, name: &str) -> Result<&'a str, String> {
    item.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.contains('/') && !s.contains('\\') && !s.is_empty())
        .ok_or_else(|| format!("not a file sink committable: {item}"))
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

impl Committer for PartsCommitter {
    fn commit(&self, _id: u64, items: &[Value]) -> Result<(), String> {
        for item in items {
            let from = self.dir.join(field(item, "file")?);
            let to = self.dir.join(field(item, "part")?);
            if exists(&from) && exists(&to) {
                return Err(format!(
                    "{} exists already; not overwriting it with {} (is another job writing to this folder?)",
                    to.display(),
                    from.display()
                ));
            }
            if exists(&from) {
                std::fs::rename(&from, &to).map_err(|e| {
                    format!("cannot rename {} to {}: {e}", from.display(), to.display())
                })?;
            } else if !exists(&to) {
                return Err(format!(
                    "{} is missing, and so is its pending file {}: was output deleted?",
                    to.display(),
                    from.display()
                ));
            }
        }
        Ok(())
    }

    fn recover(&self, restored: Option<u64>, items: &[Value]) -> Result<(), String> {
        if !self.dir.exists() {
            return Ok(());
        }
        self.commit(restored.unwrap_or(0), items)?;
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("cannot read {}: {e}", self.dir.display()))?;
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(HIDDEN_PREFIX)
            {
                let p = entry.path();
                std::fs::remove_file(&p)
                    .map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
            }
        }
        Ok(())
    }
}
