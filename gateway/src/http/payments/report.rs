//! What an organizer reads about an event's money: its payments (paged, filtered by state and
//! provider), the same as CSV, and a revenue summary per currency and provider. Read from the
//! registrations' read model, which keeps each payment as its pool decided it.

use super::PaymentDto;
use crate::http::AppState;
use crate::http::auth::Authenticated;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{ApiQuery, PathId};
use crate::http::policy::managed_event;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use engine::ids::{EventId, RegistrationId};
use engine::payment::{PaymentState, Provider};
use engine::ports::RegistrationView;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Registrations read per page of the underlying scan.
const SCAN_PAGE: usize = 500;
/// Registrations one listing request scans at most (a filter that matches few of a large
/// event's registrations answers with fewer items and a cursor, never with an unbounded scan).
const SCAN_MAX: usize = 20_000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/{id}/payments", get(list_payments))
        .route("/api/v1/events/{id}/payments/summary", get(summary))
        .route("/api/v1/events/{id}/payments.csv", get(export_payments))
        .route("/api/v1/events/{id}/cancellation", get(cancellation))
}

/// Filters and paging of an event's payments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PaymentListParams {
    /// Only payments in this state (created, pending, failed, canceled, succeeded,
    /// partially_refunded, refunded, disputed).
    state: Option<String>,
    /// Only payments taken by this provider (stripe, paypal, bank_transfer, manual).
    provider: Option<String>,
    /// Cursor from the previous page.
    after: Option<Uuid>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// A registration's payment in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentItem {
    registration_id: Uuid,
    /// The registration's status (held, confirmed, canceled, expired).
    registration_status: String,
    attendee_email: String,
    payment: PaymentDto,
}

/// A page of an event's payments, in registration order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::payment_page))]
pub struct PaymentPage {
    items: Vec<PaymentItem>,
    /// Pass as `after` for the next page; absent when the scan reached the end.
    next_cursor: Option<Uuid>,
}

const STATES: [PaymentState; 8] = [
    PaymentState::Created,
    PaymentState::Pending,
    PaymentState::Failed,
    PaymentState::Canceled,
    PaymentState::Succeeded,
    PaymentState::PartiallyRefunded,
    PaymentState::Refunded,
    PaymentState::Disputed,
];

fn parse_filters(p: &PaymentListParams) -> ApiResult<(Option<PaymentState>, Option<Provider>)> {
    let state = match &p.state {
        None => None,
        Some(s) => Some(
            STATES
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| ApiError::InvalidQuery(format!("unknown state `{s}`")))?,
        ),
    };
    let provider = match &p.provider {
        None => None,
        Some(s) => Some(
            Provider::parse(s)
                .ok_or_else(|| ApiError::InvalidQuery(format!("unknown provider `{s}`")))?,
        ),
    };
    Ok((state, provider))
}

