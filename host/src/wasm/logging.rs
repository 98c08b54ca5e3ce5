//! The `logging` import: guest log lines become the host's `tracing` events,
//! tagged with the operator uid (the task's span adds the job).
//!
//! A guest may log as much as it likes, but the host's log is shared: each
//! operator (all its subtasks and instances, its `logging` calls, stdout and
//! stderr together) may put at most [`MAX_LINES`] lines and [`MAX_BYTES`]
//! bytes into it per [`INTERVAL`]. What is over is dropped and counted, and
//! one warning says how much was, when the operator next logs or when it
//! ends.

use super::sluice::operator::logging::Level;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the limits apply to.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Lines per operator per [`INTERVAL`].
pub const MAX_LINES: u32 = 200;
/// Bytes per operator per [`INTERVAL`].
pub const MAX_BYTES: u64 = 128 << 10;

/// One operator's share of the host's log.
pub struct LogBudget {
    uid: std::sync::Arc<str>,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    lines: u32,
    bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl std::fmt::Debug for LogBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBudget").field("uid", &self.uid).finish()
    }
}

impl LogBudget {
    pub fn new(uid: std::sync::Arc<str>) -> LogBudget {
        LogBudget {
            uid,
            window: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
                bytes: 0,
                dropped_lines: 0,
                dropped_bytes: 0,
            }),
        }
    }

    /// Whether a line of `len` bytes may go to the log now; counts it as
    /// dropped otherwise.
    pub fn admit(&self, len: usize) -> bool {
        let mut w = self.window.lock().expect("log budget");
        let now = Instant::now();
        if now.duration_since(w.started) >= INTERVAL {
            self.report(&mut w);
            w.started = now;
            w.lines = 0;
            w.bytes = 0;
        }
        if w.lines < MAX_LINES && w.bytes + len as u64 <= MAX_BYTES {
            w.lines += 1;
            w.bytes += len as u64;
            return true;
        }
        w.dropped_lines += 1;
        w.dropped_bytes += len as u64;
        false
    }

    /// Says now how much was dropped since the last report, if anything
    /// was: an instance calls it when it goes, so that a flood shorter than
    /// an interval is reported before the job ends, not when the plan is
    /// dropped (which may be at process exit, or never).
    pub fn flush(&self) {
        if let Ok(mut w) = self.window.lock() {
            self.report(&mut w);
        }
    }

    fn report(&self, w: &mut Window) {
        if w.dropped_lines == 0 {
            return;
        }
        tracing::warn!(
            operator = %self.uid,
            "suppressed {} lines ({} bytes) of guest output: an operator may log at most {MAX_LINES} lines and {} KiB per second",
            w.dropped_lines,
            w.dropped_bytes,
            MAX_BYTES >> 10
        );
        w.dropped_lines = 0;
        w.dropped_bytes = 0;
    }
}

impl Drop for LogBudget {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Logs one guest line, `prefix` then `message`, at `level`, if the
/// operator's budget admits it.
pub fn emit(budget: &LogBudget, level: Level, prefix: &str, message: &str) {
    if !budget.admit(prefix.len() + message.len()) {
        return;
    }
    let uid = &*budget.uid;
    match level {
        Level::Trace => tracing::trace!(operator = uid, "{prefix}{message}"),
        Level::Debug => tracing::debug!(operator = uid, "{prefix}{message}"),
        Level::Info => tracing::info!(operator = uid, "{prefix}{message}"),
        Level::Warn => tracing::warn!(operator = uid, "{prefix}{message}"),
        Level::Error => tracing::error!(operator = uid, "{prefix}{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_gets_a_bounded_share_of_the_log_per_interval() {
        let b = LogBudget::new("op".into());
        let admitted = (0..10 * MAX_LINES).filter(|_| b.admit(10)).count();
        assert_eq!(admitted, MAX_LINES as usize);
        // Bytes count too: one big line fills the window.
        let b = LogBudget::new("op".into());
        assert!(b.admit(MAX_BYTES as usize));
        assert!(!b.admit(1));
        let w = b.window.lock().unwrap();
        assert_eq!((w.dropped_lines, w.dropped_bytes), (1, 1));
    }

    #[test]
    fn a_new_interval_admits_again_and_reports_what_was_dropped() {
        let b = LogBudget::new("op".into());
        for _ in 0..=MAX_LINES {
            b.admit(1);
        }
        {
            let mut w = b.window.lock().unwrap();
            assert_eq!(w.dropped_lines, 1);
            w.started -= INTERVAL;
        }
        assert!(b.admit(1));
        let w = b.window.lock().unwrap();
        assert_eq!((w.lines, w.dropped_lines, w.dropped_bytes), (1, 0, 0));
    }

    #[test]
    fn a_flush_reports_what_was_dropped_once() {
        let b = LogBudget::new("op".into());
        for _ in 0..=MAX_LINES {
            b.admit(1);
        }
        b.flush();
        let w = b.window.lock().unwrap();
        assert_eq!(
            (w.lines, w.dropped_lines, w.dropped_bytes),
            (MAX_LINES, 0, 0)
        );
    }
}
