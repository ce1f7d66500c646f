//! SendGrid: the v3 mail send API (`POST /v3/mail/send`, bearer key, 202 with `X-Message-Id`),
//! and its signed event webhook (delivered, bounce, dropped, spam report).
//!
//! Each mail carries the message's id as the custom argument `message_id`; SendGrid hands it
//! back with every event about that mail, which is how an event finds its delivery. A send is
//! retried on 429, 5xx and network errors, and on 401/403 too (a key that is wrong or lacks
//! the permission is a configuration error: the backlog waits for it to be fixed); a 400 or
//! 413 refuses this message for good.
//!
//! Event webhook deliveries are signed with ECDSA P-256 over SHA-256 of the timestamp header
//! followed by the raw body (`X-Twilio-Email-Event-Webhook-Signature`, base64 DER;
//! `X-Twilio-Email-Event-Webhook-Timestamp`); the public key (base64 DER, from SendGrid's mail
//! settings) is configured. Verification runs on the raw bytes before any parsing.

use super::{Facts, Rendered, mime::Settings};
use data_encoding::BASE64;
use engine::message::OutboxMessage;
use engine::notify::{SendError, Sent};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// The API and its key.
#[derive(Clone, Debug)]
pub struct SendGridSettings {
    /// `https://api.sendgrid.com` (a local stand-in in tests).
    pub api_base: String,
    pub api_key: String,
    pub timeout: Duration,
}

/// A SendGrid client.
pub struct SendGrid {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl SendGrid {
    pub fn new(settings: &SendGridSettings) -> Result<Self, String> {
        Ok(Self {
            http: crate::http::client(settings.timeout).map_err(|e| e.to_string())?,
            url: format!("{}/v3/mail/send", settings.api_base.trim_end_matches('/')),
            key: settings.api_key.clone(),
        })
    }

    /// Sends one rendered message; SendGrid's `X-Message-Id` is the provider id.
    pub async fn send(
        &self,
        message: &OutboxMessage,
        facts: &Facts,
        rendered: &Rendered,
        settings: &Settings,
    ) -> Result<Sent, SendError> {
        let body = body(message, facts, rendered, settings).map_err(SendError::Permanent)?;
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("SendGrid: {e}")))?;
        let status = response.status().as_u16();
        let provider_id = response
            .headers()
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let detail: String = text.chars().take(300).collect();
        match status {
            200..=299 => Ok(Sent { provider_id }),
            400 | 413 => Err(SendError::Permanent(format!("SendGrid {status}: {detail}"))),
            _ => Err(SendError::Retry(format!("SendGrid {status}: {detail}"))),
        }
    }
}

/// The mail send request of a rendered message: text and HTML, each ticket's QR code inline
/// (`content_id` as the HTML's `cid:`), the event as `event.ics`, and the message id as a
/// custom argument.
pub fn body(
    message: &OutboxMessage,
    facts: &Facts,
    rendered: &Rendered,
    settings: &Settings,
) -> Result<Value, String> {
    let from = &settings.from;
    let mut attachments = Vec::new();
    let tickets = super::tickets(message, facts);
    for ticket in tickets {
        let png =
            crate::qr::png(&ticket.code).map_err(|e| format!("QR of {}: {e}", ticket.number))?;
        attachments.push(json!({
            "content": BASE64.encode(&png),
            "type": "image/png",
            "filename": format!("ticket-{}.png", ticket.number),
            "disposition": "inline",
            "content_id": super::ticket_cid(&ticket.number, &settings.domain),
        }));
    }
    if let Some(ics) = super::mime::calendar(message, facts, rendered, settings) {
        attachments.push(json!({
            "content": BASE64.encode(ics.as_bytes()),
            "type": "text/calendar",
            "filename": "event.ics",
            "disposition": "attachment",
        }));
    }
    let mut body = json!({
        "personalizations": [{
            "to": [{"email": message.to}],
            "custom_args": {"message_id": message.id.to_string()},
        }],
        "from": {"email": from.email.to_string()},
        "subject": rendered.subject,
        "content": [
            {"type": "text/plain", "value": rendered.text},
            {"type": "text/html", "value": rendered.html},
        ],
    });
    if let Some(name) = &from.name {
        body["from"]["name"] = Value::String(name.clone());
    }
    if !attachments.is_empty() {
        body["attachments"] = Value::Array(attachments);
    }
    if let Some(url) = super::unsubscribe_url(message, facts) {
        body["headers"] = json!({
            "List-Unsubscribe": format!("<{url}>"),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        });
    }
    Ok(body)
}

