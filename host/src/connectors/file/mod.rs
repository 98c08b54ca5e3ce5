//! Files of lines: a bounded source (one split per file; a path may be a
//! glob) and a sink that writes one line per record.
//!
//! The source reads in large chunks and hands each line to the shared source
//! logic, with its line number as the record's position, so that an error
//! about a record names `file:line`. When stderr is a terminal it shows a
//! progress bar.
//!
//! Without checkpointing the sink's subtasks share one output file: each
//! collects whole lines in its own buffer and appends the buffer under a
//! lock, so lines never interleave. With checkpointing `path` is a folder of
//! part files committed with the checkpoints ([`parts`]), except when it
//! names something that is neither a file nor a folder (`/dev/null`), which
//! is written through.

mod parts;
mod sink;
pub(crate) mod source;

pub use sink::FileSinkFactory;
pub use source::FileSourceFactory;

use super::SinkContext;
use crate::runtime::OperatorFactory;
use std::sync::Arc;

pub fn sink_factory(
    options: sink::FileSinkOptions,
    context: SinkContext,
) -> Result<Arc<dyn OperatorFactory>, String> {
    let special = std::fs::metadata(&options.path).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if context.exactly_once && !special {
        if options.path.is_file() {
            return Err(format!(
                "{} is a file; with checkpointing a file sink writes a folder of part files there",
                options.path.display()
            ));
        }
        Ok(Arc::new(parts::PartsFactory::new(options.path)))
    } else {
        Ok(Arc::new(FileSinkFactory::new(options)))
    }
}
