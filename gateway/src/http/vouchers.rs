//! Vouchers (managers create, list, read and deactivate them; buyers redeem a code with a
//! hold) and receipts (the price recorded with the hold, itemised).

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiQuery, PathId, PathIdText};
use super::policy::{managed_event, visible_registration};
use super::registrations::tickets::ticket_context;
use super::registrations::{AttendeeDto, price_of};
use crate::ticket_code::ticket_number;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::NewVoucher;
use engine::error::DomainError;
use engine::ids::{EventId, RegistrationId, TicketTypeId};
use engine::model::RegistrationStatus;
use engine::ports::VoucherView;
use engine::pricing::Discount;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Vouchers per page at most.
const PAGE_MAX: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/events/{id}/vouchers",
            post(create_voucher).get(list_vouchers),
        )
        .route("/api/v1/events/{id}/vouchers/{code}", get(get_voucher))
        .route(
            "/api/v1/events/{id}/vouchers/{code}/deactivate",
            post(deactivate_voucher),
        )
        .route("/api/v1/registrations/{id}/receipt", get(receipt))
        .route("/api/v1/events/{id}/quote", get(quote))
}

/// What to price.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QuoteParams {
    /// The ticket type to price.
    ticket_type_id: Uuid,
    /// Seats (within the ticket type's order limits).
    #[param(minimum = 1, maximum = 100)]
    quantity: i64,
    /// A voucher code to apply.
    #[param(min_length = 4, max_length = 32, pattern = "^[A-Za-z0-9_-]{4,32}$")]
    voucher: Option<String>,
}

/// What seats would cost, with a voucher if given (signed-in callers): the same calculation
/// a hold makes, so a front can show the price before holding. Not binding: only a hold takes
/// a voucher's use and records the price.
#[utoipa::path(get, path = "/api/v1/events/{id}/quote", tag = "vouchers",
    params(("id" = Uuid, Path), QuoteParams),
    responses((status = 200, body = super::registrations::PriceDto), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 409, description = "voucher_used_up", body = Problem),
        (status = 422, description = "voucher_not_valid or a field", body = Problem)))]
pub(crate) async fn quote(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiQuery(params): ApiQuery<QuoteParams>,
) -> ApiResult<Json<super::registrations::PriceDto>> {
    super::policy::visible_event(&state, Some(&principal), event_id)?;
    let price = state.engine.quote(
        event_id,
        TicketTypeId(params.ticket_type_id),
        params.quantity,
        params.voucher.as_deref(),
    )?;
    Ok(Json(super::registrations::PriceDto::from(&price)))
}

/// Body of `POST /api/v1/events/{id}/vouchers`. Give at most one of `percent_off` and
/// `amount_off_minor` (neither: an access code at the full price).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::create_voucher))]
#[serde(deny_unknown_fields)]
pub struct CreateVoucher {
    /// 4 to 32 characters of A-Z, 0-9, - and _ (case does not matter); generated when absent.
    pub code: Option<String>,
    /// Ticket types it is for: one or more, all sharing one pool.
    pub ticket_type_ids: Vec<Uuid>,
    /// Percent off each seat, 1..=100 (rounded half up to a minor unit per seat).
    pub percent_off: Option<i64>,
    /// Minor units off each seat (a seat never costs less than 0).
    pub amount_off_minor: Option<i64>,
    /// Seats it may be used for in total (a hold of 3 seats takes 3 uses).
    pub max_uses: i64,
    /// Not redeemable before.
    pub valid_from: Option<DateTime<Utc>>,
    /// Not redeemable from this time on.
    pub valid_until: Option<DateTime<Utc>>,
    /// Set its unused seats aside from general sale (default false).
    #[serde(default)]
    pub reserve_seats: bool,
}

