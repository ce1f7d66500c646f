//! Payments over HTTP: a buyer starts paying for their hold; a provider reports on it through
//! its webhook (verified on the raw bytes before anything is read); a manager marks a
//! registration paid at the box office or refunds it. Every decision is the pool's.

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, PathId};
use super::policy::{managed_event, visible_registration};
use super::registrations::{RegistrationDto, registration_dto};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::ids::RegistrationId;
use engine::payment::{Provider, RefundReason};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

pub mod dto;
pub mod report;

pub use dto::{PaymentDto, RefundDto};

/// How webhooks of each provider are verified.
#[derive(Clone, Debug, Default)]
pub struct WebhookSettings {
    /// Stripe's signing secrets and tolerance, when Stripe is enabled.
    pub stripe: Option<StripeWebhook>,
}

/// Stripe's webhook verification.
#[derive(Clone, Debug)]
pub struct StripeWebhook {
    /// Accepted signing secrets (several during a rotation).
    pub secrets: Vec<Vec<u8>>,
    /// Largest distance of the signed time from now, in seconds.
    pub tolerance_secs: u64,
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/registrations/{id}/payments", post(start_payment))
        .route("/api/v1/registrations/{id}/mark-paid", post(mark_paid))
        .route("/api/v1/registrations/{id}/refunds", post(refund))
        .route("/api/v1/payments/webhooks/stripe", post(stripe_webhook))
        .merge(report::router())
}

/// Body of `POST /api/v1/registrations/{id}/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::start_payment))]
#[serde(deny_unknown_fields)]
pub struct StartPaymentBody {
    /// Who takes the money: `stripe`.
    pub provider: String,
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
        Some(p @ Provider::Stripe) => p,
        _ => {
            return Err(engine::error::DomainError::Validation(vec![
                engine::error::FieldError::new("provider", "must be one of: stripe"),
            ])
            .into());
        }
    };
    let started = state.engine.start_payment(id, provider).await?;
    Ok((
        StatusCode::CREATED,
        Json(PaymentStartedDto {
            registration_id: id.0,
            payment: PaymentDto::from(&started.payment),
            client_secret: started.client_secret,
            approve_url: started.approve_url,
            hold_expires_at: started.hold_expires_at,
        }),
    ))
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

/// What a webhook delivery did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::webhook_received))]
pub struct WebhookReceived {
    /// `applied`, `duplicate` (a redelivery: nothing changed), `ignored` (recorded, changed
    /// nothing: see `reason`) or `unhandled` (an event type this server does not act on).
    result: String,
    reason: Option<String>,
}

