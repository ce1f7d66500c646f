//! The caller's in-app inbox: its notifications newest first with the unread count, and
//! marking them read (one, or all). Every change is also pushed live on the
//! `notifications:{user}` WebSocket topic.

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiQuery, PathId};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::ids::UserId;
use engine::notify::inbox::{Inbox, InboxChange, InboxEntry, Marking};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest page of notifications.
const PAGE_LIMIT_MAX: usize = 200;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/me/notifications", get(list))
        .route("/api/v1/users/me/notifications/read", post(read_all))
        .route("/api/v1/users/me/notifications/{id}/read", post(read_one))
}

/// One notification.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(notification_example))]
pub struct NotificationDto {
    /// The message's id (the same as its e-mail's).
    id: Uuid,
    /// `confirmed`, `waitlist_offer`, `verify_email`, ...
    kind: String,
    title: String,
    /// Plain text.
    body: String,
    /// The page of the ticketing front it points to.
    link: Option<String>,
    created_at: DateTime<Utc>,
    /// When it was marked read; absent: unread.
    read_at: Option<DateTime<Utc>>,
}

fn notification_example() -> serde_json::Value {
    serde_json::json!({
        "id": "01938f2a-6b1c-7d4e-9f00-1a2b3c4d5e6f", "kind": "confirmed",
        "title": "Confirmed: Flash sale", "body": "Hello Ada, your registration is confirmed.",
        "link": "https://tickets.example/registrations/01938f2a-6b1c-7d4e-9f00-aaaaaaaaaaaa",
        "created_at": "2030-05-01T12:00:00Z", "read_at": null
    })
}

impl From<InboxEntry> for NotificationDto {
    fn from(e: InboxEntry) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            title: e.title,
            body: e.body,
            link: e.link,
            created_at: e.created_at,
            read_at: e.read_at,
        }
    }
}

/// A page of notifications, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(page_example))]
pub struct NotificationPage {
    items: Vec<NotificationDto>,
    /// Unread notifications in the whole inbox.
    unread: usize,
    /// Cursor for the next (older) page: pass as `before`; absent on the last page.
    next_before: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    /// Only notifications older than this one (the previous page's `next_before`).
    before: Option<Uuid>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

fn page_example() -> serde_json::Value {
    serde_json::json!({"items": [notification_example()], "unread": 1,
        "next_before": "01938f2a-6b1c-7d4e-9f00-1a2b3c4d5e6f"})
}

/// How many were marked, and how many are still unread.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(marked_example))]
pub struct Marked {
    marked: usize,
    unread: usize,
}

fn marked_example() -> serde_json::Value {
    serde_json::json!({"marked": 3, "unread": 0})
}

fn store_error(e: engine::ports::StoreError) -> ApiError {
    ApiError::Internal(format!("inbox: {e}"))
}

/// The caller's notifications (in-app inbox), newest first, with the unread count.
#[utoipa::path(get, path = "/api/v1/users/me/notifications", tag = "notifications", params(NotificationParams),
    security(("bearer" = [])),
    responses((status = 200, body = NotificationPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(p): ApiQuery<NotificationParams>,
) -> ApiResult<Json<NotificationPage>> {
    let limit = crate::http::extract::page_limit(p.limit, 50, PAGE_LIMIT_MAX)?;
    let user = principal.user_id;
    let mut items = state
        .db
        .inbox_page(user, p.before, limit + 1)
        .map_err(store_error)?;
    let next_before = super::extract::next_page(&mut items, limit, |e| e.id);
    let unread = state.db.inbox_unread(user).map_err(store_error)?;
    Ok(Json(NotificationPage {
        items: items.into_iter().map(NotificationDto::from).collect(),
        unread,
        next_before,
    }))
}

/// Marks `which` read and tells the account's live listeners; how many were marked.
fn mark(state: &AppState, user: UserId, which: Marking) -> ApiResult<usize> {
    let marked = state
        .db
        .inbox_mark_read(user, which, Utc::now())
        .map_err(store_error)?;
    if marked > 0 {
        state.inbox_feeds.publish(user, InboxChange::Read);
    }
    Ok(marked)
}

/// Marks one notification read (again: nothing changes).
#[utoipa::path(post, path = "/api/v1/users/me/notifications/{id}/read", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = NotificationDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, description = "notification_not_found", body = Problem)))]
pub(crate) async fn read_one(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<Uuid>,
) -> ApiResult<Json<NotificationDto>> {
    let user = principal.user_id;
    mark(&state, user, Marking::One(id))?;
    let entry = state
        .db
        .inbox_entry(user, id)
        .map_err(store_error)?
        .ok_or(engine::error::DomainError::NotificationNotFound)?;
    Ok(Json(entry.into()))
}

/// Marks every notification read.
#[utoipa::path(post, path = "/api/v1/users/me/notifications/read", tag = "notifications",
    security(("bearer" = [])),
    responses((status = 200, body = Marked), (status = 401, body = Problem)))]
pub(crate) async fn read_all(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> ApiResult<Json<Marked>> {
    let user = principal.user_id;
    let marked = mark(&state, user, Marking::All)?;
    let unread = state.db.inbox_unread(user).map_err(store_error)?;
    Ok(Json(Marked { marked, unread }))
}
