//! Operations endpoints: liveness, readiness (after recovery), Prometheus exposition. The
//! health endpoints are on the API port always; `/metrics` is on the admin listener when
//! `http.admin_bind` is set, else on the API port.

use super::{AppState, is_ready};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The operations routes of the API port (`/metrics` too when there is no admin listener).
pub(super) fn router(with_metrics: bool) -> Router<AppState> {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if with_metrics {
        health.route("/metrics", get(metrics))
    } else {
        health
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive", body = String, example = "ok")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: recovery finished.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "ready", body = String, example = "ready"),
    (status = 503, description = "recovering", body = String, example = "recovering")))]
pub(crate) async fn readyz(state: State<AppState>) -> impl IntoResponse {
    if is_ready(&state) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering")
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "metrics", body = String,
    example = "# TYPE regengine_engine_active_events gauge\nregengine_engine_active_events 12\n")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("regengine_engine_active_events").set(state.engine.active_events() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
