//! sluice: a stream processor with Apache Flink's guarantees and sandboxed
//! WebAssembly operators.
//!
//! A pipeline spec ([`plan::spec`]) is planned into a graph of nodes
//! ([`plan`]) and run as tokio tasks over bounded channels ([`runtime`]).
//! Sources ([`connectors`]) assign event time and watermarks ([`time`]);
//! windows ([`window`]) aggregate keyed records as the watermark passes;
//! user logic runs in Wasm components behind one WIT contract ([`wasm`]).
//!
//! The embedder surface is small: [`plan::load`] a spec, [`runtime::job::run`]
//! it, read the [`runtime::job::JobSummary`]. The `sluice` binary ([`cli`])
//! does exactly that:
//!
//! ```
//! use sluice_host::plan::{self, PlanOptions};
//! use std::path::Path;
//!
//! let out = std::env::temp_dir().join(format!("sluice-doc-{}.jsonl", std::process::id()));
//! let spec = format!(
//!     "sources:\n  - {{ uid: orders, type: datagen, count: 100 }}\n\
//!      sinks:\n  - {{ uid: out, input: orders, type: file, path: {} }}\n",
//!     out.display()
//! );
//! let no_vars = |_: &str| None;
//! let pipeline = plan::load_text(
//!     &spec,
//!     Path::new("inline.yaml"),
//!     Path::new("."),
//!     &no_vars,
//!     &PlanOptions::default(),
//! )?;
//! let clock = std::sync::Arc::new(sluice_host::time::SystemClock);
//! let summary = tokio::runtime::Runtime::new()?
//!     .block_on(sluice_host::runtime::job::run(&pipeline, clock))?;
//! assert_eq!(summary.records_read(), 100);
//! assert_eq!(std::fs::read_to_string(&out)?.lines().count(), 100);
//! # std::fs::remove_file(&out)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod checkpoint;
pub mod cli;
pub mod connectors;
pub mod error;
pub mod group;
pub mod join;
pub mod json;
pub mod plan;
pub mod runtime;
pub mod server;
pub mod sql;
pub mod state;
pub mod testing;
pub mod time;
pub mod units;
pub mod wasm;
pub mod window;

pub use error::{Error, Fault};

#[cfg(test)]
mod layering;

/// The WIT package operators are built against; its version is the one
/// `wit/operator.wit` declares (read by `build.rs`).
pub const WIT_PACKAGE: &str = concat!("sluice:operator@", env!("SLUICE_WIT_VERSION"));

/// The full name of an item of the WIT package: `wit_name!("transform")` is
/// `sluice:operator/transform@` and the package's version.
#[macro_export]
macro_rules! wit_name {
    ($name:literal) => {
        concat!("sluice:operator/", $name, "@", env!("SLUICE_WIT_VERSION"))
    };
}

/// When the process started (as far as sluice can tell: the first call of
/// this function; `sluice`'s `main` calls it first thing).
pub fn process_start() -> std::time::Instant {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}

/// sluice's own folder for what `sluice serve` keeps (modules, tokens):
/// `$SLUICE_HOME`, else `~/.local/share/sluice`.
pub fn home_dir() -> std::path::PathBuf {
    if let Some(h) = std::env::var_os("SLUICE_HOME") {
        return std::path::PathBuf::from(h);
    }
    std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".local/share"))
        .unwrap_or_else(std::env::temp_dir)
        .join("sluice")
}
