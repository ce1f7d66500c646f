//! Payments over HTTP: a buyer starts paying for their hold; a provider reports on it through
//! its webhook (verified on the raw bytes before anything is read); a manager marks a
//! registration paid at the box office or refunds it. Every decision is the pool's.

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiResult, Problem};
use super::extract::{ApiJson, PathId};
use super::policy::{managed_event, visible_registration};
use super::registrations::{RegistrationDto, registration_dto};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::ids::RegistrationId;
use engine::payment::{Provider, RefundReason};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub mod bank;
pub mod dto;
pub mod invoices;
pub mod report;
pub mod webhooks;

pub use webhooks::{RejectionThrottle, StripeWebhook, TwilioCallbacks, WebhookSettings};

pub use dto::{PaymentDto, RefundDto};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/registrations/{id}/payments", post(start_payment))
        .route("/api/v1/registrations/{id}/mark-paid", post(mark_paid))
        .route("/api/v1/registrations/{id}/refunds", post(refund))
        .route(
            "/api/v1/registrations/{id}/payments/capture",
            post(capture_payment),
        )
        .route(
            "/api/v1/payments/webhooks/stripe",
            post(webhooks::stripe_webhook),
        )
        .route(
            "/api/v1/payments/webhooks/paypal",
            post(webhooks::paypal_webhook),
        )
        .merge(report::router())
        .merge(bank::router())
        .merge(invoices::router())
}

/// Body of `POST /api/v1/registrations/{id}/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::start_payment))]
#[serde(deny_unknown_fields)]
pub struct StartPaymentBody {
    /// Who takes the money: `stripe` (the answer has the PaymentIntent's `client_secret`) or
    /// `paypal` (the answer has the `approve_url` to send the buyer to; once back, the front
    /// end asks `POST /registrations/{id}/payments/capture`).
    pub provider: String,
    /// Who the invoice is made out to (a company, with its address and VAT id); absent: the
    /// attendee.
    pub billing: Option<BillingDto>,
}

/// A buyer's billing details, as the invoice shows them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingDto {
    /// The legal name (a company, or a person), 1 to 140 characters.
    pub name: String,
    /// Postal address, at most 6 lines.
    #[serde(default)]
    pub address: Vec<String>,
    /// VAT identification number (up to 32 characters).
    #[serde(default)]
    pub vat_id: String,
}

/// What the buyer's page needs to pay.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::payment_started))]
pub struct PaymentStartedDto {
    registration_id: Uuid,
    payment: PaymentDto,
    /// Stripe: the PaymentIntent's client secret, for Stripe.js to confirm the payment with
    /// the buyer's card. Shown once; never stored by this server.
    client_secret: Option<String>,
    /// Providers that redirect: where the buyer approves the payment.
    approve_url: Option<String>,
    /// The hold, extended while the buyer pays.
    hold_expires_at: Option<DateTime<Utc>>,
    /// Bank transfer: what to put on the transfer.
    bank: Option<BankInstructions>,
}

/// What a buyer paying by bank transfer puts on the transfer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BankInstructions {
    payee: String,
    iban: String,
    bic: String,
    /// The ISO 11649 creditor reference (`RF…`): the transfer is matched by it.
    reference: String,
    /// The exact amount, as a decimal.
    amount: String,
    currency: String,
    /// The seats are held until then.
    deadline: Option<DateTime<Utc>>,
}

/// Start paying for a hold (its holder): the hold is extended while the buyer pays, and the
/// provider's payment is created. Once the provider reports the payment succeeded, the
/// registration is confirmed and its tickets issued; a start repeated while the payment is
/// pending answers the same attempt.
#[utoipa::path(post, path = "/api/v1/registrations/{id}/payments", tag = "payments", params(("id" = Uuid, Path)),
    request_body = StartPaymentBody,
    responses((status = 201, body = PaymentStartedDto), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "nothing_to_pay, already_paid, hold_expired or invalid_registration_state", body = Problem),
        (status = 422, description = "provider_not_configured or an unknown provider", body = Problem),
        (status = 503, description = "the provider could not be reached: retry", body = Problem)))]
