//! Events, their lifecycle, ticket types and availability.

use super::AppState;
use super::auth::{Authenticated, MaybeAuthenticated};
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiQuery, PathId, PathIds};
use super::idempotency::{IdempotencyContext, engine_token};
use super::policy::{managed_event, require_any, sees_event, visible_event};
use crate::auth::Principal;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use engine::EventAvailability;
use engine::accounts::Role;
use engine::error::FieldError;
use engine::ids::{EventId, PoolId, UserId};
use engine::model::EventRole;
use engine::model::{
    EventPatch, EventRecord, EventStatus, NewEvent, NewTicketType, SeatSource, TicketType,
};
use engine::ports::{EventQuery, When};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest page of the event list.
const PAGE_LIMIT_MAX: usize = 200;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", post(create_event).get(list_events))
        .route("/api/v1/events/{id}", get(get_event).patch(update_event))
        .route("/api/v1/events/{id}/publish", post(publish_event))
        .route("/api/v1/events/{id}/cancel", post(cancel_event))
        .route("/api/v1/events/{id}/complete", post(complete_event))
        .route("/api/v1/events/{id}/ticket-types", post(create_ticket_type))
        .route("/api/v1/events/{id}/availability", get(availability))
        .route("/api/v1/events/{id}/members", get(list_members))
        .route(
            "/api/v1/events/{id}/members/{user_id}",
            put(set_member).delete(remove_member),
        )
}

/// Body of `POST /api/v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::create_event))]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 10,000 characters.
    #[serde(default)]
    pub description: String,
    pub venue: Option<String>,
    /// Category for filtering.
    pub category: Option<String>,
    /// Start (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// End, after the start.
    pub ends_at: DateTime<Utc>,
    /// Hold TTL in seconds (1..=86400); server default if absent.
    pub hold_ttl_secs: Option<u32>,
    /// Until then a buyer who cancels a paid registration is refunded in full (at the latest
    /// `ends_at`); absent: buyers cannot cancel paid registrations themselves.
    pub refund_until: Option<DateTime<Utc>>,
    /// Who bank transfers for this event pay, and their deadline; absent: the server's
    /// `[payments.bank_transfer]`.
    pub bank_transfer: Option<BankTransferDto>,
    /// The seller on the event's invoices and whether its prices include VAT; absent: the
    /// organizer's account name, prices gross.
    pub invoicing: Option<InvoicingDto>,
    /// When attendees of confirmed registrations are reminded, in seconds before the start
    /// (at most 5, each 60..=2592000); absent: the server's `outbox.reminder_offsets_secs`
    /// (24 h and 1 h); empty: never.
    #[schema(max_items = 5)]
    pub reminder_offsets_secs: Option<Vec<u32>>,
    /// How the event's messages look: a name and logo above them and an accent colour.
    pub branding: Option<BrandingDto>,
    /// The language of the event's messages to people who chose none (guests): a language
    /// tag such as `de` or `fr-CH` (templates exist for en, de and fr; others get English).
    #[schema(max_length = 35)]
    pub locale: Option<String>,
}

/// How an event's messages look.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingDto {
    /// The name shown above each message (1 to 100 characters); absent: the event's title.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// An `https` URL of the logo image (up to 500 characters), shown above each message.
    #[schema(max_length = 500)]
    pub logo_url: Option<String>,
    /// The colour of headings and buttons, `#rrggbb`.
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    pub color: Option<String>,
}

impl From<BrandingDto> for engine::model::EventBranding {
    fn from(b: BrandingDto) -> Self {
        Self {
            name: b.name,
            logo_url: b.logo_url,
            color: b.color,
        }
    }
}

impl From<&engine::model::EventBranding> for BrandingDto {
    fn from(b: &engine::model::EventBranding) -> Self {
        Self {
            name: b.name.clone(),
            logo_url: b.logo_url.clone(),
            color: b.color.clone(),
        }
    }
}

