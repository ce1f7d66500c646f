//! The audit log: every change made by an organizer, staff member or admin (and every change
//! to an event, whoever tries it) is recorded with who, what, which target, when, the request
//! id and the outcome. Admins read it per event. Buyers' own holds, confirmations and
//! cancellations and their profile changes are not audited (they are the sale itself, and
//! are in the journal).

use super::AppState;
use super::auth::{Authenticated, Caller};
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiQuery, PathId};
use super::policy::require_any;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use data_encoding::HEXLOWER;
use engine::accounts::Role;
use engine::ids::{EventId, RegistrationId};
use serde::{Deserialize, Serialize};
use storage::audit::AuditEntry;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Routes a buyer uses on their own behalf: audited only when a privileged account uses them.
const SELF_SERVICE: [&str; 13] = [
    "/api/v1/events/{id}/registrations",
    "/api/v1/events/{id}/waiting-list",
    "/api/v1/waiting-list/{id}/leave",
    "/api/v1/registrations/{id}/confirm",
    "/api/v1/registrations/{id}/cancel",
    "/api/v1/users/me",
    "/api/v1/users/me/verification",
    "/api/v1/users/me/notifications/read",
    "/api/v1/users/me/notifications/{id}/read",
    "/api/v1/auth/signup",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
];

/// Largest page of audit entries.
const PAGE_LIMIT_MAX: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/{id}/audit", get(event_audit))
        .route("/api/v1/audit", get(global_audit))
}

/// Records the request after it is answered, if it is audited.
pub(super) async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // Anonymous requests act on nothing (they are refused with 401).
    let Some(principal) = Caller::of(request.extensions()).principal().cloned() else {
        return next.run(request).await;
    };
    let privileged = [Role::Admin, Role::Organizer, Role::Staff]
        .iter()
        .any(|r| principal.has(*r));
    if SELF_SERVICE.contains(&route.as_str()) && !privileged {
        return next.run(request).await;
    }
    let action = format!("{} {route}", request.method());
    let target = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Resolved before the change: a deletion leaves nothing to resolve after it. A handler
    // that creates something of an event names the event in its answer (`AuditEvent`).
    let before = event_of(&state, &target);
    let response = next.run(request).await;
    let event_id = response
        .extensions()
        .get::<AuditEvent>()
        .map(|e| e.0)
        .or(before);
    let entry = AuditEntry {
        at_ms: Utc::now().timestamp_millis(),
        actor: principal.user_id.0,
        actor_roles: principal.roles.iter().map(|r| r.as_str().into()).collect(),
        action,
        target,
        event_id,
        request_id,
        status: response.status().as_u16(),
    };
    if let Err(e) = state.db.append_audit(&entry) {
        tracing::error!(error = %e, ?entry, "audit entry not written");
        metrics::counter!("regengine_audit_write_failures_total").increment(1);
    }
    response
}

/// The event an audited request acted on, when its path does not say (set by the handler
/// on its answer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AuditEvent(pub Uuid);

/// The event a path acts on: its `/events/{id}` segment, or a registration's event.
fn event_of(state: &AppState, path: &str) -> Option<Uuid> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "events", id, ..] => Uuid::parse_str(id).ok(),
        ["api", "v1", "registrations", id, ..] => {
            let id = RegistrationId(Uuid::parse_str(id).ok()?);
            state.engine.registration(id).ok().map(|r| r.event_id.0)
        }
        ["api", "v1", "webhooks", id, ..] => {
            let endpoint = state
                .db
                .webhook_endpoint(Uuid::parse_str(id).ok()?)
                .ok()??;
            match endpoint.scope {
                engine::webhooks::Scope::Event(event) => Some(event.0),
                engine::webhooks::Scope::Organizer(_) => None,
            }
        }
        ["api", "v1", "waiting-list", id, ..] => {
            let id = engine::ids::WaitlistEntryId(Uuid::parse_str(id).ok()?);
            state.engine.waitlist_view(id).ok().map(|w| w.event_id.0)
        }
        _ => None,
    }
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Cursor from the previous page (`next_cursor`: 32 hex digits).
    #[param(pattern = "^[0-9a-f]{32}$")]
    after: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// One audited action.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::audit_entry))]
pub struct AuditEntryDto {
    at: DateTime<Utc>,
    actor: Uuid,
    actor_roles: Vec<String>,
    /// Method and route, e.g. `POST /api/v1/events/{id}/publish`.
    action: String,
    /// The path acted on.
    target: String,
    event_id: Option<Uuid>,
    request_id: String,
    /// HTTP status of the answer (the outcome).
    status: u16,
}

/// A page of the audit log, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::audit_page))]
pub struct AuditPage {
    items: Vec<AuditEntryDto>,
    /// Pass as `after` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

fn page(state: &AppState, event: Option<EventId>, p: AuditParams) -> ApiResult<Json<AuditPage>> {
    let limit = crate::http::extract::page_limit(p.limit, 100, PAGE_LIMIT_MAX)?;
    let after = match p.after {
        None => None,
        Some(c) => {
            let bytes = HEXLOWER
                .decode(c.as_bytes())
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or_else(|| ApiError::InvalidQuery("bad cursor".into()))?;
            Some(bytes)
        }
    };
    let (items, next) = state
        .db
        .audit(event, after, limit)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(AuditPage {
        items: items
            .into_iter()
            .map(|e| AuditEntryDto {
                at: DateTime::from_timestamp_millis(e.at_ms).unwrap_or_default(),
                actor: e.actor,
                actor_roles: e.actor_roles,
                action: e.action,
                target: e.target,
                event_id: e.event_id,
                request_id: e.request_id,
                status: e.status,
            })
            .collect(),
        next_cursor: next.map(|c| HEXLOWER.encode(&c)),
    }))
}

/// The audit log of one event (admins).
#[utoipa::path(get, path = "/api/v1/events/{id}/audit", tag = "audit", security(("bearer" = [])),
    params(("id" = Uuid, Path), AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub(crate) async fn event_audit(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    require_any(&principal, &[])?;
    page(&state, Some(id), p)
}

/// Audited actions outside any event, such as role grants (admins).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub(crate) async fn global_audit(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    require_any(&principal, &[])?;
    page(&state, None, p)
}
