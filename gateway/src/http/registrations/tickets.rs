//! Tickets, a registration's sub-resource: reading one with its signed code, its QR image,
//! checking a scanned code without admitting anyone, and what offline scanners need (the
//! event's public signing keys, key rotation, the revocation list).

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::auth::Authenticated;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{ApiJson, ApiQuery, PathId};
use crate::http::policy::{managed_event, scanning_event, visible_registration};
use crate::ticket_code::{CODE_LEN_MAX, CodeError, TicketClaims, ticket_number};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::error::{DomainError, FieldError};
use engine::ids::{EventId, TicketId};
use engine::model::RegistrationStatus;
use engine::ports::TicketView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tickets/{id}", get(get_ticket))
        .route("/api/v1/tickets/{id}/qr.svg", get(ticket_qr_svg))
        .route("/api/v1/tickets/{id}/qr.png", get(ticket_qr_png))
        .route("/api/v1/events/{id}/tickets/verify", post(verify_ticket))
        .route("/api/v1/events/{id}/ticket-keys", get(ticket_keys))
        .route("/api/v1/events/{id}/revocations", get(revocations))
        .route(
            "/api/v1/events/{id}/ticket-keys/rotate",
            post(rotate_ticket_key),
        )
}

/// The signing key and pool ordinal a registration's or ticket's codes and numbers need.
pub(in crate::http) struct TicketContext {
    pub(in crate::http) key: u8,
    pub(in crate::http) pool_ordinal: usize,
}

/// The context of an event's pool's tickets (a fallback key if the event cannot be read).
pub(in crate::http) fn ticket_context(
    state: &AppState,
    event: EventId,
    pool: engine::ids::PoolId,
) -> TicketContext {
    match state.engine.event(event) {
        Ok(record) => TicketContext {
            key: record.ticket_key,
            pool_ordinal: crate::ticket_code::pool_ordinal(&record, pool),
        },
        Err(_) => TicketContext {
            key: 1,
            pool_ordinal: 0,
        },
    }
}

/// Verifies a scanned code: signed by its event's current key. A code this server did not
/// sign (malformed, tampered, forged) or signed with a retired key is invalid input (422 on
/// `ticket_code`), not a missing ticket.
pub(in crate::http) fn verify_code(state: &AppState, code: &str) -> ApiResult<TicketClaims> {
    let invalid = |message: &str| -> ApiError {
        DomainError::Validation(vec![FieldError::new("ticket_code", message)]).into()
    };
    if code.len() > CODE_LEN_MAX {
        return Err(invalid("too long"));
    }
    state
        .codes
        .verify(code, |event| {
            state.engine.ticket_key(event).ok().flatten()
        })
        .map_err(|e| match e {
            CodeError::InvalidSignature | CodeError::UnknownEvent => {
                invalid("not a valid ticket code (malformed or bad signature)")
            }
            CodeError::RetiredKey => invalid(
                "signed with a retired key: the event's ticket key was rotated; show the ticket again",
            ),
        })
}

/// A ticket with its printed number, its signed code and its first admission.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::ticket))]
pub struct TicketDto {
    id: Uuid,
    registration_id: Uuid,
    event_id: Uuid,
    ticket_type_id: Uuid,
    /// The printed ticket number, `PPPP-O-NNNNNN-C`.
    number: String,
    /// The signed code its QR carries.
    code: String,
    issued_at: DateTime<Utc>,
    checked_in_at: Option<DateTime<Utc>>,
    gate: Option<String>,
}

fn ticket_dto(state: &AppState, t: TicketView) -> TicketDto {
    let context = ticket_context(state, t.event_id, t.pool_id);
    TicketDto {
        id: t.id.0,
        registration_id: t.registration_id.0,
        event_id: t.event_id.0,
        ticket_type_id: t.ticket_type_id.0,
        number: ticket_number(t.event_id, context.pool_ordinal, t.number),
        code: state
            .codes
            .encode(context.key, t.event_id, t.id, t.ticket_type_id, t.issued_at),
        issued_at: t.issued_at,
        checked_in_at: t.admission.as_ref().map(|a| a.at),
        gate: t.admission.and_then(|a| a.gate),
    }
}

/// Read a ticket.
#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_ticket(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<TicketId>,
) -> ApiResult<Json<TicketDto>> {
    // Visible to whoever sees its registration; otherwise it does not exist.
    let ticket = visible_ticket(&state, &principal, id)?;
    Ok(Json(ticket_dto(&state, ticket)))
}

