//! The HTTP API: one `app(state)` router assembled from one module per resource, wrapped in
//! the overload stack (load shed → concurrency limit → timeout, answering 503 problem+json
//! with Retry-After), request ids, per-route latency metrics and Idempotency-Key handling.

mod access;
mod audit;
mod auth;
pub mod body;
mod broadcasts;
mod checkin;
mod deliveries;
pub mod error;
mod events;
mod examples;
pub mod extract;
mod idempotency;
mod inbox;
pub mod openapi;
mod ops;
mod organizer;
pub mod payments;
mod policy;
pub mod previews;
mod registrations;
mod reports;
mod unsubscribe;
mod vouchers;
mod waitlist;
pub mod webhooks;
mod ws;

use crate::ticket_code::TicketCodes;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use engine::Engine;
use error::ApiError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

pub use auth::Authenticated;
pub use idempotency::IdempotencyCache;
pub use ws::WsSettings;

/// Everything handlers share (behind one `Arc`, so a request clones one pointer).
pub struct Shared {
    /// The engine.
    pub engine: Engine,
    /// Proxies whose forwarding headers name the client (`http.trusted_proxies`).
    pub proxies: crate::client_ip::TrustedProxies,
    /// Ticket code signer.
    pub codes: TicketCodes,
    /// Passwords and tokens.
    pub auth: crate::auth::SharedAuth,
    /// Rate limits.
    pub limiter: Arc<crate::ratelimit::Limiter>,
    /// The store, for the audit log and the in-app inboxes.
    pub db: storage::Db,
    /// The message templates, for managers' previews.
    pub previews: previews::Previews,
    /// Broadcasts one event may send in any 24 hours.
    pub broadcasts_per_day: usize,
    /// One-click unsubscribe tokens (verified by `POST /api/v1/unsubscribe`).
    pub unsubscribe: crate::unsubscribe::Unsubscribe,
    /// Live listeners of the in-app inboxes (`notifications:{user}`).
    pub inbox_feeds: Arc<crate::inbox::InboxFeeds>,
    /// True once recovery finished.
    pub ready: Arc<AtomicBool>,
    /// Prometheus renderer.
    pub metrics: crate::telemetry::export::Exporter,
    /// Idempotency-Key responses.
    pub idempotency: Arc<IdempotencyCache>,
    /// WebSocket limits.
    pub ws: WsSettings,
    /// Becomes true when the server is shutting down (WebSockets close).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Password-reset requests being processed after their answer (at most
    /// [`RESETS_IN_FLIGHT_MAX`]).
    pub resets_in_flight: Arc<tokio::sync::Semaphore>,
    /// Time to receive a request body after its head (slower: 408).
    pub body_read_timeout: Duration,
    /// Largest request body (larger: 413), read by every extractor of a body.
    pub body_bytes_max: usize,
    /// Largest bank statement upload (its own limit: statements are files).
    pub statement_bytes_max: usize,
    /// `Retry-After` seconds on every 503 the stack gives (shed, timed out, unavailable).
    pub retry_after_secs: u32,
    /// How payment providers' webhooks are verified.
    pub webhooks: payments::WebhookSettings,
    /// Organizer webhooks: whether they are on, and where endpoints may point.
    pub hooks: webhooks::HookSettings,
    /// Audit entries of refused webhook deliveries: at most one per period.
    pub webhook_rejections: payments::RejectionThrottle,
}

/// Password-reset requests processed at once in the background; more get 503.
pub const RESETS_IN_FLIGHT_MAX: usize = 64;

/// Handle to the shared state.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared state.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Overload settings of the router.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Requests in flight at once.
    pub concurrency_max: usize,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// CORS origins (empty: none).
    pub cors_allowed_origins: Vec<String>,
    /// Send Strict-Transport-Security.
    pub hsts: bool,
    /// Compress API responses above this size.
    pub compress_above_bytes: u16,
    /// Serve `/metrics` here (no admin listener configured).
    pub metrics_on_api: bool,
}