/// An event's invoicing settings.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoicingDto {
    /// The seller's legal name (1 to 140 characters).
    pub seller_name: String,
    /// The seller's postal address, at most 6 lines.
    #[serde(default)]
    pub seller_address: Vec<String>,
    /// The seller's VAT identification number (may be empty).
    #[serde(default)]
    pub seller_vat_id: String,
    /// Whether ticket prices include VAT (gross, the default) or VAT is added to them (net).
    #[serde(default = "yes")]
    pub prices_include_vat: bool,
}

fn yes() -> bool {
    true
}

impl From<InvoicingDto> for engine::model::InvoiceSettings {
    fn from(i: InvoicingDto) -> Self {
        Self {
            seller_name: i.seller_name,
            seller_address: i.seller_address,
            seller_vat_id: i.seller_vat_id,
            prices_include_vat: i.prices_include_vat,
        }
    }
}

impl From<&engine::model::InvoiceSettings> for InvoicingDto {
    fn from(i: &engine::model::InvoiceSettings) -> Self {
        Self {
            seller_name: i.seller_name.clone(),
            seller_address: i.seller_address.clone(),
            seller_vat_id: i.seller_vat_id.clone(),
            prices_include_vat: i.prices_include_vat,
        }
    }
}

/// An event's bank-transfer settings.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankTransferDto {
    /// The payee's name (1 to 140 characters).
    pub payee: String,
    /// IBAN, upper case without spaces.
    pub iban: String,
    /// BIC (8 or 11 characters), or empty.
    #[serde(default)]
    pub bic: String,
    /// The seats are held this long from the start of the transfer (1..=720).
    pub deadline_hours: u32,
}

impl From<BankTransferDto> for engine::model::BankTransferSettings {
    fn from(b: BankTransferDto) -> Self {
        Self {
            payee: b.payee,
            iban: b.iban,
            bic: b.bic,
            deadline_hours: b.deadline_hours,
        }
    }
}

impl From<&engine::model::BankTransferSettings> for BankTransferDto {
    fn from(b: &engine::model::BankTransferSettings) -> Self {
        Self {
            payee: b.payee.clone(),
            iban: b.iban.clone(),
            bic: b.bic.clone(),
            deadline_hours: b.deadline_hours,
        }
    }
}

/// Body of `PATCH /api/v1/events/{id}`: fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(examples(super::examples::update_event))]
#[serde(deny_unknown_fields)]
pub struct UpdateEvent {
    /// 1 to 200 characters.
    pub title: Option<String>,
    /// Up to 10,000 characters.
    pub description: Option<String>,
    pub venue: Option<String>,
    pub category: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    /// After the start.
    pub ends_at: Option<DateTime<Utc>>,
    /// Hold TTL in seconds (1..=86400).
    pub hold_ttl_secs: Option<u32>,
    /// The buyers' refund window's end (at the latest `ends_at`).
    pub refund_until: Option<DateTime<Utc>>,
    /// The event's bank-transfer settings.
    pub bank_transfer: Option<BankTransferDto>,
    /// The event's invoicing settings.
    pub invoicing: Option<InvoicingDto>,
    /// Reminders, in seconds before the start (empty: never).
    #[schema(max_items = 5)]
    pub reminder_offsets_secs: Option<Vec<u32>>,
    /// How the event's messages look (replaces the whole branding).
    pub branding: Option<BrandingDto>,
    /// The language of the event's messages to people who chose none.
    #[schema(max_length = 35)]
    pub locale: Option<String>,
}

