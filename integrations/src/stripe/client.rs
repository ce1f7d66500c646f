//! Stripe's PaymentIntents and Refunds APIs, as the engine's `PaymentProvider`.
//!
//! Requests are form-encoded, authenticated with the secret key, and carry an
//! `Idempotency-Key` (the payment attempt, or the refund's id), so a call repeated after a
//! timeout or a crash creates or refunds nothing twice. Only fields Stripe documents as
//! stable are sent and read; amounts are integer minor units on both sides and currencies
//! are lower case on the wire.

use engine::outbox::BoxFuture;
use engine::payment::{CreatePayment, CreatedPayment, PaymentProvider, ProviderError, RefundCall};
use serde::Deserialize;
use std::time::Duration;

/// A Stripe account's API.
#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    api_base: String,
    secret_key: String,
}

#[derive(Deserialize)]
struct Intent {
    id: String,
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct RefundObject {
    id: String,
    status: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
    code: Option<String>,
}

impl StripeClient {
    /// A client of the API at `api_base` (`https://api.stripe.com`, or a local server).
    ///
    /// # Errors
    /// If the HTTP client cannot be built (TLS set-up).
    pub fn new(api_base: &str, secret_key: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            http: crate::http::client(timeout).map_err(|e| e.to_string())?,
            api_base: api_base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    /// POSTs `form` to `path` with `idempotency_key`; the answer's JSON, or the error's kind.
    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<T, ProviderError> {
        let response = self
            .http
            .post(format!("{}{path}", self.api_base))
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(describe(e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(describe(e)))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| ProviderError::Unavailable(format!("unreadable answer: {e}")));
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body)
            .ok()
            .map(|b| {
                let code = b.error.code.unwrap_or_default();
                let message = b.error.message.unwrap_or_default();
                format!("{code} {message}").trim().to_owned()
            })
            .unwrap_or_default();
        let message = format!("HTTP {} {detail}", status.as_u16())
            .trim()
            .to_owned();
        // 409: the same idempotency key is in flight; 429: rate limited; 5xx: Stripe's side.
        if status.is_server_error() || status.as_u16() == 409 || status.as_u16() == 429 {
            Err(ProviderError::Unavailable(message))
        } else {
            Err(ProviderError::Rejected(message))
        }
    }
}

/// What went wrong with a call, without its URL.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", e.without_url())
}

impl PaymentProvider for StripeClient {
    fn create<'a>(
        &'a self,
        req: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<CreatedPayment, ProviderError>> {
        Box::pin(async move {
            let form = [
                ("amount", req.amount_minor.to_string()),
                ("currency", req.currency.to_lowercase()),
                ("payment_method_types[]", "card".to_owned()),
                ("metadata[registration_id]", req.registration_id.to_string()),
                ("metadata[event_id]", req.event_id.to_string()),
                ("metadata[description]", req.description.clone()),
            ];
            let intent: Intent = self
                .post("/v1/payment_intents", &form, &req.idempotency_key)
                .await?;
            Ok(CreatedPayment {
                provider_ref: intent.id,
                client_secret: intent.client_secret,
                approve_url: None,
            })
        })
    }

    fn cancel<'a>(&'a self, provider_ref: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let path = format!("/v1/payment_intents/{provider_ref}/cancel");
            let key = format!("cancel-{provider_ref}");
            self.post::<serde_json::Value>(&path, &[], &key).await?;
            Ok(())
        })
    }

    fn refund<'a>(&'a self, req: &'a RefundCall) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let form = [
                ("payment_intent", req.provider_ref.clone()),
                ("amount", req.amount_minor.to_string()),
                ("metadata[refund_id]", req.refund_id.to_string()),
                ("metadata[registration_id]", req.registration_id.to_string()),
            ];
            let refund: RefundObject = self
                .post("/v1/refunds", &form, &req.refund_id.to_string())
                .await?;
            match refund.status.as_deref() {
                // `pending` refunds complete later (Stripe reports a failure by webhook).
                None | Some("succeeded" | "pending" | "requires_action") => Ok(refund.id),
                Some(other) => Err(ProviderError::Rejected(format!("refund {other}"))),
            }
        })
    }
}