/// Why an event webhook delivery is not taken as SendGrid's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed signature or timestamp header")]
    Malformed,
    #[error("signature timestamp {age_secs} s from now, beyond the tolerance")]
    OutsideTolerance { age_secs: u64 },
    #[error("the signature does not verify with the configured key")]
    Mismatch,
    #[error("not a SendGrid event batch: {0}")]
    Body(String),
}

/// A verifier of event webhook deliveries.
#[derive(Clone, Debug)]
pub struct EventVerifier {
    key: VerifyingKey,
    tolerance_secs: u64,
}

impl EventVerifier {
    /// From the public key as SendGrid shows it (base64 of the DER public key).
    pub fn new(public_key_base64: &str, tolerance_secs: u64) -> Result<Self, String> {
        let der = BASE64
            .decode(public_key_base64.trim().as_bytes())
            .map_err(|e| format!("not base64: {e}"))?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| format!("not a P-256 public key: {e}"))?;
        Ok(Self {
            key,
            tolerance_secs,
        })
    }

    /// Checks a delivery: `signature` (base64 DER) over `timestamp` + `body`, the timestamp
    /// within the tolerance of `now_unix`.
    pub fn verify(
        &self,
        signature: &str,
        timestamp: &str,
        body: &[u8],
        now_unix: u64,
    ) -> Result<(), EventError> {
        let at: u64 = timestamp
            .trim()
            .parse()
            .map_err(|_| EventError::Malformed)?;
        let age_secs = now_unix.abs_diff(at);
        if age_secs > self.tolerance_secs {
            return Err(EventError::OutsideTolerance { age_secs });
        }
        let der = BASE64
            .decode(signature.trim().as_bytes())
            .map_err(|_| EventError::Malformed)?;
        let signature = Signature::from_der(&der).map_err(|_| EventError::Malformed)?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify(&signed, &signature)
            .map_err(|_| EventError::Mismatch)
    }
}

/// What SendGrid reports about a mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the receiving server.
    Delivered,
    /// Bounced, dropped, or reported as spam (with SendGrid's reason).
    Bounced(String),
}

/// One event about one of our messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Our message id (the custom argument).
    pub message_id: uuid::Uuid,
    /// SendGrid's event name.
    pub event: String,
    pub outcome: Outcome,
}

