//! PostgreSQL: the `postgres` sink, the `lookup` join and the `postgres-cdc`
//! source ([`cdc`]).
//!
//! The sink maps fields of each record's JSON value to the columns of one
//! table and writes them by upsert on the table's primary key (or appends,
//! for a table without one, or with `mode: append`). Column types come from
//! the table itself, read from the catalog when the plan is built, so a
//! missing table or column, or a field mapped to a column that does not
//! exist, is a plan error naming them.
//!
//! - [`rows`] turns records into rows in COPY's text format, checked against
//!   the column types (a record that does not fit goes to the dead-letter
//!   sink, naming the table and column), and collapses an epoch's changes per
//!   primary key: the last change of a key wins.
//! - [`db`] talks to the server: connections with retries, the catalog, and
//!   applying rows (COPY into a temporary table, then one
//!   `INSERT … ON CONFLICT DO UPDATE` and one `DELETE … USING`).
//! - [`sink`] is the operator and, with checkpointing, the committer: each
//!   subtask seals its epoch at the barrier into a staged file beside the
//!   checkpoints; when the checkpoint completes one transaction applies every
//!   pending epoch and advances the sink's row in `sluice_sink_progress`, so
//!   an epoch is applied once however often the commit is retried or
//!   recovered. Without checkpointing each subtask writes its rows every
//!   `buffer_timeout` (at least once).

pub mod cdc;
mod db;
mod decode;
mod lookup;
mod rows;
mod sink;

pub use lookup::LookupKind;
pub use sink::PostgresSinkFactory;

use serde::Deserialize;
use std::collections::BTreeMap;

/// `type: postgres` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkOptions {
    /// `postgresql://user:password@host:port/database`.
    pub url: String,
    /// The table (`name` or `schema.name`); it must exist.
    pub table: String,
    /// Column name → JSON pointer of the record field that fills it.
    /// Without it, every column of the table takes the top-level field of
    /// its own name.
    #[serde(default)]
    pub columns: Option<BTreeMap<String, String>>,
    /// `upsert` (needs a primary key) or `append`; by default upsert when the
    /// table has a primary key.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Without checkpointing: how long rows may wait before they are
    /// written (default: the pipeline's `buffer_timeout`).
    #[serde(default)]
    pub buffer_timeout: Option<crate::units::Dur>,
    /// How long a lost connection is retried (with backoff) before the
    /// write fails the job (default 60s).
    #[serde(default)]
    pub retry_timeout: Option<crate::units::Dur>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Upsert,
    Append,
}
