//! PayPal's REST API as the engine's `PaymentProvider`.
//!
//! - Every call carries a bearer token from `POST /v1/oauth2/token` (client credentials),
//!   cached until a minute before it expires; a 401 drops it and the call is tried once more.
//! - Orders (`POST /v2/checkout/orders`, intent `CAPTURE`) carry the registration id as
//!   `custom_id` and the amount as PayPal's decimal string; the answer's `payer-action` (or
//!   `approve`) link is where the buyer approves. `capture` (`POST …/orders/{id}/capture`)
//!   takes the money once the buyer is back.
//! - Every write carries `PayPal-Request-Id` (PayPal's idempotency key): the attempt for an
//!   order, the order for its capture, the refund's id for a refund.
//! - Webhooks are verified by PayPal (`POST /v1/notifications/verify-webhook-signature`) with
//!   the configured webhook id.

use crate::money;
use engine::outbox::BoxFuture;
use engine::payment::{
    Captured, CreatePayment, CreatedPayment, PaymentProvider, ProviderError, RefundCall,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the API is and who we are.
#[derive(Clone, Debug)]
pub struct PayPalSettings {
    /// `https://api-m.paypal.com` (or the sandbox, or a local server).
    pub api_base: String,
    pub client_id: String,
    pub client_secret: String,
    /// The webhook's id at PayPal (verification needs it).
    pub webhook_id: String,
    /// Where PayPal sends the buyer back after approving, and after canceling (the front end's
    /// pages; `{registration_id}` is replaced).
    pub return_url: String,
    pub cancel_url: String,
    /// One call's limit.
    pub timeout: Duration,
}

/// A PayPal account's API.
#[derive(Debug)]
pub struct PayPalClient {
    http: reqwest::Client,
    settings: PayPalSettings,
    /// The access token and when to stop using it.
    token: Mutex<Option<(String, Instant)>>,
}

/// The headers PayPal signs a webhook delivery with.
#[derive(Clone, Debug, Default)]
pub struct WebhookHeaders {
    pub auth_algo: String,
    pub cert_url: String,
    pub transmission_id: String,
    pub transmission_sig: String,
    pub transmission_time: String,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    expires_in: u64,
}

/// A token is not used in its last minute.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

impl PayPalClient {
    /// A client of the API in `settings`.
    ///
    /// # Errors
    /// If the HTTP client cannot be built (TLS set-up).
    pub fn new(settings: PayPalSettings) -> Result<Self, String> {
        let mut settings = settings;
        settings.api_base = settings.api_base.trim_end_matches('/').to_owned();
        Ok(Self {
            http: crate::http::client(settings.timeout).map_err(|e| e.to_string())?,
            settings,
            token: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one.
    async fn token(&self) -> Result<String, ProviderError> {
        if let Some((token, until)) = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && Instant::now() < until
        {
            return Ok(token);
        }
        let response = self
            .http
            .post(format!("{}/v1/oauth2/token", self.settings.api_base))
            .basic_auth(&self.settings.client_id, Some(&self.settings.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("token: {}", e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(error(status, &body));
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unavailable(format!("unreadable token: {e}")))?;
        let until =
            Instant::now() + Duration::from_secs(token.expires_in).saturating_sub(TOKEN_MARGIN);
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((token.access_token.clone(), until));
        Ok(token.access_token)
    }

    /// POSTs `body` to `path` with a token and `PayPal-Request-Id: request_id`; the answer's
    /// JSON.
    async fn post(
        &self,
        path: &str,
        body: &Value,
        request_id: Option<&str>,
    ) -> Result<Value, ProviderError> {
        self.call(
            reqwest::Method::POST,
            path,
            Some(body.to_string()),
            request_id,
        )
        .await
    }

    /// GETs `path` with a token.
    async fn get(&self, path: &str) -> Result<Value, ProviderError> {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    /// One call with a token; a 401 (a token PayPal no longer takes) drops the token and tries
    /// once more.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        request_id: Option<&str>,
    ) -> Result<Value, ProviderError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.settings.api_base))
                .bearer_auth(token);
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            if let Some(id) = request_id {
                request = request.header("PayPal-Request-Id", id);
            }
            let response = request
                .send()
                .await
                .map_err(|e| ProviderError::Unavailable(e.without_url().to_string()))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ProviderError::Unavailable(e.without_url().to_string()))?;
            if status.as_u16() == 401 && attempt == 0 {
                *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                continue;
            }
            if !status.is_success() {
                return Err(error(status, &bytes));
            }
            return serde_json::from_slice(&bytes)
                .map_err(|e| ProviderError::Unavailable(format!("unreadable answer: {e}")));
        }
        Err(ProviderError::Unavailable("token refused twice".into()))
    }

    /// Asks PayPal whether a webhook delivery is genuine.
    ///
    /// # Errors
    /// If PayPal cannot be asked (the delivery should then be answered 503, to come again).
    pub async fn verify_webhook(
        &self,
        headers: &WebhookHeaders,
        event: &serde_json::value::RawValue,
    ) -> Result<bool, ProviderError> {
        // The event goes back byte for byte as PayPal sent it (PayPal's signature covers a
        // checksum of those bytes; a re-serialised object would reorder its keys).
        #[derive(serde::Serialize)]
        struct Verify<'a> {
            auth_algo: &'a str,
            cert_url: &'a str,
            transmission_id: &'a str,
            transmission_sig: &'a str,
            transmission_time: &'a str,
            webhook_id: &'a str,
            webhook_event: &'a serde_json::value::RawValue,
        }
        let body = serde_json::to_string(&Verify {
            auth_algo: &headers.auth_algo,
            cert_url: &headers.cert_url,
            transmission_id: &headers.transmission_id,
            transmission_sig: &headers.transmission_sig,
            transmission_time: &headers.transmission_time,
            webhook_id: &self.settings.webhook_id,
            webhook_event: event,
        })
        .map_err(|e| ProviderError::Rejected(e.to_string()))?;
        let answer = self
            .call(
                reqwest::Method::POST,
                "/v1/notifications/verify-webhook-signature",
                Some(body),
                None,
            )
            .await?;
        Ok(answer["verification_status"] == "SUCCESS")
    }

    fn page(&self, template: &str, registration: &str) -> String {
        template.replace("{registration_id}", registration)
    }
}

