//! Time: the processing-time clock and event-time watermarks.
//!
//! Event time comes from the data (a field of each record); the watermark says
//! "no record older than this is still expected" and is what makes windows
//! fire. Sources generate watermarks per split (see [`watermark`]); operators
//! take the minimum over their inputs (see [`crate::runtime`]'s input
//! tracking). Processing time is read through a [`Clock`] so that tests can
//! drive it by hand.

pub mod calendar;
pub mod watermark;
pub mod windows;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The watermark value that means "end of input": every window fires.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// Processing time in epoch milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to: deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(start_ms)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
