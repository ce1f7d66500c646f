//! WebSocket hub at `/api/v1/ws`. JSON text frames.
//!
//! Client → server: `{"type":"subscribe","topic":"event:{id}"}`, `{"type":"unsubscribe",
//! "topic":…}`, `{"type":"auth","token":"<access token>"}`, `{"type":"ping"}`. Server →
//! client: `subscribed`, `unsubscribed`, `authenticated`, `pong`, `error` (`code`,
//! `detail`), `availability` (`topic`, `data` = the availability document with its
//! `version`), `registration` (`topic`, `data` = the registration as over HTTP) and `resync`
//! (`topic`: changes were dropped; read `/api/v1/users/me/registrations` again).
//!
//! CheckInHub: a scanner (the event's staff or managers, authenticated as below) sends
//! `{"type":"scan","event_id":…,"ticket_code":…,"gate":…,"list_id":…,"direction":…,"nonce":…,
//! "ref":…}` (with `scanned_at` for a scan made while disconnected) and gets a `scan_result`
//! frame echoing `ref` and `nonce`, with `data` = the result (`admitted`, `duplicate` with the
//! standing admission, `revoked`, `invalid_signature`, ...). Scans are decided concurrently (at
//! most 256 in flight per connection), so answers may come back out of order. Subscribing to
//! `checkin:{event_id}` pushes every scan decided at the event, from any gate, once durable
//! (`scan` frames), so a scanner's local state stays current.
//!
//! Topics: `event:{id}` is public (published events only). `registrations:{user_id}` and
//! `checkin:{event_id}` are private: the connection must be authenticated as that user, by an `Authorization: Bearer`
//! header on the upgrade request or an `auth` message (browsers cannot set headers on a
//! WebSocket; a token in the URL would end up in logs). It pushes each durable change of the
//! user's registrations (held, confirmed, expired, canceled, checked in). When the token
//! expires, private subscriptions end with `token_expired` unless an `auth` message with a
//! fresh token of the same user came first; authenticating as another user ends them too.
//!
//! Each connection is two tasks: this reader and a writer draining a bounded queue of
//! `send_buffer_max` frames (one aborts the other). Each subscription pushes full snapshots,
//! coalesced to at most `pushes_per_sec_max` per second. A push that finds the queue full is
//! dropped and retried with the then-latest snapshot (a snapshot supersedes older ones, so
//! the client resyncs). A client whose writer has put nothing on its socket for `lag_timeout`
//! while pushes were waiting is lagging, not bursting: it is disconnected (its writer, blocked on
//! the full socket, is aborted so the socket and its buffers are released).
//! Memory per connection is bounded either way.

use super::AppState;
use super::auth::MaybeAuthenticated;
use super::events::AvailabilityDto;
use crate::auth::Principal;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::ids::{EventId, UserId};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Limits of the hub.
#[derive(Clone, Debug)]
pub struct WsSettings {
    /// Topics per connection.
    pub subscriptions_max: usize,
    /// Frames queued per connection.
    pub send_buffer_max: usize,
    /// Shortest time between two pushes of one topic to one connection.
    pub push_interval: Duration,
    /// How long a connection may make no progress on its socket, with pushes waiting,
    /// before it is disconnected.
    pub lag_timeout: Duration,
}

/// Largest frame a client may send.
const CLIENT_FRAME_BYTES_MAX: usize = 4096;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/ws", get(upgrade))
}

/// Open the WebSocket hub.
#[utoipa::path(get, path = "/api/v1/ws", tag = "realtime",
    responses((status = 101, description = "switching to the WebSocket protocol")))]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    MaybeAuthenticated(principal): MaybeAuthenticated,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return super::error::ApiError::NotWebSocket(e.body_text()).into_response();
        }
    };
    // Small buffers: axum's 128 KiB default read buffer would cost 1.3 GB per 10k clients.
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(CLIENT_FRAME_BYTES_MAX)
        .max_frame_size(CLIENT_FRAME_BYTES_MAX)
        .on_upgrade(move |socket| session(state, socket, principal))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe { topic: String },
    Unsubscribe { topic: String },
    Auth { token: String },
    Scan(Box<ScanMessage>),
    Ping,
}

