//! `Idempotency-Key` on every POST: the first response for a key (with the same method,
//! path and body) is remembered and replayed for retries; the same key with a different
//! body gets 422; a retry while the first is still running gets 409. The cache is bounded
//! (`entries_max`, oldest evicted first) and entries expire after `ttl`.
//!
//! Holds are additionally idempotent inside the pool actor, durably (see
//! `engine::pool::IdempotencyToken`), so a retry after a crash or an eviction never books twice.

use super::AppState;
use super::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest accepted key.
const KEY_LEN_MAX: usize = 255;
/// Largest response body remembered.
const RESPONSE_BYTES_MAX: usize = 256 * 1024;

/// The key and body digest of the current request, for handlers that pass them on.
#[derive(Clone, Debug)]
pub struct IdempotencyContext {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the body, truncated.
    pub fingerprint: [u8; 16],
}

enum Entry {
    InFlight {
        fingerprint: [u8; 16],
    },
    Done {
        fingerprint: [u8; 16],
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        at: Instant,
    },
}

struct Inner {
    map: HashMap<String, (u64, Entry)>,
    order: VecDeque<(u64, String)>,
    next_seq: u64,
}

/// Remembered responses, bounded.
pub struct IdempotencyCache {
    inner: Mutex<Inner>,
    entries_max: usize,
    ttl: Duration,
}

enum Begin {
    Go,
    Replay(Response),
    Mismatch,
    InFlight,
}

impl IdempotencyCache {
    /// A cache of at most `entries_max` responses kept for `ttl`.
    pub fn new(entries_max: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
            }),
            entries_max,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, scope: &str, fingerprint: [u8; 16]) -> Begin {
        let mut inner = self.lock();
        match inner.map.get(scope) {
            Some((
                _,
                Entry::Done {
                    fingerprint: f,
                    status,
                    headers,
                    body,
                    at,
                },
            )) if at.elapsed() < self.ttl => {
                if *f != fingerprint {
                    return Begin::Mismatch;
                }
                let mut response = (*status, body.clone()).into_response();
                *response.headers_mut() = headers.clone();
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Begin::Replay(response);
            }
            Some((_, Entry::InFlight { fingerprint: f })) => {
                return if *f == fingerprint {
                    Begin::InFlight
                } else {
                    Begin::Mismatch
                };
            }
            _ => {}
        }
        while inner.map.len() >= self.entries_max {
            let Some((seq, key)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&key).is_some_and(|(s, _)| *s == seq) {
                inner.map.remove(&key);
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner
            .map
            .insert(scope.to_owned(), (seq, Entry::InFlight { fingerprint }));
        inner.order.push_back((seq, scope.to_owned()));
        // Keep the order queue from growing with stale entries.
        if inner.order.len() > 2 * self.entries_max {
            let live: HashMap<String, u64> = inner
                .map
                .iter()
                .map(|(k, (s, _))| (k.clone(), *s))
                .collect();
            inner.order.retain(|(s, k)| live.get(k) == Some(s));
        }
        Begin::Go
    }

    fn finish(
        &self,
        scope: &str,
        fingerprint: [u8; 16],
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) {
        let mut inner = self.lock();
        if let Some((_, entry)) = inner.map.get_mut(scope) {
            *entry = Entry::Done {
                fingerprint,
                status,
                headers,
                body,
                at: Instant::now(),
            };
        }
    }

    fn abort(&self, scope: &str) {
        let mut inner = self.lock();
        if matches!(inner.map.get(scope), Some((_, Entry::InFlight { .. }))) {
            inner.map.remove(scope);
        }
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the in-flight marker if the request is dropped (timeout, client gone).
struct Guard<'a> {
    cache: &'a IdempotencyCache,
    scope: &'a str,
    armed: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.cache.abort(self.scope);
        }
    }
}

fn valid_key(raw: &HeaderValue) -> Option<String> {
    let s = raw.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= KEY_LEN_MAX && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// The middleware.
pub(super) async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw) = request.headers().get("idempotency-key") else {
        return next.run(request).await;
    };
    let Some(key) = valid_key(raw) else {
        return ApiError::InvalidIdempotencyKey.into_response();
    };
    let (mut parts, body) = request.into_parts();
    let limit = super::body_limit();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError::PayloadTooLarge(limit).into_response();
    };
    let digest = Sha256::digest(&bytes);
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&digest[..16]);
    let scope = format!("{} {} {key}", parts.method, parts.uri.path());
    let cache = &state.idempotency;
    match cache.begin(&scope, fingerprint) {
        Begin::Go => {}
        Begin::Replay(response) => return response,
        Begin::Mismatch => return ApiError::IdempotencyKeyReused.into_response(),
        Begin::InFlight => return ApiError::IdempotencyInProgress.into_response(),
    }
    let mut guard = Guard {
        cache,
        scope: &scope,
        armed: true,
    };
    parts
        .extensions
        .insert(IdempotencyContext { key, fingerprint });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if response.status().is_server_error() {
        return response; // the guard forgets the key: a retry runs again
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, RESPONSE_BYTES_MAX).await else {
        return ApiError::Internal("response too large to remember".into()).into_response();
    };
    let mut headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::LOCATION] {
        if let Some(v) = parts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    cache.finish(&scope, fingerprint, parts.status, headers, body.clone());
    guard.armed = false;
    Response::from_parts(parts, Body::from(body))
}

/// Digest of an idempotency key scoped to `scope` (e.g. an event id), for the engine.
pub fn scoped_digest(scope: &[u8], key: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(scope);
    hasher.update([0u8]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_evicts_oldest() {
        let cache = IdempotencyCache::new(2, Duration::from_secs(60));
        for i in 0..5 {
            assert!(matches!(cache.begin(&format!("k{i}"), [0; 16]), Begin::Go));
            cache.finish(
                &format!("k{i}"),
                [0; 16],
                StatusCode::CREATED,
                HeaderMap::new(),
                Bytes::new(),
            );
        }
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.begin("k4", [0; 16]), Begin::Replay(_)));
        assert!(matches!(cache.begin("k4", [1; 16]), Begin::Mismatch));
        assert!(
            matches!(cache.begin("k0", [0; 16]), Begin::Go),
            "evicted key runs again"
        );
    }
}