/// Why the router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A configured CORS origin is not a valid header value.
    #[error("http.cors_allowed_origins: {origin:?} is not a valid origin")]
    CorsOrigin {
        origin: String,
        #[source]
        source: axum::http::header::InvalidHeaderValue,
    },
}

/// The application router.
pub fn app(state: AppState, limits: &HttpLimits) -> Result<Router, AppError> {
    let api = Router::new()
        .merge(auth::router())
        .merge(audit::router())
        .merge(deliveries::router())
        .merge(inbox::router())
        .merge(webhooks::router())
        .merge(unsubscribe::router())
        .merge(previews::router())
        .merge(broadcasts::router())
        .merge(reports::router())
        .merge(events::router())
        .merge(registrations::router())
        .merge(organizer::router())
        .merge(checkin::router())
        .merge(vouchers::router())
        .merge(waitlist::router())
        .merge(payments::router())
        .merge(ws::router())
        // Three layers of our own (each costs a boxed future per request), outermost first:
        // `front`, outside the overload stack so that what it sheds or times out is measured
        // too: latency metrics by route and status;
        // `guard` per route: who is calling, the rate limits, the authentication gate, then
        // the Idempotency-Key replay;
        // `audit::layer` per route: the audit log of the answer.
        .route_layer(middleware::from_fn_with_state(state.clone(), audit::layer))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(state.body_bytes_max))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_overload))
                .load_shed()
                // Global: `Router::layer` wraps every route separately, and a plain
                // concurrency limit would get its own semaphore per route (the bound would
                // be per route, dozens of times the configured one).
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    limits.concurrency_max,
                ))
                .timeout(limits.request_timeout),
        )
        .layer(middleware::from_fn_with_state(state.clone(), front))
        // API replies only: the Swagger UI bundle is never compressed per request.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(SizeAbove::new(limits.compress_above_bytes.into())),
        );
    let headers = ResponseHeaders {
        hsts: limits.hsts,
        retry_after: axum::http::HeaderValue::from(state.retry_after_secs),
    };
    let mut app = Router::new()
        .merge(api)
        .merge(
            ops::router(limits.metrics_on_api)
                .merge(openapi::router())
                .route_layer(middleware::from_fn(access::route)),
        )
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            response_headers(headers.clone(), request, next)
        }));
    if !limits.cors_allowed_origins.is_empty() {
        app = app.layer(cors(&limits.cors_allowed_origins)?);
    }
    Ok(app
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(())
                .on_body_chunk(())
                .on_eos(())
                .on_failure(LogFailure::default()),
        )
        .layer(middleware::from_fn(access::edge))
        .with_state(state))
}

/// The admin listener's application: `/metrics`, `/healthz` and `/readyz`, nothing else (an
/// unknown path is the API's problem+json 404).
pub fn admin_app(state: AppState) -> Router {
    ops::router(true)
        .route_layer(middleware::from_fn(access::route))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(access::edge))
        .with_state(state)
}

/// The trace layer's failure hook. A 503 is a refusal the server chose — shed at the
/// concurrency bound, a pool's mailbox full, the request timeout — and already counted
/// (`http_requests_shed_total`, `engine_admission_rejected_total`,
/// `http_requests_timed_out_total`): during an overload there are thousands a second, so the
/// log says it is happening at most once per [`LogThrottle::PERIOD_MS`], with how many since
/// the last line. Any other 5xx is a genuine error, logged every time. (4xx, 429 included,
/// are the client's and never reach here.)
#[derive(Clone, Default)]
struct LogFailure {
    refusals: std::sync::Arc<crate::log_throttle::LogThrottle>,
}