/// A scan sent over the hub; the answer is a `scan_result` frame echoing `ref` and `nonce`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanMessage {
    event_id: uuid::Uuid,
    ticket_code: String,
    #[serde(default)]
    gate: Option<String>,
    #[serde(default)]
    list_id: Option<uuid::Uuid>,
    #[serde(default)]
    direction: Option<engine::pool::scan::Direction>,
    #[serde(default)]
    nonce: Option<String>,
    /// For a scan made while disconnected: when.
    #[serde(default)]
    scanned_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The scanner's own reference, echoed.
    #[serde(default, rename = "ref")]
    reference: Option<String>,
}

/// The answer to a `scan` frame (serialized directly: one per scan).
#[derive(serde::Serialize)]
struct ScanResultFrame {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ref")]
    reference: Option<String>,
    nonce: Option<String>,
    data: super::checkin::OfflineResult,
}

/// Who the connection is authenticated as, shared with its private subscriptions: they end
/// when `valid_until` (Unix seconds, extended by a fresh `auth`) passes.
#[derive(Clone)]
struct Identity {
    user_id: UserId,
    /// Roles from the token (who may scan where).
    roles: Vec<engine::accounts::Role>,
    valid_until: Arc<AtomicU64>,
}

impl Identity {
    fn of(p: &Principal) -> Self {
        Self {
            user_id: p.user_id,
            roles: p.roles.clone(),
            valid_until: Arc::new(AtomicU64::new(p.valid_until)),
        }
    }

    /// As a principal, for the HTTP policies; `None` once the token has expired.
    fn principal(&self) -> Option<Principal> {
        let valid_until = self.valid_until.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        (now < valid_until).then(|| Principal {
            user_id: self.user_id,
            roles: self.roles.clone(),
            valid_until,
        })
    }
}

fn text(value: serde_json::Value) -> Message {
    Message::text(value.to_string())
}

fn error(code: &str, detail: &str) -> Message {
    text(json!({"type": "error", "code": code, "detail": detail}))
}

struct Connection {
    tx: mpsc::Sender<Message>,
    progress: Progress,
    kicked: Arc<Notify>,
    identity: Option<Identity>,
    /// Scans of this connection being decided (bounded: a scanner pipelines, it does not flood).
    scans_in_flight: Arc<tokio::sync::Semaphore>,
}

/// Scans one connection may have in flight.
const SCANS_IN_FLIGHT_MAX: usize = 256;

/// Counts live writer tasks in `ws_writer_tasks` (each owns its socket's write half): the
/// gauge shows that aborted writers of dropped clients really go away.
struct WriterAlive;

impl WriterAlive {
    fn new() -> Self {
        metrics::gauge!("ws_writer_tasks").increment(1.0);
        WriterAlive
    }
}

impl Drop for WriterAlive {
    fn drop(&mut self) {
        metrics::gauge!("ws_writer_tasks").decrement(1.0);
    }
}

