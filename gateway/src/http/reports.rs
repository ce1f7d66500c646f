//! Providers' reports about messages they were handed: SendGrid's signed event webhook and
//! Twilio's signed status callbacks. Each is verified on the raw request before anything in it
//! is read (a forged or stale one gets 400 and a throttled audit entry), then marks the
//! delivery of the message it names `delivered` or `bounced`.

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chrono::Utc;
use engine::notify::{Channel, DeliveryStatus};
use integrations::mail::sendgrid::Outcome;
use serde::Serialize;
use utoipa::ToSchema;

/// Largest SendGrid event batch read (SendGrid's own batches stay under 768 KB).
const SENDGRID_BATCH_BYTES_MAX: usize = 1 << 20;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        // SendGrid posts batches of up to ~768 KB: more than the API's general body limit.
        .route(
            "/api/v1/notifications/webhooks/sendgrid",
            post(sendgrid_events).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/notifications/webhooks/twilio", post(twilio_status))
}

/// How many events of a webhook delivery changed a delivery's status.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(events_example))]
pub struct EventsReceived {
    /// Events about our messages in the batch.
    events: usize,
    /// Of those, the ones that changed a delivery (the rest repeat or come too late).
    applied: usize,
}

/// SendGrid's signed event webhook: delivered, bounce, dropped and spam report events mark
/// the delivery of the message they name (the `message_id` custom argument) delivered or
/// bounced. Verified on the raw bytes (ECDSA P-256 over the timestamp and the body) before
/// anything is read; a forged or stale delivery gets 400 and an audit entry (throttled).
#[utoipa::path(post, path = "/api/v1/notifications/webhooks/sendgrid", tag = "notifications",
    request_body(content = [Object], content_type = "application/json", description = "A batch of SendGrid events",
        example = json!([{"email": "ada@example.com", "event": "delivered", "timestamp": 1764691200,
            "sg_event_id": "ZGVsaXZlcmVk", "sg_message_id": "14c5d75ce93.dfd.64b469",
            "message_id": "01938f2a-6b1c-7d4e-9f00-1a2b3c4d5e6f"}])),
    params(("X-Twilio-Email-Event-Webhook-Signature" = String, Header, description = "base64 DER ECDSA P-256 signature"),
        ("X-Twilio-Email-Event-Webhook-Timestamp" = String, Header, description = "unix seconds")),
    responses((status = 200, body = EventsReceived), (status = 400, description = "webhook_rejected: bad signature or malformed batch", body = Problem),
        (status = 404, description = "the event webhook is not configured here", body = Problem)))]
