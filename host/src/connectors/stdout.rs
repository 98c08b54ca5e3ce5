//! Records to standard output, one value per line, written after every batch
//! so that a slow stream shows up as it happens. With `changelog: true` it
//! prints a changelog as Flink's print connector does: each line starts with
//! the row's kind (`+I {…}`, `-U {…}`, `+U {…}`, `-D {…}`).

use crate::connectors::{append_lines, io_error};
use crate::error::RuntimeError;
use crate::runtime::operator::ChangelogInput;
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Subtask};
use async_trait::async_trait;
use serde::Deserialize;
use std::io::Write;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdoutOptions {
    /// Written before each line, e.g. `late: `.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Take a changelog, each line led by its row's kind.
    #[serde(default)]
    pub changelog: bool,
}

pub struct StdoutSinkFactory {
    prefix: Option<String>,
    changelog: bool,
}

impl StdoutSinkFactory {
    pub fn new(options: StdoutOptions) -> StdoutSinkFactory {
        StdoutSinkFactory {
            prefix: options.prefix,
            changelog: options.changelog,
        }
    }
}

#[async_trait]
impl OperatorFactory for StdoutSinkFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    fn changelog(&self) -> ChangelogInput {
        if self.changelog {
            ChangelogInput::Applied
        } else {
            ChangelogInput::Refused
        }
    }

    fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(StdoutSink {
            prefix: self.prefix.clone(),
            changelog: self.changelog,
            buf: Vec::new(),
        })
    }
}

struct StdoutSink {
    prefix: Option<String>,
    changelog: bool,
    buf: Vec<u8>,
}

#[async_trait]
impl Operator for StdoutSink {
    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        self.buf.clear();
        match &self.prefix {
            None if !self.changelog => append_lines(&mut self.buf, &batch),
            p => {
                for r in batch.iter() {
                    if let Some(p) = p {
                        self.buf.extend_from_slice(p.as_bytes());
                    }
                    if self.changelog {
                        self.buf.extend_from_slice(r.kind().short().as_bytes());
                        self.buf.push(b' ');
                    }
                    self.buf.extend_from_slice(r.value());
                    self.buf.push(b'\n');
                }
            }
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&self.buf)
            .and_then(|()| stdout.flush())
            .map_err(io_error("cannot write to stdout".into()))
    }
}