/// A voucher, with how much of it is used (`uses`) and the seats it sets aside now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::voucher))]
pub struct VoucherDto {
    code: String,
    event_id: Uuid,
    /// The pool its uses are decided in.
    pool_id: Uuid,
    ticket_type_ids: Vec<Uuid>,
    percent_off: Option<u8>,
    amount_off_minor: Option<i64>,
    max_uses: u32,
    /// Seats of held or confirmed registrations that redeemed it.
    uses: u32,
    /// Seats it sets aside now (reserving vouchers only).
    reserved_seats: u32,
    reserve_seats: bool,
    valid_from: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
    /// False once deactivated.
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&VoucherView> for VoucherDto {
    fn from(v: &VoucherView) -> Self {
        let def = &v.voucher.def;
        let (percent_off, amount_off_minor) = match def.discount {
            Some(Discount::Percent(p)) => (Some(p), None),
            Some(Discount::Fixed(a)) => (None, Some(a)),
            None => (None, None),
        };
        Self {
            code: def.code.clone(),
            event_id: v.event_id.0,
            pool_id: v.pool_id.0,
            ticket_type_ids: def.ticket_types.iter().map(|t| t.0).collect(),
            percent_off,
            amount_off_minor,
            max_uses: def.max_uses,
            uses: v.voucher.uses,
            reserved_seats: v.voucher.reserved(),
            reserve_seats: def.reserve_seats,
            valid_from: def.valid_from,
            valid_until: def.valid_until,
            active: v.voucher.active,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A page of vouchers, in code order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::voucher_page))]
pub struct VoucherPage {
    items: Vec<VoucherDto>,
    /// Pass as `after` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// Paging of voucher listings.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VoucherListParams {
    /// Cursor (a code) from the previous page.
    #[param(min_length = 4, max_length = 32, pattern = "^[A-Za-z0-9_-]{4,32}$")]
    after: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// Create a voucher (managers). Its uses are decided with its pool's seats, so two buyers
/// cannot both take its last use; with `reserve_seats`, its uses are set aside from general
/// sale until used or deactivated.
#[utoipa::path(post, path = "/api/v1/events/{id}/vouchers", tag = "vouchers", params(("id" = Uuid, Path)),
    request_body = CreateVoucher,
    responses((status = 201, body = VoucherDto), (status = 404, body = Problem),
        (status = 409, description = "voucher_exists, sold_out (not enough seats to reserve) or limit_reached", body = Problem),
        (status = 422, body = Problem)))]
pub(crate) async fn create_voucher(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<CreateVoucher>,
) -> ApiResult<impl IntoResponse> {
    managed_event(&state, &principal, event_id)?;
    let new = NewVoucher {
        code: body.code,
        ticket_types: body.ticket_type_ids.into_iter().map(TicketTypeId).collect(),
        percent_off: body.percent_off,
        amount_off_minor: body.amount_off_minor,
        max_uses: body.max_uses,
        valid_from: body.valid_from,
        valid_until: body.valid_until,
        reserve_seats: body.reserve_seats,
    };
    let view = state.engine.create_voucher(event_id, new).await?;
    Ok((StatusCode::CREATED, Json(VoucherDto::from(&view))))
}

/// The event's vouchers, in code order (managers).
#[utoipa::path(get, path = "/api/v1/events/{id}/vouchers", tag = "vouchers",
    params(("id" = Uuid, Path), VoucherListParams),
    responses((status = 200, body = VoucherPage), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn list_vouchers(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiQuery(params): ApiQuery<VoucherListParams>,
) -> ApiResult<Json<VoucherPage>> {
    managed_event(&state, &principal, event_id)?;
    let limit = crate::http::extract::page_limit(params.limit, 100, PAGE_MAX)?;
    let after = match params.after.as_deref() {
        None => None,
        Some(code) => Some(engine::normalize_voucher_code(code).ok_or_else(|| {
            ApiError::InvalidQuery("after must be a voucher code from a previous page".into())
        })?),
    };
    let page = state.engine.vouchers(event_id, after.as_deref(), limit)?;
    Ok(Json(VoucherPage {
        items: page.items.iter().map(VoucherDto::from).collect(),
        next_cursor: page.next,
    }))
}

/// One voucher, with its uses (managers).
#[utoipa::path(get, path = "/api/v1/events/{id}/vouchers/{code}", tag = "vouchers",
    params(("id" = Uuid, Path), ("code" = String, Path)),
    responses((status = 200, body = VoucherDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_voucher(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIdText(event_id, code): PathIdText<EventId>,
) -> ApiResult<Json<VoucherDto>> {
    managed_event(&state, &principal, event_id)?;
    Ok(Json(VoucherDto::from(
        &state.engine.voucher(event_id, &code)?,
    )))
}

/// Deactivate a voucher (managers): it cannot be redeemed again and its reserved seats go
/// back to general sale; registrations made with it keep their price. Deactivating twice
/// changes nothing.
#[utoipa::path(post, path = "/api/v1/events/{id}/vouchers/{code}/deactivate", tag = "vouchers",
    params(("id" = Uuid, Path), ("code" = String, Path)),
    responses((status = 200, body = VoucherDto), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)))]
