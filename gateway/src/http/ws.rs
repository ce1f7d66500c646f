//! WebSocket hub at `/api/v1/ws`: one session per connection that reads the client's frames
//! (the wire format is in `protocol`) and runs its subscriptions (their push loops and the
//! writer task are in `push`).
//!
//! Topics: `event:{id}` is public (published events only). `registrations:{user_id}`,
//! `notifications:{user_id}` (the in-app inbox: each new notification with the unread count,
//! and the count again when some were marked read) and `checkin:{event_id}` are private: the
//! connection must be authenticated as that user (or the event's staff), by an `Authorization: Bearer`
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

mod protocol;
mod push;

use super::AppState;
use super::auth::MaybeAuthenticated;
use crate::auth::Principal;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::ids::{EventId, UserId};
use futures::StreamExt;
use protocol::{
    CHECKIN_PREFIX, ClientMessage, NOTIFICATIONS_PREFIX, REGISTRATIONS_PREFIX, ScanMessage,
    ScanResultFrame, canonical_topic, error, text,
};
use push::{
    Progress, push_availability, push_notifications, push_registrations, push_scans, write_queued,
};
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

async fn session(state: AppState, socket: WebSocket, principal: Option<Principal>) {
    metrics::gauge!("regengine_ws_connections").increment(1.0);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Message>(state.ws.send_buffer_max);
    let progress = Progress::new();
    let writer = tokio::spawn(write_queued(sink, rx, progress.clone()));
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
                metrics::counter!("regengine_ws_clients_dropped_total", "reason" => "lagging").increment(1);
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
    metrics::gauge!("regengine_ws_connections").decrement(1.0);
}

/// Control replies skip the lag accounting; a full queue drops them.
fn reply(conn: &Connection, message: Message) {
    let _ = conn.tx.try_send(message);
}

/// Answers one text frame from the client.
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
        ClientMessage::Subscribe { topic } => subscribe(state, conn, subscriptions, topic).await,
    }
}

/// A `subscribe` message: within the connection's limit, starts the topic's subscription
/// (subscribing again to a running one only confirms it).
async fn subscribe(
    state: &AppState,
    conn: &Connection,
    subscriptions: &mut HashMap<String, JoinHandle<()>>,
    topic: String,
) {
    // One spelling per topic (ids in canonical form), so a topic cannot be subscribed twice
    // under two spellings.
    let topic = canonical_topic(&topic).unwrap_or(topic);
    // A subscription that ended (token expired, topic closed) is gone: subscribing again
    // starts a new one.
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
        return subscribe_private(state, conn, subscriptions, topic.clone(), user);
    }
    if let Some(user) = topic.strip_prefix(NOTIFICATIONS_PREFIX) {
        return subscribe_private(state, conn, subscriptions, topic.clone(), user);
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
                "topics: event:{id}, registrations:{user_id}, notifications:{user_id}, checkin:{event_id}",
            ),
        );
    };
    subscribe_event(state, conn, subscriptions, topic, event_id).await;
}

/// Subscribes to `event:{id}`: the event's availability, public for published events.
async fn subscribe_event(
    state: &AppState,
    conn: &Connection,
    subscriptions: &mut HashMap<String, JoinHandle<()>>,
    topic: String,
    event_id: EventId,
) {
    // A draft is its managers' business (they read its availability over HTTP); to everyone
    // else it does not exist.
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
        let outcome = super::checkin::decide(&state, event, scan.into()).await;
        metrics::counter!("regengine_checkin_hub_scans_total").increment(1);
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
            let private = topic.starts_with(REGISTRATIONS_PREFIX)
                || topic.starts_with(NOTIFICATIONS_PREFIX)
                || topic.starts_with(CHECKIN_PREFIX);
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

/// Subscribes to `registrations:{user}` or `notifications:{user}`: only the authenticated
/// user itself.
fn subscribe_private(
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
            error(
                "unknown_topic",
                "topics: registrations:{user_id}, notifications:{user_id}",
            ),
        );
    };
    if user != identity.user_id {
        return reply(
            conn,
            error("forbidden", "only your own registrations and notifications"),
        );
    }
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    if now >= identity.valid_until.load(Ordering::Relaxed) {
        return reply(
            conn,
            error("token_expired", "authenticate again with a fresh token"),
        );
    }
    // Listen first, then confirm: every change after `subscribed` is pushed.
    let task = if topic.starts_with(NOTIFICATIONS_PREFIX) {
        let feed = state.inbox_feeds.subscribe(user);
        reply(conn, text(json!({"type": "subscribed", "topic": topic})));
        tokio::spawn(push_notifications(
            state.clone(),
            topic.clone(),
            feed,
            identity,
            conn.handles(),
        ))
    } else {
        let feed = state.engine.registration_updates(user);
        reply(conn, text(json!({"type": "subscribed", "topic": topic})));
        tokio::spawn(push_registrations(
            state.clone(),
            topic.clone(),
            feed,
            identity,
            conn.handles(),
        ))
    };
    subscriptions.insert(topic, task);
}

impl Connection {
    fn handles(&self) -> (mpsc::Sender<Message>, Progress, Arc<Notify>) {
        (self.tx.clone(), self.progress.clone(), self.kicked.clone())
    }
}
