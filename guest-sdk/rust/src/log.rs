//! Log lines to the host's log (the WIT `logging` import).
//!
//! The host shows each line with the job and the operator's uid, at the level
//! you choose. The functions take a `&str`; the crate-root macros
//! ([`log_info!`](crate::log_info) and friends) take `format!`-style
//! arguments:
//!
//! ```
//! sluice_guest::log::info("opened");
//! let n = 3;
//! sluice_guest::log_debug!("skipped {n} records");
//! ```
//!
//! A log line is a call into the host: cheap (tens of nanoseconds plus the
//! copy of the message), but not free. Log per batch or per problem, not per
//! record.
//!
//! Built for anything but Wasm (a unit test of your operator), lines go to
//! standard error instead.

use std::fmt;

#[doc(hidden)]
pub use crate::bindings::transform::sluice::operator::logging::Level as __Level;

/// Logs `message` at trace level.
pub fn trace(message: &str) {
    write(__Level::Trace, message);
}

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    write(__Level::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    write(__Level::Info, message);
}

/// Logs `message` at warn level.
pub fn warn(message: &str) {
    write(__Level::Warn, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    write(__Level::Error, message);
}

/// What the `log_*!` macros call: formats only when the message has
/// arguments.
#[doc(hidden)]
pub fn __write_fmt(level: __Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(message) => write(level, message),
        None => write(level, &args.to_string()),
    }
}

#[cfg(target_arch = "wasm32")]
fn write(level: __Level, message: &str) {
    crate::bindings::transform::sluice::operator::logging::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: __Level, message: &str) {
    let level = match level {
        __Level::Trace => "TRACE",
        __Level::Debug => "DEBUG",
        __Level::Info => "INFO",
        __Level::Warn => "WARN",
        __Level::Error => "ERROR",
    };
    eprintln!("[sluice-guest {level}] {message}");
}