/// Body of `POST /api/v1/events/{id}/ticket-types`: give `capacity` for a new pool, or
/// `pool_id` to share an existing pool of the event.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::create_ticket_type))]
#[serde(deny_unknown_fields)]
pub struct CreateTicketType {
    pub name: String,
    /// Price per seat in minor units (cents).
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Seats of a new pool for this ticket type.
    pub capacity: Option<u32>,
    /// Share this existing pool instead.
    pub pool_id: Option<Uuid>,
    /// Most seats per registration (1..=100, default 10).
    pub max_per_order: Option<u16>,
    /// Most live seats (held + confirmed) one account may have of this ticket type; no limit
    /// when absent.
    pub max_per_account: Option<u16>,
    /// Fewest seats per registration (1..=max_per_order, default 1).
    pub min_per_order: Option<u16>,
    /// No holds before this time.
    pub sales_start: Option<DateTime<Utc>>,
    /// No holds from this time on.
    pub sales_end: Option<DateTime<Utc>>,
    /// VAT rate in basis points, 0..=5000 (1900 is 19 %; default 0).
    pub vat_rate_bp: Option<u16>,
}

/// A ticket type: what a seat costs, the pool its seats come from, and its order limits.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::ticket_type))]
pub struct TicketTypeDto {
    id: Uuid,
    name: String,
    price_minor: i64,
    currency: String,
    pool_id: Uuid,
    /// Capacity of the pool (shared with other ticket types of the pool).
    capacity: u32,
    max_per_order: u16,
    max_per_account: Option<u16>,
    min_per_order: u16,
    sales_start: Option<DateTime<Utc>>,
    sales_end: Option<DateTime<Utc>>,
    /// VAT rate in basis points (1900 is 19 %).
    vat_rate_bp: u16,
    created_at: DateTime<Utc>,
}

/// An event with its ticket types.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::event))]
pub struct EventDto {
    id: Uuid,
    title: String,
    description: String,
    venue: Option<String>,
    category: Option<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    hold_ttl_secs: u32,
    /// Until then buyers who cancel a paid registration are refunded in full.
    refund_until: Option<DateTime<Utc>>,
    /// The event's bank-transfer settings (absent: the server's).
    bank_transfer: Option<BankTransferDto>,
    /// The event's invoicing settings (absent: the organizer's account name, prices gross).
    invoicing: Option<InvoicingDto>,
    /// Reminders, in seconds before the start (absent: the server's default).
    reminder_offsets_secs: Option<Vec<u32>>,
    /// How its messages look.
    branding: Option<BrandingDto>,
    /// The language of its messages to people who chose none.
    locale: Option<String>,
    /// draft, published, canceled or completed.
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    ticket_types: Vec<TicketTypeDto>,
    /// Sequence number of the event's last change.
    version: u64,
}

fn ticket_type_dto(record: &EventRecord, tt: &TicketType) -> TicketTypeDto {
    TicketTypeDto {
        id: tt.id.0,
        name: tt.name.clone(),
        price_minor: tt.price_minor,
        currency: tt.currency.clone(),
        pool_id: tt.pool_id.0,
        capacity: record.pool(tt.pool_id).map_or(0, |p| p.capacity),
        max_per_order: tt.max_per_order,
        max_per_account: tt.max_per_account,
        min_per_order: tt.min_per_order,
        sales_start: tt.sales_start,
        sales_end: tt.sales_end,
        vat_rate_bp: tt.vat_rate_bp,
        created_at: tt.created_at,
    }
}