impl tower_http::trace::OnFailure<tower_http::classify::ServerErrorsFailureClass> for LogFailure {
    fn on_failure(
        &mut self,
        class: tower_http::classify::ServerErrorsFailureClass,
        latency: Duration,
        _span: &tracing::Span,
    ) {
        use tower_http::classify::ServerErrorsFailureClass as Class;
        match class {
            Class::StatusCode(axum::http::StatusCode::SERVICE_UNAVAILABLE) => {
                if let Some(since) = self.refusals.admit() {
                    tracing::warn!(
                        refused_since_last_line = since,
                        "requests refused with 503 (overloaded or unavailable; counted in metrics)"
                    );
                }
            }
            other => tracing::error!(
                classification = %other,
                latency_ms = latency.as_millis() as u64,
                "response failed"
            ),
        }
    }
}

/// Around each route (and the fallback), outside the overload stack: the body's deadline, and
/// the latency by route and status of every answer, the 503s of shedding and timeouts included
/// (the hold SLOs count them), and the route for the access line.
async fn front(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let method = static_method(request.method());
    let request = body::with_deadline(request, state.body_read_timeout);
    let mut response = next.run(request).await;
    access::note(&mut response, matched.as_ref(), None);
    let route = matched.map(|p| p.as_str().to_owned()).unwrap_or_default();
    let status = static_status(response.status());
    metrics::histogram!("regengine_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Per route, inside the overload stack (a shed request spends no budget): decides the caller
/// once (see `auth::authenticate`) and spends the request's budgets (over one: 429 before
/// anything else runs); then the authentication gate and the Idempotency-Key replay.
async fn guard(state: State<AppState>, mut request: Request, next: Next) -> Response {
    auth::authenticate(&state, &mut request);
    let account = match auth::Caller::of(request.extensions()) {
        auth::Caller::Verified(principal) => Some(principal.user_id),
        _ => None,
    };
    let limited = match rate_limit(&state, &request) {
        Some(check) => check.await.err(),
        None => None,
    };
    let mut response = match (limited, auth::gate(&request)) {
        (Some(wait), _) => ApiError::RateLimited(wait).into_response(),
        (None, Err(e)) => e.into_response(),
        (None, Ok(())) => idempotency::layer(state, request, next).await,
    };
    access::note(&mut response, None, account);
    response
}

/// The check of the request's budgets (per client IP, and per account for holds), `None` when
/// rate limits are off; it resolves to `Err` with the wait when one is spent.
fn rate_limit(
    state: &AppState,
    request: &Request,
) -> Option<impl std::future::Future<Output = Result<(), Duration>> + Send + 'static> {
    use crate::ratelimit::Budget;
    use axum::http::Method;
    if !state.limiter.enabled() {
        return None;
    }
    // Providers' webhooks are authenticated by their signatures and come in bursts from a
    // few addresses (a webhook storm after an on-sale): a 429 would only delay the sale, or
    // a delivery report.
    let path = request.uri().path();
    if path.starts_with("/api/v1/payments/webhooks/")
        || path.starts_with("/api/v1/notifications/webhooks/")
    {
        return None;
    }
    // The client behind trusted proxies (`http.trusted_proxies`); IPv6 by its /64.
    let ip_key = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| crate::client_ip::key(state.proxies.client(c.0.ip(), request.headers())))
        .unwrap_or_default();
    let path = request.uri().path();
    let is_hold = request.method() == Method::POST
        && path.starts_with("/api/v1/events/")
        && path.ends_with("/registrations");
    let budget = match (request.method(), path) {
        // Everything that checks a secret (password or e-mailed token) shares the login budget.
        (
            &Method::POST,
            "/api/v1/auth/login"
            | "/api/v1/auth/verify-email"
            | "/api/v1/auth/password-reset/confirm",
        ) => Budget::LoginPerIp,
        (&Method::POST, "/api/v1/auth/password-reset" | "/api/v1/users/me/verification") => {
            Budget::MailPerIp
        }
        (&Method::POST, "/api/v1/auth/signup") => Budget::SignupPerIp,
        _ if is_hold => Budget::HoldsPerIp,
        (&Method::GET | &Method::HEAD, _) => Budget::ReadsPerIp,
        _ => Budget::WritesPerIp,
    };
    let account = is_hold
        .then(|| auth::Caller::of(request.extensions()).principal())
        .flatten()
        .map(|p| p.user_id);
    let limiter = state.limiter.clone();
    // Owned from here on: the request stays behind (its body is not `Sync`).
    Some(async move {
        limiter.check(budget, &ip_key).await?;
        if let Some(account) = account {
            limiter
                .check(Budget::HoldsPerAccount, account.as_bytes())
                .await?;
        }
        Ok(())
    })
}

