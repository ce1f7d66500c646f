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
    /// How long finished deliveries (sent, skipped) stay readable before they are pruned.
    pub retention: Duration,
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
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// How often the backlog gauges are refreshed and finished deliveries pruned.
const GAUGE_EVERY: Duration = Duration::from_secs(1);
/// Finished deliveries pruned per round at most.
const PRUNE_MAX: usize = 1_000;

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

/// Sends in flight: each task's delivery, by task id, and the messages they carry; and
/// outcomes not yet recorded (the store refused the write: their messages stay "in flight",
/// so they are not sent again while the write is retried).
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Attempt>,
    by_task: HashMap<tokio::task::Id, Delivery>,
    messages: HashSet<Uuid>,
    unrecorded: Vec<(Delivery, Delivery)>,
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
            prune(&worker);
            gauges_at = Instant::now();
        }
        let room = worker.config.concurrency.saturating_sub(flight.tasks.len());
        let fill = if !write_back(&worker, &mut flight) {
            Fill::Failed // the store refuses writes: send nothing more until it takes them
        } else if room > 0 {
            fill(&worker, &mut flight, &mut pace, room)
        } else {
            Fill::Done
        };
        let idle = flight.tasks.is_empty();
        let wait = match (fill, idle) {
            (Fill::RateLimited(until), _) => until.saturating_duration_since(Instant::now()),
            (Fill::Done, true) => next_due_in(&worker, channel).min(worker.config.idle_poll),
            (Fill::Done, false) | (Fill::Failed, _) => worker.config.idle_poll,
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

/// What filling the flight did.
enum Fill {
    /// Started what was due (possibly nothing).
    Done,
    /// The rate held the next start back until then.
    RateLimited(Instant),
    /// The store failed: wait before trying again.
    Failed,
}

/// Starts sends for up to `room` due deliveries not already in flight.
fn fill(worker: &Worker, flight: &mut InFlight, pace: &mut Pace, room: usize) -> Fill {
    let channel = worker.sender.channel();
    let now = worker.clock.now();
    let due = match worker
        .store
        .deliveries_due(channel, now, room, &flight.messages)
    {
        Ok(due) => due,
        Err(e) => {
            tracing::error!(error = %chain(&e), channel = channel.as_str(), "reading due deliveries failed");
            return Fill::Failed;
        }
    };
    for (delivery, message) in due {
        if let Some(until) = pace.take() {
            return Fill::RateLimited(until);
        }
        start(worker, flight, delivery, message);
    }
    Fill::Done
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
                metrics::histogram!("regengine_notify_send_seconds", "channel" => channel.as_str())
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
    let next = record(worker, &delivery, outcome);
    flight.unrecorded.push((delivery, next));
    write_back(worker, flight);
}

/// Writes the outcomes not yet recorded; `false` if the store still refuses (they stay, and
/// their messages stay marked in flight, so nothing is sent twice meanwhile).
fn write_back(worker: &Worker, flight: &mut InFlight) -> bool {
    while let Some((before, next)) = flight.unrecorded.last() {
        match worker.store.delivery_update(before, next) {
            Ok(applied) => {
                if !applied {
                    tracing::warn!(id = %before.message_id, channel = before.channel.as_str(), "delivery changed while it was being sent; outcome not recorded");
                }
                flight.messages.remove(&before.message_id);
                flight.unrecorded.pop();
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), id = %before.message_id, "recording a delivery failed; retrying");
                return false;
            }
        }
    }
    true
}

/// The delivery's row after an attempt (counted and logged here, written by the caller).
fn record(worker: &Worker, delivery: &Delivery, outcome: Result<Sent, SendError>) -> Delivery {
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
    metrics::counter!("regengine_notify_attempts_total", "channel" => channel, "result" => result)
        .increment(1);
    if next.status == DeliveryStatus::Failed {
        tracing::error!(id = %next.message_id, channel, kind = %next.kind, error = ?next.last_error, "delivery given up: a dead letter");
    }
    next
}

/// Removes finished deliveries older than the retention (a bounded number per round).
fn prune(worker: &Worker) {
    let Ok(retention) = chrono::Duration::from_std(worker.config.retention) else {
        return;
    };
    match worker
        .store
        .prune_deliveries(worker.clock.now() - retention, PRUNE_MAX)
    {
        Ok(0) => {}
        Ok(n) => metrics::counter!("regengine_notify_deliveries_pruned_total").increment(n as u64),
        Err(e) => tracing::warn!(error = %chain(&e), "pruning finished deliveries failed"),
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
    match worker.store.delivery_backlog(channel) {
        Ok((count, oldest)) => {
            metrics::gauge!("regengine_notify_backlog", "channel" => channel.as_str())
                .set(count as f64);
            let age = oldest
                .map(|at| (worker.clock.now() - at).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("regengine_notify_oldest_age_seconds", "channel" => channel.as_str())
                .set(age);
        }
        Err(e) => {
            tracing::warn!(error = %chain(&e), channel = channel.as_str(), "counting the backlog failed")
        }
    }
}

/// Spaces starts `1 / rate` apart (no limit at rate 0), allowing a burst of a tenth of a
/// second's worth after a pause (so any one second sees at most 1.1 × rate starts).
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
        let burst = Duration::from_millis(100);
        let floor = now.checked_sub(burst.saturating_sub(every)).unwrap_or(now);
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
    async fn the_pace_allows_a_tenth_of_a_seconds_burst_then_spaces_starts() {
        let mut pace = Pace::new(100);
        tokio::time::advance(Duration::from_secs(5)).await;
        let mut started = 0;
        while pace.take().is_none() {
            started += 1;
        }
        assert_eq!(started, 10, "a tenth of a second's worth after a pause");
        let mut in_a_second = 0;
        for _ in 0..1000 {
            tokio::time::advance(Duration::from_millis(1)).await;
            while pace.take().is_none() {
                in_a_second += 1;
            }
        }
        assert_eq!(in_a_second, 100, "then the rate");
        let mut slow = Pace::new(10);
        assert!(slow.take().is_none(), "one at once");
        let until = slow.take().expect("the next waits");
        assert!(until > Instant::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(slow.take().is_none());
        assert!(Pace::new(0).take().is_none());
    }
}
