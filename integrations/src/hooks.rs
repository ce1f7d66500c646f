//! Organizer webhooks on the wire, following the Standard Webhooks convention
//! (<https://www.standardwebhooks.com>): a JSON body `{"type", "timestamp", "data"}` posted
//! with `webhook-id` (the message id, the same on every attempt), `webhook-timestamp` (unix
//! seconds of the attempt) and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over
//! `{id}.{timestamp}.{body}` with the endpoint's secret; several, space-separated, while a
//! rotated secret still signs).
//!
//! A webhook must not become a way into the internal network: destinations are http(s)
//! only, and every address a host resolves to (when the endpoint is registered, and again
//! at each connection, so a DNS answer that changes in between cannot slip through) must be
//! public unless `allow_private` (tests on loopback) says otherwise. Redirects are not
//! followed and no proxy is used.

use engine::notify::{SendError, Sent};
use engine::webhooks::{HookData, LogEntry};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Longest endpoint URL.
pub const URL_CHARS_MAX: usize = 2048;
/// How long registering an endpoint waits for its host's addresses.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes of a refusing receiver's answer kept in the delivery's error.
const ERROR_BODY_CHARS_MAX: usize = 200;

/// A new secret from `key` (random bytes): `whsec_` + base64.
pub fn secret_from_key(key: &[u8]) -> String {
    format!("whsec_{}", data_encoding::BASE64.encode(key))
}

fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    data_encoding::BASE64
        .decode(encoded.as_bytes())
        .map_err(|e| format!("webhook secret: {e}"))
}

/// One signature: `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`.
///
/// # Errors
/// If the secret is not base64 (after its `whsec_` prefix).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = key_of(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        data_encoding::BASE64.encode(&mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: a signature per secret, space-separated.
///
/// # Errors
/// If a secret is not base64.
pub fn signature_header(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, String> {
    let signatures: Result<Vec<String>, String> = secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect();
    Ok(signatures?.join(" "))
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What a delivery says, as the `data` of its payload.
pub fn data(data: &HookData) -> Value {
    match data {
        HookData::Registration(r) => json!({
            "registration_id": r.registration_id.0,
            "event_id": r.event_id.0,
            "ticket_type_id": r.ticket_type_id.0,
            "quantity": r.quantity,
            "status": r.status,
            "attendee": {"name": r.attendee_name, "email": r.attendee_email},
            "user_id": r.user_id.map(|u| u.0),
            "expires_at": rfc3339(r.expires_at),
            "total": r.total_minor.zip(r.currency.as_ref())
                .map(|(amount, currency)| json!({"amount_minor": amount, "currency": currency})),
            "ticket_ids": r.tickets.iter().map(|t| t.0).collect::<Vec<_>>(),
        }),
        HookData::Payment(p) => json!({
            "registration_id": p.registration_id.0,
            "event_id": p.event_id.0,
            "provider": p.provider,
            "amount_minor": p.amount_minor,
            "currency": p.currency,
            "provider_ref": p.provider_ref,
            "refund_id": p.refund_id,
        }),
        HookData::CheckIn(c) => json!({
            "ticket_id": c.ticket_id.0,
            "registration_id": c.registration_id.0,
            "event_id": c.event_id.0,
            "gate": c.gate,
            "admitted_at": rfc3339(c.admitted_at),
        }),
        HookData::Event(e) => json!({
            "event_id": e.event_id.0,
            "title": e.title,
            "status": e.status,
            "starts_at": rfc3339(e.starts_at),
            "ends_at": rfc3339(e.ends_at),
            "version": e.version,
            "changed": e.changed,
        }),
    }
}

/// The body of a delivery: `{"type", "timestamp", "data"}` (the same bytes on every attempt).
pub fn body(entry: &LogEntry) -> String {
    json!({
        "type": entry.kind.as_str(),
        "timestamp": rfc3339(entry.at),
        "data": data(&entry.data),
    })
    .to_string()
}

/// Whether `ip` is a public address a webhook may reach: not loopback, private, link-local
/// (cloud metadata services live there), shared (CGNAT), unspecified, multicast,
/// documentation or benchmarking ranges, nor their IPv4-mapped IPv6 forms.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) forms: the IPv4
            // address decides (`::` and `::1` are caught below).
            if s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && s[6] != 0)) {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
                || s[0] == 0x2001 && s[1] == 0 // Teredo: tunnels to any IPv4
                || s[0] == 0x2002 // 6to4: embeds any IPv4
                || s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (64:ff9b::/96 and 64:ff9b:1::/48)
        }
    }
}

