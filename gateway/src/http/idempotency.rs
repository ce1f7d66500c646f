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

/// Scope digest: method, path and key hashed to 16 bytes (no per-request string keys).
type Scope = [u8; 16];

struct Shard {
    map: HashMap<Scope, (u64, Entry)>,
    order: VecDeque<(u64, Scope)>,
    next_seq: u64,
    /// Bytes of remembered response bodies.
    bytes: usize,
}

impl Shard {
    /// Removes `key`, keeping the byte count right.
    fn remove(&mut self, key: &Scope) {
        if let Some((_, Entry::Done { body, .. })) = self.map.remove(key) {
            self.bytes -= body.len();
        }
    }
}

/// Shards of the cache: requests on different keys rarely share a lock.
const SHARDS: usize = 16;

/// Remembered responses, bounded.
pub struct IdempotencyCache {
    shards: Vec<Mutex<Shard>>,
    /// Entries per shard.
    shard_max: usize,
    /// Response bytes per shard.
    shard_bytes_max: usize,
    ttl: Duration,
}

enum Begin {
    Go,
    Replay(Response),
    Mismatch,
    InFlight,
    /// Every remembered entry of the shard is still in flight: shed the request.
    Full,
}

impl IdempotencyCache {
    /// A cache of at most `entries_max` responses and `bytes_max` bytes of response bodies
    /// (both split evenly over the shards) kept for `ttl`.
    pub fn new(entries_max: usize, bytes_max: usize, ttl: Duration) -> Self {
        let shard = || {
            Mutex::new(Shard {
                map: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
                bytes: 0,
            })
        };
        Self {
            shards: (0..SHARDS).map(|_| shard()).collect(),
            shard_max: entries_max.div_ceil(SHARDS).max(1),
            shard_bytes_max: (bytes_max / SHARDS).max(1),
            ttl,
        }
    }

    fn lock(&self, scope: &Scope) -> std::sync::MutexGuard<'_, Shard> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.shards[usize::from(scope[0]) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, scope: &Scope, fingerprint: [u8; 16]) -> Begin {
        let mut shard = self.lock(scope);
        match shard.map.get(scope) {
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
        // Evict the oldest finished entries; an in-flight one is never evicted (a duplicate
        // could then run alongside it), it goes to the back of the queue instead.
        let mut budget = shard.order.len();
        while shard.map.len() >= self.shard_max || shard.bytes > self.shard_bytes_max {
            if budget == 0 {
                return Begin::Full;
            }
            budget -= 1;
            let Some((seq, key)) = shard.order.pop_front() else {
                break;
            };
            match shard.map.get(&key) {
                Some((s, Entry::InFlight { .. })) if *s == seq => shard.order.push_back((seq, key)),
                Some((s, _)) if *s == seq => shard.remove(&key),
                _ => {}
            }
        }
        let seq = shard.next_seq;
        shard.next_seq += 1;
        // An expired entry under the same key is replaced: release its bytes first.
        shard.remove(scope);
        shard
            .map
            .insert(*scope, (seq, Entry::InFlight { fingerprint }));
        shard.order.push_back((seq, *scope));
        // Keep the order queue from growing with stale entries.
        if shard.order.len() > 2 * self.shard_max {
            let Shard { map, order, .. } = &mut *shard;
            order.retain(|(s, k)| map.get(k).is_some_and(|(live, _)| live == s));
        }
        Begin::Go
    }

    fn finish(
        &self,
        scope: &Scope,
        fingerprint: [u8; 16],
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) {
        let mut shard = self.lock(scope);
        if body.len() > self.shard_bytes_max {
            // Too big to remember: a retry runs again (holds stay idempotent in the engine).
            shard.remove(scope);
            return;
        }
        let added = body.len();
        if let Some((_, entry)) = shard.map.get_mut(scope) {
            *entry = Entry::Done {
                fingerprint,
                status,
                headers,
                body,
                at: Instant::now(),
            };
            shard.bytes += added;
        }
    }

