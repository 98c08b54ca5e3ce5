use crate::connectors::{append_lines, io_error};
use crate::error::RuntimeError;
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Subtask};
use async_trait::async_trait;
use serde::Deserialize;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkOptions {
    pub path: PathBuf,
}

/// The file all subtasks of one sink node append to; created (truncated)
/// by the first subtask that opens.
struct Shared {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

pub struct FileSinkFactory {
    shared: Arc<Shared>,
}

impl FileSinkFactory {
    pub fn new(options: FileSinkOptions) -> FileSinkFactory {
        FileSinkFactory {
            shared: Arc::new(Shared {
                path: options.path,
                file: Mutex::new(None),
            }),
        }
    }
}

#[async_trait]
impl OperatorFactory for FileSinkFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(FileSink {
            shared: self.shared.clone(),
            buf: Vec::with_capacity(FLUSH_AT + 4096),
        })
    }
}

const FLUSH_AT: usize = 256 << 10;

pub struct FileSink {
    shared: Arc<Shared>,
    buf: Vec<u8>,
}

impl FileSink {
    fn write_out(&mut self) -> Result<(), RuntimeError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = &self.shared.path;
        let mut file = self.shared.file.lock().expect("file sink lock");
        let f = file.as_mut().expect("opened");
        f.write_all(&self.buf)
            .map_err(io_error(format!("cannot write {}", path.display())))?;
        self.buf.clear();
        Ok(())
    }
}

/// A job that fails stops its tasks without closing them: what this sink
/// holds was processed before the failure, so it is written now rather than
/// lost. (The sink writes through, at least once, so a restart after this
/// may write it again, as it may after any flush.)
impl Drop for FileSink {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let Ok(mut file) = self.shared.file.lock() else {
            return;
        };
        if let Some(f) = file.as_mut()
            && let Err(e) = f.write_all(&self.buf)
        {
            tracing::error!(
                "cannot write the last {} bytes of output to {}: {e}",
                self.buf.len(),
                self.shared.path.display()
            );
        }
    }
}

#[async_trait]
impl Operator for FileSink {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        let path = &self.shared.path;
        let mut file = self.shared.file.lock().expect("file sink lock");
        if file.is_none() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(io_error(format!("cannot create folder {}", dir.display())))?;
            }
            let f = File::create(path)
                .map_err(io_error(format!("cannot create {}", path.display())))?;
            *file = Some(f);
        }
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        append_lines(&mut self.buf, &batch);
        if self.buf.len() >= FLUSH_AT {
            self.write_out()?;
        }
        Ok(())
    }

    async fn close(&mut self, _out: &mut Output) -> Result<(), RuntimeError> {
        self.write_out()
    }
}