/// When the connection's writer last put a frame on the socket.
#[derive(Clone)]
struct Progress {
    start: tokio::time::Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
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

async fn session(state: AppState, socket: WebSocket, principal: Option<Principal>) {
    metrics::gauge!("ws_connections").increment(1.0);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(state.ws.send_buffer_max);
    let progress = Progress::new();
    let written = progress.clone();
    let writer = tokio::spawn(async move {
        let _alive = WriterAlive::new();
        // Frames queued together go out in one write: feed them all, then flush once (a
        // scanner's answers arrive in bursts, one per group commit).
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
    });
    let mut conn = Connection {
        tx,
        progress,
        kicked: Arc::new(Notify::new()),
        identity: principal.as_ref().map(Identity::of),
        scans_in_flight: Arc::new(tokio::sync::Semaphore::new(SCANS_IN_FLIGHT_MAX)),
    };
    let mut subscriptions: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(t))) => on_message(&state, &mut conn, &mut subscriptions, t.as_str()).await,
                Some(Ok(Message::Binary(_))) => reply(&conn, error("unsupported_frame", "send JSON text frames")),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // ping/pong are answered by the protocol layer
            },
            _ = conn.kicked.notified() => {
                metrics::counter!("ws_clients_dropped_total", "reason" => "lagging").increment(1);
                break;
            }
            _ = shutdown.changed() => break,
        }
    }
    for (_, task) in subscriptions {
        task.abort();
    }
    drop(conn);
    // The writer ends when the queue's last sender is gone. A client that stopped reading
    // leaves it blocked on a full socket: after a grace period it is aborted, which drops the
    // socket and its buffers (otherwise a lagging client would hold them forever).
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    metrics::gauge!("ws_connections").decrement(1.0);
}

/// Control replies skip the lag accounting; a full queue drops them.
fn reply(conn: &Connection, message: Message) {
    let _ = conn.tx.try_send(message);
}

async fn on_message(
    state: &AppState,
    conn: &mut Connection,
    subscriptions: &mut HashMap<String, JoinHandle<()>>,
    raw: &str,
) {
    let message = match serde_json::from_str::<ClientMessage>(raw) {
        Ok(m) => m,
        Err(e) => return reply(conn, error("invalid_message", &e.to_string())),
    };
    match message {
        ClientMessage::Ping => reply(conn, text(json!({"type": "pong"}))),
        ClientMessage::Auth { token } => authenticate(state, conn, subscriptions, &token),
        ClientMessage::Scan(scan) => start_scan(state, conn, *scan),
        ClientMessage::Unsubscribe { topic } => {
            let topic = canonical_topic(&topic).unwrap_or(topic);
            if let Some(task) = subscriptions.remove(&topic) {
                task.abort();
            }
            reply(conn, text(json!({"type": "unsubscribed", "topic": topic})));
        }
        ClientMessage::Subscribe { topic } => {
            // One spelling per topic (ids in canonical form), so a topic cannot be subscribed
            // twice under two spellings.
            let topic = canonical_topic(&topic).unwrap_or(topic);
            // A subscription that ended (token expired, topic closed) is gone: subscribing
            // again starts a new one.
            subscriptions.retain(|_, task| !task.is_finished());
            if subscriptions.contains_key(&topic) {
                return reply(conn, text(json!({"type": "subscribed", "topic": topic})));
            }
            if subscriptions.len() >= state.ws.subscriptions_max {
                return reply(
                    conn,
                    error("too_many_subscriptions", "unsubscribe from a topic first"),
                );
            }
            if let Some(user) = topic.strip_prefix(REGISTRATIONS_PREFIX) {
                return subscribe_registrations(state, conn, subscriptions, topic.clone(), user);
            }
            if let Some(event) = topic.strip_prefix(CHECKIN_PREFIX) {
                return subscribe_checkin(state, conn, subscriptions, topic.clone(), event).await;
            }
            let Some(event_id) = topic
                .strip_prefix("event:")
                .and_then(|id| id.parse().ok())
                .map(EventId)
            else {
                return reply(
                    conn,
                    error(
                        "unknown_topic",
                        "topics: event:{id}, registrations:{user_id}",
                    ),
                );
            };
            // A draft is its managers' business (they read its availability over HTTP); to
            // everyone else it does not exist.
            if state
                .engine
                .event(event_id)
                .is_ok_and(|e| e.status == engine::model::EventStatus::Draft)
            {
                return reply(conn, error("event_not_found", "event not found"));
            }
            match state.engine.subscribe(event_id).await {
                Ok(feed) => {
                    reply(conn, text(json!({"type": "subscribed", "topic": topic})));
                    let task = tokio::spawn(push_availability(
                        state.clone(),
                        topic.clone(),
                        event_id,
                        feed,
                        conn.handles(),
                    ));
                    subscriptions.insert(topic, task);
                }
                Err(e) => {
                    let problem = super::error::ApiError::from(e).problem();
                    reply(conn, error(&problem.code, &problem.detail));
                }
            }
        }
    }
}

