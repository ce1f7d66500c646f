//! A channel's delivery worker: keeps up to `concurrency` sends in flight, paced by the
//! channel's rate, and records each outcome in the delivery's row (sent, retried later, or
//! dead). It never touches a decision: a slow or dead provider only grows its backlog.

use super::{Channel, Delivery, DeliveryStatus, SendError, Sender, Sent, after_attempt};
use crate::clock::SharedClock;
use crate::failure::chain;
use crate::message::OutboxMessage;
use crate::ports::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

/// A channel worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Sends in flight at most.
    pub concurrency: usize,
    /// Sends started per second at most (0: no limit): the provider's rate limit.
    pub rate_per_sec: u32,
    /// Wait after a first failure; doubled per failure up to `retry_max`, with jitter.
    pub retry_after: Duration,
    pub retry_max: Duration,
    /// Attempts after which a delivery is dead.
    pub attempts_max: u32,
    /// How often an idle worker looks for deliveries written without waking it.
    pub idle_poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            rate_per_sec: 0,
            retry_after: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            attempts_max: 12,
            idle_poll: Duration::from_millis(200),
        }
    }
}

/// How often the backlog gauges are refreshed at most (counting reads the queue).
const GAUGE_EVERY: Duration = Duration::from_secs(1);
/// Queued deliveries counted at most for the backlog gauge.
const BACKLOG_COUNT_MAX: usize = 1_000_000;

/// What one worker needs.
pub struct Worker {
    pub store: Arc<dyn Store>,
    pub sender: Arc<dyn Sender>,
    pub clock: SharedClock,
    pub config: WorkerConfig,
    /// Woken when deliveries are written for the channel (or replayed).
    pub wake: Arc<Notify>,
}

/// What a send task returns: the delivery it attempted and the outcome.
type Attempt = (Delivery, Result<Sent, SendError>);

/// Sends in flight: each task's delivery, by task id, and the messages they carry.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Attempt>,
    by_task: HashMap<tokio::task::Id, Delivery>,
    messages: HashSet<Uuid>,
}

/// Runs `worker` until `shutdown`. Sends in flight at shutdown are abandoned: their rows stay
/// queued and go out again on the next start (at least once, with the same message id).
pub async fn run(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let channel = worker.sender.channel();
    let mut flight = InFlight::default();
    let mut pace = Pace::new(worker.config.rate_per_sec);
    let mut gauges_at = Instant::now() - GAUGE_EVERY;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if gauges_at.elapsed() >= GAUGE_EVERY {
            publish_gauges(&worker, channel);
            gauges_at = Instant::now();
        }
        let room = worker.config.concurrency.saturating_sub(flight.tasks.len());
        let waiting_for_rate = if room > 0 {
            fill(&worker, &mut flight, &mut pace, room)
        } else {
            None
        };
        let idle = flight.tasks.is_empty();
        let wait = match (waiting_for_rate, idle) {
            (Some(until), _) => until.saturating_duration_since(Instant::now()),
            (None, true) => next_due_in(&worker, channel).min(worker.config.idle_poll),
            (None, false) => worker.config.idle_poll,
        };
        tokio::select! {
            Some(done) = flight.tasks.join_next_with_id(), if !idle => {
                settle(&worker, &mut flight, done);
                // Settle whatever else finished before looking for more work.
                while let Some(done) = flight.tasks.try_join_next_with_id() {
                    settle(&worker, &mut flight, done);
                }
            }
            _ = worker.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            changed = shutdown.changed() => if changed.is_err() {
                return;
            },
        }
    }
}

/// Starts sends for up to `room` due deliveries not already in flight. Returns when the
/// rate lets the next one start, if it held one back.
fn fill(worker: &Worker, flight: &mut InFlight, pace: &mut Pace, room: usize) -> Option<Instant> {
    let channel = worker.sender.channel();
    let now = worker.clock.now();
    let due = match worker
        .store
        .deliveries_due(channel, now, flight.messages.len() + room)
    {
        Ok(due) => due,
        Err(e) => {
            tracing::error!(error = %chain(&e), channel = channel.as_str(), "reading due deliveries failed");
            return None;
        }
    };
    for (delivery, message) in due {
        if flight.messages.contains(&delivery.message_id) {
            continue;
        }
        if flight.tasks.len() >= worker.config.concurrency {
            break;
        }
        if let Some(until) = pace.take() {
            return Some(until);
        }
        start(worker, flight, delivery, message);
    }
    None
}

