//! Providers' webhooks: verified before anything is read (Stripe: its signature on the raw
//! bytes; PayPal: PayPal's own verify-webhook-signature), read into reports, routed to their
//! registration (by the registration id the provider echoes, or the payment-reference index)
//! and applied by its pool once per provider event id. 200 means the decision is durable.

use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult, Problem};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use engine::ids::RegistrationId;
use engine::payment::Provider;
use integrations::webhook::Event;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

/// How webhooks of each provider are verified.
#[derive(Clone, Debug, Default)]
pub struct WebhookSettings {
    /// Stripe's signing secrets and tolerance, when Stripe is enabled.
    pub stripe: Option<StripeWebhook>,
    /// PayPal's client (PayPal verifies its own deliveries), when PayPal is enabled.
    pub paypal: Option<Arc<integrations::paypal::PayPalClient>>,
    /// SendGrid's event webhook key, when configured.
    pub sendgrid: Option<integrations::mail::sendgrid::EventVerifier>,
    /// Twilio's status callbacks: the auth token (their key) and the public URL they are
    /// signed over, when SMS is on and callbacks are asked for.
    pub twilio: Option<TwilioCallbacks>,
}

/// How Twilio's status callbacks are verified.
#[derive(Clone, Debug)]
pub struct TwilioCallbacks {
    pub auth_token: String,
    /// The callback URL as Twilio calls it (without the query).
    pub url: String,
}

/// Stripe's webhook verification.
#[derive(Clone, Debug)]
pub struct StripeWebhook {
    /// Accepted signing secrets (several during a rotation).
    pub secrets: Vec<Vec<u8>>,
    /// Largest distance of the signed time from now, in seconds.
    pub tolerance_secs: u64,
}

/// What a webhook delivery did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::webhook_received))]
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
    apply(&state, Provider::Stripe, event, received_at).await
}

/// PayPal's webhook: its `PAYPAL-*` transmission headers and the event are sent to PayPal's
/// verify-webhook-signature with this server's webhook id before anything is applied. A
/// delivery PayPal does not vouch for gets 400 and an audit entry; if PayPal cannot be asked,
/// 503 (PayPal delivers again). A verified one is applied once per event id.
#[utoipa::path(post, path = "/api/v1/payments/webhooks/paypal", tag = "payments",
    request_body(content = Object, content_type = "application/json", description = "A PayPal webhook event",
        example = json!({"id": "WH-58D329510W468432D-8HN650336L201105X", "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "resource": {"id": "2GG279541U471931P", "status": "COMPLETED", "custom_id": "0195f3b8-4c61-7e2d-b1a4-6c0d2e8f7a13",
                "amount": {"currency_code": "EUR", "value": "72.00"}}})),
    params(("PAYPAL-TRANSMISSION-ID" = String, Header), ("PAYPAL-TRANSMISSION-TIME" = String, Header),
        ("PAYPAL-TRANSMISSION-SIG" = String, Header), ("PAYPAL-CERT-URL" = String, Header),
        ("PAYPAL-AUTH-ALGO" = String, Header)),
    responses((status = 200, body = WebhookReceived), (status = 400, description = "webhook_rejected: not verified or malformed", body = Problem),
        (status = 404, description = "PayPal is not enabled here", body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn paypal_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookReceived>> {
    let received_at = std::time::Instant::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 2048)
            .map(str::to_owned)
    };
    let (Some(id), Some(time), Some(sig), Some(cert), Some(algo)) = (
        header("paypal-transmission-id"),
        header("paypal-transmission-time"),
        header("paypal-transmission-sig"),
        header("paypal-cert-url"),
        header("paypal-auth-algo"),
    ) else {
        return Err(reject(
            &state,
            "paypal",
            "PAYPAL-* transmission headers missing",
        ));
    };
    let client = state
        .webhooks
        .paypal
        .clone()
        .ok_or(ApiError::RouteNotFound)?;
    let raw: &serde_json::value::RawValue = serde_json::from_slice(&body)
        .map_err(|e| reject(&state, "paypal", &format!("not JSON: {e}")))?;
    let transmission = integrations::paypal::WebhookHeaders {
        auth_algo: algo,
        cert_url: cert,
        transmission_id: id,
        transmission_sig: sig,
        transmission_time: time,
    };
    match client.verify_webhook(&transmission, raw).await {
        Ok(true) => {}
        Ok(false) => return Err(reject(&state, "paypal", "PayPal did not verify it")),
        Err(e) => {
            tracing::warn!(error = %e, "PayPal webhook verification unavailable");
            return Err(ApiError::Engine(engine::error::EngineError::Unavailable(
                "webhook verification".into(),
            )));
        }
    }
    let event: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|e| reject(&state, "paypal", &format!("not JSON: {e}")))?;
    let event = integrations::paypal::webhook::parse(&event)
        .map_err(|e| reject(&state, "paypal", &e.to_string()))?;
    apply(&state, Provider::Paypal, event, received_at).await
}

/// Routes a verified event to its registration and has its pool apply it.
async fn apply(
    state: &AppState,
    provider: Provider,
    event: Event,
    received_at: std::time::Instant,
) -> ApiResult<Json<WebhookReceived>> {
    let name = provider.as_str();
    let (registration_id, report) = match event {
        Event::Unhandled { .. } => return Ok(received("unhandled", None)),
        Event::Report {
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
            .registration_by_payment_ref(provider, reference)
            .ok()
            .flatten()
    };
    let unknown = || {
        // Not ours (another integration on the same account): the provider must stop
        // sending it.
        metrics::counter!("regengine_payment_webhooks_total", "provider" => name, "result" => "unknown_payment")
            .increment(1);
        Ok(received("ignored", Some("unknown_payment")))
    };
    let Some(id) = by_metadata.or_else(by_reference) else {
        return unknown();
    };
    let capture = matches!(report.report, engine::payment::Report::Succeeded { .. });
    let outcome = match state.engine.report_payment(id, report).await {
        Err(engine::error::EngineError::Domain(
            engine::error::DomainError::RegistrationNotFound
            | engine::error::DomainError::PaymentNotFound,
        )) => return unknown(),
        other => other?,
    };
    let result = match (outcome.duplicate, outcome.ignored) {
        (true, _) => "duplicate",
        (false, Some(_)) => "ignored",
        (false, None) => "applied",
    };
    metrics::counter!("regengine_payment_webhooks_total", "provider" => name, "result" => result)
        .increment(1);
    if capture && result == "applied" {
        // From the delivery's arrival to its decision (a confirmation, or a refund due) being
        // durable.
        metrics::histogram!("regengine_payment_webhook_to_confirmation_seconds", "provider" => name)
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
    metrics::counter!("regengine_payment_webhook_rejections_total", "provider" => provider)
        .increment(1);
    let path = format!("/api/v1/payments/webhooks/{provider}");
    reject_at(state, provider, &path, why)
}

/// A refused webhook delivery to `path`: 400, and an audit entry (throttled).
pub(crate) fn reject_at(
    state: &AppState,
    provider: &'static str,
    path: &str,
    why: &str,
) -> ApiError {
    if let Some(held_back) = state.webhook_rejections.admit() {
        let entry = storage::audit::AuditEntry {
            at_ms: Utc::now().timestamp_millis(),
            actor: Uuid::nil(),
            actor_roles: vec![format!("webhook:{provider}")],
            action: format!("POST {path} rejected: {why}"),
            target: path.to_owned(),
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
pub type RejectionThrottle = Arc<crate::log_throttle::LogThrottle>;
