//! Twilio SMS: the Messages API (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! basic auth with the account SID and auth token, form-encoded `To`, `From` or
//! `MessagingServiceSid`, `Body`, `StatusCallback`; 201 with the message's `sid`), and the
//! status callbacks it then sends, signed with `X-Twilio-Signature`: base64 of HMAC-SHA1 with
//! the auth token over the full callback URL followed by every POST parameter's name and value,
//! in name order.
//!
//! A send is retried on 429, 5xx, network errors and on refusals that are configuration
//! errors (a wrong key or sender: the backlog waits for the fix); a refusal of this recipient
//! or this text (an invalid or unreachable number, an opted-out recipient, a body too long) is
//! final. The callback URL carries our message id as a query parameter, which is how a status
//! finds its delivery. Twilio has no idempotency key for messages: a send repeated after a
//! crash can reach the phone twice (at least once).

use engine::notify::{SendError, Sent};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where Twilio's API is, and who we are there.
#[derive(Clone, Debug)]
pub struct TwilioSettings {
    /// `https://api.twilio.com` (a local stand-in in tests).
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The sender: a phone number (E.164) or a messaging service (`MG...`).
    pub from: String,
    /// The public URL of our status callback route (`https://api.example.com/api/v1/
    /// notifications/webhooks/twilio`); empty: no callbacks asked for.
    pub status_callback: String,
    pub timeout: Duration,
}

/// Twilio error codes that refuse this recipient or this text for good.
const FINAL: [u32; 9] = [
    21211, // invalid 'To' number
    21214, // 'To' number cannot be reached
    21217, // not a valid phone number
    21408, // no permission to send to the region
    21610, // the recipient replied STOP
    21612, // 'To' not reachable from this sender
    21614, // 'To' is not a mobile number
    21617, // body too long
    21635, // 'To' cannot receive this message
];

/// A Twilio client.
pub struct Twilio {
    http: reqwest::Client,
    url: String,
    settings: TwilioSettings,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct Refusal {
    code: Option<u32>,
    message: Option<String>,
}

impl Twilio {
    pub fn new(settings: &TwilioSettings) -> Result<Self, String> {
        Ok(Self {
            http: crate::http::client(settings.timeout).map_err(|e| e.to_string())?,
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                settings.api_base.trim_end_matches('/'),
                settings.account_sid
            ),
            settings: settings.clone(),
        })
    }

    /// The request's form: recipient, sender, text, and the status callback for `message`.
    pub fn form(&self, message: uuid::Uuid, to: &str, body: &str) -> Vec<(&'static str, String)> {
        let from = &self.settings.from;
        let mut form = vec![("To", to.to_owned()), ("Body", body.to_owned())];
        if from.starts_with("MG") {
            form.push(("MessagingServiceSid", from.clone()));
        } else {
            form.push(("From", from.clone()));
        }
        if !self.settings.status_callback.is_empty() {
            form.push((
                "StatusCallback",
                format!("{}?message_id={message}", self.settings.status_callback),
            ));
        }
        form
    }

    /// Sends `body` to `to` (E.164); the message's `sid` is the provider id.
    pub async fn send(&self, message: uuid::Uuid, to: &str, body: &str) -> Result<Sent, SendError> {
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.settings.account_sid, Some(&self.settings.auth_token))
            .form(&self.form(message, to, body))
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("Twilio: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let created: Created = serde_json::from_str(&text).map_err(|e| {
                SendError::Retry(format!("Twilio {status}: unreadable answer: {e}"))
            })?;
            return Ok(Sent {
                provider_id: Some(created.sid),
            });
        }
        let refusal: Option<Refusal> = serde_json::from_str(&text).ok();
        let code = refusal.as_ref().and_then(|r| r.code);
        let why = refusal
            .and_then(|r| r.message)
            .unwrap_or_else(|| text.chars().take(200).collect());
        let detail = match code {
            Some(code) => format!("Twilio {status} ({code}): {why}"),
            None => format!("Twilio {status}: {why}"),
        };
        match code {
            Some(code) if status == 400 && FINAL.contains(&code) => {
                Err(SendError::Permanent(detail))
            }
            _ => Err(SendError::Retry(detail)),
        }
    }
}