/// An event's payments (managers), in registration order, filtered by state and provider.
#[utoipa::path(get, path = "/api/v1/events/{id}/payments", tag = "payments", params(("id" = Uuid, Path), PaymentListParams),
    security(("bearer" = [])),
    responses((status = 200, body = PaymentPage), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn list_payments(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiQuery(p): ApiQuery<PaymentListParams>,
) -> ApiResult<Json<PaymentPage>> {
    managed_event(&state, &principal, id)?;
    let (want_state, want_provider) = parse_filters(&p)?;
    let limit = crate::http::registrations::page_limit(p.limit)?;
    let mut cursor = p.after.map(RegistrationId);
    let (mut items, mut scanned) = (Vec::new(), 0);
    loop {
        let page = state
            .engine
            .registrations_by_event(id, None, cursor, SCAN_PAGE)?;
        let mut full = false;
        for view in &page.items {
            scanned += 1;
            cursor = Some(view.id);
            let Some(payment) = &view.payment else {
                continue;
            };
            if want_state.is_some_and(|s| s != payment.state())
                || want_provider.is_some_and(|p| p != payment.provider)
            {
                continue;
            }
            items.push(PaymentItem {
                registration_id: view.id.0,
                registration_status: view.status.as_str().into(),
                attendee_email: view.attendee.email.clone(),
                payment: PaymentDto::from(payment),
            });
            if items.len() == limit {
                full = true;
                break;
            }
        }
        let exhausted = page.next.is_none() && !full;
        if full || exhausted || scanned >= SCAN_MAX {
            let next_cursor = if exhausted { None } else { cursor.map(|c| c.0) };
            return Ok(Json(PaymentPage { items, next_cursor }));
        }
    }
}

/// Calls `f` with every registration of the event, in pages.
fn every_registration(
    state: &AppState,
    id: EventId,
    mut f: impl FnMut(&RegistrationView),
) -> ApiResult<()> {
    let mut cursor = None;
    loop {
        let page = state
            .engine
            .registrations_by_event(id, None, cursor, SCAN_PAGE)?;
        page.items.iter().for_each(&mut f);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// Money of one currency and provider.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RevenueLine {
    currency: String,
    provider: String,
    /// Payments started.
    payments: u64,
    /// Captured in all (minor units).
    captured_minor: i64,
    /// Given back.
    refunded_minor: i64,
    /// Refunds decided, not yet answered by the provider.
    refunding_minor: i64,
    /// captured − refunded.
    net_minor: i64,
    /// Due from payments started and not captured, for registrations still held.
    outstanding_minor: i64,
    /// Payments whose charge is disputed.
    disputed: u64,
}

/// An event's revenue, per currency and provider.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::revenue_summary))]
pub struct RevenueSummary {
    event_id: Uuid,
    lines: Vec<RevenueLine>,
    /// Registrations confirmed with a total above 0, and their totals per currency (what the
    /// captures should add up to, less refunds of registrations still confirmed).
    confirmed_paid: u64,
    confirmed_totals_minor: BTreeMap<String, i64>,
}

/// An event's revenue (managers): captured, refunded, refunding, outstanding, per currency
/// and provider.
#[utoipa::path(get, path = "/api/v1/events/{id}/payments/summary", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RevenueSummary), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn summary(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<RevenueSummary>> {
    managed_event(&state, &principal, id)?;
    let mut lines: BTreeMap<(String, &'static str), RevenueLine> = BTreeMap::new();
    let (mut confirmed_paid, mut confirmed_totals) = (0, BTreeMap::new());
    every_registration(&state, id, |view| {
        add(&mut lines, view);
        let total = view.price.as_ref().map_or(0, |p| p.total_minor);
        if view.status == engine::model::RegistrationStatus::Confirmed && total > 0 {
            confirmed_paid += 1;
            let currency = view.price.as_ref().map(|p| p.currency.clone());
            *confirmed_totals
                .entry(currency.unwrap_or_default())
                .or_default() += total;
        }
    })?;
    Ok(Json(RevenueSummary {
        event_id: id.0,
        lines: lines.into_values().collect(),
        confirmed_paid,
        confirmed_totals_minor: confirmed_totals,
    }))
}

fn add(lines: &mut BTreeMap<(String, &'static str), RevenueLine>, view: &RegistrationView) {
    let Some(p) = &view.payment else {
        return;
    };
    let line = lines
        .entry((p.currency.clone(), p.provider.as_str()))
        .or_insert_with(|| RevenueLine {
            currency: p.currency.clone(),
            provider: p.provider.as_str().into(),
            ..RevenueLine::default()
        });
    line.payments += 1;
    line.captured_minor += p.captured_minor();
    line.refunded_minor += p.refunded_minor();
    line.refunding_minor += p.refunding_minor();
    line.net_minor = line.captured_minor - line.refunded_minor;
    if p.captures.is_empty() && view.status == engine::model::RegistrationStatus::Held {
        line.outstanding_minor += p.amount_minor;
    }
    line.disputed += u64::from(p.disputed);
}

const PAYMENT_COLUMNS: &[&str] = &[
    "registration_id",
    "registration_status",
    "attendee_email",
    "provider",
    "state",
    "provider_ref",
    "currency",
    "amount_minor",
    "captured_minor",
    "refunded_minor",
    "refunding_minor",
    "disputed",
];

fn payment_rows(_: &AppState, v: &RegistrationView, out: &mut String) {
    let Some(p) = &v.payment else {
        return;
    };
    out.push_str(&crate::http::organizer::row(&[
        &v.id.to_string(),
        v.status.as_str(),
        &v.attendee.email,
        p.provider.as_str(),
        p.state().as_str(),
        p.provider_ref.as_deref().unwrap_or_default(),
        &p.currency,
        &p.amount_minor.to_string(),
        &p.captured_minor().to_string(),
        &p.refunded_minor().to_string(),
        &p.refunding_minor().to_string(),
        if p.disputed { "true" } else { "false" },
    ]));
}

/// An event's payments as CSV (managers), one row per registration with a payment.
#[utoipa::path(get, path = "/api/v1/events/{id}/payments.csv", tag = "payments",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String,
        example = "registration_id,registration_status,attendee_email,provider,state,provider_ref,currency,amount_minor,captured_minor,refunded_minor,refunding_minor,disputed\r\n01a40086-8440-7e27-8fcb-ce0c87b12e2e,confirmed,ada@example.org,stripe,succeeded,pi_3QhY8sLkdIwHu7ix0RzT9bMx,EUR,7200,7200,0,0,false\r\n"),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn export_payments(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<impl IntoResponse> {
    managed_event(&state, &principal, event_id)?;
    Ok(crate::http::organizer::csv_stream(
        state,
        event_id,
        PAYMENT_COLUMNS,
        payment_rows,
        format!("payments-{event_id}.csv"),
    ))
}

/// How far an event's cancellation got.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::cancellation))]
pub struct CancellationDto {
    event_id: Uuid,
    /// The event's status (the cascade runs once it is canceled).
    event_status: String,
    /// Registrations still held or confirmed (0 once every one is canceled).
    registrations_live: u64,
    /// Refunds decided and waiting for the provider's answer.
    refunds_requested: u64,
    refunds_succeeded: u64,
    /// Refunds the provider refused after the retries: a manager resolves them.
    refunds_failed: u64,
    /// Money given back so far (minor units, per currency).
    refunded_minor: BTreeMap<String, i64>,
    /// Money still captured and not yet being refunded (per currency).
    refundable_minor: BTreeMap<String, i64>,
    /// Canceled, nothing live, no refund waiting, nothing left to refund.
    done: bool,
}

/// The progress of an event's cancellation (managers): registrations canceled, refunds
/// requested, succeeded and failed. The cascade runs in the event's pools in bounded turns and
/// resumes after a crash; refunds go through the refund relay.
#[utoipa::path(get, path = "/api/v1/events/{id}/cancellation", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CancellationDto), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn cancellation(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
) -> ApiResult<Json<CancellationDto>> {
    let event = managed_event(&state, &principal, id)?;
    let mut out = CancellationDto {
        event_id: id.0,
        event_status: event.status.as_str().into(),
        ..CancellationDto::default()
    };
    every_registration(&state, id, |view| {
        use engine::model::RegistrationStatus as S;
        out.registrations_live += u64::from(matches!(view.status, S::Held | S::Confirmed));
        let Some(p) = &view.payment else {
            return;
        };
        for r in &p.refunds {
            match r.state {
                engine::payment::RefundState::Requested => out.refunds_requested += 1,
                engine::payment::RefundState::Succeeded => out.refunds_succeeded += 1,
                engine::payment::RefundState::Failed => out.refunds_failed += 1,
            }
        }
        *out.refunded_minor.entry(p.currency.clone()).or_default() += p.refunded_minor();
        let left = p.refundable_minor();
        if left > 0 {
            *out.refundable_minor.entry(p.currency.clone()).or_default() += left;
        }
    })?;
    out.done = event.status == engine::model::EventStatus::Canceled
        && out.registrations_live == 0
        && out.refunds_requested == 0
        && out.refundable_minor.is_empty();
    Ok(Json(out))
}
