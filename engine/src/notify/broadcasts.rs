//! An event's managers write to every attendee at once (a change of doors, a parking note):
//! a broadcast is stored with a fan-out cursor, and this task queues one `broadcast` message
//! per confirmed registration, a page at a time, each page written with the cursor moved past
//! it (the broadcast finished with the last page), so a crash repeats no page and skips none.
//! Pages are paced at `rate_per_sec` recipients a second, so a broadcast to a stadium drains
//! into the channels' queues over minutes instead of flooding the providers (and a sale's
//! confirmations, queued meanwhile, are not stuck behind a hundred thousand announcements).
//! Message ids derive from the broadcast and the registration: a recipient gets it once.

pub use crate::broadcast::{
    BODY_CHARS_MAX, Broadcast, EventChange, NOTIFIED_FIELDS, SUBJECT_CHARS_MAX, validate,
};
use crate::clock::SharedClock;
use crate::failure::chain;
use crate::notify::{Channel, Wakes};
use crate::ports::Store;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The fan-out task's settings.
#[derive(Clone, Debug)]
pub struct BroadcastConfig {
    /// Longest sleep between two looks for a broadcast to queue.
    pub poll: Duration,
    /// Recipients queued per second (at most; a page is at most a second's worth).
    pub rate_per_sec: u32,
    /// Registrations per page (one store write each).
    pub page: usize,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            rate_per_sec: 500,
            page: 500,
        }
    }
}

/// One look: queues a page of the oldest unfinished broadcast; how long to wait before the
/// next look.
fn step(
    store: &dyn Store,
    wakes: &Wakes,
    config: &BroadcastConfig,
    now: DateTime<Utc>,
) -> Duration {
    let next = match store.next_broadcast() {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %chain(&e), "reading the broadcasts failed");
            return config.poll;
        }
    };
    let Some(broadcast) = next else {
        return config.poll;
    };
    let rate = config.rate_per_sec.max(1);
    let page = config.page.clamp(1, rate as usize);
    match store.broadcast_step(&broadcast, page, wakes.channels(), now) {
        Ok(queued) => {
            metrics::counter!("regengine_notify_broadcast_messages_total").increment(queued as u64);
            if queued > 0 {
                for channel in [Channel::Email, Channel::InApp, Channel::Sms] {
                    if wakes.channels().contains(channel) {
                        wakes.wake(channel);
                    }
                }
            }
            // The pace: this page's share of a second (a page that found nobody costs a
            // tick, so a long run of canceled registrations still moves on).
            Duration::from_secs_f64(queued.max(1) as f64 / f64::from(rate))
        }
        Err(e) => {
            tracing::warn!(error = %chain(&e), broadcast = %broadcast.id, "queueing a broadcast failed; retrying");
            config.poll
        }
    }
}

/// Runs the broadcasts' fan-out until `stop` turns true.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    wakes: Arc<Wakes>,
    clock: SharedClock,
    config: BroadcastConfig,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = step(store.as_ref(), &wakes, &config, clock.now());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = stop.changed() => if changed.is_err() {
                return;
            },
        }
    }
}
