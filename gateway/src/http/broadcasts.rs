//! Event managers write to every attendee of their event: a broadcast (subject and plain-text
//! body) goes to each confirmed registration's attendee by e-mail, in-app and SMS as their
//! preferences say (the `reminders` category: it carries a one-click unsubscribe), in the
//! event's branding and each reader's language. A preview renders it first without sending;
//! sending is bounded (`outbox.broadcasts_per_day` per event, and queued at
//! `outbox.broadcast_rate_per_sec` recipients a second) and audited like every manager action.

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiQuery, PathId, PathIds, next_page};
use super::policy::managed_event;
use super::previews::{PreviewDto, render};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::error::DomainError;
use engine::ids::{EventId, RegistrationId};
use engine::message::MessageKind;
use engine::notify::broadcasts::{self, Broadcast};
use integrations::mail::BroadcastFacts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest page of an event's broadcasts.
const PAGE_LIMIT_MAX: usize = 100;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/{id}/broadcasts", post(send).get(list))
        .route("/api/v1/events/{id}/broadcasts/preview", post(preview))
        .route("/api/v1/events/{id}/broadcasts/{broadcast_id}", get(read))
}

/// A message to every attendee.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(send_example))]
#[serde(deny_unknown_fields)]
pub struct SendBroadcast {
    /// One line, 1 to 200 characters.
    #[schema(max_length = 200)]
    pub subject: String,
    /// Plain text, 1 to 20,000 characters; blank lines separate paragraphs.
    #[schema(max_length = 20000)]
    pub body: String,
}

/// Which language to preview in.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewLocale {
    /// A language tag (`de`, `fr-CH`, ...); absent: the event's language.
    #[param(max_length = 35)]
    locale: Option<String>,
}

/// A broadcast and how far it got.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(broadcast_example))]
pub struct BroadcastDto {
    id: Uuid,
    event_id: Uuid,
    /// `message` (a manager's) or `event_changed` (the attendees told of a change of the
    /// event's time or place; subject and body empty, `changed` says what).
    kind: &'static str,
    /// What changed (`starts_at`, `ends_at`, `venue`), for `event_changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<Vec<String>>,
    subject: String,
    body: String,
    /// The manager who sent it.
    created_by: Uuid,
    created_at: DateTime<Utc>,
    /// `queueing` (its messages are being queued to the attendees) or `queued` (all are; each
    /// is then delivered on its channels like any message).
    status: &'static str,
    /// Messages queued so far (one per confirmed registration).
    recipients_queued: u64,
    /// When the last one was queued.
    finished_at: Option<DateTime<Utc>>,
}

impl From<&Broadcast> for BroadcastDto {
    fn from(b: &Broadcast) -> Self {
        Self {
            id: b.id,
            event_id: b.event_id.0,
            kind: if b.change.is_some() {
                "event_changed"
            } else {
                "message"
            },
            changed: b.change.as_ref().map(|c| c.fields.clone()),
            subject: b.subject.clone(),
            body: b.body.clone(),
            created_by: b.created_by.0,
            created_at: b.created_at,
            status: if b.finished_at.is_some() {
                "queued"
            } else {
                "queueing"
            },
            recipients_queued: b.queued,
            finished_at: b.finished_at,
        }
    }
}

/// A page of broadcasts, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(page_example))]
pub struct BroadcastPage {
    items: Vec<BroadcastDto>,
    /// Pass as `before` for the next page.
    next_cursor: Option<Uuid>,
}

/// The page wanted.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Broadcasts before this one.
    before: Option<Uuid>,
    /// 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

fn store_error(e: engine::ports::StoreError) -> ApiError {
    ApiError::Internal(format!("store: {e}"))
}