pub(crate) async fn sendgrid_events(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Json<EventsReceived>> {
    const PATH: &str = "/api/v1/notifications/webhooks/sendgrid";
    let reject = |why: &str| reject(&state, "sendgrid", PATH, why);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header("x-twilio-email-event-webhook-signature"),
        header("x-twilio-email-event-webhook-timestamp"),
    ) else {
        return Err(reject("no signature or timestamp header"));
    };
    // Unsigned requests are refused alike whether or not the webhook is configured here.
    let verifier = state
        .webhooks
        .sendgrid
        .clone()
        .ok_or(ApiError::RouteNotFound)?;
    let body = crate::http::body::read(body, SENDGRID_BATCH_BYTES_MAX).await?;
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
    verifier
        .verify(signature, timestamp, &body, now)
        .map_err(|e| reject(&e.to_string()))?;
    let events = integrations::mail::sendgrid::parse(&body).map_err(|e| reject(&e.to_string()))?;
    let engine = state.engine.clone();
    let total = events.len();
    // One store read and write per event: off the async workers.
    let applied = tokio::task::spawn_blocking(move || {
        let mut applied = 0;
        for event in events {
            let (status, detail) = match event.outcome {
                Outcome::Delivered => (DeliveryStatus::Delivered, None),
                Outcome::Bounced(why) => (DeliveryStatus::Bounced, Some(why)),
            };
            metrics::counter!("regengine_notify_provider_events_total", "channel" => "email", "event" => event.event)
                .increment(1);
            if engine.delivery_reported(event.message_id, Channel::Email, status, detail)? {
                applied += 1;
            }
        }
        Ok::<_, engine::error::EngineError>(applied)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(EventsReceived {
        events: total,
        applied,
    }))
}

/// A refused report: counted, audited (throttled), 400.
fn reject(state: &AppState, provider: &'static str, path: &str, why: &str) -> ApiError {
    metrics::counter!("regengine_notify_webhook_rejections_total", "provider" => provider)
        .increment(1);
    super::payments::webhooks::reject_at(state, provider, path, why)
}

fn events_example() -> serde_json::Value {
    serde_json::json!({"events": 3, "applied": 2})
}

/// Records `status` on `message`'s delivery on `channel` (off the async workers: a store
/// read and write); whether it changed it.
async fn report(
    state: &AppState,
    message: uuid::Uuid,
    channel: Channel,
    status: DeliveryStatus,
    detail: Option<String>,
) -> ApiResult<bool> {
    let engine = state.engine.clone();
    Ok(tokio::task::spawn_blocking(move || {
        engine.delivery_reported(message, channel, status, detail)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??)
}

/// Twilio's status callback for a text message: `delivered` marks its delivery delivered,
/// `undelivered` and `failed` bounced (with Twilio's error code); the other statuses change
/// nothing. Verified first: `X-Twilio-Signature` over the configured callback URL with the
/// query it was called with, and every form parameter in name order (HMAC-SHA1 with the auth
/// token); the message is the `message_id` query parameter we gave Twilio with the message.
#[utoipa::path(post, path = "/api/v1/notifications/webhooks/twilio", tag = "notifications",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's status callback parameters (MessageSid, MessageStatus, ErrorCode, ...)"),
    params(("message_id" = uuid::Uuid, Query, description = "our message id, as set in StatusCallback"),
        ("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of URL and parameters")),
    responses((status = 200, body = EventsReceived), (status = 400, description = "webhook_rejected: bad signature or parameters", body = Problem),
        (status = 404, description = "SMS status callbacks are not configured here", body = Problem)))]
pub(crate) async fn twilio_status(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<EventsReceived>> {
    const PATH: &str = "/api/v1/notifications/webhooks/twilio";
    let reject = |why: &str| reject(&state, "twilio", PATH, why);
    let Some(signature) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(reject("no X-Twilio-Signature header"));
    };
    // Unsigned requests are refused alike whether or not callbacks are configured here.
    let callbacks = state
        .webhooks
        .twilio
        .clone()
        .ok_or(ApiError::RouteNotFound)?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let url = match uri.query() {
        Some(query) => format!("{}?{query}", callbacks.url),
        None => callbacks.url.clone(),
    };
    if !integrations::twilio::verify(&callbacks.auth_token, &url, &params, signature) {
        return Err(reject("the signature does not verify with the auth token"));
    }
    let message = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "message_id")
        .and_then(|(_, v)| uuid::Uuid::parse_str(&v).ok());
    let Some(message) = message else {
        return Err(reject("no message_id in the callback URL"));
    };
    let Some(status) = integrations::twilio::status(&params) else {
        return Ok(Json(EventsReceived {
            events: 0,
            applied: 0,
        }));
    };
    let (status, detail, event) = match status {
        integrations::twilio::Status::Delivered => (DeliveryStatus::Delivered, None, "delivered"),
        integrations::twilio::Status::Failed(why) => (DeliveryStatus::Bounced, Some(why), "failed"),
    };
    metrics::counter!("regengine_notify_provider_events_total", "channel" => "sms", "event" => event)
        .increment(1);
    let applied = report(&state, message, Channel::Sms, status, detail).await?;
    Ok(Json(EventsReceived {
        events: 1,
        applied: usize::from(applied),
    }))
}