/// Stripe's webhook: verified by its `Stripe-Signature` header (HMAC-SHA256 over
/// `t.payload`, any of the configured secrets, within the tolerance) before the body is read.
/// A forged, stale or replayed delivery gets 400 and an audit entry; a verified one is
/// applied once per event id and answered 200 once durable (a redelivery: 200, nothing
/// changes).
#[utoipa::path(post, path = "/api/v1/payments/webhooks/stripe", tag = "payments",
    request_body(content = Object, content_type = "application/json", description = "A Stripe event, as Stripe signed it",
        example = json!({"id": "evt_3QhY9aLkdIwHu7ix1", "type": "payment_intent.succeeded", "data": {"object": {
            "id": "pi_3QhY8sLkdIwHu7ix0RzT9bMx", "object": "payment_intent", "amount": 7200, "amount_received": 7200,
            "currency": "eur", "metadata": {"registration_id": "0195f3b8-4c61-7e2d-b1a4-6c0d2e8f7a13"}}}})),
    params(("Stripe-Signature" = String, Header, description = "t=<unix time>,v1=<hex HMAC-SHA256>")),
    responses((status = 200, body = WebhookReceived), (status = 400, description = "webhook_rejected: bad signature or malformed event", body = Problem),
        (status = 404, description = "Stripe is not enabled here", body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookReceived>> {
    let received_at = std::time::Instant::now();
    let Some(header) = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(reject(&state, "stripe", "no Stripe-Signature header"));
    };
    let settings = state
        .webhooks
        .stripe
        .clone()
        .ok_or(ApiError::RouteNotFound)?;
    let secrets: Vec<&[u8]> = settings.secrets.iter().map(Vec::as_slice).collect();
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
    if let Err(e) = integrations::stripe::signature::verify(
        header,
        &body,
        &secrets,
        now,
        settings.tolerance_secs,
    ) {
        return Err(reject(&state, "stripe", &e.to_string()));
    }
    let event = integrations::stripe::webhook::parse(&body)
        .map_err(|e| reject(&state, "stripe", &e.to_string()))?;
    let (registration_id, report) = match event {
        integrations::stripe::webhook::Event::Unhandled { .. } => {
            return Ok(received("unhandled", None));
        }
        integrations::stripe::webhook::Event::Report {
            registration_id,
            report,
        } => (registration_id, report),
    };
    let by_metadata = registration_id
        .as_deref()
        .and_then(|r| Uuid::parse_str(r).ok())
        .map(RegistrationId);
    let by_reference = || {
        let reference = report.provider_ref.as_deref()?;
        state
            .engine
            .registration_by_payment_ref(Provider::Stripe, reference)
            .ok()
            .flatten()
    };
    let Some(id) = by_metadata.or_else(by_reference) else {
        // Not ours (another integration on the same account): Stripe must stop sending it.
        metrics::counter!("payment_webhooks_total", "provider" => "stripe", "result" => "unknown_payment")
            .increment(1);
        return Ok(received("ignored", Some("unknown_payment")));
    };
    let capture = matches!(report.report, engine::payment::Report::Succeeded { .. });
    let outcome = match state.engine.report_payment(id, report).await {
        Err(engine::error::EngineError::Domain(
            engine::error::DomainError::RegistrationNotFound
            | engine::error::DomainError::PaymentNotFound,
        )) => {
            metrics::counter!("payment_webhooks_total", "provider" => "stripe", "result" => "unknown_payment")
                .increment(1);
            return Ok(received("ignored", Some("unknown_payment")));
        }
        other => other?,
    };
    let result = match (outcome.duplicate, outcome.ignored) {
        (true, _) => "duplicate",
        (false, Some(_)) => "ignored",
        (false, None) => "applied",
    };
    metrics::counter!("payment_webhooks_total", "provider" => "stripe", "result" => result)
        .increment(1);
    if capture && result == "applied" {
        // From the delivery's arrival to its decision (a confirmation, or a refund due) being
        // durable.
        metrics::histogram!("payment_webhook_to_confirmation_seconds", "provider" => "stripe")
            .record(received_at.elapsed().as_secs_f64());
    }
    Ok(received(result, outcome.ignored.map(|i| i.as_str())))
}

fn received(result: &str, reason: Option<&str>) -> Json<WebhookReceived> {
    Json(WebhookReceived {
        result: result.into(),
        reason: reason.map(str::to_owned),
    })
}

/// A delivery refused before anything was applied: counted, audited (at most one entry per
/// ten seconds, with the count held back, so a forger cannot flood the audit log), 400.
fn reject(state: &AppState, provider: &'static str, why: &str) -> ApiError {
    metrics::counter!("payment_webhook_rejections_total", "provider" => provider).increment(1);
    if let Some(held_back) = state.webhook_rejections.admit() {
        let entry = storage::audit::AuditEntry {
            at_ms: Utc::now().timestamp_millis(),
            actor: Uuid::nil(),
            actor_roles: vec![format!("webhook:{provider}")],
            action: format!("POST /api/v1/payments/webhooks/{provider} rejected: {why}"),
            target: format!("/api/v1/payments/webhooks/{provider}"),
            event_id: None,
            request_id: format!("{held_back} earlier rejections not audited"),
            status: 400,
        };
        if let Err(e) = state.db.append_audit(&entry) {
            tracing::error!(error = %e, "audit entry not written");
        }
        tracing::warn!(provider, reason = why, held_back, "webhook rejected");
    }
    ApiError::WebhookRejected(why.chars().take(200).collect())
}

/// Shared so the throttle is one per process.
pub(crate) type RejectionThrottle = Arc<crate::log_throttle::LogThrottle>;
