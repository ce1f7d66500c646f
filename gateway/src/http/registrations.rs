//! Registrations: holds, confirmation, cancellation and listings. Their tickets (codes, QR
//! images, verification, signing keys, revocations) are the sub-resource in `tickets`.

pub(super) mod tickets;

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiQuery, PathId};
use super::idempotency::{IdempotencyContext, engine_token};
use super::policy::{managed_event, require_any, visible_registration};
use crate::ticket_code::ticket_number;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use engine::HoldRequest;
use engine::ids::{EventId, RegistrationId, TicketTypeId};
use engine::model::RegistrationStatus;
use engine::ports::{Page, RegistrationView};
use serde::{Deserialize, Serialize};
use tickets::ticket_context;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest page of registration listings.
const PAGE_LIMIT_MAX: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/events/{id}/registrations",
            post(create_registration).get(list_event_registrations),
        )
        .route("/api/v1/registrations", get(list_registrations_by_email))
        .route("/api/v1/users/me/registrations", get(my_registrations))
        .route("/api/v1/registrations/{id}", get(get_registration))
        .route(
            "/api/v1/registrations/{id}/confirm",
            post(confirm_registration),
        )
        .route(
            "/api/v1/registrations/{id}/cancel",
            post(cancel_registration),
        )
        .merge(tickets::router())
}

/// Who a registration is for.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(examples(super::examples::attendee))]
#[serde(deny_unknown_fields)]
pub struct AttendeeDto {
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// Body of `POST /api/v1/events/{id}/registrations`: hold seats.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::create_registration))]
#[serde(deny_unknown_fields)]
pub struct CreateRegistration {
    /// The ticket type to hold seats of.
    pub ticket_type_id: Uuid,
    /// Seats, 1..=max_per_order of the ticket type.
    pub quantity: i64,
    /// Who it is for.
    pub attendee: AttendeeDto,
    /// A voucher code to redeem (case does not matter).
    #[schema(min_length = 4, max_length = 32)]
    pub voucher: Option<String>,
}

/// What a registration costs, decided when its seats were held (integer minor units; a
/// percentage discount is rounded half up per seat).
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::price))]
pub struct PriceDto {
    /// ISO 4217 code.
    currency: String,
    /// Price of one seat.
    unit_price_minor: i64,
    quantity: u16,
    /// unit_price_minor × quantity.
    subtotal_minor: i64,
    /// Taken off by the voucher.
    discount_minor: i64,
    /// What is due.
    total_minor: i64,
    /// The voucher redeemed.
    voucher: Option<String>,
    /// Its VAT, decided with the hold (absent when its ticket type has no VAT, and for
    /// registrations held before VAT was recorded).
    vat: Option<VatDto>,
}

/// The VAT of a price.
#[derive(Debug, Serialize, ToSchema)]
pub struct VatDto {
    /// Basis points: 1900 is 19 %.
    rate_bp: u16,
    /// Whether the ticket type's price included it (gross) or it was added (net).
    included: bool,
    /// The amount without VAT.
    net_minor: i64,
    /// The VAT; net_minor + vat_minor = total_minor.
    vat_minor: i64,
}

impl From<&engine::pricing::Price> for PriceDto {
    fn from(p: &engine::pricing::Price) -> Self {
        Self {
            currency: p.currency.clone(),
            unit_price_minor: p.unit_minor,
            quantity: p.quantity,
            subtotal_minor: p.subtotal_minor,
            discount_minor: p.discount_minor,
            total_minor: p.total_minor,
            voucher: p.voucher.clone(),
            vat: p.tax.map(|t| VatDto {
                rate_bp: t.rate_bp,
                included: t.included,
                net_minor: t.net_minor,
                vat_minor: t.vat_minor,
            }),
        }
    }
}

/// A registration's price: the one recorded with its hold, or for a registration held before
/// prices were recorded, the same calculation over its ticket type's price (no voucher).
pub(super) fn price_of(state: &AppState, v: &RegistrationView) -> Option<engine::pricing::Price> {
    v.price.clone().or_else(|| {
        let record = state.engine.event(v.event_id).ok()?;
        let tt = record.ticket_type(v.ticket_type_id)?;
        Some(engine::pricing::quote(
            tt.price_minor,
            &tt.currency,
            v.quantity,
            None,
        ))
    })
}

/// An issued ticket with the code its QR carries.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::issued_ticket))]
pub struct IssuedTicket {
    id: Uuid,
    /// The printed ticket number, `PPPP-O-NNNNNN-C` (event prefix, pool, number in the pool,
    /// Luhn check digit).
    number: String,
    /// The signed code its QR carries (see `GET /api/v1/events/{id}/ticket-keys`).
    code: String,
}