/// `event:{id}` and `registrations:{id}` with the id in canonical (hyphenated, lower-case)
/// form; `None` for anything else.
fn canonical_topic(topic: &str) -> Option<String> {
    let (kind, id) = topic.split_once(':')?;
    let id: uuid::Uuid = id.parse().ok()?;
    matches!(kind, "event" | "registrations" | "checkin").then(|| format!("{kind}:{id}"))
}

/// Prefix of the scanners' per-event topic.
const CHECKIN_PREFIX: &str = "checkin:";

/// The identity's principal if it may scan at `event` (its staff or managers).
fn scanner(state: &AppState, conn: &Connection, event: EventId) -> Result<Principal, Message> {
    let Some(identity) = &conn.identity else {
        return Err(error("unauthorized", "authenticate first"));
    };
    let Some(principal) = identity.principal() else {
        return Err(error(
            "token_expired",
            "authenticate again with a fresh token",
        ));
    };
    match super::policy::scanning_event(state, &principal, event) {
        Ok(_) => Ok(principal),
        Err(super::error::ApiError::Forbidden) => Err(error(
            "forbidden",
            "only the event's staff and managers scan",
        )),
        Err(e) => {
            let problem = e.problem();
            Err(error(&problem.code, &problem.detail))
        }
    }
}

/// Decides a scan in its own task (answers may come back out of order: match them by `ref`
/// or `nonce`); at most `SCANS_IN_FLIGHT_MAX` per connection.
fn start_scan(state: &AppState, conn: &Connection, scan: ScanMessage) {
    let event = EventId(scan.event_id);
    if let Err(frame) = scanner(state, conn, event) {
        return reply(conn, frame);
    }
    let Ok(permit) = conn.scans_in_flight.clone().try_acquire_owned() else {
        return reply(
            conn,
            error(
                "too_many_scans",
                "wait for answers before sending more scans",
            ),
        );
    };
    let (state, tx) = (state.clone(), conn.tx.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let (reference, nonce) = (scan.reference.clone(), scan.nonce.clone());
        let input = super::checkin::ScanInput {
            ticket_code: scan.ticket_code,
            gate: scan.gate,
            list_id: scan.list_id,
            direction: scan.direction,
            nonce: scan.nonce,
            scanned_at: scan.scanned_at,
        };
        let outcome = super::checkin::decide(&state, event, input).await;
        metrics::counter!("checkin_hub_scans_total").increment(1);
        let frame = ScanResultFrame {
            kind: "scan_result",
            reference,
            nonce,
            data: outcome,
        };
        let frame = match serde_json::to_string(&frame) {
            Ok(s) => Message::text(s),
            Err(e) => error("internal", &e.to_string()),
        };
        // An answer waits for room: a scanner must get every answer.
        let _ = tx.send(frame).await;
    });
}

/// Subscribes to `checkin:{event}`: every scan decided at the event (any gate), once durable.
async fn subscribe_checkin(
    state: &AppState,
    conn: &Connection,
    subscriptions: &mut HashMap<String, JoinHandle<()>>,
    topic: String,
    event: &str,
) {
    let Ok(event) = event.parse::<uuid::Uuid>().map(EventId) else {
        return reply(conn, error("unknown_topic", "topics: checkin:{event_id}"));
    };
    if let Err(frame) = scanner(state, conn, event) {
        return reply(conn, frame);
    }
    let Some(identity) = conn.identity.clone() else {
        return;
    };
    let feed = match state.engine.subscribe_scans(event).await {
        Ok(feed) => feed,
        Err(e) => {
            let problem = super::error::ApiError::from(e).problem();
            return reply(conn, error(&problem.code, &problem.detail));
        }
    };
    reply(conn, text(json!({"type": "subscribed", "topic": topic})));
    let task = tokio::spawn(push_scans(
        state.clone(),
        topic.clone(),
        event,
        feed,
        identity,
        conn.handles(),
    ));
    subscriptions.insert(topic, task);
}

