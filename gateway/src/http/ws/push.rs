//! The server → client direction of a connection: the writer task's bookkeeping (its
//! progress on the socket), and the subscriptions' push loops (availability snapshots, one's
//! registrations, an event's decided scans), which queue frames without waiting and kick a
//! client that stopped reading.

use super::Identity;
use super::protocol::{error, scan_frame, text};
use crate::http::AppState;
use crate::http::checkin::stats_dto;
use crate::http::events::AvailabilityDto;
use crate::http::policy::scanning_event;
use axum::extract::ws::{Message, WebSocket};
use engine::ids::EventId;
use engine::notify::inbox::{Inbox, InboxChange};
use engine::pool::scan::ScanNotice;
use futures::SinkExt;
use futures::stream::SplitSink;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc};

/// Counts live writer tasks in `ws_writer_tasks` (each owns its socket's write half): the
/// gauge shows that aborted writers of dropped clients really go away.
struct WriterAlive;

impl WriterAlive {
    fn new() -> Self {
        metrics::gauge!("regengine_ws_writer_tasks").increment(1.0);
        WriterAlive
    }
}

impl Drop for WriterAlive {
    fn drop(&mut self) {
        metrics::gauge!("regengine_ws_writer_tasks").decrement(1.0);
    }
}

/// When the connection's writer last put a frame on the socket.
#[derive(Clone)]
pub(super) struct Progress {
    start: tokio::time::Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    pub(super) fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn mark(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long since the last frame was written.
    fn stalled_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        )
    }
}

/// Frames written before one flush.
const WRITE_BATCH_MAX: usize = 64;

