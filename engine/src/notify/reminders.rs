//! Reminders before an event, from a durable schedule. The read model keeps the schedule
//! (one entry per published event and reminder offset, due at the start minus the offset)
//! in the batch that publishes, moves, re-times or ends the event, so it is never out of
//! step with the event and survives any crash. This task reads only the schedule's earliest
//! entry: asleep until it is due (or for `poll` at most), then it queues the reminders of
//! the event's confirmed registrations a page at a time, each page written with the entry's
//! cursor moved past it (the entry removed with the last page), so a crash repeats no page
//! and skips none. Message ids derive from the event, the offset, the start and the
//! registration: a reminder is queued once.

use crate::clock::SharedClock;
use crate::failure::chain;
pub use crate::notify::ScheduledReminder;
use crate::notify::{Channel, Wakes};
use crate::ports::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The task's settings.
#[derive(Clone, Debug)]
pub struct ReminderConfig {
    /// Longest sleep between two looks at the schedule's head.
    pub poll: Duration,
    /// Registrations per page (one store write each).
    pub page: usize,
}

impl Default for ReminderConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            page: 500,
        }
    }
}

/// What one look at the schedule did.
enum Step {
    /// Nothing due before this long.
    Wait(Duration),
    /// Work done; look again at once.
    Again,
}

fn step(store: &dyn Store, wakes: &Wakes, config: &ReminderConfig, now: DateTime<Utc>) -> Step {
    let next = match store.next_reminder() {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %chain(&e), "reading the reminder schedule failed");
            return Step::Wait(config.poll);
        }
    };
    let Some(reminder) = next else {
        return Step::Wait(config.poll);
    };
    if reminder.due_at > now {
        let until = (reminder.due_at - now).to_std().unwrap_or_default();
        return Step::Wait(until.min(config.poll));
    }
    let result: Result<usize, StoreError> = if now >= reminder.starts_at {
        // Too late (the server was down through it): a reminder after the start is noise.
        tracing::warn!(event = %reminder.event_id, offset_secs = reminder.offset_secs, "reminder not sent: the event has started");
        metrics::counter!("regengine_notify_reminders_total", "result" => "late").increment(1);
        store.reminder_drop(&reminder).map(|()| 0)
    } else {
        store.reminder_step(&reminder, config.page, wakes.channels(), now)
    };
    match result {
        Ok(queued) => {
            if queued > 0 {
                metrics::counter!("regengine_notify_reminders_total", "result" => "queued")
                    .increment(queued as u64);
                for channel in [Channel::Email, Channel::InApp, Channel::Sms] {
                    if wakes.channels().contains(channel) {
                        wakes.wake(channel);
                    }
                }
            }
            Step::Again
        }
        Err(e) => {
            tracing::warn!(error = %chain(&e), event = %reminder.event_id, "queueing reminders failed; retrying");
            Step::Wait(config.poll)
        }
    }
}

/// Runs the schedule until `stop` turns true.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    wakes: Arc<Wakes>,
    clock: SharedClock,
    config: ReminderConfig,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match step(store.as_ref(), &wakes, &config, clock.now()) {
            Step::Again => {
                tokio::task::yield_now().await;
                continue;
            }
            Step::Wait(wait) => wait,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = stop.changed() => if changed.is_err() {
                return;
            },
        }
    }
}