/// A registration: seats of one ticket type, held, then confirmed (with its tickets), canceled
/// or expired.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::registration))]
pub struct RegistrationDto {
    id: Uuid,
    event_id: Uuid,
    ticket_type_id: Uuid,
    quantity: u16,
    /// held, confirmed, canceled or expired.
    status: String,
    attendee: AttendeeDto,
    created_at: DateTime<Utc>,
    /// When the hold runs (or ran) out.
    expires_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Tickets, once confirmed.
    tickets: Vec<IssuedTicket>,
    /// What it costs.
    price: Option<PriceDto>,
    /// Set when the seats were offered from the waiting list: the place they went to.
    waitlist_entry_id: Option<Uuid>,
    /// Its payment, once one was started (a priced registration is confirmed only by it).
    payment: Option<super::payments::dto::PaymentDto>,
}

pub(super) fn registration_dto(state: &AppState, v: RegistrationView) -> RegistrationDto {
    // Only confirmed registrations have tickets (a hold answers without a lookup).
    let context = (!v.tickets.is_empty()).then(|| ticket_context(state, v.event_id, v.pool_id));
    let issued_at = v.confirmed_at.unwrap_or(v.updated_at);
    let price = price_of(state, &v).as_ref().map(PriceDto::from);
    RegistrationDto {
        price,
        payment: v
            .payment
            .as_ref()
            .map(super::payments::dto::PaymentDto::from),
        waitlist_entry_id: v.waitlist_entry.map(|e| e.0),
        id: v.id.0,
        event_id: v.event_id.0,
        ticket_type_id: v.ticket_type_id.0,
        quantity: v.quantity,
        status: v.status.as_str().to_owned(),
        attendee: AttendeeDto {
            name: v.attendee.name,
            email: v.attendee.email,
        },
        created_at: v.created_at,
        expires_at: v.expires_at,
        updated_at: v.updated_at,
        tickets: v
            .tickets
            .iter()
            .zip(v.first_ticket_number..)
            .zip(context.iter().cycle())
            .map(|((t, number), c)| IssuedTicket {
                id: t.0,
                number: ticket_number(v.event_id, c.pool_ordinal, number),
                code: state
                    .codes
                    .encode(c.key, v.event_id, *t, v.ticket_type_id, issued_at),
            })
            .collect(),
    }
}

/// A page of registrations.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::registration_page))]
pub struct RegistrationPage {
    items: Vec<RegistrationDto>,
    /// Pass as `after` for the next page; absent on the last page.
    next_cursor: Option<Uuid>,
}

/// Paging and filter of registration listings.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RegistrationListParams {
    /// held, confirmed, canceled or expired.
    #[param(pattern = "^(held|confirmed|canceled|expired)$")]
    status: Option<String>,
    /// Cursor from the previous page.
    after: Option<Uuid>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// Lookup of registrations by attendee e-mail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EmailParams {
    /// Attendee e-mail.
    email: String,
    /// Cursor from the previous page.
    after: Option<Uuid>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

pub(super) fn page_limit(limit: Option<usize>) -> ApiResult<usize> {
    super::extract::page_limit(limit, 100, PAGE_LIMIT_MAX)
}

/// Hold seats. Answers 201 with the held registration; retrying with the same
/// `Idempotency-Key` and body returns the same registration.
#[utoipa::path(post, path = "/api/v1/events/{id}/registrations", tag = "registrations", params(("id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, description = "Retry key: the same key and body never book twice")),
    request_body = CreateRegistration,
    responses((status = 201, body = RegistrationDto), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "sold_out, event_not_open, not_on_sale or voucher_used_up", body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, description = "overloaded; retry after Retry-After", body = Problem)))]
pub(crate) async fn create_registration(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    idempotency: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<CreateRegistration>,
) -> ApiResult<impl IntoResponse> {
    // The durable key is per event and per account.
    let idempotency = engine_token(idempotency, event_id.as_bytes(), principal.user_id);
    let request = HoldRequest {
        event_id,
        ticket_type_id: TicketTypeId(body.ticket_type_id),
        quantity: body.quantity,
        attendee_name: body.attendee.name,
        attendee_email: body.attendee.email,
        idempotency,
        user_id: Some(principal.user_id),
        voucher: body.voucher,
    };
    let view = match state.engine.hold(request).await {
        Ok(hold) => hold.view,
        // A draft never sells: a refusal is where someone else's draft must look missing
        // (404, not 409 `event_not_open` or 422); a sale never pays for the look.
        Err(e) => {
            super::policy::visible_event(&state, Some(&principal), event_id)?;
            return Err(e.into());
        }
    };
    let location = format!("/api/v1/registrations/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(registration_dto(&state, view)),
    ))
}

