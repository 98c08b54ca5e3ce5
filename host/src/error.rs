//! The host's errors. Each names the thing it is about (spec file and line,
//! operator uid, record origin) and knows whose fault it is, so that the CLI
//! can say what to do and a later restart strategy can tell a bad record from
//! a flaky disk.

use std::fmt;
use std::path::PathBuf;

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A broken spec, module or record: retrying does not help.
    User,
    /// The outside world: a file, a disk, a broker.
    External,
    /// A bug in sluice.
    Internal,
}

/// A place in a pipeline spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The uid of the spec node the problem is in.
    pub node: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(node) = &self.node {
            write!(f, " (node `{node}`)")?;
        }
        Ok(())
    }
}

/// A pipeline spec that cannot be run: bad YAML, an unknown field, a dangling
/// input, a module that does not exist or does not fit its world.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct PlanError {
    pub location: Location,
    pub message: String,
}

impl PlanError {
    pub fn new(location: Location, message: impl Into<String>) -> PlanError {
        PlanError {
            location,
            message: message.into(),
        }
    }
}

/// A Wasm operator that failed: it trapped (a panic, a deadline, the memory
/// cap) or returned an error from `open`.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("operator `{uid}`: {message}")]
    Open { uid: String, message: String },
    #[error("operator `{uid}` trapped{at}: {message}")]
    Trap {
        uid: String,
        /// " on record <origin>" when the record is known.
        at: String,
        message: String,
    },
    /// The guest asked for something its grants do not allow (a network
    /// address outside `grants.network`); the message names the operator.
    #[error("{message}")]
    Denied { message: String },
    /// The guest broke the contract (an out-of-range index, a wrong count).
    #[error("operator `{uid}` returned an invalid result: {message}")]
    Contract { uid: String, message: String },
    /// The subtasks of a broadcast process function hold different
    /// broadcast state: its broadcast side is not deterministic.
    #[error("operator `{uid}`: {message}")]
    Diverged { uid: String, message: String },
}

/// Why keyed state could not be read or written. The kind decides what
/// happens to the job: see [`StateError::fault`].
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state outgrew the memory it may take (the heap backend's limit,
    /// timers kept on the heap). The same input fills it again: a user fault.
    #[error("{0}")]
    Full(String),
    /// An operator used its state against the contract: a state it did not
    /// declare, the wrong kind, a bad declaration.
    #[error("{0}")]
    Misuse(String),
    /// What was read back is not what was written: a bug.
    #[error("{0}")]
    Corrupt(String),
    /// The backend failed (RocksDB, the disk, a snapshot that cannot be
    /// read): the outside world's fault.
    #[error("{0}")]
    Backend(String),
}

impl StateError {
    pub fn fault(&self) -> Fault {
        match self {
            StateError::Full(_) | StateError::Misuse(_) => Fault::User,
            StateError::Corrupt(_) => Fault::Internal,
            StateError::Backend(_) => Fault::External,
        }
    }

    /// The same error, its message after `context: `.
    pub fn context(self, context: impl std::fmt::Display) -> StateError {
        let wrap = |m: String| format!("{context}: {m}");
        match self {
            StateError::Full(m) => StateError::Full(wrap(m)),
            StateError::Misuse(m) => StateError::Misuse(wrap(m)),
            StateError::Corrupt(m) => StateError::Corrupt(wrap(m)),
            StateError::Backend(m) => StateError::Backend(wrap(m)),
        }
    }
}

/// Why a running job stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A record that cannot be processed, with no dead-letter sink to take it.
    #[error(
        "`{uid}`: bad record at {origin}: {message} (add a `dead_letter` sink to the spec to set such records aside and keep going)"
    )]
    BadRecord {
        uid: String,
        origin: String,
        message: String,
    },
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// Keyed state could not be read or written (a full in-memory backend,
    /// a RocksDB error).
    #[error("`{uid}`: state: {error}")]
    State {
        uid: String,
        #[source]
        error: StateError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A task lost a neighbour task (which failed first and has its own
    /// error).
    #[error("{0}")]
    Disconnected(String),
    /// A checkpoint or savepoint could not be written, read or committed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The job cannot take over the state of the snapshot it starts from (a
    /// module that does not fit its operator's state, state nobody claims).
    #[error("{0}")]
    Incompatible(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// An external system a connector writes to or reads from failed, and
    /// retrying did not help (a database that stays unreachable).
    #[error("{0}")]
    Connector(String),
    /// Someone cancelled the job (the API, the CLI).
    #[error("the job was cancelled")]
    Cancelled,
}

impl RuntimeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            RuntimeError::BadRecord { .. }
            | RuntimeError::Wasm(_)
            | RuntimeError::Incompatible(_)
            | RuntimeError::Cancelled => Fault::User,
            RuntimeError::State { error, .. } => error.fault(),
            RuntimeError::Io { .. } | RuntimeError::Checkpoint(_) | RuntimeError::Connector(_) => {
                Fault::External
            }
            RuntimeError::Internal(_) | RuntimeError::Disconnected(_) => Fault::Internal,
        }
    }
}

/// Anything `sluice run` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl Error {
    pub fn fault(&self) -> Fault {
        match self {
            Error::Plan(_) => Fault::User,
            Error::Runtime(e) => e.fault(),
        }
    }
}
