//! The hub's wire format: JSON text frames.
//!
//! Client → server: `{"type":"subscribe","topic":"event:{id}"}`, `{"type":"unsubscribe",
//! "topic":…}`, `{"type":"auth","token":"<access token>"}`, `{"type":"ping"}`. Server →
//! client: `subscribed`, `unsubscribed`, `authenticated`, `pong`, `error` (`code`,
//! `detail`), `availability` (`topic`, `data` = the availability document with its
//! `version`), `registration` (`topic`, `data` = the registration as over HTTP) and `resync`
//! (`topic`: changes were dropped; read `/api/v1/users/me/registrations` again).
//!
//! CheckInHub: a scanner (the event's staff or managers, on an authenticated connection) sends
//! `{"type":"scan","event_id":…,"ticket_code":…,"gate":…,"list_id":…,"direction":…,"nonce":…,
//! "ref":…}` (with `scanned_at` for a scan made while disconnected) and gets a `scan_result`
//! frame echoing `ref` and `nonce`, with `data` = the result (`admitted`, `duplicate` with the
//! standing admission, `revoked`, `invalid_signature`, ...). Scans are decided concurrently (at
//! most 256 in flight per connection), so answers may come back out of order. Subscribing to
//! `checkin:{event_id}` pushes every scan decided at the event, from any gate, once durable
//! (`scan` frames), so a scanner's local state stays current.

use crate::http::checkin::ScanInput;
use axum::extract::ws::Message;
use engine::pool::scan::ScanNotice;
use serde::Deserialize;
use serde_json::json;

/// A frame from the client; anything else is answered with an `invalid_message` error.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum ClientMessage {
    Subscribe { topic: String },
    Unsubscribe { topic: String },
    Auth { token: String },
    Scan(Box<ScanMessage>),
    Ping,
}

/// A scan sent over the hub (the HTTP check-in body with the event and the scanner's own
/// reference, and the time of a scan made while disconnected); the answer is a `scan_result`
/// frame echoing `ref` and `nonce`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScanMessage {
    pub(super) event_id: uuid::Uuid,
    pub(super) ticket_code: String,
    #[serde(default)]
    pub(super) gate: Option<String>,
    #[serde(default)]
    pub(super) list_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub(super) direction: Option<engine::pool::scan::Direction>,
    #[serde(default)]
    pub(super) nonce: Option<String>,
    /// For a scan made while disconnected: when.
    #[serde(default)]
    pub(super) scanned_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The scanner's own reference, echoed.
    #[serde(default, rename = "ref")]
    pub(super) reference: Option<String>,
}

impl From<ScanMessage> for ScanInput {
    fn from(scan: ScanMessage) -> Self {
        Self {
            ticket_code: scan.ticket_code,
            gate: scan.gate,
            list_id: scan.list_id,
            direction: scan.direction,
            nonce: scan.nonce,
            scanned_at: scan.scanned_at,
        }
    }
}

/// The answer to a `scan` frame (serialized directly: one per scan).
#[derive(serde::Serialize)]
pub(super) struct ScanResultFrame {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(rename = "ref")]
    pub(super) reference: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) data: crate::http::checkin::OfflineResult,
}

/// A JSON value as a text frame.
pub(super) fn text(value: serde_json::Value) -> Message {
    Message::text(value.to_string())
}

/// An `error` frame: a stable `code` and a human-readable `detail`.
pub(super) fn error(code: &str, detail: &str) -> Message {
    text(json!({"type": "error", "code": code, "detail": detail}))
}

/// A `scan` frame of the `checkin:{event_id}` topic: one scan decided at the event (any gate),
/// once durable.
pub(super) fn scan_frame(topic: &str, n: ScanNotice) -> Message {
    text(json!({
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
    }))
}

/// `event:{id}`, `registrations:{id}`, `notifications:{id}` and `checkin:{id}` with the id in
/// canonical (hyphenated, lower-case) form; `None` for anything else.
pub(super) fn canonical_topic(topic: &str) -> Option<String> {
    let (kind, id) = topic.split_once(':')?;
    let id: uuid::Uuid = id.parse().ok()?;
    matches!(
        kind,
        "event" | "registrations" | "notifications" | "checkin"
    )
    .then(|| format!("{kind}:{id}"))
}

/// Prefix of the scanners' per-event topic.
pub(super) const CHECKIN_PREFIX: &str = "checkin:";

/// Prefix of the private per-user topic of registration changes.
pub(super) const REGISTRATIONS_PREFIX: &str = "registrations:";

/// Prefix of the private per-user topic of the in-app inbox.
pub(super) const NOTIFICATIONS_PREFIX: &str = "notifications:";
