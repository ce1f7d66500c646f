//! Organizer webhooks: endpoints registered for one event (by its managers) or for every
//! event of an organizer (by the organizer), each with a filter of event types and a signing
//! secret; their delivery log, and replaying a delivery. Changes are audited like every
//! organizer action. See `integrations::hooks` for what goes on the wire.

use super::AppState;
use super::audit::AuditEvent;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiQuery, PathId, PathIds};
use super::policy::{managed_event, require_any};
use crate::auth::Principal;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::accounts::Role;
use engine::error::{DomainError, FieldError};
use engine::ids::{EventId, UserId};
use engine::notify::{Channel, Delivery};
use engine::webhooks::{
    ENDPOINTS_PER_SCOPE_MAX, Endpoint, HookType, HookTypes, LogEntry, ROTATION_OVERLAP_SECS, Scope,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest page of an endpoint's log.
const PAGE_LIMIT_MAX: usize = 200;
/// Longest description.
const DESCRIPTION_CHARS_MAX: usize = 200;

/// How endpoints may be registered (`[webhooks]`).
#[derive(Clone, Copy, Debug)]
pub struct HookSettings {
    /// Off: every route answers 404.
    pub enabled: bool,
    /// Endpoints may point at private addresses (tests).
    pub allow_private: bool,
}

/// Endpoint writes one at a time, so two creations cannot both pass the per-scope bound.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhooks", post(create).get(list))
        .route(
            "/api/v1/webhooks/{id}",
            get(read).patch(update).delete(remove),
        )
        .route("/api/v1/webhooks/{id}/rotate-secret", post(rotate))
        .route("/api/v1/webhooks/{id}/deliveries", get(log))
        .route(
            "/api/v1/webhooks/{id}/deliveries/{message_id}/replay",
            post(replay),
        )
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(create_example))]
pub struct CreateEndpoint {
    /// Where deliveries are posted: http(s), resolving to public addresses only.
    #[schema(max_length = 2048)]
    url: String,
    /// The types it wants (`registration.held`, `registration.confirmed`,
    /// `registration.canceled`, `registration.expired`, `payment.succeeded`,
    /// `payment.refunded`, `checkin.admitted`, `event.published`, `event.changed`,
    /// `event.canceled`); absent or empty: all of them.
    #[schema(max_items = 10)]
    event_types: Option<Vec<String>>,
    #[schema(max_length = 200)]
    description: Option<String>,
    /// The event whose happenings it hears (its managers register it); absent: every event of
    /// the calling organizer.
    event_id: Option<Uuid>,
}

/// Changes to an endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(update_example))]
pub struct UpdateEndpoint {
    #[schema(max_length = 2048)]
    url: Option<String>,
    /// Replaces the filter (empty: all types).
    #[schema(max_items = 10)]
    event_types: Option<Vec<String>>,
    #[schema(max_length = 200)]
    description: Option<String>,
    /// Off: its deliveries are skipped until it is on again (replay them from the log).
    enabled: Option<bool>,
}