/// Pushes the event's decided scans to one scanner.
async fn push_scans(
    state: AppState,
    topic: String,
    event: EventId,
    mut feed: tokio::sync::broadcast::Receiver<engine::pool::scan::ScanNotice>,
    identity: Identity,
    (tx, progress, kicked): (mpsc::Sender<Message>, Progress, Arc<Notify>),
) {
    use tokio::sync::broadcast::error::RecvError;
    // The scanner's right to listen: its token must be valid, and it must still be staff or a
    // manager of the event (checked again whenever the feed restarts).
    let allowed = |state: &AppState| {
        identity
            .principal()
            .is_some_and(|p| super::policy::scanning_event(state, &p, event).is_ok())
    };
    // Statistics follow the scans, at most once per `push_interval`.
    let mut stats_due = tokio::time::Instant::now();
    let mut stats_pending = false;
    loop {
        if stats_pending && tokio::time::Instant::now() >= stats_due {
            if let Ok(stats) = state.engine.checkin_stats(event) {
                let frame = json!({"type": "stats", "topic": topic,
                    "data": super::checkin::stats_dto(&stats)});
                let _ = tx.try_send(text(frame));
            }
            stats_pending = false;
            stats_due = tokio::time::Instant::now() + state.ws.push_interval;
        }
        let received = if stats_pending {
            match tokio::time::timeout_at(stats_due, feed.recv()).await {
                Ok(r) => r,
                Err(_) => continue, // time for the statistics
            }
        } else {
            feed.recv().await
        };
        stats_pending = true;
        if identity.principal().is_none() {
            let _ = tx.try_send(error(
                "token_expired",
                "authenticate again and subscribe again",
            ));
            return;
        }
        let frame = match received {
            Ok(n) => text(json!({
                "type": "scan",
                "topic": topic,
                "data": {
                    "ticket_id": n.ticket_id.0,
                    "list_id": n.list.map(|l| l.0),
                    "direction": n.direction,
                    "result": n.result,
                    "at": n.admission.at,
                    "gate": n.admission.gate,
                    "offline": n.offline,
                },
            })),
            Err(RecvError::Lagged(_)) => text(json!({"type": "resync", "topic": topic})),
            Err(RecvError::Closed) if !allowed(&state) => {
                let _ = tx.try_send(error("forbidden", "no longer a scanner of this event"));
                return;
            }
            Err(RecvError::Closed) => match state.engine.subscribe_scans(event).await {
                // The event restarted: follow its next incarnation.
                Ok(next) => {
                    feed = next;
                    continue;
                }
                Err(_) => {
                    let _ = tx.try_send(error("topic_closed", "the event is no longer available"));
                    return;
                }
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

/// Prefix of the private per-user topic.
const REGISTRATIONS_PREFIX: &str = "registrations:";

/// An `auth` message: the connection becomes the token's user. A bad token, or another user,
/// ends the private subscriptions of the previous identity.
fn authenticate(
    state: &AppState,
    conn: &mut Connection,
    subscriptions: &mut HashMap<String, JoinHandle<()>>,
    token: &str,
) {
    let verified = state.auth.verify_access(token.trim());
    let same_user =
        matches!((&verified, &conn.identity), (Ok(p), Some(i)) if p.user_id == i.user_id);
    if !same_user {
        subscriptions.retain(|topic, task| {
            let private =
                topic.starts_with(REGISTRATIONS_PREFIX) || topic.starts_with(CHECKIN_PREFIX);
            if private {
                task.abort();
            }
            !private
        });
        conn.identity = None;
    }
    match verified {
        Ok(principal) => {
            match &mut conn.identity {
                // A fresh token of the same user extends the running subscriptions.
                Some(identity) => {
                    identity
                        .valid_until
                        .fetch_max(principal.valid_until, Ordering::Relaxed);
                    // The fresh token's roles, for what this connection does from now on.
                    identity.roles.clone_from(&principal.roles);
                }
                None => conn.identity = Some(Identity::of(&principal)),
            }
            reply(
                conn,
                text(json!({"type": "authenticated", "user_id": principal.user_id.0})),
            );
        }
        Err(reason) => {
            tracing::debug!(reason, "WebSocket auth refused");
            reply(
                conn,
                error("unauthorized", "invalid or expired access token"),
            );
        }
    }
}

/// Subscribes to `registrations:{user}`: only the authenticated user itself.
fn subscribe_registrations(
    state: &AppState,
    conn: &Connection,
    subscriptions: &mut HashMap<String, JoinHandle<()>>,
    topic: String,
    user: &str,
) {
    let Some(identity) = conn.identity.clone() else {
        return reply(
            conn,
            error(
                "unauthorized",
                "authenticate first (Authorization header or an auth message)",
            ),
        );
    };
    let Ok(user) = user.parse::<uuid::Uuid>().map(UserId) else {
        return reply(
            conn,
            error("unknown_topic", "topics: registrations:{user_id}"),
        );
    };
    if user != identity.user_id {
        return reply(conn, error("forbidden", "only your own registrations"));
    }
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    if now >= identity.valid_until.load(Ordering::Relaxed) {
        return reply(
            conn,
            error("token_expired", "authenticate again with a fresh token"),
        );
    }
    // Listen first, then confirm: every change after `subscribed` is pushed.
    let feed = state.engine.registration_updates(user);
    reply(conn, text(json!({"type": "subscribed", "topic": topic})));
    let task = tokio::spawn(push_registrations(
        state.clone(),
        topic.clone(),
        feed,
        identity,
        conn.handles(),
    ));
    subscriptions.insert(topic, task);
}

/// Pushes each change of one user's registrations, until the connection's token expires.
async fn push_registrations(
    state: AppState,
    topic: String,
    mut feed: engine::feeds::RegistrationFeed,
    identity: Identity,
    (tx, progress, kicked): (mpsc::Sender<Message>, Progress, Arc<Notify>),
) {
    use tokio::sync::broadcast::error::RecvError;
    // Set when a change could not be queued: the client must re-read its registrations.
    let mut resync = false;
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
                Ok(id) if !resync => match state.engine.registration(id) {
                    Ok(view) => text(json!({
                        "type": "registration",
                        "topic": topic,
                        "data": super::registrations::registration_dto(&state, view),
                    })),
                    Err(e) => {
                        tracing::warn!(error = %e, registration = %id, "registration update not readable");
                        continue;
                    }
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
enum Pushed {
    /// Queued for the socket.
    Sent,
    /// The queue was full: dropped (the subscription resyncs the client later).
    Dropped,
    /// The connection is gone or lagging (it was kicked): the subscription ends.
    Stop,
}

/// Queues a push for a subscriber without waiting. A full queue drops it; a client whose
/// socket has made no progress for `lag_timeout` is kicked.
fn push(
    tx: &mpsc::Sender<Message>,
    progress: &Progress,
    kicked: &Notify,
    lag_timeout: Duration,
    frame: Message,
) -> Pushed {
    match tx.try_send(frame) {
        Ok(()) => {
            metrics::counter!("ws_pushes_total").increment(1);
            Pushed::Sent
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics::counter!("ws_pushes_dropped_total").increment(1);
            if progress.stalled_for() >= lag_timeout {
                kicked.notify_one();
                return Pushed::Stop;
            }
            Pushed::Dropped
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Stop,
    }
}

impl Connection {
    fn handles(&self) -> (mpsc::Sender<Message>, Progress, Arc<Notify>) {
        (self.tx.clone(), self.progress.clone(), self.kicked.clone())
    }
}

/// Pushes availability snapshots of one event to one connection, coalesced.
async fn push_availability(
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
