//! The HTTP API: one `app(state)` router assembled from one module per resource, wrapped in
//! the overload stack (load shed → concurrency limit → timeout, answering 503 problem+json
//! with Retry-After), request ids, per-route latency metrics and Idempotency-Key handling.

mod auth;
pub mod error;
mod events;
pub mod extract;
mod idempotency;
pub mod openapi;
mod ops;
mod policy;
mod registrations;
mod ws;

use crate::ticket_code::TicketCodes;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use engine::Engine;
use error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use auth::Authenticated;
pub use idempotency::IdempotencyCache;
pub use ws::WsSettings;

/// Largest accepted request body, set once at start-up from the configuration.
static BODY_LIMIT: AtomicUsize = AtomicUsize::new(64 * 1024);

/// The body limit in force.
pub fn body_limit() -> usize {
    BODY_LIMIT.load(Ordering::Relaxed)
}

/// Everything handlers share (behind one `Arc`, so a request clones one pointer).
pub struct Shared {
    /// The engine.
    pub engine: Engine,
    /// Ticket code signer.
    pub codes: TicketCodes,
    /// Passwords and tokens.
    pub auth: crate::auth::SharedAuth,
    /// True once recovery finished.
    pub ready: Arc<AtomicBool>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
    /// Idempotency-Key responses.
    pub idempotency: Arc<IdempotencyCache>,
    /// WebSocket limits.
    pub ws: WsSettings,
    /// Becomes true when the server is shutting down (WebSockets close).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

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
    /// Largest body.
    pub body_bytes_max: usize,
    /// Retry-After seconds on 503.
    pub retry_after_secs: u32,
}

/// The application router.
pub fn app(state: AppState, limits: &HttpLimits) -> Router {
    BODY_LIMIT.store(limits.body_bytes_max, Ordering::Relaxed);
    error::RETRY_AFTER_SECS.store(limits.retry_after_secs, Ordering::Relaxed);
    let api = Router::new()
        .merge(auth::router())
        .merge(events::router())
        .merge(registrations::router())
        .merge(ws::router())
        .route_layer(middleware::from_fn(track_metrics))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limits.body_bytes_max))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_overload))
                .load_shed()
                .concurrency_limit(limits.concurrency_max)
                .timeout(limits.request_timeout),
        );
    Router::new()
        .merge(api)
        .merge(ops::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn handle_overload(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::RequestTimeout.into_response()
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("http_requests_shed_total").increment(1);
        ApiError::Overloaded.into_response()
    } else {
        ApiError::Internal(err.to_string()).into_response()
    }
}

/// Records `http_request_duration_seconds{method, route, status}`. Labels are static
/// strings where possible (no per-request allocation for method and common statuses).
async fn track_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = static_method(request.method());
    let response = next.run(request).await;
    let status = static_status(response.status());
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

fn static_method(method: &axum::http::Method) -> &'static str {
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
