//! Who is calling: the bearer token read once per request ([`authenticate`]), the gate of
//! protected routes, the `Authenticated` extractor every protected handler takes; and the
//! sessions that issue tokens (login, rotating refresh, logout). The account itself (sign-up,
//! profile, password, e-mail verification, roles) is in `account`.

pub(super) mod account;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::ApiJson;
use crate::auth::{HashError, PASSWORD_BYTES_MAX, Principal};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use engine::accounts::{Refresh, UserRecord};
use engine::error::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .merge(account::router())
}

/// Who is calling, decided once per request by [`authenticate`] from the `Authorization`
/// header; every later layer and handler reads it from the request's extensions.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A valid access token.
    Verified(Principal),
    /// A header that is not a valid access token (the reason is logged, never shown).
    Invalid(&'static str),
}

impl Caller {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Verified(p) => Some(p),
            _ => None,
        }
    }

    /// The request's caller (anonymous where [`authenticate`] did not run).
    pub fn of(extensions: &axum::http::Extensions) -> &Caller {
        extensions.get::<Caller>().unwrap_or(&Caller::Anonymous)
    }
}

/// Verifies the request's bearer token, if any, into the [`Caller`] that every later layer
/// and handler reads from the request's extensions. It refuses nothing: public routes serve
/// anonymous callers, and [`gate`] and [`Authenticated`] answer 401.
pub(super) fn authenticate(state: &AppState, request: &mut Request) {
    let caller = match request.headers().get(header::AUTHORIZATION) {
        None => Caller::Anonymous,
        Some(value) => match value.to_str().ok().and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        }) {
            None => Caller::Invalid("not a Bearer token"),
            Some(token) => match state.auth.verify_access(token.trim()) {
                Ok(principal) => Caller::Verified(principal),
                Err(reason) => Caller::Invalid(reason),
            },
        },
    };
    request.extensions_mut().insert(caller);
}

/// The authentication gate of every API route: an operation not in the public list
/// (`policy::PUBLIC`, also what the OpenAPI document marks as needing a token) without a
/// valid access token is answered 401 before any other layer or the handler reads the
/// request. Handlers still take [`Authenticated`]; this gate makes a forgotten one harmless.
pub(super) fn gate(request: &Request) -> Result<(), ApiError> {
    if matches!(Caller::of(request.extensions()), Caller::Verified(_)) {
        return Ok(());
    }
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or_default();
    let method = match request.method().as_str() {
        "HEAD" => "GET",
        other => other,
    };
    let public = super::policy::PUBLIC.iter().any(|op| {
        op.split_once(' ')
            .is_some_and(|(m, path)| m == method && path == route)
    });
    match Caller::of(request.extensions()) {
        _ if public => Ok(()),
        Caller::Invalid(reason) => Err(ApiError::Unauthorized(reason)),
        _ => Err(ApiError::Unauthorized("no Authorization header")),
    }
}

/// The caller, from a valid `Authorization: Bearer` access token; 401 otherwise.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        match Caller::of(&parts.extensions) {
            Caller::Verified(principal) => Ok(Authenticated(principal.clone())),
            Caller::Invalid(reason) => Err(ApiError::Unauthorized(reason)),
            Caller::Anonymous => Err(ApiError::Unauthorized("no Authorization header")),
        }
    }
}

/// The caller if signed in, for routes that anyone may call but that show more to some. A
/// token that is present but invalid is refused (401) rather than served as anonymous, so a
/// client learns its token went bad (RFC 6750 §3.1).
pub struct MaybeAuthenticated(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        match Caller::of(&parts.extensions) {
            Caller::Verified(principal) => Ok(MaybeAuthenticated(Some(principal.clone()))),
            Caller::Invalid(reason) => Err(ApiError::Unauthorized(reason)),
            Caller::Anonymous => Ok(MaybeAuthenticated(None)),
        }
    }
}

/// A password hashing failure as an answer: 503 when the hashing pool is full.
fn hashing(e: HashError) -> ApiError {
    match e {
        HashError::Busy => ApiError::Overloaded,
        HashError::Failed(cause) => ApiError::Internal(cause),
    }
}

/// Body of `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::login))]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// As given at sign-up (compared case-insensitively).
    pub email: String,
    pub password: String,
}