/// A ticket the caller may see: its holder's or one of an event the caller manages; 404
/// otherwise (ids cannot be probed).
fn visible_ticket(state: &AppState, principal: &Principal, id: TicketId) -> ApiResult<TicketView> {
    let ticket = state.engine.ticket(id)?;
    visible_registration(state, principal, ticket.registration_id).map_err(|e| match e {
        ApiError::Domain(DomainError::RegistrationNotFound) => DomainError::TicketNotFound.into(),
        other => other,
    })?;
    Ok(ticket)
}

/// The signed code of a ticket the caller may see.
fn visible_code(state: &AppState, principal: &Principal, id: TicketId) -> ApiResult<String> {
    Ok(ticket_dto(state, visible_ticket(state, principal, id)?).code)
}

/// A ticket's QR code as SVG (its signed code in alphanumeric mode).
#[utoipa::path(get, path = "/api/v1/tickets/{id}/qr.svg", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 404, body = Problem)))]
pub(crate) async fn ticket_qr_svg(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<TicketId>,
) -> ApiResult<impl IntoResponse> {
    let code = visible_code(&state, &principal, id)?;
    let svg = integrations::qr::svg(&code).map_err(ApiError::Internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        svg,
    ))
}

/// A ticket's QR code as PNG.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/qr.png", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 404, body = Problem)))]
pub(crate) async fn ticket_qr_png(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<TicketId>,
) -> ApiResult<impl IntoResponse> {
    let code = visible_code(&state, &principal, id)?;
    let png = integrations::qr::png(&code).map_err(ApiError::Internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        png,
    ))
}

/// Body of `POST /api/v1/events/{id}/tickets/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::verify_body))]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The scanned code.
    pub ticket_code: String,
}

/// What a scanner learns about a code, without admitting anyone.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::ticket_check))]
pub struct TicketCheckDto {
    /// `valid`, `invalid_signature`, `retired_key` (signed before the event's key was rotated),
    /// `wrong_event`, `unknown_ticket` or `revoked` (its registration was canceled).
    result: String,
    /// The event the code is for, when its signature verified.
    event_id: Option<Uuid>,
    ticket_id: Option<Uuid>,
    ticket_type_id: Option<Uuid>,
    /// The printed ticket number.
    number: Option<String>,
    /// When and where it was first admitted, if it was.
    checked_in_at: Option<DateTime<Utc>>,
    gate: Option<String>,
}

/// Check a code as a scanner would, changing nothing: signature, event, ticket, revocation and
/// whether it was admitted. Staff and managers of the event.
#[utoipa::path(post, path = "/api/v1/events/{id}/tickets/verify", tag = "check-in", params(("id" = Uuid, Path)),
    request_body = VerifyBody,
    responses((status = 200, body = TicketCheckDto), (status = 404, body = Problem)))]