pub(crate) async fn deactivate_voucher(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIdText(event_id, code): PathIdText<EventId>,
) -> ApiResult<Json<VoucherDto>> {
    managed_event(&state, &principal, event_id)?;
    let view = state.engine.deactivate_voucher(event_id, &code).await?;
    Ok(Json(VoucherDto::from(&view)))
}

/// One line of a receipt.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::receipt_line))]
pub struct ReceiptLine {
    ticket_type_id: Uuid,
    /// The ticket type's name.
    description: String,
    quantity: u16,
    unit_price_minor: i64,
    discount_minor: i64,
    total_minor: i64,
}

/// A receipt: the price recorded when the seats were held, itemised.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::receipt))]
pub struct ReceiptDto {
    registration_id: Uuid,
    event_id: Uuid,
    event_title: String,
    /// confirmed, or canceled (after confirmation).
    status: String,
    confirmed_at: Option<DateTime<Utc>>,
    attendee: AttendeeDto,
    currency: String,
    lines: Vec<ReceiptLine>,
    voucher: Option<String>,
    subtotal_minor: i64,
    discount_minor: i64,
    total_minor: i64,
    /// Printed numbers of the tickets issued.
    ticket_numbers: Vec<String>,
}

/// The receipt of a confirmed registration (its holder and the event's managers). Its
/// figures are the ones decided with the hold, so they equal what the hold and the confirm
/// answered.
#[utoipa::path(get, path = "/api/v1/registrations/{id}/receipt", tag = "registrations", params(("id" = Uuid, Path)),
    responses((status = 200, body = ReceiptDto), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "invalid_registration_state: never confirmed", body = Problem)))]
pub(crate) async fn receipt(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Json<ReceiptDto>> {
    let view = visible_registration(&state, &principal, id)?;
    if view.confirmed_at.is_none() {
        return Err(DomainError::InvalidRegistrationState {
            status: view.status,
            action: "receipt",
        }
        .into());
    }
    let record = state.engine.event(view.event_id)?;
    let price = price_of(&state, &view).ok_or(DomainError::TicketTypeNotFound)?;
    let description = record
        .ticket_type(view.ticket_type_id)
        .map_or_else(String::new, |t| t.name.clone());
    let context = ticket_context(&state, view.event_id, view.pool_id);
    let ticket_numbers = (0..view.tickets.len() as u64)
        .map(|i| {
            ticket_number(
                view.event_id,
                context.pool_ordinal,
                view.first_ticket_number + i,
            )
        })
        .collect();
    debug_assert!(matches!(
        view.status,
        RegistrationStatus::Confirmed | RegistrationStatus::Canceled
    ));
    Ok(Json(ReceiptDto {
        registration_id: view.id.0,
        event_id: view.event_id.0,
        event_title: record.title.clone(),
        status: view.status.as_str().to_owned(),
        confirmed_at: view.confirmed_at,
        attendee: AttendeeDto {
            name: view.attendee.name,
            email: view.attendee.email,
        },
        currency: price.currency.clone(),
        lines: vec![ReceiptLine {
            ticket_type_id: view.ticket_type_id.0,
            description,
            quantity: price.quantity,
            unit_price_minor: price.unit_minor,
            discount_minor: price.discount_minor,
            total_minor: price.total_minor,
        }],
        voucher: price.voucher.clone(),
        subtotal_minor: price.subtotal_minor,
        discount_minor: price.discount_minor,
        total_minor: price.total_minor,
        ticket_numbers,
    }))
}