/// The span every log line of a request carries: method, route and the request id (which
/// the client also gets back in `x-request-id`).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // No path: paths carry ids and tokens; the access line names the route.
    tracing::info_span!("request", id, method = static_method(request.method()))
}

/// CORS for the configured origins: the API's methods and headers, and the response headers a
/// browser client needs to read.
fn cors(origins: &[String]) -> Result<CorsLayer, AppError> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    let origins = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).map_err(|source| AppError::CorsOrigin {
                origin: origin.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            header::LOCATION,
        ])
        .max_age(Duration::from_secs(600)))
}

/// What every response carries, whichever layer produced it.
#[derive(Clone)]
struct ResponseHeaders {
    /// Send `Strict-Transport-Security`.
    hsts: bool,
    /// `Retry-After` of a 503 (shed, timed out, unavailable).
    retry_after: axum::http::HeaderValue,
}

/// Security headers on every response (OWASP secure headers for APIs): no sniffing, no
/// framing, no referrer, no caching of API answers (tokens, personal data); a locked-down
/// CSP except on the interactive docs, which need their scripts. And on every 503, when to
/// come back (whichever layer refused it: the shed, the timeout, a handler; one that already
/// says keeps its own). One layer for both: each layer costs a boxed future per request.
async fn response_headers(set: ResponseHeaders, request: Request, next: Next) -> Response {
    use axum::http::{HeaderValue, StatusCode, header};
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let is_unavailable = response.status() == StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    if is_unavailable {
        headers
            .entry(header::RETRY_AFTER)
            .or_insert(set.retry_after);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !docs {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    if set.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

async fn handle_overload(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        metrics::counter!("regengine_http_requests_timed_out_total").increment(1);
        ApiError::RequestTimeout.into_response()
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("regengine_http_requests_shed_total").increment(1);
        ApiError::Overloaded.into_response()
    } else {
        ApiError::Internal(err.to_string()).into_response()
    }
}

pub(super) fn static_method(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

fn static_status(status: axum::http::StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        401 => "401",
        403 => "403",
        400 => "400",
        404 => "404",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Readiness for handlers that need it.
pub(crate) fn is_ready(state: &State<AppState>) -> bool {
    state.ready.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tower_http::classify::ServerErrorsFailureClass as Class;
    use tower_http::trace::OnFailure;

    /// A log sink for the test's subscriber.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn refusals_are_sampled_and_genuine_errors_logged_every_time() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let mut hook = LogFailure::default();
            let span = tracing::Span::none();
            for _ in 0..1000 {
                hook.on_failure(
                    Class::StatusCode(axum::http::StatusCode::SERVICE_UNAVAILABLE),
                    Duration::from_millis(1),
                    &span,
                );
            }
            for _ in 0..3 {
                hook.on_failure(
                    Class::StatusCode(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                    Duration::from_millis(1),
                    &span,
                );
            }
        });
        let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let refused = log
            .lines()
            .filter(|l| l.contains("refused with 503"))
            .count();
        let failed = log
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("500"))
            .count();
        assert_eq!(refused, 1, "{log}");
        assert_eq!(failed, 3, "{log}");
    }
}
