//! The edge of every request: its id, its trace, and its access-log line.
//!
//! - Request id: a client's `X-Request-Id` is kept when it is 1 to [`REQUEST_ID_LEN_MAX`]
//!   characters of `A-Z a-z 0-9 . _ : -`; anything else (too long, spaces, control or
//!   non-ASCII characters, a second header) is replaced by a fresh UUID, so logs cannot be
//!   flooded or forged through it. The response carries the id used.
//! - Trace: a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero) is
//!   accepted and its trace id logged with the request id.
//! - Access log: one line per request under the `access` target (JSON with `log.format =
//!   "json"`): method, matched route (not the path: ids and tokens in paths stay out of logs),
//!   status, time to the response head, request id, trace id, and the account when signed in
//!   (the route is empty when none matched).
//!   Off with `log.filter = "info,access=off"`.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header::HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Longest request id kept from a client.
pub const REQUEST_ID_LEN_MAX: usize = 64;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The matched route and the signed-in account, handed from the inner layers to this one on
/// the response (the request's extensions stay inside).
#[derive(Clone, Default)]
pub(super) struct Seen {
    pub route: Option<MatchedPath>,
    pub account: Option<engine::ids::UserId>,
}

/// Records what the inner layers saw on the response, for the access line.
pub(super) fn note(
    response: &mut Response,
    route: Option<&MatchedPath>,
    account: Option<engine::ids::UserId>,
) {
    let seen = response.extensions_mut().get_or_insert_default::<Seen>();
    if let Some(route) = route {
        seen.route = Some(route.clone());
    }
    if account.is_some() {
        seen.account = account;
    }
}

/// Notes the matched route of routes outside the API's `observe` layer (health, metrics,
/// OpenAPI and docs).
pub(super) async fn route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    note(&mut response, matched.as_ref(), None);
    response
}

/// The middleware (outermost of the application).
pub(super) async fn edge(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers().get_all(&X_REQUEST_ID).iter());
    request
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), id.clone());
    let trace = request
        .headers()
        .get("traceparent")
        .and_then(|v| trace_id(v.as_bytes()));
    // A known method's name, else OTHER: an extension method is any token of any length.
    let method = super::static_method(request.method());
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), id.clone());
    if tracing::enabled!(target: "access", tracing::Level::INFO) {
        let seen = response
            .extensions()
            .get::<Seen>()
            .cloned()
            .unwrap_or_default();
        tracing::info!(
            target: "access",
            method,
            route = seen.route.as_ref().map_or("", |r| r.as_str()),
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            request_id = id.to_str().unwrap_or_default(),
            trace_id = trace.as_deref().unwrap_or_default(),
            account = seen.account.map(|a| a.to_string()).unwrap_or_default(),
        );
    }
    response
}

/// The client's request id when it is one acceptable value, else a fresh one.
fn request_id<'a>(mut given: impl Iterator<Item = &'a HeaderValue>) -> HeaderValue {
    match (given.next(), given.next()) {
        (Some(value), None) if acceptable(value.as_bytes()) => value.clone(),
        _ => {
            let fresh = uuid::Uuid::new_v4().to_string();
            // A UUID's text is always a valid header value.
            HeaderValue::from_str(&fresh).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        }
    }
}

fn acceptable(id: &[u8]) -> bool {
    (1..=REQUEST_ID_LEN_MAX).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The trace id of a valid version-00 `traceparent`.
fn trace_id(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = parts.next().is_none()
        && version == "00"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(values: &[&[u8]]) -> String {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_bytes(v).unwrap())
            .collect();
        request_id(values.iter()).to_str().unwrap().to_owned()
    }

    #[test]
    fn client_request_ids_are_kept_only_when_short_and_plain() {
        assert_eq!(id_for(&[b"abc-123_x.y:z"]), "abc-123_x.y:z");
        let longest = "a".repeat(REQUEST_ID_LEN_MAX);
        assert_eq!(id_for(&[longest.as_bytes()]), longest);
        let replaced = |values: &[&[u8]]| {
            let id = id_for(values);
            uuid::Uuid::parse_str(&id).is_ok()
        };
        let too_long = "a".repeat(REQUEST_ID_LEN_MAX + 1);
        assert!(replaced(&[too_long.as_bytes()]));
        assert!(replaced(&[b""]));
        assert!(replaced(&[b"has space"]));
        assert!(replaced(&[b"quote\"d"]));
        assert!(replaced(&[b"caf\xc3\xa9"]), "non-ASCII");
        assert!(replaced(&[b"one", b"two"]), "two headers");
        assert!(replaced(&[]), "none given");
    }

    #[test]
    fn only_valid_traceparents_give_a_trace_id() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id(format!("00-{trace}-00f067aa0ba902b7-01").as_bytes()).as_deref(),
            Some(trace)
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
        }
    }
}
