//! A sink that takes every record and keeps none: Flink's `blackhole`
//! connector, for measuring a pipeline without its output's cost. It takes
//! changelogs too (there is nothing to apply them to).

use crate::error::RuntimeError;
use crate::runtime::operator::ChangelogInput;
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Subtask};
use async_trait::async_trait;
use serde::Deserialize;

/// `type: discard` has no options.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DiscardOptions {}

pub struct DiscardSinkFactory;

impl OperatorFactory for DiscardSinkFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    fn changelog(&self) -> ChangelogInput {
        ChangelogInput::Applied
    }

    fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(DiscardSink)
    }
}

struct DiscardSink;

#[async_trait]
impl Operator for DiscardSink {
    async fn process_batch(
        &mut self,
        _batch: Batch,
        _out: &mut Output,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
}
