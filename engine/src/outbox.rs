//! The outbox: messages to send (e-mail verification, password reset; later confirmations
//! and waiting-list offers), committed in the same journal batch as the state change that
//! causes them, then handed to a [`MessageSink`] by the [`Relay`].
//!
//! Delivery is at least once: a message leaves the outbox only after its sink accepted it,
//! so a crash between the two sends it again on the next start. The outbox is bounded
//! (`OutboxConfig::pending_max`): when the sink is down long enough to fill it, requests
//! that would add a message are refused as unavailable rather than queued without end.
//!
//! A message may carry a secret (a single-use token): it lives in the outbox only until
//! delivered, and the journal holds its digest only.

use crate::failure::chain;
pub use crate::message::{MessageKind, OutboxMessage, TicketLine};
use crate::ports::{Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

pub use crate::values::BoxFuture;

/// Where messages go: an adapter (log, file, later SMTP and push) implemented outside the
/// engine. An error leaves the message in the outbox for a later attempt.
pub trait MessageSink: Send + Sync + 'static {
    /// Delivers one message.
    fn deliver<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<(), String>>;
}

/// A sink that only logs that a message went out (never its token): for deployments with
/// no mail adapter yet, and for benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

impl MessageSink for LogSink {
    fn deliver<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            tracing::info!(
                id = %message.id,
                kind = message.kind.as_str(),
                to = %mask(&message.to),
                "message delivered (log sink: not sent)"
            );
            Ok(())
        })
    }
}

/// `alice@example.com` → `a***@example.com`: enough to tell messages apart in a log.
pub fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Outbox settings.
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// Messages waiting at most; beyond it, requests that add one are refused (503).
    pub pending_max: usize,
    /// Messages read from the store per round.
    pub batch_max: usize,
    /// Wait after a failed delivery before trying again (doubling up to 32x).
    pub retry_after: Duration,
    /// Failed deliveries in a row after which a message goes to the dead letters.
    pub attempts_max: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            pending_max: 10_000,
            batch_max: 64,
            retry_after: Duration::from_secs(1),
            attempts_max: 10,
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
        metrics::gauge!("outbox_pending").set(pending as f64);
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
        metrics::gauge!("outbox_pending").set(self.pending() as f64);
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

/// Delivers the outbox in order until shutdown. A message the sink refuses is retried with
/// backoff; after `attempts_max` failures in a row it is moved to the dead letters (kept in
/// the store, logged, counted) so that one bad message cannot hold up every other one. A
/// message that cannot even be decoded goes there at once.
pub(crate) async fn relay(
    store: Arc<dyn Store>,
    sink: Arc<dyn MessageSink>,
    gauge: Arc<OutboxGauge>,
    config: OutboxConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = config.retry_after;
    // The message at the head of the outbox and how often its delivery failed in a row.
    let mut failing: Option<(Uuid, u32)> = None;
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
        let failed = deliver_batch(&*store, &*sink, &gauge, &config, &batch, &mut failing).await;
        // A long backlog must not hold a worker thread (the sink may never yield).
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

/// Delivers `batch` in order, removing each delivered message from the outbox. Returns
/// `true` if it stopped at a message to retry later (`failing` counts its failures in a row).
async fn deliver_batch(
    store: &dyn Store,
    sink: &dyn MessageSink,
    gauge: &OutboxGauge,
    config: &OutboxConfig,
    batch: &[(Uuid, Result<OutboxMessage, StoreError>)],
    failing: &mut Option<(Uuid, u32)>,
) -> bool {
    for (id, message) in batch {
        let outcome = match message {
            Ok(message) => sink.deliver(message).await.map_err(|e| {
                tracing::warn!(error = %e, %id, kind = message.kind.as_str(), "message delivery failed; retrying later");
                metrics::counter!("outbox_delivery_failures_total", "kind" => message.kind.as_str())
                    .increment(1);
                e
            }),
            Err(e) => {
                dead_letter(store, gauge, *id, &format!("undecodable: {}", chain(e)));
                continue;
            }
        };
        match outcome {
            Ok(()) => {
                if let Err(e) = store.outbox_remove(*id) {
                    // Delivered but still queued: it goes out again (at least once).
                    tracing::error!(error = %chain(&e), %id, "outbox removal failed");
                    return true;
                }
                gauge.release(1);
                if let Ok(m) = message {
                    metrics::counter!("outbox_delivered_total", "kind" => m.kind.as_str())
                        .increment(1);
                }
            }
            Err(e) => {
                let attempts = match *failing {
                    Some((head, n)) if head == *id => n + 1,
                    _ => 1,
                };
                if attempts >= config.attempts_max {
                    dead_letter(store, gauge, *id, &e);
                    *failing = None;
                    continue;
                }
                *failing = Some((*id, attempts));
                return true;
            }
        }
    }
    false
}

/// Moves a message the relay gives up on to the dead letters.
fn dead_letter(store: &dyn Store, gauge: &OutboxGauge, id: Uuid, reason: &str) {
    match store.outbox_dead_letter(id) {
        Ok(()) => {
            tracing::error!(%id, reason, "message moved to the outbox's dead letters");
            metrics::counter!("outbox_dead_letters_total").increment(1);
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