/// `X-Twilio-Signature` of a POST to `url` with `params`: base64 of HMAC-SHA1 (key: the auth
/// token) over the URL followed by each parameter's name and value, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = mac(auth_token);
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    data_encoding::BASE64.encode(&mac.finalize().into_bytes())
}

/// HMAC-SHA1 keyed with the auth token.
fn mac(auth_token: &str) -> Hmac<sha1::Sha1> {
    <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length")
}

/// Whether `given` is the signature of a POST to `url` with `params`.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let expected = signature(auth_token, url, params);
    // Constant time: compare MACs of both.
    let digest = |s: &str| {
        let mut mac = mac(auth_token);
        mac.update(s.as_bytes());
        mac.finalize().into_bytes()
    };
    digest(&expected) == digest(given.trim())
}

/// What a status callback reports, if it changes a delivery's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The carrier confirmed delivery to the phone.
    Delivered,
    /// Undelivered or failed, with Twilio's error code.
    Failed(String),
}

/// The status a callback's parameters report (`MessageStatus`, `ErrorCode`); `None` for the
/// intermediate ones (`queued`, `sending`, `sent`, ...).
pub fn status(params: &[(String, String)]) -> Option<Status> {
    let map: BTreeMap<&str, &str> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match *map.get("MessageStatus")? {
        "delivered" => Some(Status::Delivered),
        s @ ("undelivered" | "failed") => Some(Status::Failed(match map.get("ErrorCode") {
            Some(code) => format!("{s} (Twilio error {code})"),
            None => s.to_owned(),
        })),
        _ => None,
    }
}

/// A phone number as Twilio takes it (E.164: `+` and 8 to 15 digits), from how an account
/// wrote it (spaces, `-`, `(`, `)` and `.` dropped); `None` if it is not one.
pub fn e164(phone: &str) -> Option<String> {
    let compact: String = phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = compact.strip_prefix('+')?;
    let ok = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then_some(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_signature_is_twilios_documented_example() {
        // Twilio's security documentation: this URL, these parameters and this auth token
        // sign to this value.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let token = "12345";
        assert_eq!(signature(token, url, &p), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify(token, url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify(token, url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ"));
        let mut changed = p.clone();
        changed[2].1 = "4321".into();
        assert!(!verify(
            token,
            url,
            &changed,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify(
            token,
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &p,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn only_final_statuses_change_a_delivery() {
        let s = |status: &str, code: Option<&str>| {
            let mut p = vec![("MessageStatus", status)];
            if let Some(code) = code {
                p.push(("ErrorCode", code));
            }
            super::status(&params(&p))
        };
        assert_eq!(s("delivered", None), Some(Status::Delivered));
        assert_eq!(
            s("undelivered", Some("30003")),
            Some(Status::Failed("undelivered (Twilio error 30003)".into()))
        );
        assert_eq!(s("failed", None), Some(Status::Failed("failed".into())));
        for intermediate in ["queued", "sending", "sent", "accepted", "read"] {
            assert_eq!(s(intermediate, None), None);
        }
        assert_eq!(super::status(&[]), None);
    }

    #[test]
    fn phone_numbers_become_e164_or_nothing() {
        assert_eq!(e164("+49 30 1234-567").as_deref(), Some("+49301234567"));
        assert_eq!(e164("+1 (415) 555.0100").as_deref(), Some("+14155550100"));
        assert_eq!(e164("030 1234567"), None, "no country code");
        assert_eq!(e164("+49 30 12x"), None);
        assert_eq!(e164("+123"), None, "too short");
        assert_eq!(e164("+0123456789"), None);
    }
}