    fn abort(&self, scope: &Scope) {
        let mut shard = self.lock(scope);
        if matches!(shard.map.get(scope), Some((_, Entry::InFlight { .. }))) {
            shard.map.remove(scope);
        }
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the in-flight marker if the request is dropped (timeout, client gone).
struct Guard<'a> {
    cache: &'a IdempotencyCache,
    scope: &'a Scope,
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

/// The layer: a POST with a valid `Idempotency-Key` runs once per caller, method, path and key;
/// its retries get the remembered answer (5xx answers are not remembered).
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
    let bytes = match super::body::read(body, state.body_bytes_max).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let digest = Sha256::digest(&bytes);
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&digest[..16]);
    // Keys are per caller (as with payment APIs): another account's request with the same
    // key is a different request, never a replay of someone else's response.
    let caller = super::auth::Caller::of(&parts.extensions)
        .principal()
        .map(|p| p.user_id.to_string())
        .unwrap_or_default();
    let scope = scoped_digest(
        format!("{} {} {caller}", parts.method, parts.uri.path()).as_bytes(),
        &key,
    );
    let cache = &state.idempotency;
    match cache.begin(&scope, fingerprint) {
        Begin::Go => {}
        Begin::Replay(response) => return response,
        Begin::Mismatch => return ApiError::IdempotencyKeyReused.into_response(),
        Begin::InFlight => return ApiError::IdempotencyInProgress.into_response(),
        Begin::Full => return ApiError::Overloaded.into_response(),
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

/// The engine's durable idempotency token for this request, or `None` without a key. The
/// key is scoped to `scope` (the endpoint and, where there is one, the event) and always to
/// the calling account: another account's request with the same key is a different request,
/// as in the in-memory replay above (and as payment APIs do).
pub fn engine_token(
    ctx: Option<axum::Extension<IdempotencyContext>>,
    scope: &[u8],
    account: engine::ids::UserId,
) -> Option<engine::pool::IdempotencyToken> {
    ctx.map(|axum::Extension(ctx)| {
        // scope ‖ account: for holds (scope = the event id) the bytes are those keys were
        // always recorded with.
        let scope = [scope, account.as_bytes().as_slice()].concat();
        engine::pool::IdempotencyToken {
            key: scoped_digest(&scope, &ctx.key),
            request: ctx.fingerprint,
        }
    })
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

    /// A first request with `key` that answered 201 with `body`.
    fn remember(cache: &IdempotencyCache, key: &[u8; 16], body: Bytes) {
        assert!(matches!(cache.begin(key, [0; 16]), Begin::Go));
        cache.finish(key, [0; 16], StatusCode::CREATED, HeaderMap::new(), body);
    }

    #[test]
    fn cache_is_bounded_and_evicts_oldest() {
        // Keys in one shard (first byte 0), so the per-shard bound of 1 applies to all.
        let cache = IdempotencyCache::new(SHARDS, 1 << 20, Duration::from_secs(60));
        let key = |i: u8| [0, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for i in 0..5 {
            remember(&cache, &key(i), Bytes::new());
        }
        assert_eq!(cache.len(), 1);
        assert!(matches!(cache.begin(&key(4), [0; 16]), Begin::Replay(_)));
        assert!(matches!(cache.begin(&key(4), [1; 16]), Begin::Mismatch));
        assert!(
            matches!(cache.begin(&key(0), [0; 16]), Begin::Go),
            "evicted key runs again"
        );
        // An in-flight request is reported, and forgotten on abort.
        assert!(matches!(cache.begin(&key(0), [0; 16]), Begin::InFlight));
        cache.abort(&key(0));
        assert!(matches!(cache.begin(&key(0), [0; 16]), Begin::Go));
    }

    #[test]
    fn cache_is_bounded_by_bytes() {
        // 16 shards × 1 KiB; all keys in shard 0.
        let cache = IdempotencyCache::new(1_000, SHARDS * 1024, Duration::from_secs(60));
        let key = |i: u8| [0, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for i in 0..10 {
            remember(&cache, &key(i), Bytes::from(vec![b'x'; 400]));
        }
        let shard = cache.lock(&key(0));
        assert!(
            shard.bytes <= 1024 + 400,
            "bytes stay near the bound: {}",
            shard.bytes
        );
        assert_eq!(shard.bytes, shard.map.len() * 400);
        drop(shard);
        // A body larger than the shard budget is not remembered.
        assert!(matches!(cache.begin(&key(99), [0; 16]), Begin::Go));
        cache.finish(
            &key(99),
            [0; 16],
            StatusCode::CREATED,
            HeaderMap::new(),
            Bytes::from(vec![b'x'; 2048]),
        );
        assert!(matches!(cache.begin(&key(99), [0; 16]), Begin::Go));
    }
}