/// A failed answer's kind: PayPal's side (5xx, 429, 409) can be retried; anything else is a
/// refusal.
fn error(status: reqwest::StatusCode, body: &[u8]) -> ProviderError {
    let detail: Value = serde_json::from_slice(body).unwrap_or_default();
    let name = detail["name"]
        .as_str()
        .or(detail["error"].as_str())
        .unwrap_or_default();
    let issue = detail["details"][0]["issue"].as_str().unwrap_or_default();
    let message = format!("HTTP {} {name} {issue}", status.as_u16())
        .trim()
        .to_owned();
    if status.is_server_error() || matches!(status.as_u16(), 409 | 429) {
        ProviderError::Unavailable(message)
    } else {
        ProviderError::Rejected(message)
    }
}

/// A `{currency_code, value}` amount in minor units.
fn amount_of(amount: &Value) -> Result<(i64, String), ProviderError> {
    let currency = amount["currency_code"]
        .as_str()
        .unwrap_or_default()
        .to_uppercase();
    let value = amount["value"].as_str().unwrap_or_default();
    let minor = money::from_decimal(value, &currency)
        .map_err(|e| ProviderError::Unavailable(format!("unreadable amount {value:?}: {e}")))?;
    Ok((minor, currency))
}

impl PaymentProvider for PayPalClient {
    fn create<'a>(
        &'a self,
        req: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<CreatedPayment, ProviderError>> {
        Box::pin(async move {
            let value = money::to_decimal(req.amount_minor, &req.currency)
                .map_err(|e| ProviderError::Rejected(e.to_string()))?;
            let registration = req.registration_id.to_string();
            let body = json!({
                "intent": "CAPTURE",
                "purchase_units": [{
                    "reference_id": registration,
                    "custom_id": registration,
                    "description": req.description.chars().take(127).collect::<String>(),
                    "amount": {"currency_code": req.currency, "value": value},
                }],
                "payment_source": {"paypal": {"experience_context": {
                    "user_action": "PAY_NOW",
                    "return_url": self.page(&self.settings.return_url, &registration),
                    "cancel_url": self.page(&self.settings.cancel_url, &registration),
                }}},
            });
            let order = self
                .post("/v2/checkout/orders", &body, Some(&req.idempotency_key))
                .await?;
            let id = order["id"]
                .as_str()
                .ok_or_else(|| ProviderError::Unavailable("order without an id".into()))?;
            let approve = order["links"].as_array().and_then(|links| {
                links
                    .iter()
                    .find(|l| l["rel"] == "payer-action" || l["rel"] == "approve")
                    .and_then(|l| l["href"].as_str())
                    .map(str::to_owned)
            });
            Ok(CreatedPayment {
                provider_ref: id.to_owned(),
                client_secret: None,
                approve_url: approve,
            })
        })
    }

    fn cancel<'a>(&'a self, _provider_ref: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        // PayPal has no call to void an order nobody approved: it lapses on its own, and a
        // capture is ours to make (we never capture for an ended hold).
        Box::pin(async { Ok(()) })
    }

    fn refund<'a>(&'a self, req: &'a RefundCall) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let value = money::to_decimal(req.amount_minor, &req.currency)
                .map_err(|e| ProviderError::Rejected(e.to_string()))?;
            let body = json!({
                "amount": {"currency_code": req.currency, "value": value},
                "custom_id": req.registration_id.to_string(),
                "invoice_id": req.refund_id.to_string(),
            });
            let path = format!("/v2/payments/captures/{}/refund", req.provider_ref);
            let refund = self
                .post(&path, &body, Some(&req.refund_id.to_string()))
                .await?;
            match refund["status"].as_str() {
                Some("COMPLETED" | "PENDING") | None => {
                    Ok(refund["id"].as_str().unwrap_or_default().to_owned())
                }
                Some(other) => Err(ProviderError::Rejected(format!("refund {other}"))),
            }
        })
    }

    fn capture<'a>(
        &'a self,
        provider_ref: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Captured, ProviderError>> {
        Box::pin(async move {
            let path = format!("/v2/checkout/orders/{provider_ref}/capture");
            let order = match self.post(&path, &json!({}), Some(idempotency_key)).await {
                // Captured by an earlier call whose answer was lost: the order has it.
                Err(ProviderError::Rejected(why)) if why.contains("ORDER_ALREADY_CAPTURED") => {
                    self.get(&format!("/v2/checkout/orders/{provider_ref}"))
                        .await?
                }
                other => other?,
            };
            let capture = &order["purchase_units"][0]["payments"]["captures"][0];
            let id = capture["id"]
                .as_str()
                .ok_or_else(|| ProviderError::Unavailable("capture without an id".into()))?;
            let (amount_minor, currency) = amount_of(&capture["amount"])?;
            Ok(Captured {
                capture_ref: id.to_owned(),
                amount_minor,
                currency,
                completed: capture["status"] == "COMPLETED",
            })
        })
    }
}
