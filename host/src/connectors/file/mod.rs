//! Files of lines: a bounded source (one split per file; a path may be a
//! glob) and a sink that writes one line per record.
//!
//! The source reads in large chunks and hands each line to the shared source
//! logic, with its line number as the record's position, so that an error
//! about a record names `file:line`. When stderr is a terminal it shows a
//! progress bar.
//!
//! The sink's subtasks share one output file: each collects whole lines in
//! its own buffer and appends the buffer under a lock, so lines never
//! interleave. Exactly-once output (pending part files committed with a
//! checkpoint) comes with checkpointing.

mod sink;
mod source;

pub use sink::FileSinkFactory;
pub use source::FileSourceFactory;