pub(crate) async fn start_payment(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
    ApiJson(body): ApiJson<StartPaymentBody>,
) -> ApiResult<impl IntoResponse> {
    visible_registration(&state, &principal, id)?;
    let provider = match Provider::parse(&body.provider) {
        Some(p @ (Provider::Stripe | Provider::Paypal | Provider::BankTransfer)) => p,
        _ => {
            return Err(engine::error::DomainError::Validation(vec![
                engine::error::FieldError::new(
                    "provider",
                    "must be one of: stripe, paypal, bank_transfer",
                ),
            ])
            .into());
        }
    };
    let billing = body.billing.map(|b| engine::invoice::Party {
        name: b.name,
        address: b.address,
        vat_id: b.vat_id,
        email: String::new(),
    });
    let started = state.engine.start_payment(id, provider, billing).await?;
    let bank = started.bank.clone().map(|b| BankInstructions {
        payee: b.payee,
        iban: b.iban,
        bic: b.bic,
        reference: started.payment.provider_ref.clone().unwrap_or_default(),
        amount: integrations::money::to_decimal(
            started.payment.amount_minor,
            &started.payment.currency,
        )
        .unwrap_or_default(),
        currency: started.payment.currency.clone(),
        deadline: started.hold_expires_at,
    });
    Ok((
        StatusCode::CREATED,
        Json(PaymentStartedDto {
            registration_id: id.0,
            payment: PaymentDto::from(&started.payment),
            client_secret: started.client_secret,
            approve_url: started.approve_url,
            hold_expires_at: started.hold_expires_at,
            bank,
        }),
    ))
}

/// Capture an approved payment (its holder; PayPal: once the buyer is back from approving the
/// order). The capture confirms the registration and issues its tickets; a repeat answers the
/// registration as it is.
#[utoipa::path(post, path = "/api/v1/registrations/{id}/payments/capture", tag = "payments", params(("id" = Uuid, Path)),
    responses((status = 200, body = RegistrationDto), (status = 404, description = "registration_not_found or payment_not_found", body = Problem),
        (status = 409, description = "payment_not_approved: the buyer has not approved it at the provider", body = Problem),
        (status = 422, body = Problem), (status = 503, description = "the provider could not be reached: retry", body = Problem)))]
pub(crate) async fn capture_payment(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Json<RegistrationDto>> {
    visible_registration(&state, &principal, id)?;
    let view = state.engine.capture_payment(id).await?;
    Ok(Json(registration_dto(&state, view)))
}

/// Mark a held registration paid (managers: box office, cash): records its total as captured
/// by hand and issues its tickets. Audited.
#[utoipa::path(post, path = "/api/v1/registrations/{id}/mark-paid", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RegistrationDto), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "nothing_to_pay, already_paid, hold_expired or invalid_registration_state", body = Problem),
        (status = 503, body = Problem)))]
pub(crate) async fn mark_paid(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Json<RegistrationDto>> {
    let view = visible_registration(&state, &principal, id)?;
    managed_event(&state, &principal, view.event_id)?;
    let reference = format!("manual:{}", Uuid::new_v4());
    let view = state.engine.mark_paid(id, reference).await?;
    Ok(Json(registration_dto(&state, view)))
}

/// Body of `POST /api/v1/registrations/{id}/refunds`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::refund_request))]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Minor units to refund; absent: everything not yet refunded (which cancels the
    /// registration and revokes its tickets).
    pub amount_minor: Option<i64>,
}

/// Refund (part of) a registration's payment (managers). The refund is decided at once (never
/// more than what is captured and not yet refunded) and carried out by the refund relay, which
/// calls the provider with the refund's id as its idempotency key. Audited.
#[utoipa::path(post, path = "/api/v1/registrations/{id}/refunds", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])), request_body = RefundBody,
    responses((status = 202, body = PaymentDto), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, description = "registration_not_found or payment_not_found", body = Problem),
        (status = 409, description = "refund_too_large", body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn refund(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
    ApiJson(body): ApiJson<RefundBody>,
) -> ApiResult<impl IntoResponse> {
    let view = visible_registration(&state, &principal, id)?;
    managed_event(&state, &principal, view.event_id)?;
    if body.amount_minor.is_some_and(|a| a <= 0) {
        return Err(
            engine::error::DomainError::Validation(vec![engine::error::FieldError::new(
                "amount_minor",
                "must be > 0",
            )])
            .into(),
        );
    }
    let payment = state
        .engine
        .refund(id, body.amount_minor, RefundReason::Requested)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(PaymentDto::from(&payment))))
}
