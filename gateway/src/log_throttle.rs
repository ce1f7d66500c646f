//! Log lines for things that can happen thousands of times a second (refused connections,
//! shed requests): one line per period at most, saying how many were held back. The metrics
//! count every occurrence; the log only says that it is happening.

use std::sync::atomic::{AtomicU64, Ordering};

/// At most one log line per period; counts what it held back.
#[derive(Default)]
pub struct LogThrottle {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// Least time between two lines.
    pub const PERIOD_MS: u64 = 10_000;

    /// `Some(lines held back since the last one)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        let now = epoch_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < Self::PERIOD_MS
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::AcqRel))
    }
}

fn epoch_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}
