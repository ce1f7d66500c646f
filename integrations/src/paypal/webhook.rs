//! PayPal's webhook events (once PayPal verified the delivery), read into the engine's
//! `ProviderReport`. Events handled (documented resource shapes; only stable fields read):
//! - `PAYMENT.CAPTURE.COMPLETED`: the capture (`id`, `amount`, `custom_id` = our
//!   registration id): a capture of its amount;
//! - `PAYMENT.CAPTURE.DENIED`: the capture failed;
//! - `PAYMENT.CAPTURE.REFUNDED`: a refund of a capture (its `up` link names the capture;
//!   `seller_payable_breakdown.total_refunded_amount` is the running total).
//!
//! The payment's reference is always the capture's id. Anything else is `Unhandled`.

use engine::payment::{PROVIDER_ID_LEN_MAX, Provider, ProviderReport, Report};
use serde_json::Value;

pub use crate::webhook::{Event, Malformed};

/// Reads a verified event body.
///
/// # Errors
/// If the body is not a PayPal event, or a handled event lacks a field it needs.
pub fn parse(event: &Value) -> Result<Event, Malformed> {
    let id = event["id"].as_str().unwrap_or_default();
    let kind = event["event_type"].as_str().unwrap_or_default();
    if id.is_empty() || id.len() > PROVIDER_ID_LEN_MAX || kind.is_empty() {
        return Err(Malformed("event id or type missing".into()));
    }
    let resource = &event["resource"];
    let amount = |value: &Value| -> Result<(i64, String), Malformed> {
        let currency = value["currency_code"]
            .as_str()
            .unwrap_or_default()
            .to_uppercase();
        let text = value["value"].as_str().unwrap_or_default();
        let minor = crate::money::from_decimal(text, &currency)
            .map_err(|e| Malformed(format!("amount {text:?}: {e}")))?;
        Ok((minor, currency))
    };
    let (capture, report) = match kind {
        "PAYMENT.CAPTURE.COMPLETED" => {
            let (amount_minor, currency) = amount(&resource["amount"])?;
            (
                resource["id"].as_str(),
                Report::Succeeded {
                    amount_minor,
                    currency,
                },
            )
        }
        "PAYMENT.CAPTURE.DENIED" => (
            resource["id"].as_str(),
            Report::Failed {
                reason: "capture_denied".into(),
            },
        ),
        "PAYMENT.CAPTURE.REFUNDED" => {
            let total = &resource["seller_payable_breakdown"]["total_refunded_amount"];
            let (refunded_minor, currency) = if total.is_object() {
                amount(total)?
            } else {
                amount(&resource["amount"])?
            };
            let up = resource["links"].as_array().and_then(|links| {
                links
                    .iter()
                    .find(|l| l["rel"] == "up")
                    .and_then(|l| l["href"].as_str())
                    .and_then(|href| href.trim_end_matches('/').rsplit('/').next())
            });
            (
                up,
                Report::Refunded {
                    captured_minor: None,
                    refunded_minor,
                    currency,
                },
            )
        }
        _ => {
            return Ok(Event::Unhandled {
                event_id: id.to_owned(),
                kind: kind.chars().take(PROVIDER_ID_LEN_MAX).collect(),
            });
        }
    };
    let capture = capture
        .filter(|c| !c.is_empty() && c.len() <= PROVIDER_ID_LEN_MAX)
        .ok_or_else(|| Malformed("capture id missing".into()))?;
    Ok(Event::Report {
        registration_id: resource["custom_id"].as_str().map(str::to_owned),
        report: ProviderReport {
            provider: Provider::Paypal,
            event_id: id.to_owned(),
            provider_ref: Some(capture.to_owned()),
            report,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_shapes() {
        let completed = json!({"id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {
            "id": "5O190127TN364715T", "status": "COMPLETED", "custom_id": "r-1",
            "amount": {"currency_code": "EUR", "value": "85.00"}}});
        let Event::Report {
            registration_id,
            report,
        } = parse(&completed).unwrap()
        else {
            panic!("not a report");
        };
        assert_eq!(registration_id.as_deref(), Some("r-1"));
        assert_eq!(report.provider_ref.as_deref(), Some("5O190127TN364715T"));
        assert_eq!(
            report.report,
            Report::Succeeded {
                amount_minor: 8500,
                currency: "EUR".into()
            }
        );
        let refunded = json!({"id": "WH-2", "event_type": "PAYMENT.CAPTURE.REFUNDED", "resource": {
            "id": "1JU08902781691411", "amount": {"currency_code": "JPY", "value": "300"},
            "seller_payable_breakdown": {"total_refunded_amount": {"currency_code": "JPY", "value": "500"}},
            "links": [{"rel": "self", "href": "https://api-m.paypal.com/v2/payments/refunds/1JU08902781691411"},
                      {"rel": "up", "href": "https://api-m.paypal.com/v2/payments/captures/2GG279541U471931P"}]}});
        let Event::Report { report, .. } = parse(&refunded).unwrap() else {
            panic!("not a report");
        };
        assert_eq!(report.provider_ref.as_deref(), Some("2GG279541U471931P"));
        assert_eq!(
            report.report,
            Report::Refunded {
                captured_minor: None,
                refunded_minor: 500,
                currency: "JPY".into()
            }
        );
        let other = json!({"id": "WH-3", "event_type": "CHECKOUT.ORDER.APPROVED", "resource": {}});
        assert!(matches!(parse(&other).unwrap(), Event::Unhandled { .. }));
        for bad in [
            json!({}),
            json!({"id": "WH-4", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "C"}}),
            json!({"id": "WH-5", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {
                "id": "C", "amount": {"currency_code": "EUR", "value": "85.001"}}}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