/// What the broadcast would look like to an attendee (Ada Lovelace), without sending it
/// (event managers).
#[utoipa::path(post, path = "/api/v1/events/{id}/broadcasts/preview", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path), PreviewLocale), request_body = SendBroadcast,
    responses((status = 200, body = PreviewDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn preview(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiQuery(p): ApiQuery<PreviewLocale>,
    ApiJson(body): ApiJson<SendBroadcast>,
) -> ApiResult<Json<PreviewDto>> {
    let event = managed_event(&state, &principal, id)?;
    broadcasts::validate(&body.subject, &body.body)?;
    let kind = MessageKind::Broadcast {
        event_id: id,
        registration_id: RegistrationId(Uuid::nil()),
        broadcast_id: Uuid::nil(),
    };
    let facts = BroadcastFacts {
        subject: body.subject,
        body: body.body,
    };
    render(&state.previews, &event, kind, p.locale, Some(facts)).map(Json)
}

/// Sends a message to every attendee of the event's confirmed registrations (event managers;
/// at most `outbox.broadcasts_per_day` per event in any 24 hours: 429 beyond). Answers at
/// once; the messages are queued in the background (see `recipients_queued`).
#[utoipa::path(post, path = "/api/v1/events/{id}/broadcasts", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = SendBroadcast,
    responses((status = 202, body = BroadcastDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem)))]
pub(crate) async fn send(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiJson(body): ApiJson<SendBroadcast>,
) -> ApiResult<axum::response::Response> {
    managed_event(&state, &principal, id)?;
    broadcasts::validate(&body.subject, &body.body)?;
    let broadcast = Broadcast::new(id, body.subject, body.body, principal.user_id, Utc::now());
    let per_day = state.broadcasts_per_day;
    let db = state.db.clone();
    let stored = broadcast.clone();
    let added = tokio::task::spawn_blocking(move || db.broadcast_add(&stored, per_day))
        .await
        .map_err(|e| ApiError::Internal(format!("broadcast: {e}")))?
        .map_err(store_error)?;
    if let Err(oldest) = added {
        // 429 until the oldest of the day's broadcasts is a day old.
        let wait = (oldest + chrono::Duration::days(1) - Utc::now())
            .to_std()
            .unwrap_or_default();
        return Err(ApiError::RateLimited(
            wait.max(std::time::Duration::from_secs(1)),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(BroadcastDto::from(&broadcast))).into_response())
}

/// The event's broadcasts, newest first (event managers).
#[utoipa::path(get, path = "/api/v1/events/{id}/broadcasts", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = BroadcastPage), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<BroadcastPage>> {
    managed_event(&state, &principal, id)?;
    let limit = p.limit.unwrap_or(20);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(DomainError::Validation(vec![engine::error::FieldError::new(
            "limit",
            "must be 1..=100",
        )])
        .into());
    }
    let mut items = state
        .db
        .broadcasts_of(id, p.before, limit + 1)
        .map_err(store_error)?;
    let next_cursor = next_page(&mut items, limit, |b| b.id);
    Ok(Json(BroadcastPage {
        items: items.iter().map(BroadcastDto::from).collect(),
        next_cursor,
    }))
}

/// One broadcast (event managers).
#[utoipa::path(get, path = "/api/v1/events/{id}/broadcasts/{broadcast_id}", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("broadcast_id" = Uuid, Path)),
    responses((status = 200, body = BroadcastDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIds(id, broadcast_id): PathIds<EventId, Uuid>,
) -> ApiResult<Json<BroadcastDto>> {
    managed_event(&state, &principal, id)?;
    let broadcast = engine::ports::Store::broadcast(&state.db, id, broadcast_id)
        .map_err(store_error)?
        .ok_or(DomainError::BroadcastNotFound)?;
    Ok(Json(BroadcastDto::from(&broadcast)))
}

fn page_example() -> serde_json::Value {
    serde_json::json!({"items": [broadcast_example()], "next_cursor": null})
}

fn send_example() -> serde_json::Value {
    serde_json::json!({"subject": "Doors open at 17:00",
        "body": "Dear attendees,\n\nthe doors open an hour early because of the weather.\nSee you soon!"})
}

fn broadcast_example() -> serde_json::Value {
    serde_json::json!({"id": "01938f2a-6b1c-7d4e-9f00-dddddddddddd",
        "event_id": "01938f2a-6b1c-7d4e-9f00-1a2b3c4d5e6f", "kind": "message", "subject": "Doors open at 17:00",
        "body": "Dear attendees,\n\nthe doors open an hour early.", "created_by": "01938f2a-6b1c-7d4e-9f00-eeeeeeeeeeee",
        "created_at": "2030-05-01T12:00:00Z", "status": "queued", "recipients_queued": 1840,
        "finished_at": "2030-05-01T12:00:04Z"})
}
