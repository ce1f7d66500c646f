//! Stripe's webhook events, read into the engine's `ProviderReport` (after the signature was
//! verified on the raw bytes, see `signature`).
//!
//! Events handled (Stripe's documented object shapes; only stable fields are read):
//! - `payment_intent.succeeded`: the intent's `amount_received` (or `amount`) and `currency`;
//! - `payment_intent.payment_failed`: `last_payment_error.code`;
//! - `payment_intent.canceled`;
//! - `charge.refunded`: the charge's `amount_captured` (or `amount`) and `amount_refunded`,
//!   a running total;
//! - `charge.dispute.created`.
//!
//! The payment's reference is always the PaymentIntent id. The registration comes from the
//! intent's `metadata.registration_id` when the object carries it; charges and disputes name
//! only their intent, which the caller looks up. Any other event type is `Unhandled`.

use engine::payment::{Provider, ProviderReport, Report};
use serde::Deserialize;

pub use crate::webhook::{Event, Malformed};

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Object,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Object {
    id: String,
    amount: Option<i64>,
    amount_received: Option<i64>,
    amount_captured: Option<i64>,
    amount_refunded: Option<i64>,
    currency: Option<String>,
    payment_intent: Option<String>,
    metadata: Option<std::collections::HashMap<String, serde_json::Value>>,
    last_payment_error: Option<PaymentError>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PaymentError {
    code: Option<String>,
    message: Option<String>,
}

/// Longest failure reason kept.
const REASON_LEN_MAX: usize = 200;

/// Reads a verified event body.
///
/// # Errors
/// If the body is not a Stripe event, or a handled event lacks a field it needs.
pub fn parse(body: &[u8]) -> Result<Event, Malformed> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| Malformed(format!("not an event: {e}")))?;
    let object = envelope.data.object;
    let id_max = engine::payment::PROVIDER_ID_LEN_MAX;
    if envelope.id.is_empty() || envelope.id.len() > id_max {
        return Err(Malformed("event id missing or too long".into()));
    }
    let registration_id = object
        .metadata
        .as_ref()
        .and_then(|m| m.get("registration_id"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let intent = match envelope.kind.as_str() {
        "payment_intent.succeeded"
        | "payment_intent.payment_failed"
        | "payment_intent.canceled" => Some(object.id.clone()),
        _ => object.payment_intent.clone(),
    };
    let currency = || {
        object
            .currency
            .as_deref()
            .map(str::to_uppercase)
            .ok_or_else(|| Malformed("currency missing".into()))
    };
    let amount = |value: Option<i64>| value.ok_or_else(|| Malformed("amount missing".into()));
    let report = match envelope.kind.as_str() {
        "payment_intent.succeeded" => Report::Succeeded {
            amount_minor: amount(object.amount_received.filter(|a| *a > 0).or(object.amount))?,
            currency: currency()?,
        },
        "payment_intent.payment_failed" => {
            let error = object.last_payment_error.unwrap_or_default();
            let reason = error
                .code
                .or(error.message)
                .unwrap_or_else(|| "failed".into());
            Report::Failed {
                reason: reason.chars().take(REASON_LEN_MAX).collect(),
            }
        }
        "payment_intent.canceled" => Report::Canceled,
        "charge.refunded" => Report::Refunded {
            captured_minor: Some(amount(
                object.amount_captured.filter(|a| *a > 0).or(object.amount),
            )?),
            refunded_minor: amount(object.amount_refunded)?,
            currency: currency()?,
        },
        "charge.dispute.created" => Report::Disputed,
        _ => {
            return Ok(Event::Unhandled {
                event_id: envelope.id,
                kind: envelope.kind.chars().take(id_max).collect(),
            });
        }
    };
    let intent = intent
        .filter(|i| !i.is_empty() && i.len() <= id_max)
        .ok_or_else(|| Malformed("payment_intent missing".into()))?;
    Ok(Event::Report {
        registration_id,
        report: ProviderReport {
            provider: Provider::Stripe,
            event_id: envelope.id,
            provider_ref: Some(intent),
            report,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shapes() {
        let succeeded = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{
            "id":"pi_1","object":"payment_intent","amount":8500,"amount_received":8500,
            "currency":"eur","metadata":{"registration_id":"r-1"}}}}"#;
        let Event::Report {
            registration_id,
            report,
        } = parse(succeeded).unwrap()
        else {
            panic!("not a report");
        };
        assert_eq!(registration_id.as_deref(), Some("r-1"));
        assert_eq!(report.provider_ref.as_deref(), Some("pi_1"));
        assert_eq!(
            report.report,
            Report::Succeeded {
                amount_minor: 8500,
                currency: "EUR".into()
            }
        );
        let refunded = br#"{"id":"evt_2","type":"charge.refunded","data":{"object":{
            "id":"ch_1","object":"charge","amount":8500,"amount_captured":8500,
            "amount_refunded":3000,"currency":"eur","payment_intent":"pi_1","metadata":{}}}}"#;
        let Event::Report {
            registration_id,
            report,
        } = parse(refunded).unwrap()
        else {
            panic!("not a report");
        };
        assert_eq!(registration_id, None);
        assert_eq!(report.provider_ref.as_deref(), Some("pi_1"));
        assert_eq!(
            report.report,
            Report::Refunded {
                captured_minor: Some(8500),
                refunded_minor: 3000,
                currency: "EUR".into()
            }
        );
        let failed = br#"{"id":"evt_3","type":"payment_intent.payment_failed","data":{"object":{
            "id":"pi_1","amount":8500,"currency":"eur",
            "last_payment_error":{"code":"card_declined","message":"Your card was declined."}}}}"#;
        assert!(matches!(
            parse(failed).unwrap(),
            Event::Report { report: ProviderReport { report: Report::Failed { reason }, .. }, .. }
                if reason == "card_declined"
        ));
        let other = br#"{"id":"evt_4","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        assert!(matches!(parse(other).unwrap(), Event::Unhandled { .. }));
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        for body in [
            &b"not json"[..],
            br#"{"id":"evt_1"}"#,
            br#"{"id":"","type":"payment_intent.canceled","data":{"object":{"id":"pi_1"}}}"#,
            br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#,
            br#"{"id":"evt_1","type":"charge.refunded","data":{"object":{"id":"ch_1","amount":5,"amount_refunded":5,"currency":"eur"}}}"#,
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