#[derive(Deserialize)]
struct RawEvent {
    event: String,
    message_id: Option<String>,
    reason: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Events in a batch at most.
const EVENTS_MAX: usize = 10_000;

/// The events of a verified batch that concern our messages and change a delivery's status
/// (`processed`, `deferred`, opens and clicks say nothing new; events without our
/// `message_id` are not ours).
pub fn parse(body: &[u8]) -> Result<Vec<Event>, EventError> {
    let raw: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| EventError::Body(e.to_string()))?;
    if raw.len() > EVENTS_MAX {
        return Err(EventError::Body(format!("more than {EVENTS_MAX} events")));
    }
    Ok(raw
        .into_iter()
        // An event of another shape (not ours, or a kind added later) is skipped, not the
        // batch: SendGrid would post the same batch again and again.
        .filter_map(|e| serde_json::from_value::<RawEvent>(e).ok())
        .filter_map(|e| {
            let message_id = uuid::Uuid::parse_str(e.message_id.as_deref()?).ok()?;
            let why = || {
                let reason = e.reason.clone().unwrap_or_default();
                match &e.kind {
                    Some(kind) => format!("{} ({kind}): {reason}", e.event),
                    None => format!("{}: {reason}", e.event),
                }
            };
            let outcome = match e.event.as_str() {
                "delivered" => Outcome::Delivered,
                "bounce" | "dropped" | "spamreport" => Outcome::Bounced(why()),
                _ => return None,
            };
            Some(Event {
                message_id,
                event: e.event,
                outcome,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    fn keys() -> (SigningKey, EventVerifier) {
        let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let der = p256::PublicKey::from(signing.verifying_key())
            .to_public_key_der()
            .unwrap();
        let verifier = EventVerifier::new(&BASE64.encode(der.as_bytes()), 600).unwrap();
        (signing, verifier)
    }

    fn sign(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let signature: Signature = key.sign(&signed);
        BASE64.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn a_signed_batch_verifies_and_any_change_or_age_does_not() {
        let (key, verifier) = keys();
        let body = br#"[{"event":"delivered"}]"#;
        let signature = sign(&key, "1700000000", body);
        assert_eq!(
            verifier.verify(&signature, "1700000000", body, 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            verifier.verify(
                &signature,
                "1700000000",
                br#"[{"event":"bounce"}]"#,
                1_700_000_000
            ),
            Err(EventError::Mismatch)
        );
        // The timestamp is signed too.
        assert_eq!(
            verifier.verify(&signature, "1700000001", body, 1_700_000_000),
            Err(EventError::Mismatch)
        );
        assert_eq!(
            verifier.verify(&signature, "1700000000", body, 1_700_000_601),
            Err(EventError::OutsideTolerance { age_secs: 601 })
        );
        assert_eq!(
            verifier.verify("not base64!", "1700000000", body, 1_700_000_000),
            Err(EventError::Malformed)
        );
        assert_eq!(
            verifier.verify(&signature, "yesterday", body, 1_700_000_000),
            Err(EventError::Malformed)
        );
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let forged = sign(&other, "1700000000", body);
        assert_eq!(
            verifier.verify(&forged, "1700000000", body, 1_700_000_000),
            Err(EventError::Mismatch)
        );
    }

    #[test]
    fn a_key_that_is_not_a_p256_public_key_is_refused() {
        assert!(EventVerifier::new("AAAA", 600).is_err());
        assert!(EventVerifier::new("not base64", 600).is_err());
    }

    #[test]
    fn only_our_status_changing_events_are_read() {
        let id = uuid::Uuid::now_v7();
        let body = json!([
            {"event": "processed", "message_id": id.to_string()},
            {"event": "delivered", "message_id": id.to_string()},
            {"event": "bounce", "message_id": id.to_string(), "type": "blocked", "reason": "550 spam"},
            {"event": "dropped", "message_id": id.to_string(), "reason": "Bounced Address"},
            {"event": "spamreport", "message_id": id.to_string()},
            {"event": "delivered"},
            {"event": "delivered", "message_id": "not-a-uuid"},
            {"event": "open", "message_id": id.to_string()},
        ]);
        let events = parse(body.to_string().as_bytes()).unwrap();
        let outcomes: Vec<_> = events.iter().map(|e| e.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Delivered,
                Outcome::Bounced("bounce (blocked): 550 spam".into()),
                Outcome::Bounced("dropped: Bounced Address".into()),
                Outcome::Bounced("spamreport: ".into()),
            ]
        );
        assert!(events.iter().all(|e| e.message_id == id));
        assert!(matches!(parse(b"{}"), Err(EventError::Body(_))));
        assert_eq!(parse(b"[{\"no_event\": 1}, {\"event\": 7}]"), Ok(vec![]));
    }
}