/// The connection's writer task: drains the queue onto the socket until the queue's last
/// sender is gone or the socket fails, then closes the socket. Frames queued together go out
/// in one write: fed all, then flushed once (a scanner's answers arrive in bursts, one per
/// group commit); each flush marks progress for the lag check.
pub(super) async fn write_queued(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    written: Progress,
) {
    let _alive = WriterAlive::new();
    'out: while let Some(message) = rx.recv().await {
        if sink.feed(message).await.is_err() {
            break;
        }
        for _ in 1..WRITE_BATCH_MAX {
            match rx.try_recv() {
                Ok(message) => {
                    if sink.feed(message).await.is_err() {
                        break 'out;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
        written.mark();
    }
    let _ = sink.close().await;
}

/// Pushes the event's decided scans to one scanner, while its token is valid and it is still
/// a scanner of the event, with the event's statistics after them.
pub(super) async fn push_scans(
    state: AppState,
    topic: String,
    event: EventId,
    mut feed: broadcast::Receiver<ScanNotice>,
    identity: Identity,
    (tx, progress, kicked): (mpsc::Sender<Message>, Progress, Arc<Notify>),
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut stats = StatsSchedule::new();
    loop {
        if stats.is_due() {
            push_stats(&state, &topic, event, &tx);
            stats.sent(state.ws.push_interval);
        }
        let Some(received) = stats.wait_for(feed.recv()).await else {
            continue; // time for the statistics
        };
        stats.pending = true;
        if identity.principal().is_none() {
            let _ = tx.try_send(error(
                "token_expired",
                "authenticate again and subscribe again",
            ));
            return;
        }
        let frame = match received {
            Ok(notice) => scan_frame(&topic, notice),
            Err(RecvError::Lagged(_)) => text(json!({"type": "resync", "topic": topic})),
            Err(RecvError::Closed) => match reopen_scans(&state, event, &identity, &tx).await {
                Some(next) => {
                    feed = next;
                    continue;
                }
                None => return,
            },
        };
        match push(&tx, &progress, &kicked, state.ws.lag_timeout, frame) {
            Pushed::Sent => {}
            // The scanner missed a scan: tell it to re-read (best effort).
            Pushed::Dropped => {
                let _ = tx.try_send(text(json!({"type": "resync", "topic": topic})));
            }
            Pushed::Stop => return,
        }
    }
}

/// When a scanner's statistics are due: they follow the scans, at most once per
/// `push_interval`.
struct StatsSchedule {
    due: tokio::time::Instant,
    /// Scans came since the statistics were last sent.
    pending: bool,
}

impl StatsSchedule {
    fn new() -> Self {
        Self {
            due: tokio::time::Instant::now(),
            pending: false,
        }
    }

    fn is_due(&self) -> bool {
        self.pending && tokio::time::Instant::now() >= self.due
    }

    fn sent(&mut self, interval: Duration) {
        self.pending = false;
        self.due = tokio::time::Instant::now() + interval;
    }

    /// What `received` resolves to, or `None` if the statistics fall due first.
    async fn wait_for<T>(&self, received: impl Future<Output = T>) -> Option<T> {
        if self.pending {
            tokio::time::timeout_at(self.due, received).await.ok()
        } else {
            Some(received.await)
        }
    }
}

/// Queues the event's check-in statistics, best effort (a full queue skips them; the next
/// scan brings them again).
fn push_stats(state: &AppState, topic: &str, event: EventId, tx: &mpsc::Sender<Message>) {
    if let Ok(stats) = state.engine.checkin_stats(event) {
        let frame = json!({"type": "stats", "topic": topic, "data": stats_dto(&stats)});
        let _ = tx.try_send(text(frame));
    }
}

/// The scan feed of the event's next incarnation once its feed closed (the event restarted),
/// if the scanner may still listen: its token valid, and still staff or a manager of the
/// event. `None` (after telling the client why) ends the subscription.
async fn reopen_scans(
    state: &AppState,
    event: EventId,
    identity: &Identity,
    tx: &mpsc::Sender<Message>,
) -> Option<broadcast::Receiver<ScanNotice>> {
    let allowed = identity
        .principal()
        .is_some_and(|p| scanning_event(state, &p, event).is_ok());
    if !allowed {
        let _ = tx.try_send(error("forbidden", "no longer a scanner of this event"));
        return None;
    }
    match state.engine.subscribe_scans(event).await {
        Ok(next) => Some(next),
        Err(_) => {
            let _ = tx.try_send(error("topic_closed", "the event is no longer available"));
            None
        }
    }
}

/// Pushes each durable change of the user's registrations (the full registration) until the
/// connection ends or the token expires.
pub(super) async fn push_registrations(
    state: AppState,
    topic: String,
    feed: engine::feeds::RegistrationFeed,
    identity: Identity,
    handles: (mpsc::Sender<Message>, Progress, Arc<Notify>),
) {
    let render = |state: &AppState, topic: &str, id| match state.engine.registration(id) {
        Ok(view) => Some(text(json!({
            "type": "registration",
            "topic": topic,
            "data": crate::http::registrations::registration_dto(state, view),
        }))),
        Err(e) => {
            tracing::warn!(error = %e, registration = %id, "registration update not readable");
            None
        }
    };
    push_user_feed(state, topic, feed, identity, handles, None, render).await;
}

/// Pushes the in-app inbox: its unread count first, then each new notification with the
/// count, and the count again when notifications were marked read.
pub(super) async fn push_notifications(
    state: AppState,
    topic: String,
    feed: engine::feeds::Feed<InboxChange>,
    identity: Identity,
    handles: (mpsc::Sender<Message>, Progress, Arc<Notify>),
) {
    let user = identity.user_id;
    let unread = move |state: &AppState| match state.db.inbox_unread(user) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "inbox not readable");
            None
        }
    };
    let count = move |state: &AppState, topic: &str| {
        let n = unread(state)?;
        Some(text(
            json!({"type": "unread", "topic": topic, "data": {"unread": n}}),
        ))
    };
    let first = count(&state, &topic);
    let render = move |state: &AppState, topic: &str, change| match change {
        InboxChange::Added(id) => {
            let entry = match state.db.inbox_entry(user, id) {
                Ok(Some(entry)) => entry,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "inbox entry not readable");
                    return None;
                }
            };
            let n = unread(state)?;
            Some(text(json!({
                "type": "notification",
                "topic": topic,
                "data": crate::http::inbox::NotificationDto::from(entry),
                "unread": n,
            })))
        }
        InboxChange::Read => count(state, topic),
    };
    push_user_feed(state, topic, feed, identity, handles, first, render).await;
}

