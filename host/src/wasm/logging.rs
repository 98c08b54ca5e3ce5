//! The `logging` import: guest log lines become the host's `tracing` events,
//! tagged with the operator uid (the task's span adds the job).

use super::sandbox::StoreData;
use super::sluice::operator::logging::{Host, Level};
use super::sluice::operator::types;

impl Host for StoreData {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let uid = &*self.uid;
        match level {
            Level::Trace => tracing::trace!(operator = uid, "{message}"),
            Level::Debug => tracing::debug!(operator = uid, "{message}"),
            Level::Info => tracing::info!(operator = uid, "{message}"),
            Level::Warn => tracing::warn!(operator = uid, "{message}"),
            Level::Error => tracing::error!(operator = uid, "{message}"),
        }
        Ok(())
    }
}

/// `types` has no functions; guests still import the instance.
impl types::Host for StoreData {}
