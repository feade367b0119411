//! The time triggers read, given to the runtime rather than read from the system, so that
//! tests drive schedule ticks (and daylight-saving days) without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Unix milliseconds, and a way to wait until one.
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
    /// How long to sleep on the tokio timer until `at_ms` (zero when it has passed). A test
    /// clock may shorten this: its loop wakes and reads [`Clock::now_ms`] again.
    fn until(&self, at_ms: i64) -> Duration {
        Duration::from_millis(at_ms.saturating_sub(self.now_ms()).max(0) as u64)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        hilo_core::store::now_ms()
    }
}

/// A clock a test sets (shared by clones): loops waiting on it poll every few milliseconds.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(at_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(at_ms)))
    }

    /// Sets the time (it may go back, as a wrong system clock can).
    pub fn set(&self, at_ms: i64) {
        self.0.store(at_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn until(&self, _at_ms: i64) -> Duration {
        Duration::from_millis(5)
    }
}
