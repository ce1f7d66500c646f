//! The outbox: messages to send (e-mail verification, password reset, waiting-list offers,
//! ...), committed in the same journal batch as the state change that causes them, then
//! fanned out by the relay into deliveries, one per channel (see [`crate::notify`]).
//!
//! A message leaves the outbox only in the store write that creates its deliveries, so a
//! crash between the two fans it out again, with the same ids. The outbox is bounded
//! (`OutboxConfig::pending_max`): requests that would add a message beyond it are refused
//! as unavailable rather than queued without end. Fanning out needs no network, so the
//! outbox stays short even while a provider is down (its channel's backlog grows instead).
//!
//! A message may carry a secret (a single-use token): it is kept only until delivered, and
//! the journal holds its digest only.

use crate::clock::SharedClock;
use crate::failure::chain;
pub use crate::message::{MessageKind, OutboxMessage, TicketLine, mask};
use crate::notify::Wakes;
use crate::ports::{Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

pub use crate::values::BoxFuture;

/// Outbox settings.
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// Messages waiting at most; beyond it, requests that add one are refused (503).
    pub pending_max: usize,
    /// Messages read from the store per round.
    pub batch_max: usize,
    /// Wait after a failed fan-out (a store error) before trying again (doubling up to 32x).
    pub retry_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            pending_max: 10_000,
            batch_max: 64,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Counts the outbox and wakes the relay. A request that adds messages first reserves room
/// ([`OutboxGauge::reserve`]); the reservation is kept when its append becomes durable (in
/// the journal's completion, which runs even if the request was abandoned) and released
/// otherwise, so the count never drifts and concurrent requests cannot overshoot the bound.
#[derive(Debug)]
pub(crate) struct OutboxGauge {
    pending: AtomicUsize,
    pending_max: usize,
    wake: Notify,
}

impl OutboxGauge {
    pub(crate) fn new(pending: usize, pending_max: usize) -> Self {
        metrics::gauge!("regengine_outbox_pending").set(pending as f64);
        Self {
            pending: AtomicUsize::new(pending),
            pending_max,
            wake: Notify::new(),
        }
    }

    fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    fn publish(&self) {
        metrics::gauge!("regengine_outbox_pending").set(self.pending() as f64);
    }

    /// Room for `n` more messages, or `None` when the outbox is full.
    pub(crate) fn reserve(self: &Arc<Self>, n: usize) -> Option<Reservation> {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |p| {
                (p + n <= self.pending_max).then_some(p + n)
            })
            .ok()?;
        self.publish();
        Some(Reservation {
            gauge: self.clone(),
            n,
        })
    }

    /// Whether `n` more messages would fit now (a hint: `reserve` decides).
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.pending() + n <= self.pending_max
    }

    fn release(&self, n: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
        self.publish();
    }
}

/// Room held in the outbox for the messages of one append: kept by [`Reservation::commit`]
/// once they are durable, given back when dropped without it.
#[derive(Debug)]
pub(crate) struct Reservation {
    gauge: Arc<OutboxGauge>,
    n: usize,
}

impl Reservation {
    /// The messages are in the outbox: keep their room and wake the relay.
    pub(crate) fn commit(mut self) {
        self.n = 0;
        self.gauge.wake.notify_one();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.n > 0 {
            self.gauge.release(self.n);
        }
    }
}

/// Fans the outbox out into deliveries, in order, until shutdown. A message that cannot be
/// decoded goes to the outbox's dead letters at once; a store error is retried with backoff.
pub(crate) async fn relay(
    store: Arc<dyn Store>,
    gauge: Arc<OutboxGauge>,
    config: OutboxConfig,
    wakes: Arc<Wakes>,
    clock: SharedClock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = config.retry_after;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let batch = match store.outbox(config.batch_max) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %chain(&e), "reading the outbox failed");
                Vec::new()
            }
        };
        let failed = fan_out_batch(&*store, &gauge, &wakes, &clock, &batch);
        // A long backlog must not hold a worker thread.
        tokio::task::yield_now().await;
        let wait = if failed {
            let wait = backoff;
            backoff = (backoff * 2).min(config.retry_after * 32);
            wait
        } else {
            backoff = config.retry_after;
            if batch.len() == config.batch_max {
                continue; // more waiting
            }
            // Idle: woken by the next message, or polls now and then.
            Duration::from_secs(30)
        };
        tokio::select! {
            _ = gauge.wake.notified(), if !failed => {}
            _ = tokio::time::sleep(wait) => {}
            changed = shutdown.changed() => if changed.is_err() {
                return; // the engine is gone
            },
        }
    }
}

/// Fans `batch` out in order, each message in its own store write. Returns `true` if a
/// write failed (the rest waits for the next round).
fn fan_out_batch(
    store: &dyn Store,
    gauge: &OutboxGauge,
    wakes: &Wakes,
    clock: &SharedClock,
    batch: &[(Uuid, Result<OutboxMessage, StoreError>)],
) -> bool {
    for (id, message) in batch {
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                dead_letter(store, gauge, *id, &format!("undecodable: {}", chain(e)));
                continue;
            }
        };
        let deliveries = crate::notify::plan(message, clock.now(), wakes.channels());
        if let Err(e) = store.fan_out(message, &deliveries) {
            tracing::error!(error = %chain(&e), %id, "fanning a message out failed; retrying");
            return true;
        }
        gauge.release(1);
        metrics::counter!("regengine_outbox_fanned_out_total", "kind" => message.kind.as_str())
            .increment(1);
        for delivery in &deliveries {
            wakes.wake(delivery.channel);
        }
    }
    false
}

/// Moves a message the relay gives up on to the dead letters.
fn dead_letter(store: &dyn Store, gauge: &OutboxGauge, id: Uuid, reason: &str) {
    match store.outbox_dead_letter(id) {
        Ok(()) => {
            tracing::error!(%id, reason, "message moved to the outbox's dead letters");
            metrics::counter!("regengine_outbox_dead_letters_total").increment(1);
            gauge.release(1);
        }
        Err(e) => {
            tracing::error!(error = %chain(&e), %id, "moving a message to the dead letters failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn messages_are_ordered_by_creation_time() {
        let t0 = Utc::now();
        let kind = MessageKind::VerifyEmail {
            token: "t".into(),
            expires_at: t0,
        };
        let a = OutboxMessage::new("a@example.com", None, kind.clone(), t0);
        let b = OutboxMessage::new(
            "b@example.com",
            None,
            kind,
            t0 + chrono::Duration::seconds(1),
        );
        assert!(a.id < b.id);
    }

    #[test]
    fn reservations_bound_the_outbox_and_are_given_back_unless_committed() {
        let g = Arc::new(OutboxGauge::new(7, 10));
        let a = g.reserve(2).unwrap();
        assert!(g.reserve(2).is_none(), "9 + 2 > 10");
        let b = g.reserve(1).unwrap();
        assert_eq!(g.pending(), 10);
        drop(b); // its append failed
        assert_eq!(g.pending(), 9);
        a.commit(); // durable: the room stays taken until the relay delivers
        assert_eq!(g.pending(), 9);
        g.release(1);
        assert_eq!(g.pending(), 8);
    }
}
