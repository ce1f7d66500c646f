//! Deliveries for admins: a message's status per channel, the dead letters (deliveries given
//! up on), and replaying or discarding one. Replays and discards are audited.

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiQuery, PathId, PathIdText};
use super::policy::require_any;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::error::{DomainError, FieldError};
use engine::notify::{Channel, Delivery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest page of dead deliveries.
const PAGE_LIMIT_MAX: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/deliveries/dead", get(list_dead))
        .route("/api/v1/deliveries/dead/replay", post(replay_all))
        .route("/api/v1/messages/{id}/deliveries", get(message_deliveries))
        .route(
            "/api/v1/messages/{id}/deliveries/{channel}/replay",
            post(replay),
        )
        .route(
            "/api/v1/messages/{id}/deliveries/{channel}",
            delete(discard),
        )
}

/// One message on one channel.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(delivery_example))]
pub struct DeliveryDto {
    message_id: Uuid,
    /// `email`, `in_app` or `sms`.
    channel: String,
    /// `queued`, `sent`, `delivered`, `bounced`, `failed` (dead) or `skipped` (no longer
    /// applied when its turn came).
    status: String,
    /// The message's kind (`confirmed`, `verify_email`, ...).
    kind: String,
    attempts: u32,
    /// When the next attempt is due (queued deliveries).
    due_at: DateTime<Utc>,
    last_error: Option<String>,
    /// The provider's id for it, once sent.
    provider_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryDto {
    fn from(d: Delivery) -> Self {
        Self {
            message_id: d.message_id,
            channel: d.channel.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            kind: d.kind,
            attempts: d.attempts,
            due_at: d.due_at,
            last_error: d.last_error,
            provider_id: d.provider_id,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// Deliveries, with the cursor of the next page.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(delivery_page_example))]
pub struct DeliveryPage {
    items: Vec<DeliveryDto>,
    /// Pass as `after` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// Paging of the dead letters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadParams {
    /// Cursor from the previous page (`next_cursor`: `<message id>:<channel>`).
    #[param(pattern = "^[0-9a-fA-F-]{36}:[a-z_]{1,16}$")]
    after: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

fn channel(name: &str) -> ApiResult<Channel> {
    Channel::ALL
        .into_iter()
        .find(|c| c.as_str() == name)
        .ok_or_else(|| ApiError::InvalidPath(format!("`{name}` is not a channel")))
}

/// Dead deliveries: every attempt failed, or the provider refused the message for good
/// (admins). Oldest message first.
#[utoipa::path(get, path = "/api/v1/deliveries/dead", tag = "notifications", security(("bearer" = [])),
    params(DeadParams),
    responses((status = 200, body = DeliveryPage), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub(crate) async fn list_dead(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(p): ApiQuery<DeadParams>,
) -> ApiResult<Json<DeliveryPage>> {
    require_any(&principal, &[])?;
    let limit = crate::http::extract::page_limit(p.limit, 100, PAGE_LIMIT_MAX)?;
    let after = match p.after.as_deref() {
        None => None,
        Some(cursor) => {
            let bad = || ApiError::InvalidQuery("bad cursor".into());
            let (id, name) = cursor.split_once(':').ok_or_else(bad)?;
            let id = Uuid::parse_str(id).map_err(|_| bad())?;
            let channel = channel(name).map_err(|_| bad())?;
            Some((id, channel))
        }
    };
    let mut items = state.engine.dead_deliveries(after, limit + 1)?;
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        items
            .last()
            .map(|d| format!("{}:{}", d.message_id, d.channel.as_str()))
    });
    Ok(Json(DeliveryPage {
        items: items.into_iter().map(DeliveryDto::from).collect(),
        next_cursor: next_cursor.flatten(),
    }))
}

/// A message's deliveries, one per channel it goes to (admins): its status, attempts, last
/// error and the provider's id.
#[utoipa::path(get, path = "/api/v1/messages/{id}/deliveries", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DeliveryPage), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn message_deliveries(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<Uuid>,
) -> ApiResult<Json<DeliveryPage>> {
    require_any(&principal, &[])?;
    let items = state.engine.deliveries_of(id)?;
    if items.is_empty() {
        return Err(engine::error::DomainError::DeliveryNotFound.into());
    }
    Ok(Json(DeliveryPage {
        items: items.into_iter().map(DeliveryDto::from).collect(),
        next_cursor: None,
    }))
}

/// Which dead deliveries to replay at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(replay_all_example))]
pub struct ReplayAll {
    /// Only messages of this kind (`confirmed`, `verify_email`, ...); absent: every kind.
    #[schema(max_length = 32)]
    kind: Option<String>,
    /// At most this many, 1..=10000 (default 1000).
    #[schema(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// How many were queued again.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(replayed_example))]
pub struct Replayed {
    replayed: usize,
}

/// Replays dead deliveries in bulk, oldest message first (admins; audited): after an outage
/// or a configuration error is fixed, the deliveries given up on meanwhile go out again.
#[utoipa::path(post, path = "/api/v1/deliveries/dead/replay", tag = "notifications", security(("bearer" = [])),
    request_body = ReplayAll,
    responses((status = 200, body = Replayed), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn replay_all(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<ReplayAll>,
) -> ApiResult<Json<Replayed>> {
    require_any(&principal, &[])?;
    let limit = body.limit.unwrap_or(1_000);
    let mut errors = Vec::new();
    if !(1..=10_000).contains(&limit) {
        errors.push(FieldError::new("limit", "must be 1..=10000"));
    }
    if body
        .kind
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 32)
    {
        errors.push(FieldError::new("kind", "must be 1-32 characters"));
    }
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    let engine = state.engine.clone();
    let kind = body.kind;
    // Store writes, one per delivery: off the async workers.
    let replayed = tokio::task::spawn_blocking(move || engine.replay_dead(kind.as_deref(), limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(Replayed { replayed }))
}

/// Replays a dead delivery: queued again, due now, its attempts counted afresh, with the same
/// message id (admins; audited).
#[utoipa::path(post, path = "/api/v1/messages/{id}/deliveries/{channel}/replay", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("channel" = String, Path)),
    responses((status = 200, body = DeliveryDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "delivery_not_dead", body = Problem)))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIdText(id, name): PathIdText<Uuid>,
) -> ApiResult<Json<DeliveryDto>> {
    require_any(&principal, &[])?;
    let delivery = state.engine.replay_delivery(id, channel(&name)?)?;
    Ok(Json(delivery.into()))
}

/// Discards a dead delivery for good (admins; audited).
#[utoipa::path(delete, path = "/api/v1/messages/{id}/deliveries/{channel}", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("channel" = String, Path)),
    responses((status = 204, description = "discarded"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "delivery_not_dead", body = Problem)))]
pub(crate) async fn discard(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIdText(id, name): PathIdText<Uuid>,
) -> ApiResult<StatusCode> {
    require_any(&principal, &[])?;
    state.engine.discard_delivery(id, channel(&name)?)?;
    Ok(StatusCode::NO_CONTENT)
}

fn delivery_example() -> serde_json::Value {
    serde_json::json!({
        "message_id": "01938f2a-6b1c-7d4e-9f00-1a2b3c4d5e6f",
        "channel": "email",
        "status": "failed",
        "kind": "confirmed",
        "attempts": 12,
        "due_at": "2026-12-02T16:20:00Z",
        "last_error": "SMTP: permanent error (550): mailbox unavailable",
        "provider_id": null,
        "created_at": "2026-12-02T16:00:00Z",
        "updated_at": "2026-12-02T16:20:00Z",
    })
}

fn delivery_page_example() -> serde_json::Value {
    serde_json::json!({"items": [delivery_example()], "next_cursor": null})
}

fn replay_all_example() -> serde_json::Value {
    serde_json::json!({"kind": "confirmed", "limit": 1000})
}

fn replayed_example() -> serde_json::Value {
    serde_json::json!({"replayed": 1000})
}
