//! Time, injected. The engine never reads the system clock directly, so tests control time.
//!
//! `TokioClock` derives wall time from tokio's monotonic clock: wall time at start plus
//! monotonic elapsed. Deadlines set inside the engine are therefore monotonic within a run
//! (an NTP step cannot expire holds early), and under `tokio::time::pause()` tests advance
//! both the timers and the clock together.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

/// Source of the current time for every decision the engine makes.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// Shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Wall time at construction plus tokio's monotonic elapsed time since then.
#[derive(Debug)]
pub struct TokioClock {
    wall_base: DateTime<Utc>,
    mono_base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock anchored at the current system time.
    pub fn new() -> Self {
        Self::anchored_at(Utc::now())
    }

    /// A clock whose `now()` starts at `wall_base` (tests use this for fixed dates).
    pub fn anchored_at(wall_base: DateTime<Utc>) -> Self {
        Self {
            wall_base,
            mono_base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.mono_base);
        // A run longer than i64 milliseconds is not a concern; saturate rather than panic.
        self.wall_base + Duration::from_std(elapsed).unwrap_or(Duration::MAX)
    }
}