/// `url` if it can be an endpoint: http or https, a host, no credentials, no fragment, at
/// most [`URL_CHARS_MAX`] characters.
///
/// # Errors
/// Why not, for the caller's field error.
pub fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > URL_CHARS_MAX {
        return Err(format!("must be at most {URL_CHARS_MAX} characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if parsed.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    Ok(parsed)
}

/// The literal address of `url`'s host, if it is one.
fn literal(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Checks that `url` is an endpoint this server may call: its form, and every address its
/// host resolves to now (unless `allow_private`).
///
/// # Errors
/// Why not.
pub async fn check_destination(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = parse_url(url)?;
    if allow_private {
        return Ok(());
    }
    if let Some(ip) = literal(&parsed) {
        return if public(ip) {
            Ok(())
        } else {
            Err("must not point at a private, loopback or link-local address".into())
        };
    }
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((host, port));
    let addrs: Vec<SocketAddr> = tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
        .await
        .map_err(|_| "its host did not resolve in time".to_owned())?
        .map_err(|e| format!("its host does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("its host does not resolve".into());
    }
    if addrs.iter().any(|a| !public(a.ip())) {
        return Err("its host resolves to a private, loopback or link-local address".into());
    }
    Ok(())
}

/// The system resolver, keeping public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Posts deliveries to endpoints.
#[derive(Clone)]
pub struct HookClient {
    http: reqwest::Client,
    allow_private: bool,
}

impl HookClient {
    /// A client whose calls fail after `timeout`, keeping up to `idle_per_host` connections
    /// open per receiver (the channel's concurrency: fewer would close and reopen one per
    /// delivery under load); private destinations only if `allow_private`.
    ///
    /// # Errors
    /// If the TLS set-up fails.
    pub fn new(
        timeout: Duration,
        idle_per_host: usize,
        allow_private: bool,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(idle_per_host)
            .user_agent(concat!("regengine-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            allow_private,
        })
    }

    /// Posts `entry` to `url`, signed with `secrets` at `timestamp` (unix seconds). A 2xx is
    /// delivered; 410 Gone is final (the receiver says the endpoint is no more); anything
    /// else (another status, a redirect, a timeout, no connection) is retried.
    pub async fn post(
        &self,
        url: &str,
        entry: &LogEntry,
        secrets: &[&str],
        timestamp: i64,
    ) -> Result<Sent, SendError> {
        let parsed = parse_url(url).map_err(|e| SendError::Permanent(format!("url: {e}")))?;
        if !self.allow_private
            && let Some(ip) = literal(&parsed)
            && !public(ip)
        {
            return Err(SendError::Permanent(
                "the endpoint points at a private address".into(),
            ));
        }
        let id = entry.message_id.to_string();
        let body = body(entry);
        let signature =
            signature_header(secrets, &id, timestamp, &body).map_err(SendError::Permanent)?;
        let response = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("webhook: {}", engine::failure::chain(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Sent {
                provider_id: Some(format!("HTTP {}", status.as_u16())),
            });
        }
        // The start of the answer only: a hostile receiver could stream for the whole timeout.
        let mut response = response;
        let mut head = Vec::new();
        while head.len() < ERROR_BODY_CHARS_MAX
            && let Ok(Some(chunk)) = response.chunk().await
        {
            head.extend_from_slice(&chunk);
        }
        let text: String = String::from_utf8_lossy(&head)
            .chars()
            .take(ERROR_BODY_CHARS_MAX)
            .collect();
        let error = format!("webhook: HTTP {}: {text}", status.as_u16());
        if status == reqwest::StatusCode::GONE {
            Err(SendError::Permanent(error))
        } else {
            Err(SendError::Retry(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks reference libraries' tests.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        let signature = sign(secret, id, 1_614_265_330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let both = signature_header(&[secret, secret], id, 1_614_265_330, body).unwrap();
        assert_eq!(both, format!("{signature} {signature}"));
        assert!(sign("whsec_!!", id, 1, body).is_err());
    }

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "fec0::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "64:ff9b:1::a00:1",
            "192.0.0.8",
        ] {
            assert!(!public(private.parse().unwrap()), "{private}");
        }
        for open in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(public(open.parse().unwrap()), "{open}");
        }
    }

    #[test]
    fn endpoint_urls_are_http_with_a_host_and_no_credentials() {
        assert!(parse_url("https://hooks.example/in?x=1").is_ok());
        for bad in [
            "ftp://hooks.example/",
            "file:///etc/passwd",
            "https://user:pw@hooks.example/",
            "https://hooks.example/#frag",
            "not a url",
            "gopher://x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn private_destinations_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8080/",
        ] {
            assert!(check_destination(url, false).await.is_err(), "{url}");
            assert!(check_destination(url, true).await.is_ok(), "{url}");
        }
        assert!(check_destination("http://1.1.1.1/", false).await.is_ok());
    }
}
