//! The waiting list: a signed-in buyer joins a sold-out ticket type's list; when seats come
//! back the pool holds them for the next place in line (pushed on `registrations:{user}` and
//! sent through the outbox), and the buyer claims them by confirming that registration.

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiResult, Problem};
use super::extract::{ApiJson, PathId};
use super::policy::manages;
use super::registrations::AttendeeDto;
use crate::auth::Principal;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::JoinWaitlist;
use engine::accounts::Role;
use engine::error::DomainError;
use engine::ids::{EventId, TicketTypeId, WaitlistEntryId};
use engine::ports::WaitlistView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/{id}/waiting-list", post(join))
        .route("/api/v1/waiting-list/{id}", get(get_place))
        .route("/api/v1/waiting-list/{id}/leave", post(leave))
}

/// Body of `POST /api/v1/events/{id}/waiting-list`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::join_waitlist))]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// The sold-out ticket type.
    pub ticket_type_id: Uuid,
    /// Seats wanted (within the ticket type's order limits).
    pub quantity: i64,
    /// Who the seats are for; offers are sent to this address.
    pub attendee: AttendeeDto,
}

/// A place on a waiting list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::waitlist_place))]
pub struct WaitlistDto {
    id: Uuid,
    event_id: Uuid,
    ticket_type_id: Uuid,
    quantity: u16,
    /// waiting, offered, claimed (the offer was confirmed), passed (it ran out), declined
    /// (it was canceled) or left.
    status: String,
    /// Place in line while waiting (1 = next).
    position: Option<usize>,
    /// The held registration offered to it: confirm it to claim the seats.
    registration_id: Option<Uuid>,
    /// When the offer runs out.
    offer_expires_at: Option<DateTime<Utc>>,
    joined_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn dto(v: &WaitlistView, position: Option<usize>) -> WaitlistDto {
    WaitlistDto {
        id: v.id.0,
        event_id: v.event_id.0,
        ticket_type_id: v.ticket_type_id.0,
        quantity: v.quantity,
        status: v.status.as_str().to_owned(),
        position,
        registration_id: v.registration_id.map(|r| r.0),
        offer_expires_at: v.offer_expires_at,
        joined_at: v.joined_at,
        updated_at: v.updated_at,
    }
}

/// The place, if the caller may see it (its account, or the event's managers); 404 otherwise.
fn visible(
    state: &AppState,
    principal: &Principal,
    id: WaitlistEntryId,
) -> ApiResult<WaitlistView> {
    let view = state.engine.waitlist_view(id)?;
    let sees = principal.has(Role::Admin)
        || view.user_id == principal.user_id
        || state
            .engine
            .event(view.event_id)
            .is_ok_and(|e| manages(principal, &e));
    if sees {
        Ok(view)
    } else {
        Err(DomainError::WaitlistEntryNotFound.into())
    }
}

/// Join a sold-out ticket type's waiting list (signed-in buyers; one place per account and
/// ticket type). When seats come back they are held for the next place that fits, in the same
/// decision that freed them, with their own expiry; confirm that registration to claim them.
#[utoipa::path(post, path = "/api/v1/events/{id}/waiting-list", tag = "registrations", params(("id" = Uuid, Path)),
    request_body = JoinBody,
    responses((status = 201, body = WaitlistDto), (status = 404, body = Problem),
        (status = 409, description = "not_sold_out (buy instead), already_waiting, event_not_open, not_on_sale or limit_reached", body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn join(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<JoinBody>,
) -> ApiResult<impl IntoResponse> {
    super::policy::visible_event(&state, Some(&principal), event_id)?;
    let (view, position) = state
        .engine
        .join_waitlist(JoinWaitlist {
            event_id,
            ticket_type_id: TicketTypeId(body.ticket_type_id),
            quantity: body.quantity,
            attendee_name: body.attendee.name,
            attendee_email: body.attendee.email,
            user_id: principal.user_id,
        })
        .await?;
    let location = format!("/api/v1/waiting-list/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(dto(&view, Some(position))),
    ))
}

/// A waiting-list place, with its position while it waits (its account, or the event's
/// managers).
#[utoipa::path(get, path = "/api/v1/waiting-list/{id}", tag = "registrations", params(("id" = Uuid, Path)),
    responses((status = 200, body = WaitlistDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_place(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<WaitlistEntryId>,
) -> ApiResult<Json<WaitlistDto>> {
    visible(&state, &principal, id)?;
    let (view, position) = state.engine.waitlist_entry(id).await?;
    Ok(Json(dto(&view, position)))
}

/// Leave the waiting list (its account). A place that was offered seats is no longer
/// waiting: cancel the offered registration instead.
#[utoipa::path(post, path = "/api/v1/waiting-list/{id}/leave", tag = "registrations", params(("id" = Uuid, Path)),
    responses((status = 200, body = WaitlistDto), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn leave(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<WaitlistEntryId>,
) -> ApiResult<Json<WaitlistDto>> {
    let view = visible(&state, &principal, id)?;
    if view.user_id != principal.user_id {
        return Err(super::error::ApiError::Forbidden);
    }
    let view = state.engine.leave_waitlist(id, principal.user_id).await?;
    Ok(Json(dto(&view, None)))
}