fn start(
    worker: &Worker,
    flight: &mut InFlight,
    delivery: Delivery,
    message: Result<OutboxMessage, StoreError>,
) {
    let sender = worker.sender.clone();
    let channel = sender.channel();
    flight.messages.insert(delivery.message_id);
    let attempt = delivery.clone();
    let handle = flight.tasks.spawn(async move {
        let outcome = match message {
            Ok(message) => {
                let started = Instant::now();
                let outcome = sender.send(&message).await;
                metrics::histogram!("notify_send_seconds", "channel" => channel.as_str())
                    .record(started.elapsed().as_secs_f64());
                outcome
            }
            Err(e) => Err(SendError::Permanent(format!(
                "message unreadable: {}",
                chain(&e)
            ))),
        };
        (attempt, outcome)
    });
    flight.by_task.insert(handle.id(), delivery);
}

/// Records a finished send (a panicked one counts as a failure to retry).
fn settle(
    worker: &Worker,
    flight: &mut InFlight,
    done: Result<(tokio::task::Id, Attempt), tokio::task::JoinError>,
) {
    let (delivery, outcome) = match done {
        Ok((id, result)) => {
            flight.by_task.remove(&id);
            result
        }
        Err(e) => {
            let Some(delivery) = flight.by_task.remove(&e.id()) else {
                return;
            };
            (
                delivery,
                Err(SendError::Retry(format!("send task failed: {e}"))),
            )
        }
    };
    flight.messages.remove(&delivery.message_id);
    record(worker, &delivery, outcome);
}

/// The delivery's row after an attempt.
fn record(worker: &Worker, delivery: &Delivery, outcome: Result<Sent, SendError>) {
    let channel = delivery.channel.as_str();
    if let Err(e) = &outcome {
        tracing::warn!(id = %delivery.message_id, channel, kind = %delivery.kind, error = %e, "sending failed");
    }
    let jitter = f64::from(Uuid::new_v4().as_u128() as u32) / f64::from(u32::MAX);
    let next = after_attempt(
        delivery,
        outcome,
        &worker.config,
        jitter,
        worker.clock.now(),
    );
    let result = match next.status {
        DeliveryStatus::Queued => "retry",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Skipped => "skipped",
        _ => "sent",
    };
    metrics::counter!("notify_attempts_total", "channel" => channel, "result" => result)
        .increment(1);
    if next.status == DeliveryStatus::Failed {
        tracing::error!(id = %next.message_id, channel, kind = %next.kind, error = ?next.last_error, "delivery given up: a dead letter");
    }
    if let Err(e) = worker.store.delivery_update(delivery, &next) {
        // The row still says queued: it is sent again (at least once, same message id).
        tracing::error!(error = %chain(&e), id = %delivery.message_id, channel, "recording a delivery failed");
    }
}

/// How long until the channel's next queued delivery is due (long if none).
fn next_due_in(worker: &Worker, channel: Channel) -> Duration {
    match worker.store.next_delivery_due(channel) {
        Ok(Some(due)) => (due - worker.clock.now()).to_std().unwrap_or_default(),
        _ => Duration::from_secs(3600),
    }
}

fn publish_gauges(worker: &Worker, channel: Channel) {
    match worker.store.delivery_backlog(channel, BACKLOG_COUNT_MAX) {
        Ok((count, oldest)) => {
            metrics::gauge!("notify_backlog", "channel" => channel.as_str()).set(count as f64);
            let age = oldest
                .map(|at| (worker.clock.now() - at).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("notify_oldest_age_seconds", "channel" => channel.as_str()).set(age);
        }
        Err(e) => {
            tracing::warn!(error = %chain(&e), channel = channel.as_str(), "counting the backlog failed")
        }
    }
}

/// Spaces starts `1 / rate` apart (no limit at rate 0), allowing a burst of one second's
/// worth after a pause.
struct Pace {
    every: Option<Duration>,
    next: Instant,
}

impl Pace {
    fn new(rate_per_sec: u32) -> Self {
        Self {
            every: (rate_per_sec > 0).then(|| Duration::from_secs(1) / rate_per_sec),
            next: Instant::now(),
        }
    }

    /// Takes a slot now, or says when the next one opens.
    fn take(&mut self) -> Option<Instant> {
        let every = self.every?;
        let now = Instant::now();
        let floor = now
            .checked_sub(Duration::from_secs(1).saturating_sub(every))
            .unwrap_or(now);
        self.next = self.next.max(floor);
        if self.next > now {
            return Some(self.next);
        }
        self.next += every;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pace_allows_a_seconds_burst_then_spaces_starts() {
        let mut pace = Pace::new(10);
        tokio::time::advance(Duration::from_secs(5)).await;
        let mut started = 0;
        while pace.take().is_none() {
            started += 1;
        }
        assert_eq!(started, 10, "one second's worth after a pause");
        let until = pace.take().expect("the eleventh waits");
        assert!(until > Instant::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(pace.take().is_none());
        assert!(Pace::new(0).take().is_none());
    }
}