/// Body of `POST /api/v1/auth/refresh` and `/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::refresh))]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// Tokens of a session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::token_pair))]
pub struct TokenPair {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Exchange at `/api/v1/auth/refresh` for a new pair; single use.
    pub refresh_token: String,
}

/// Sign in: an access token and a refresh token (a new session).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = TokenPair), (status = 400, body = Problem),
        (status = 401, body = Problem, description = "invalid_credentials"), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Json<TokenPair>> {
    // Password guessing is limited per account (the address as typed, normalised), whether
    // or not the account exists.
    let account = body.email.trim().to_lowercase();
    state
        .limiter
        .check(
            crate::ratelimit::Budget::LoginPerAccount,
            account.as_bytes(),
        )
        .await
        .map_err(ApiError::RateLimited)?;
    if body.password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::InvalidCredentials);
    }
    let user = state.engine.user_by_email(&body.email)?;
    let ok = state
        .auth
        .verify_password(
            body.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await
        .map_err(hashing)?;
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!("regengine_auth_logins_total", "result" => "failed").increment(1);
        return Err(ApiError::InvalidCredentials);
    };
    let family = Uuid::new_v4();
    let (refresh_token, digest) = state
        .auth
        .new_refresh(user.id, family)
        .map_err(ApiError::Internal)?;
    let user = state
        .engine
        .start_session(user.id, family, digest, state.auth.refresh_ttl())
        .await?;
    metrics::counter!("regengine_auth_logins_total", "result" => "ok").increment(1);
    token_pair(&state, &user, refresh_token).map(Json)
}

/// A fresh access token for `user` with the refresh token just stored for its session.
fn token_pair(state: &AppState, user: &UserRecord, refresh_token: String) -> ApiResult<TokenPair> {
    Ok(TokenPair {
        access_token: state.auth.issue_access(user).map_err(ApiError::Internal)?,
        token_type: "Bearer",
        expires_in: state.auth.access_ttl_secs(),
        refresh_token,
    })
}

/// Exchange a refresh token for a new pair. Each refresh token works once: presenting a used
/// one revokes its whole session (401 `refresh_token_reused`).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = TokenPair), (status = 400, body = Problem),
        (status = 401, body = Problem, description = "invalid_refresh_token (malformed, expired, signed out or revoked; the detail says which) or refresh_token_reused"),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult<Json<TokenPair>> {
    let presented =
        state
            .auth
            .parse_refresh(&body.refresh_token)
            .ok_or(ApiError::InvalidRefreshToken(
                "the refresh token is malformed (send the refresh_token of a token pair as issued)",
            ))?;
    let (next, digest) = state
        .auth
        .new_refresh(presented.user_id, presented.family)
        .map_err(ApiError::Internal)?;
    let (user, outcome) = match state
        .engine
        .refresh_session(
            presented.user_id,
            presented.family,
            presented.digest,
            digest,
            state.auth.refresh_ttl(),
        )
        .await
    {
        Err(engine::error::EngineError::Domain(DomainError::UserNotFound)) => {
            return Err(ApiError::InvalidRefreshToken(
                "the refresh token's account no longer exists",
            ));
        }
        other => other?,
    };
    metrics::counter!("regengine_auth_refreshes_total", "result" => match outcome {
        Refresh::Rotated => "ok",
        Refresh::Reused => "reused",
        Refresh::Invalid => "invalid",
    })
    .increment(1);
    match outcome {
        Refresh::Rotated => token_pair(&state, &user, next).map(Json),
        Refresh::Reused => {
            tracing::warn!(user = %user.id, family = %presented.family, "refresh token reused; session revoked");
            Err(ApiError::RefreshTokenReused)
        }
        Refresh::Invalid => Err(ApiError::InvalidRefreshToken(
            "the refresh token has expired or its session ended (signed out, or revoked): sign in again",
        )),
    }
}

/// End the session of a refresh token. Always 204: an unknown token ends nothing.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshBody,
    responses((status = 204), (status = 400, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult<StatusCode> {
    if let Some(presented) = state.auth.parse_refresh(&body.refresh_token) {
        match state
            .engine
            .end_session(presented.user_id, presented.family, presented.digest)
            .await
        {
            Ok(()) | Err(engine::error::EngineError::Domain(DomainError::UserNotFound)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
