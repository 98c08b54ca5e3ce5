//! Records to standard output, one value per line, written after every batch
//! so that a slow stream shows up as it happens.

use crate::connectors::{append_lines, io_error};
use crate::error::RuntimeError;
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
}

pub struct StdoutSinkFactory {
    prefix: Option<String>,
}

impl StdoutSinkFactory {
    pub fn new(options: StdoutOptions) -> StdoutSinkFactory {
        StdoutSinkFactory {
            prefix: options.prefix,
        }
    }
}

#[async_trait]
impl OperatorFactory for StdoutSinkFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(StdoutSink {
            prefix: self.prefix.clone(),
            buf: Vec::new(),
        })
    }
}

struct StdoutSink {
    prefix: Option<String>,
    buf: Vec<u8>,
}

#[async_trait]
impl Operator for StdoutSink {
    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        self.buf.clear();
        match &self.prefix {
            None => append_lines(&mut self.buf, &batch),
            Some(p) => {
                for r in batch.iter() {
                    self.buf.extend_from_slice(p.as_bytes());
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