/// An endpoint (its secret only when created or rotated).
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(endpoint_example))]
pub struct EndpointDto {
    id: Uuid,
    url: String,
    /// The types it wants; empty: all.
    event_types: Vec<String>,
    description: String,
    enabled: bool,
    /// The event it belongs to; absent: the organizer's every event.
    event_id: Option<Uuid>,
    /// The organizer it belongs to (organizer-wide endpoints).
    organizer_id: Option<Uuid>,
    /// The signing secret (`whsec_...`): given once, when created or rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// Until then, the rotated-out secret also signs each delivery.
    previous_secret_valid_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl EndpointDto {
    fn of(e: &Endpoint, with_secret: bool) -> Self {
        let (event_id, organizer_id) = match e.scope {
            Scope::Event(event) => (Some(event.0), None),
            Scope::Organizer(user) => (None, Some(user.0)),
        };
        Self {
            id: e.id,
            url: e.url.clone(),
            event_types: e
                .types
                .list()
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            description: e.description.clone(),
            enabled: e.enabled,
            event_id,
            organizer_id,
            secret: with_secret.then(|| e.secret.clone()),
            previous_secret_valid_until: e.previous_until.filter(|u| *u > Utc::now()),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// Endpoints.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(list_example))]
pub struct EndpointList {
    items: Vec<EndpointDto>,
}

/// Which endpoints to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// An event's endpoints (its managers); absent: the caller's organizer-wide ones.
    event_id: Option<Uuid>,
}

/// One delivery in an endpoint's log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(delivery_example))]
pub struct HookDeliveryDto {
    /// The message id: the `webhook-id` header of every attempt.
    id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    /// When it happened (the payload's `timestamp`).
    timestamp: DateTime<Utc>,
    /// `queued`, `sent` (the receiver answered 2xx), `failed` (dead: attempts used up, or
    /// 410 Gone), `skipped` (the endpoint was disabled or deleted when its turn came), or
    /// `pruned` (finished and past the retention).
    status: String,
    attempts: u32,
    /// When the next attempt is due (queued).
    next_attempt_at: Option<DateTime<Utc>>,
    /// The last failure: the receiver's status and the start of its answer, or the network
    /// error.
    last_error: Option<String>,
    /// The receiver's status when it was delivered (`HTTP 200`).
    response: Option<String>,
    /// The body posted (the same on every attempt).
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

impl HookDeliveryDto {
    fn of(entry: &LogEntry, delivery: Option<&Delivery>) -> Self {
        let status = delivery.map_or("pruned", |d| d.status.as_str());
        let queued = delivery.filter(|d| d.status == engine::notify::DeliveryStatus::Queued);
        let payload = serde_json::from_str(&integrations::hooks::body(entry))
            .unwrap_or(serde_json::Value::Null);
        Self {
            id: entry.message_id,
            kind: entry.kind.as_str().to_owned(),
            timestamp: entry.at,
            status: status.to_owned(),
            attempts: delivery.map_or(0, |d| d.attempts),
            next_attempt_at: queued.map(|d| d.due_at),
            last_error: delivery.and_then(|d| d.last_error.clone()),
            response: delivery.and_then(|d| d.provider_id.clone()),
            payload,
        }
    }
}

/// A page of an endpoint's log, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(page_example))]
pub struct HookDeliveryPage {
    items: Vec<HookDeliveryDto>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    next_before: Option<Uuid>,
}

/// Paging of the log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Only deliveries older than this one (the previous page's `next_before`).
    before: Option<Uuid>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// A rotated secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(rotated_example))]
pub struct RotatedSecret {
    /// The new secret: from now on every delivery is signed with it.
    secret: String,
    /// Until then deliveries are also signed with the previous secret.
    previous_secret_valid_until: DateTime<Utc>,
}

fn disabled(state: &AppState) -> ApiResult<()> {
    if state.hooks.enabled {
        Ok(())
    } else {
        Err(ApiError::RouteNotFound)
    }
}

fn store_error(e: engine::ports::StoreError) -> ApiError {
    ApiError::Internal(format!("webhooks: {e}"))
}

/// The endpoint, if the caller manages it: its event's managers, or its organizer (and
/// admins); anyone else gets the same 404 as for a missing one.
fn managed_endpoint(state: &AppState, principal: &Principal, id: Uuid) -> ApiResult<Endpoint> {
    disabled(state)?;
    let endpoint = state
        .db
        .webhook_endpoint(id)
        .map_err(store_error)?
        .ok_or(DomainError::WebhookEndpointNotFound)?;
    let allowed = match endpoint.scope {
        Scope::Event(event) => managed_event(state, principal, event).is_ok(),
        Scope::Organizer(user) => principal.has(Role::Admin) || principal.user_id == user,
    };
    if allowed {
        Ok(endpoint)
    } else {
        Err(DomainError::WebhookEndpointNotFound.into())
    }
}

/// The scope a new endpoint (or a listing) is for: the event, if the caller manages it; the
/// caller's own organizer-wide scope otherwise (organizers and admins).
fn scope_of(state: &AppState, principal: &Principal, event: Option<Uuid>) -> ApiResult<Scope> {
    match event {
        Some(event) => {
            managed_event(state, principal, EventId(event))?;
            Ok(Scope::Event(EventId(event)))
        }
        None => {
            require_any(principal, &[Role::Organizer])?;
            Ok(Scope::Organizer(UserId(principal.user_id.0)))
        }
    }
}

fn types(names: &[String], errors: &mut Vec<FieldError>) -> HookTypes {
    if names.len() > HookType::ALL.len() {
        errors.push(FieldError::new("event_types", "at most 10 types"));
    }
    let mut parsed = Vec::new();
    for name in names {
        match HookType::parse(name) {
            Some(t) => parsed.push(t),
            None => errors.push(FieldError::new(
                "event_types",
                format!("unknown type `{name}`"),
            )),
        }
    }
    HookTypes::of(parsed)
}

async fn check_url(state: &AppState, url: &str, errors: &mut Vec<FieldError>) {
    if let Err(e) = integrations::hooks::check_destination(url, state.hooks.allow_private).await {
        errors.push(FieldError::new("url", e));
    }
}

fn check_description(description: Option<&String>, errors: &mut Vec<FieldError>) {
    if description.is_some_and(|d| d.chars().count() > DESCRIPTION_CHARS_MAX) {
        errors.push(FieldError::new(
            "description",
            "must be at most 200 characters",
        ));
    }
}

fn new_secret() -> ApiResult<String> {
    let mut key = [0u8; 24];
    getrandom::fill(&mut key).map_err(|e| ApiError::Internal(format!("random: {e}")))?;
    Ok(integrations::hooks::secret_from_key(&key))
}

/// Registers an endpoint for an event (its managers) or for every event of the calling
/// organizer; answers its signing secret, once. At most 20 per event or organizer.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = CreateEndpoint,
    responses((status = 201, body = EndpointDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "limit_reached", body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> ApiResult<axum::response::Response> {
    disabled(&state)?;
    let scope = scope_of(&state, &principal, body.event_id)?;
    let mut errors = Vec::new();
    let types = types(body.event_types.as_deref().unwrap_or_default(), &mut errors);
    check_description(body.description.as_ref(), &mut errors);
    check_url(&state, &body.url, &mut errors).await;
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    let now = Utc::now();
    let endpoint = Endpoint {
        id: Uuid::now_v7(),
        scope,
        url: body.url,
        types,
        description: body.description.unwrap_or_default(),
        enabled: true,
        secret: new_secret()?,
        previous_secret: None,
        previous_until: None,
        created_by: principal.user_id,
        created_at: now,
        updated_at: now,
    };
    let _write = WRITES.lock().await;
    let existing = state
        .db
        .webhook_endpoints_of(scope)
        .map_err(store_error)?
        .len();
    if existing >= ENDPOINTS_PER_SCOPE_MAX {
        return Err(
            DomainError::LimitReached("webhook endpoints (20 per event or organizer)").into(),
        );
    }
    state.db.webhook_put(&endpoint).map_err(store_error)?;
    let mut response =
        (StatusCode::CREATED, Json(EndpointDto::of(&endpoint, true))).into_response();
    if let Scope::Event(event) = scope {
        // The event's audit log shows who added an endpoint receiving its attendees' data.
        response.extensions_mut().insert(AuditEvent(event.0));
    }
    Ok(response)
}

/// An event's endpoints (`event_id`, its managers), or the caller's organizer-wide ones.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = EndpointList), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<EndpointList>> {
    disabled(&state)?;
    let scope = scope_of(&state, &principal, p.event_id)?;
    let items = state
        .db
        .webhook_endpoints_of(scope)
        .map_err(store_error)?
        .iter()
        .map(|e| EndpointDto::of(e, false))
        .collect();
    Ok(Json(EndpointList { items }))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EndpointDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<Uuid>,
) -> ApiResult<Json<EndpointDto>> {
    let endpoint = managed_endpoint(&state, &principal, id)?;
    Ok(Json(EndpointDto::of(&endpoint, false)))
}

/// Changes an endpoint's URL, filter, description, or turns it off and on.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<Uuid>,
    ApiJson(body): ApiJson<UpdateEndpoint>,
) -> ApiResult<Json<EndpointDto>> {
    managed_endpoint(&state, &principal, id)?;
    let mut errors = Vec::new();
    let types = body
        .event_types
        .as_deref()
        .map(|names| types(names, &mut errors));
    check_description(body.description.as_ref(), &mut errors);
    if let Some(url) = &body.url {
        check_url(&state, url, &mut errors).await;
    }
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    let _write = WRITES.lock().await;
    // Read again under the lock: a concurrent change or deletion is not undone.
    let mut endpoint = managed_endpoint(&state, &principal, id)?;
    if let Some(url) = body.url {
        endpoint.url = url;
    }
    if let Some(types) = types {
        endpoint.types = types;
    }
    if let Some(description) = body.description {
        endpoint.description = description;
    }
    if let Some(enabled) = body.enabled {
        endpoint.enabled = enabled;
    }
    endpoint.updated_at = Utc::now();
    state.db.webhook_put(&endpoint).map_err(store_error)?;
    Ok(Json(EndpointDto::of(&endpoint, false)))
}

/// Deletes an endpoint: nothing more is posted to it (queued deliveries are skipped).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<Uuid>,
) -> ApiResult<StatusCode> {
    managed_endpoint(&state, &principal, id)?;
    let _write = WRITES.lock().await;
    state.db.webhook_delete(id).map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives the endpoint a new secret; for 24 hours each delivery is signed with both, so the
/// receiver can switch without refusing any.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RotatedSecret), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<Uuid>,
) -> ApiResult<Json<RotatedSecret>> {
    managed_endpoint(&state, &principal, id)?;
    let _write = WRITES.lock().await;
    let mut endpoint = managed_endpoint(&state, &principal, id)?;
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(ROTATION_OVERLAP_SECS);
    endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, new_secret()?));
    endpoint.previous_until = Some(until);
    endpoint.updated_at = now;
    state.db.webhook_put(&endpoint).map_err(store_error)?;
    Ok(Json(RotatedSecret {
        secret: endpoint.secret,
        previous_secret_valid_until: until,
    }))
}

/// The endpoint's deliveries, newest first: what each said, its status, attempts and last
/// error.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), LogParams),
    responses((status = 200, body = HookDeliveryPage), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn log(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<Uuid>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> ApiResult<Json<HookDeliveryPage>> {
    managed_endpoint(&state, &principal, id)?;
    let limit = crate::http::extract::page_limit(p.limit, 50, PAGE_LIMIT_MAX)?;
    let mut items = state
        .db
        .webhook_log(id, p.before, limit + 1)
        .map_err(store_error)?;
    let next_before = super::extract::next_page(&mut items, limit, |(e, _)| e.message_id);
    Ok(Json(HookDeliveryPage {
        items: items
            .iter()
            .map(|(e, d)| HookDeliveryDto::of(e, d.as_ref()))
            .collect(),
        next_before,
    }))
}

/// Posts a logged delivery again (whatever became of it), with the same `webhook-id`, due
/// now and its attempts counted afresh; one already queued is left as it is.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{message_id}/replay", tag = "webhooks",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses((status = 200, body = HookDeliveryDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, description = "webhook_endpoint_disabled", body = Problem)))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIds(id, message): PathIds<Uuid, Uuid>,
) -> ApiResult<Json<HookDeliveryDto>> {
    if !managed_endpoint(&state, &principal, id)?.enabled {
        // It would only be skipped.
        return Err(DomainError::WebhookEndpointDisabled.into());
    }
    let not_found = || ApiError::from(DomainError::DeliveryNotFound);
    let delivery = state
        .db
        .webhook_replay(id, message, Utc::now())
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    state.engine.wake(Channel::Webhook);
    let entry = state
        .db
        .webhook_log_entry(id, message)
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    Ok(Json(HookDeliveryDto::of(&entry, Some(&delivery))))
}

fn create_example() -> serde_json::Value {
    serde_json::json!({"url": "https://crm.example/hooks/tickets",
        "event_types": ["registration.confirmed", "payment.refunded"],
        "description": "CRM sync", "event_id": "01938f2a-6b1c-7d4e-9f00-1a2b3c4d5e6f"})
}

fn update_example() -> serde_json::Value {
    serde_json::json!({"enabled": false})
}

fn endpoint_example() -> serde_json::Value {
    serde_json::json!({"id": "01938f2a-6b1c-7d4e-9f00-aaaaaaaaaaaa",
        "url": "https://crm.example/hooks/tickets",
        "event_types": ["registration.confirmed"], "description": "CRM sync", "enabled": true,
        "event_id": "01938f2a-6b1c-7d4e-9f00-1a2b3c4d5e6f", "organizer_id": null,
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "previous_secret_valid_until": null,
        "created_at": "2030-05-01T12:00:00Z", "updated_at": "2030-05-01T12:00:00Z"})
}

fn delivery_example() -> serde_json::Value {
    serde_json::json!({"id": "01938f2a-6b1c-7d4e-9f00-bbbbbbbbbbbb", "type": "registration.confirmed",
        "timestamp": "2030-05-01T12:00:00.000Z", "status": "sent", "attempts": 2,
        "next_attempt_at": null, "last_error": "webhook: HTTP 503: busy", "response": "HTTP 200",
        "payload": {"type": "registration.confirmed", "timestamp": "2030-05-01T12:00:00.000Z",
            "data": {"registration_id": "01938f2a-6b1c-7d4e-9f00-cccccccccccc"}}})
}

fn page_example() -> serde_json::Value {
    serde_json::json!({"items": [delivery_example()], "next_before": "01938f2a-6b1c-7d4e-9f00-bbbbbbbbbbbb"})
}

fn list_example() -> serde_json::Value {
    let mut endpoint = endpoint_example();
    endpoint.as_object_mut().map(|e| e.remove("secret"));
    serde_json::json!({"items": [endpoint]})
}

fn rotated_example() -> serde_json::Value {
    serde_json::json!({"secret": "whsec_hq0vUHBFJ2a1kqLuEGw3sZV0r2cTRm4N",
        "previous_secret_valid_until": "2030-05-02T12:00:00Z"})
}