pub(crate) async fn verify_ticket(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> ApiResult<Json<TicketCheckDto>> {
    scanning_event(&state, &principal, event_id)?;
    let mut out = TicketCheckDto {
        result: String::new(),
        event_id: None,
        ticket_id: None,
        ticket_type_id: None,
        number: None,
        checked_in_at: None,
        gate: None,
    };
    let verified = state.codes.verify(&body.ticket_code, |event| {
        state.engine.ticket_key(event).ok().flatten()
    });
    let claims = match verified {
        Ok(claims) => claims,
        Err(CodeError::RetiredKey) => {
            out.result = "retired_key".into();
            return Ok(Json(out));
        }
        Err(_) => {
            out.result = "invalid_signature".into();
            return Ok(Json(out));
        }
    };
    out.event_id = Some(claims.event_id.0);
    out.ticket_id = Some(claims.ticket_id.0);
    out.ticket_type_id = Some(claims.ticket_type_id.0);
    if claims.event_id != event_id {
        out.result = "wrong_event".into();
        return Ok(Json(out));
    }
    let ticket = match state.engine.ticket(claims.ticket_id) {
        Ok(t) => t,
        Err(engine::error::EngineError::Domain(DomainError::TicketNotFound)) => {
            out.result = "unknown_ticket".into();
            return Ok(Json(out));
        }
        Err(e) => return Err(e.into()),
    };
    let registration = state.engine.registration(ticket.registration_id)?;
    let context = ticket_context(&state, ticket.event_id, ticket.pool_id);
    out.number = Some(ticket_number(
        ticket.event_id,
        context.pool_ordinal,
        ticket.number,
    ));
    out.checked_in_at = ticket.admission.as_ref().map(|a| a.at);
    out.gate = ticket.admission.and_then(|a| a.gate);
    out.result = if registration.status == RegistrationStatus::Canceled {
        "revoked"
    } else {
        "valid"
    }
    .into();
    Ok(Json(out))
}

/// One of an event's ticket-signing keys.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::ticket_key))]
pub struct TicketKeyDto {
    /// Its id (the second byte of a code's payload).
    key: u8,
    /// The Ed25519 public key, base64url without padding (32 bytes).
    public_key: String,
    /// `active` (codes signed with it are accepted) or `retired`.
    status: String,
}

/// An event's ticket-signing keys, for scanners that verify codes offline.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::ticket_keys))]
pub struct TicketKeysDto {
    /// Always `Ed25519`.
    algorithm: String,
    /// The id of the active key.
    current: u8,
    keys: Vec<TicketKeyDto>,
}

fn ticket_keys_dto(state: &AppState, event: &engine::model::EventRecord) -> TicketKeysDto {
    TicketKeysDto {
        algorithm: "Ed25519".into(),
        current: event.ticket_key,
        keys: (1..=event.ticket_key)
            .map(|key| TicketKeyDto {
                key,
                public_key: data_encoding::BASE64URL_NOPAD
                    .encode(&state.codes.public_key(event.id, key)),
                status: if key == event.ticket_key {
                    "active"
                } else {
                    "retired"
                }
                .into(),
            })
            .collect(),
    }
}

/// The event's ticket-signing public keys (staff and managers: what an offline scanner needs to
/// verify codes; the code format is in the README).
#[utoipa::path(get, path = "/api/v1/events/{id}/ticket-keys", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketKeysDto), (status = 404, body = Problem)))]
pub(crate) async fn ticket_keys(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<Json<TicketKeysDto>> {
    let event = scanning_event(&state, &principal, event_id)?;
    Ok(Json(ticket_keys_dto(&state, &event)))
}

/// Rotate the event's ticket-signing key (managers): every ticket gets a new code at once
/// (codes are computed when shown), and codes signed with older keys are refused as
/// `retired_key` from now on.
#[utoipa::path(post, path = "/api/v1/events/{id}/ticket-keys/rotate", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketKeysDto), (status = 404, body = Problem),
        (status = 409, description = "limit_reached: 255 keys", body = Problem)))]
pub(crate) async fn rotate_ticket_key(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<Json<TicketKeysDto>> {
    managed_event(&state, &principal, event_id)?;
    let event = state.engine.rotate_ticket_key(event_id).await?;
    tracing::info!(event = %event_id, key = event.ticket_key, "ticket key rotated");
    Ok(Json(ticket_keys_dto(&state, &event)))
}

/// Paging of the revocation list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevocationParams {
    /// Only revocations after this version (what the scanner has; default 0: all), an unsigned
    /// 64-bit integer.
    // `uint64`, as parsed: utoipa's `int64` for a u64 promises at most 2^63 - 1, and
    // schemathesis holds the server to it.
    #[param(minimum = 0, format = "uint64")]
    since: Option<u64>,
    /// Page size, 1..=1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A revoked ticket.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::revocation))]
pub struct RevocationDto {
    /// Its place in the event's revocation list.
    version: u64,
    ticket_id: Uuid,
    registration_id: Uuid,
    revoked_at: DateTime<Utc>,
}

/// The event's revocation list since a version.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::revocation_page))]
pub struct RevocationPage {
    /// The latest version of the list: a scanner that has it is up to date.
    version: u64,
    items: Vec<RevocationDto>,
    /// Pass as `since` for the next page; `null` on the last one.
    next_since: Option<u64>,
}

/// Revoked tickets of an event, incrementally: a scanner asks for those after the version it
/// has (staff and managers). Canceling a confirmed registration revokes its tickets.
#[utoipa::path(get, path = "/api/v1/events/{id}/revocations", tag = "check-in",
    params(("id" = Uuid, Path), RevocationParams),
    responses((status = 200, body = RevocationPage), (status = 404, body = Problem)))]
pub(crate) async fn revocations(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiQuery(p): ApiQuery<RevocationParams>,
) -> ApiResult<Json<RevocationPage>> {
    scanning_event(&state, &principal, event_id)?;
    let limit = p.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidQuery(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let (items, version) = state
        .engine
        .revocations(event_id, p.since.unwrap_or(0), limit)?;
    let next_since = (items.len() == limit)
        .then(|| items.last().map(|r| r.version))
        .flatten();
    Ok(Json(RevocationPage {
        version,
        items: items
            .into_iter()
            .map(|r| RevocationDto {
                version: r.version,
                ticket_id: r.ticket_id.0,
                registration_id: r.registration_id.0,
                revoked_at: r.revoked_at,
            })
            .collect(),
        next_since,
    }))
}