impl From<&EventRecord> for EventDto {
    fn from(r: &EventRecord) -> Self {
        EventDto {
            id: r.id.0,
            title: r.title.clone(),
            description: r.description.clone(),
            venue: r.venue.clone(),
            category: r.category.clone(),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            hold_ttl_secs: r.hold_ttl_secs,
            refund_until: r.refund_until,
            bank_transfer: r.bank_transfer.as_ref().map(BankTransferDto::from),
            invoicing: r.invoicing.as_ref().map(InvoicingDto::from),
            reminder_offsets_secs: r.reminder_offsets_secs.clone(),
            branding: r.branding.as_ref().map(BrandingDto::from),
            locale: r.locale.clone(),
            status: r.status.as_str().to_owned(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            ticket_types: r
                .ticket_types
                .iter()
                .map(|tt| ticket_type_dto(r, tt))
                .collect(),
            version: r.version,
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::event_page))]
pub struct EventPage {
    items: Vec<EventDto>,
    /// Pass as `after` for the next page; absent on the last page.
    next_cursor: Option<Uuid>,
}

/// Filters of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventListParams {
    /// draft, published, canceled or completed.
    #[param(pattern = "^(draft|published|canceled|completed)$")]
    status: Option<String>,
    /// Text in title, description or venue.
    q: Option<String>,
    /// Starting at or after (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Starting before (RFC 3339).
    to: Option<DateTime<Utc>>,
    category: Option<String>,
    /// upcoming or past.
    #[param(pattern = "^(upcoming|past)$")]
    when: Option<String>,
    /// Cursor from the previous page.
    after: Option<Uuid>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// Availability of one ticket type.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::ticket_type_availability))]
pub struct TicketTypeAvailabilityDto {
    ticket_type_id: Uuid,
    name: String,
    capacity: u32,
    held: u32,
    confirmed: u32,
    /// Seats set aside by vouchers (only their holders may take them).
    reserved: u32,
    /// Seats anyone may hold now.
    available: u32,
}

/// Availability of an event; `version` grows with every change.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::availability))]
pub struct AvailabilityDto {
    pub(crate) event_id: Uuid,
    pub(crate) status: String,
    pub(crate) version: u64,
    pub(crate) ticket_types: Vec<TicketTypeAvailabilityDto>,
}

impl From<&EventAvailability> for AvailabilityDto {
    fn from(a: &EventAvailability) -> Self {
        AvailabilityDto {
            event_id: a.event_id.0,
            status: a.status.as_str().to_owned(),
            version: a.version,
            ticket_types: a
                .ticket_types
                .iter()
                .map(|t| TicketTypeAvailabilityDto {
                    ticket_type_id: t.ticket_type.id.0,
                    name: t.ticket_type.name.clone(),
                    capacity: t.capacity,
                    held: t.held,
                    confirmed: t.confirmed,
                    reserved: t.reserved,
                    available: t.available,
                })
                .collect(),
        }
    }
}

fn created(record: &EventRecord) -> impl IntoResponse + use<> {
    let location = format!("/api/v1/events/{}", record.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(EventDto::from(record)),
    )
}

/// Create a draft event.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = CreateEvent,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry key")),
    responses((status = 201, body = EventDto), (status = 400, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn create_event(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    idempotency: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<CreateEvent>,
) -> ApiResult<impl IntoResponse> {
    require_any(&principal, &[Role::Organizer])?;
    let idempotency = engine_token(idempotency, b"POST /api/v1/events", principal.user_id);
    let new = NewEvent {
        title: body.title,
        description: body.description,
        venue: body.venue,
        category: body.category,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        hold_ttl_secs: body.hold_ttl_secs,
        refund_until: body.refund_until,
        bank_transfer: body.bank_transfer.map(Into::into),
        invoicing: body.invoicing.map(Into::into),
        reminder_offsets_secs: body.reminder_offsets_secs,
        branding: body.branding.map(Into::into),
        locale: body.locale,
    };
    let record = state
        .engine
        .create_event(new, Some(principal.user_id), idempotency)
        .await?;
    Ok(created(&record))
}

/// List and search events.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventListParams),
    responses((status = 200, body = EventPage), (status = 400, body = Problem)))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    ApiQuery(p): ApiQuery<EventListParams>,
) -> ApiResult<Json<EventPage>> {
    let status = match p.status.as_deref() {
        None => None,
        Some("draft") => Some(EventStatus::Draft),
        Some("published") => Some(EventStatus::Published),
        Some("canceled") => Some(EventStatus::Canceled),
        Some("completed") => Some(EventStatus::Completed),
        Some(other) => return Err(ApiError::InvalidQuery(format!("unknown status `{other}`"))),
    };
    let when = match p.when.as_deref() {
        None => None,
        Some("upcoming") => Some(When::Upcoming),
        Some("past") => Some(When::Past),
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "`when` must be upcoming or past, not `{other}`"
            )));
        }
    };
    let limit = crate::http::extract::page_limit(p.limit, 50, PAGE_LIMIT_MAX)?;
    let query = EventQuery {
        status,
        text: p.q.filter(|q| !q.is_empty()),
        from: p.from,
        to: p.to,
        category: p.category,
        when,
        after: p.after.map(EventId),
        limit,
    };
    let page = state.engine.events(&query)?;
    Ok(Json(EventPage {
        items: page
            .items
            .iter()
            .filter(|e| sees_event(caller.as_ref(), e))
            .map(EventDto::from)
            .collect(),
        next_cursor: page.next.map(|id| id.0),
    }))
}