/// Read a registration.
#[utoipa::path(get, path = "/api/v1/registrations/{id}", tag = "registrations", params(("id" = Uuid, Path)),
    responses((status = 200, body = RegistrationDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_registration(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Json<RegistrationDto>> {
    let view = visible_registration(&state, &principal, id)?;
    Ok(Json(registration_dto(&state, view)))
}

/// Confirm a free hold: issues one ticket per seat. Confirming twice returns the confirmed
/// registration. A registration that costs money is confirmed by its payment (see
/// `POST /registrations/{id}/payments`), or by a manager's mark-paid: confirming it unpaid
/// answers 402 `payment_required` and changes nothing.
#[utoipa::path(post, path = "/api/v1/registrations/{id}/confirm", tag = "registrations", params(("id" = Uuid, Path)),
    responses((status = 200, body = RegistrationDto), (status = 404, body = Problem),
        (status = 402, description = "payment_required: the registration costs money and is not paid", body = Problem),
        (status = 409, description = "hold_expired or invalid_registration_state", body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn confirm_registration(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Json<RegistrationDto>> {
    visible_registration(&state, &principal, id)?;
    let view = state.engine.confirm(id).await?;
    Ok(Json(registration_dto(&state, view)))
}

/// Cancel a hold or a confirmed registration; the seats return to the pool. A buyer cancelling
/// their own paid registration is refunded in full within the event's `refund_until` (the
/// refund goes out through the provider relay); after it, or when the event has none, 409
/// `refund_window_closed` and nothing changes. Managers cancel without a refund (see
/// `POST /registrations/{id}/refunds`).
#[utoipa::path(post, path = "/api/v1/registrations/{id}/cancel", tag = "registrations", params(("id" = Uuid, Path)),
    responses((status = 200, body = RegistrationDto), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn cancel_registration(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Json<RegistrationDto>> {
    let view = visible_registration(&state, &principal, id)?;
    // A buyer's own paid registration: money goes back with it, within the refund window
    // only. Managers cancel as before (and refund explicitly).
    let live = matches!(
        view.status,
        RegistrationStatus::Held | RegistrationStatus::Confirmed
    );
    let paid = live
        && view
            .payment
            .as_ref()
            .is_some_and(|p| p.refundable_minor() > 0);
    let manager = state
        .engine
        .event(view.event_id)
        .is_ok_and(|e| super::policy::manages(&principal, &e));
    let view = if paid && !manager {
        state.engine.cancel_paid_by_buyer(id).await?
    } else {
        state.engine.cancel_registration(id).await?
    };
    Ok(Json(registration_dto(&state, view)))
}

fn parse_status(status: Option<String>) -> ApiResult<Option<RegistrationStatus>> {
    status
        .map(|s| {
            RegistrationStatus::parse(&s)
                .ok_or_else(|| ApiError::InvalidQuery(format!("unknown status `{s}`")))
        })
        .transpose()
}

fn page_dto(state: &AppState, page: Page<RegistrationView, RegistrationId>) -> RegistrationPage {
    RegistrationPage {
        next_cursor: page.next.map(|id| id.0),
        items: page
            .items
            .into_iter()
            .map(|v| registration_dto(state, v))
            .collect(),
    }
}

/// Registrations of an event, by creation order.
#[utoipa::path(get, path = "/api/v1/events/{id}/registrations", tag = "registrations", params(("id" = Uuid, Path), RegistrationListParams),
    responses((status = 200, body = RegistrationPage), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn list_event_registrations(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiQuery(p): ApiQuery<RegistrationListParams>,
) -> ApiResult<Json<RegistrationPage>> {
    managed_event(&state, &principal, id)?;
    let page = state.engine.registrations_by_event(
        id,
        parse_status(p.status)?,
        p.after.map(RegistrationId),
        page_limit(p.limit)?,
    )?;
    Ok(Json(page_dto(&state, page)))
}

/// Registrations for an attendee e-mail.
#[utoipa::path(get, path = "/api/v1/registrations", tag = "registrations", params(EmailParams),
    responses((status = 200, body = RegistrationPage), (status = 400, body = Problem)))]
pub(crate) async fn list_registrations_by_email(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(p): ApiQuery<EmailParams>,
) -> ApiResult<Json<RegistrationPage>> {
    // Anyone's registrations by address: admins only (others use /users/me/registrations).
    require_any(&principal, &[])?;
    let page = state.engine.registrations_by_email(
        &p.email,
        p.after.map(RegistrationId),
        page_limit(p.limit)?,
    )?;
    Ok(Json(page_dto(&state, page)))
}

/// Paging of one's own registrations.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MyRegistrationsParams {
    /// Cursor from the previous page.
    after: Option<Uuid>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// The caller's own registrations, by creation order.
#[utoipa::path(get, path = "/api/v1/users/me/registrations", tag = "registrations", params(MyRegistrationsParams),
    security(("bearer" = [])),
    responses((status = 200, body = RegistrationPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub(crate) async fn my_registrations(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(p): ApiQuery<MyRegistrationsParams>,
) -> ApiResult<Json<RegistrationPage>> {
    let page = state.engine.registrations_by_user(
        principal.user_id,
        p.after.map(RegistrationId),
        page_limit(p.limit)?,
    )?;
    Ok(Json(page_dto(&state, page)))
}