/// A private per-user topic's loop: `first` (if any), then each change of `feed` rendered by
/// `render` (`None`: nothing to push), a `resync` when changes were lost (the listener lagged,
/// or its queue was full), until the connection ends or the token expires.
async fn push_user_feed<T: Clone>(
    state: AppState,
    topic: String,
    mut feed: engine::feeds::Feed<T>,
    identity: Identity,
    (tx, progress, kicked): (mpsc::Sender<Message>, Progress, Arc<Notify>),
    first: Option<Message>,
    render: impl Fn(&AppState, &str, T) -> Option<Message>,
) {
    use tokio::sync::broadcast::error::RecvError;
    // Set when a change could not be queued: the client must re-read.
    let mut resync = false;
    if let Some(frame) = first {
        match push(&tx, &progress, &kicked, state.ws.lag_timeout, frame) {
            Pushed::Sent => {}
            Pushed::Dropped => resync = true,
            Pushed::Stop => return,
        }
    }
    loop {
        let valid_until = identity.valid_until.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        if now >= valid_until {
            let _ = tx.try_send(error(
                "token_expired",
                "authenticate again and subscribe again",
            ));
            return;
        }
        let resync_frame = || text(json!({"type": "resync", "topic": topic}));
        let frame = tokio::select! {
            changed = feed.recv() => match changed {
                Ok(change) if !resync => match render(&state, &topic, change) {
                    Some(frame) => frame,
                    None => continue,
                },
                Ok(_) | Err(RecvError::Lagged(_)) => resync_frame(),
                Err(RecvError::Closed) => return,
            },
            // A dropped change: tell the client to re-read, as soon as its queue has room.
            _ = tokio::time::sleep(state.ws.push_interval), if resync => resync_frame(),
            // Wake at the token's expiry (a fresh `auth` may have extended it meanwhile).
            _ = tokio::time::sleep(Duration::from_secs(valid_until - now)) => continue,
        };
        match push(&tx, &progress, &kicked, state.ws.lag_timeout, frame) {
            Pushed::Sent => resync = false,
            Pushed::Dropped => resync = true,
            Pushed::Stop => return,
        }
    }
}

/// What became of a pushed frame.
#[derive(PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued for the socket.
    Sent,
    /// The queue was full: dropped (the subscription resyncs the client later).
    Dropped,
    /// The connection is gone or lagging (it was kicked): the subscription ends.
    Stop,
}

/// Queues a push for a subscriber without waiting. A full queue drops it; a client whose
/// socket has made no progress for `lag_timeout` is kicked.
pub(super) fn push(
    tx: &mpsc::Sender<Message>,
    progress: &Progress,
    kicked: &Notify,
    lag_timeout: Duration,
    frame: Message,
) -> Pushed {
    match tx.try_send(frame) {
        Ok(()) => {
            metrics::counter!("regengine_ws_pushes_total").increment(1);
            Pushed::Sent
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics::counter!("regengine_ws_pushes_dropped_total").increment(1);
            if progress.stalled_for() >= lag_timeout {
                kicked.notify_one();
                return Pushed::Stop;
            }
            Pushed::Dropped
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Stop,
    }
}

/// Pushes availability snapshots of one event to one connection, coalesced.
pub(super) async fn push_availability(
    state: AppState,
    topic: String,
    event_id: EventId,
    mut feed: engine::AvailabilityFeed,
    (tx, progress, kicked): (mpsc::Sender<Message>, Progress, Arc<Notify>),
) {
    let interval = state.ws.push_interval;
    let mut next_allowed = tokio::time::Instant::now();
    let mut pending = true;
    loop {
        if !pending {
            if !feed.changed().await {
                // The event actor stopped; follow its next incarnation.
                match state.engine.subscribe(event_id).await {
                    Ok(next) => feed = next,
                    Err(_) => {
                        let _ =
                            tx.try_send(error("topic_closed", "the event is no longer available"));
                        return;
                    }
                }
            }
            pending = true;
        }
        tokio::time::sleep_until(next_allowed).await;
        let Some(snapshot) = feed.current() else {
            pending = false; // the event stopped: `changed` reports it and we resubscribe
            continue;
        };
        let frame = text(
            json!({"type": "availability", "topic": topic, "data": AvailabilityDto::from(&snapshot)}),
        );
        next_allowed = tokio::time::Instant::now() + interval;
        match push(&tx, &progress, &kicked, state.ws.lag_timeout, frame) {
            Pushed::Sent => pending = false,
            // Dropped: the next attempt sends the then-latest snapshot (a resync).
            Pushed::Dropped => {}
            Pushed::Stop => return,
        }
    }
}