/// Read an event.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", params(("id" = Uuid, Path)),
    responses((status = 200, body = EventDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<EventDto>> {
    let event = state.engine.event(id)?;
    if !sees_event(caller.as_ref(), &event) {
        return Err(engine::error::DomainError::EventNotFound.into());
    }
    Ok(Json(EventDto::from(&event)))
}

/// Change an event's settings.
#[utoipa::path(patch, path = "/api/v1/events/{id}", tag = "events", params(("id" = Uuid, Path)), request_body = UpdateEvent,
    responses((status = 200, body = EventDto), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_event(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiJson(body): ApiJson<UpdateEvent>,
) -> ApiResult<Json<EventDto>> {
    managed_event(&state, &principal, id)?;
    let patch = EventPatch {
        title: body.title,
        description: body.description,
        venue: body.venue,
        category: body.category,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        hold_ttl_secs: body.hold_ttl_secs,
        refund_until: body.refund_until,
        bank_transfer: body.bank_transfer.map(Into::into),
        invoicing: body.invoicing.map(Into::into),
        reminder_offsets_secs: body.reminder_offsets_secs,
        branding: body.branding.map(Into::into),
        locale: body.locale,
    };
    Ok(Json(EventDto::from(
        &state.engine.update_event(id, patch).await?,
    )))
}

async fn transition(
    state: AppState,
    principal: Principal,
    id: EventId,
    to: EventStatus,
) -> ApiResult<Json<EventDto>> {
    managed_event(&state, &principal, id)?;
    Ok(Json(EventDto::from(
        &state.engine.transition_event(id, to).await?,
    )))
}

/// Publish a draft: ticket sales open.
#[utoipa::path(post, path = "/api/v1/events/{id}/publish", tag = "events", params(("id" = Uuid, Path)),
    responses((status = 200, body = EventDto), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn publish_event(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<EventDto>> {
    transition(state, principal, id, EventStatus::Published).await
}

/// Cancel an event: sales and check-in stop.
#[utoipa::path(post, path = "/api/v1/events/{id}/cancel", tag = "events", params(("id" = Uuid, Path)),
    responses((status = 200, body = EventDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn cancel_event(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<EventDto>> {
    transition(state, principal, id, EventStatus::Canceled).await
}

/// Complete a published event.
#[utoipa::path(post, path = "/api/v1/events/{id}/complete", tag = "events", params(("id" = Uuid, Path)),
    responses((status = 200, body = EventDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn complete_event(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<EventDto>> {
    transition(state, principal, id, EventStatus::Completed).await
}

/// Add a ticket type, with a new pool (`capacity`) or sharing one (`pool_id`).
#[utoipa::path(post, path = "/api/v1/events/{id}/ticket-types", tag = "events",
    params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retry key: the same key and body never create twice")),
    request_body = CreateTicketType,
    responses((status = 201, body = TicketTypeDto), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_ticket_type(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    idempotency: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<CreateTicketType>,
) -> ApiResult<impl IntoResponse> {
    managed_event(&state, &principal, id)?;
    let idempotency = engine_token(
        idempotency,
        format!("POST ticket-types {id}").as_bytes(),
        principal.user_id,
    );
    let seats = match (body.capacity, body.pool_id) {
        (Some(capacity), None) => SeatSource::NewPool { capacity },
        (None, Some(pool)) => SeatSource::SharedPool(PoolId(pool)),
        _ => {
            return Err(engine::error::DomainError::Validation(vec![FieldError::new(
                "capacity",
                "give exactly one of capacity (a new pool) or pool_id (a shared pool)",
            )])
            .into());
        }
    };
    let new = NewTicketType {
        name: body.name,
        price_minor: body.price_minor,
        currency: body.currency,
        seats,
        max_per_order: body.max_per_order.unwrap_or(10),
        max_per_account: body.max_per_account,
        min_per_order: body.min_per_order.unwrap_or(1),
        sales_start: body.sales_start,
        sales_end: body.sales_end,
        vat_rate_bp: body.vat_rate_bp.unwrap_or(0),
    };
    let (record, tt) = state
        .engine
        .create_ticket_type(id, new, idempotency)
        .await?;
    Ok((StatusCode::CREATED, Json(ticket_type_dto(&record, &tt))))
}

/// Seats per ticket type, as published after the last decision.
#[utoipa::path(get, path = "/api/v1/events/{id}/availability", tag = "events", params(("id" = Uuid, Path)),
    responses((status = 200, body = AvailabilityDto), (status = 404, body = Problem)))]
pub(crate) async fn availability(
    State(state): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<AvailabilityDto>> {
    visible_event(&state, caller.as_ref(), id)?;
    Ok(Json(AvailabilityDto::from(
        &state.engine.availability(id).await?,
    )))
}

/// Body of `PUT /api/v1/events/{id}/members/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::member_body))]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    /// `organizer` (manages the event) or `staff` (checks tickets in, nothing else).
    #[schema(value_type = String, pattern = "^(organizer|staff)$")]
    pub role: EventRole,
}

/// An account's role in an event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::member))]
pub struct MemberDto {
    user_id: Uuid,
    /// `owner`, `organizer` or `staff`.
    role: String,
}

fn members_dto(event: &EventRecord) -> Vec<MemberDto> {
    let owner = event.owner.map(|id| MemberDto {
        user_id: id.0,
        role: "owner".into(),
    });
    owner
        .into_iter()
        .chain(event.members.iter().map(|(id, role)| MemberDto {
            user_id: id.0,
            role: role.as_str().into(),
        }))
        .collect()
}

/// Who manages and who scans at an event (its managers only).
#[utoipa::path(get, path = "/api/v1/events/{id}/members", tag = "events", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = [MemberDto]), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn list_members(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<Vec<MemberDto>>> {
    let event = managed_event(&state, &principal, id)?;
    Ok(Json(members_dto(&event)))
}

/// Give an account a role in the event: a co-organizer, or staff who may check tickets in
/// here (and nowhere else). The event's managers only.
#[utoipa::path(put, path = "/api/v1/events/{id}/members/{user_id}", tag = "events", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = MemberBody,
    responses((status = 200, body = [MemberDto]), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn set_member(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIds(id, user): PathIds<EventId, UserId>,
    ApiJson(body): ApiJson<MemberBody>,
) -> ApiResult<Json<Vec<MemberDto>>> {
    managed_event(&state, &principal, id)?;
    state.engine.user(user)?;
    let event = state
        .engine
        .set_event_member(id, user, Some(body.role))
        .await?;
    Ok(Json(members_dto(&event)))
}

/// Take an account's role in the event away. The event's managers only.
#[utoipa::path(delete, path = "/api/v1/events/{id}/members/{user_id}", tag = "events", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = [MemberDto]), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathIds(id, user): PathIds<EventId, UserId>,
) -> ApiResult<Json<Vec<MemberDto>>> {
    managed_event(&state, &principal, id)?;
    let event = state.engine.set_event_member(id, user, None).await?;
    Ok(Json(members_dto(&event)))
}
