//! `ApiError`: every error the API answers, rendered as RFC 9457 `application/problem+json`
//! with a stable `type` (and `code`) per kind of error, per-field `errors` for validation,
//! and nothing internal in 5xx bodies (the cause is logged).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use engine::error::{DomainError, EngineError, FieldError};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    /// The field (`quantity`, `attendee.email`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI reference identifying the kind of problem: `/problems/{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Stable machine-readable code (same as the last segment of `type`).
    pub code: String,
    /// Invalid fields, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// For `already_checked_in`: when the ticket was first admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_checked_in_at: Option<DateTime<Utc>>,
    /// For `already_checked_in`: at which gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_gate: Option<String>,
    /// For `sold_out` and `not_sold_out`: seats left when the request was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<u32>,
    /// For `voucher_not_valid` (`unknown`, `deactivated`, `not_yet_valid`, `expired`,
    /// `wrong_ticket_type`) and `not_on_sale` (`not_started`, `ended`): why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `voucher_used_up`: uses left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
}

/// An API error.
#[derive(Debug)]
pub enum ApiError {
    /// Refused by the domain.
    Domain(DomainError),
    /// The engine could not decide (overload, timeout, failure).
    Engine(EngineError),
    /// The body is not JSON.
    MalformedJson(String),
    /// The body is JSON of the wrong shape.
    InvalidBody(Vec<FieldError>),
    /// A plain request to the WebSocket endpoint (not an upgrade).
    NotWebSocket(String),
    /// Content-Type is not JSON.
    UnsupportedMediaType,
    /// Body over the limit.
    PayloadTooLarge(usize),
    /// The body did not arrive within the body deadline (milliseconds).
    BodyTimeout(u64),
    /// The body broke off (the client closed, or sent a malformed chunk).
    BodyIncomplete,
    /// A path parameter is not a valid id.
    InvalidPath(String),
    /// A query parameter is invalid.
    InvalidQuery(String),
    /// No such route.
    RouteNotFound,
    /// Method not allowed on this route.
    MethodNotAllowed,
    /// Bad `Idempotency-Key` header.
    InvalidIdempotencyKey,
    /// The key was used before with another request.
    IdempotencyKeyReused,
    /// A request with the same key is still being processed.
    IdempotencyInProgress,
    /// Shed by the overload stack.
    Overloaded,
    /// The request took too long.
    RequestTimeout,
    /// No valid credentials: missing, malformed, expired or forged token (the reason is
    /// logged at debug level, never told to the client beyond a generic message).
    Unauthorized(&'static str),
    /// Wrong e-mail or password.
    InvalidCredentials,
    /// A refresh token was presented a second time: its session family is revoked.
    RefreshTokenReused,
    /// A refresh token that cannot be used (the detail says why: it is the caller's own
    /// token, so nothing is revealed to anyone else).
    InvalidRefreshToken(&'static str),
    /// Authenticated, but not allowed.
    Forbidden,
    /// Over a rate limit; retry after the given time.
    RateLimited(std::time::Duration),
    /// Something broke; the cause is logged, not shown.
    Internal(String),
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::Domain(e)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Domain(d) => ApiError::Domain(d),
            other => ApiError::Engine(other),
        }
    }
}

/// Seconds clients are told to wait before retrying a 503. Set once at start-up.
pub static RETRY_AFTER_SECS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

impl ApiError {
    /// Status, code and title of this error.
    pub fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Domain(d) => match d {
                DomainError::Validation(_) => (
                    S::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "Validation failed",
                ),
                DomainError::EventNotFound => (S::NOT_FOUND, "event_not_found", "Event not found"),
                DomainError::TicketTypeNotFound => (
                    S::NOT_FOUND,
                    "ticket_type_not_found",
                    "Ticket type not found",
                ),
                DomainError::PoolNotFound => {
                    (S::UNPROCESSABLE_ENTITY, "pool_not_found", "Pool not found")
                }
                DomainError::RegistrationNotFound => (
                    S::NOT_FOUND,
                    "registration_not_found",
                    "Registration not found",
                ),
                DomainError::TicketNotFound => {
                    (S::NOT_FOUND, "ticket_not_found", "Ticket not found")
                }
                DomainError::InvalidTransition { .. } => (
                    S::CONFLICT,
                    "invalid_transition",
                    "Invalid status transition",
                ),
                DomainError::EventNotOpen(_) => (S::CONFLICT, "event_not_open", "Event not open"),
                DomainError::SoldOut { .. } => (S::CONFLICT, "sold_out", "Sold out"),
                DomainError::InvalidRegistrationState { .. } => (
                    S::CONFLICT,
                    "invalid_registration_state",
                    "Invalid registration state",
                ),
                DomainError::HoldExpired { .. } => (S::CONFLICT, "hold_expired", "Hold expired"),
                DomainError::AlreadyCheckedIn { .. } => {
                    (S::CONFLICT, "already_checked_in", "Already checked in")
                }
                DomainError::TicketRevoked => (S::CONFLICT, "ticket_revoked", "Ticket revoked"),
                DomainError::NotYetValid { .. } => {
                    (S::CONFLICT, "not_yet_valid", "Check-in not open yet")
                }
                DomainError::CheckInClosed { .. } => {
                    (S::CONFLICT, "check_in_closed", "Check-in closed")
                }
                DomainError::NotAllowedAtGate => (
                    S::CONFLICT,
                    "not_allowed_at_gate",
                    "Not admitted at this gate",
                ),
                DomainError::NotCheckedIn => {
                    (S::CONFLICT, "not_checked_in", "Ticket never admitted")
                }
                DomainError::CheckInListNotFound => (
                    S::NOT_FOUND,
                    "check_in_list_not_found",
                    "Check-in list not found",
                ),
                DomainError::WrongEvent => (S::CONFLICT, "wrong_event", "Ticket of another event"),
                DomainError::IdempotencyMismatch => (
                    S::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "Idempotency key reused",
                ),
                DomainError::LimitReached(_) => (S::CONFLICT, "limit_reached", "Limit reached"),
                DomainError::AccountLimitReached { .. } => (
                    S::CONFLICT,
                    "account_limit_reached",
                    "Per-account limit reached",
                ),
                DomainError::UserNotFound => (S::NOT_FOUND, "user_not_found", "User not found"),
                DomainError::EmailTaken => (
                    S::CONFLICT,
                    "email_taken",
                    "E-mail address already registered",
                ),
                DomainError::InvalidToken => (
                    S::BAD_REQUEST,
                    "invalid_token",
                    "Invalid, used or expired link",
                ),
                DomainError::EmailAlreadyVerified => (
                    S::CONFLICT,
                    "email_already_verified",
                    "E-mail address already verified",
                ),
                DomainError::VoucherNotValid { .. } => (
                    S::UNPROCESSABLE_ENTITY,
                    "voucher_not_valid",
                    "Voucher not valid",
                ),
                DomainError::VoucherUsedUp { .. } => {
                    (S::CONFLICT, "voucher_used_up", "Voucher used up")
                }
                DomainError::VoucherExists => (S::CONFLICT, "voucher_exists", "Voucher exists"),
                DomainError::VoucherNotFound => {
                    (S::NOT_FOUND, "voucher_not_found", "Voucher not found")
                }
                DomainError::NotOnSale { .. } => (S::CONFLICT, "not_on_sale", "Not on sale"),
                DomainError::NotSoldOut { .. } => (S::CONFLICT, "not_sold_out", "Not sold out"),
                DomainError::AlreadyWaiting => (
                    S::CONFLICT,
                    "already_waiting",
                    "Already on the waiting list",
                ),
                DomainError::WaitlistEntryNotFound => (
                    S::NOT_FOUND,
                    "waitlist_entry_not_found",
                    "Waiting list place not found",
                ),
            },
            ApiError::Engine(e) => match e {
                EngineError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded", "Overloaded"),
                EngineError::Timeout => (S::SERVICE_UNAVAILABLE, "timeout", "Timed out"),
                EngineError::Unavailable(_) => (
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Temporarily unavailable",
                ),
                EngineError::Storage(_) | EngineError::Domain(_) => {
                    (S::INTERNAL_SERVER_ERROR, "internal", "Internal error")
                }
            },
            ApiError::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            ApiError::InvalidBody(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "Invalid request body",
            ),
            ApiError::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            ApiError::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::BodyTimeout(_) => {
                (S::REQUEST_TIMEOUT, "body_timeout", "Request body too slow")
            }
            ApiError::BodyIncomplete => {
                (S::BAD_REQUEST, "body_incomplete", "Request body incomplete")
            }
            ApiError::InvalidPath(_) => (
                S::BAD_REQUEST,
                "invalid_path_parameter",
                "Invalid path parameter",
            ),
            ApiError::NotWebSocket(_) => {
                (S::BAD_REQUEST, "not_websocket", "Not a WebSocket upgrade")
            }
            ApiError::InvalidQuery(_) => {
                (S::BAD_REQUEST, "invalid_query", "Invalid query parameter")
            }
            ApiError::RouteNotFound => (S::NOT_FOUND, "not_found", "Not found"),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ApiError::InvalidIdempotencyKey => (
                S::BAD_REQUEST,
                "invalid_idempotency_key",
                "Invalid Idempotency-Key header",
            ),
            ApiError::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            ApiError::IdempotencyInProgress => (
                S::CONFLICT,
                "idempotency_in_progress",
                "Request in progress",
            ),
            ApiError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded", "Overloaded"),
            ApiError::RequestTimeout => (S::SERVICE_UNAVAILABLE, "timeout", "Timed out"),
            ApiError::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::InvalidCredentials => (
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
            ),
            ApiError::InvalidRefreshToken(_) => (
                S::UNAUTHORIZED,
                "invalid_refresh_token",
                "Invalid refresh token",
            ),
            ApiError::RefreshTokenReused => (
                S::UNAUTHORIZED,
                "refresh_token_reused",
                "Refresh token reused",
            ),
            ApiError::Forbidden => (S::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Domain(DomainError::Validation(_)) => "one or more fields are invalid".into(),
            ApiError::Domain(d) => d.to_string(),
            ApiError::Engine(EngineError::Overloaded) | ApiError::Overloaded => {
                "the server is at capacity; retry after the Retry-After delay".into()
            }
            ApiError::Engine(EngineError::Timeout) | ApiError::RequestTimeout => {
                "the request did not complete in time; retry with the same Idempotency-Key".into()
            }
            ApiError::Engine(EngineError::Unavailable(_)) => {
                "temporarily unavailable; retry shortly".into()
            }
            ApiError::Engine(_) | ApiError::Internal(_) => "an internal error occurred".into(),
            ApiError::MalformedJson(m) => format!("the body is not valid JSON: {m}"),
            ApiError::InvalidBody(_) => "the body does not match the expected schema".into(),
            ApiError::UnsupportedMediaType => "send the body as application/json".into(),
            ApiError::PayloadTooLarge(max) => format!("the body exceeds {max} bytes"),
            ApiError::BodyTimeout(ms) => {
                format!("the request body did not arrive within {ms} ms of its headers")
            }
            ApiError::BodyIncomplete => "the request body broke off before its end".into(),
            ApiError::InvalidPath(m) | ApiError::InvalidQuery(m) | ApiError::NotWebSocket(m) => {
                m.clone()
            }
            ApiError::RouteNotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "method not allowed on this resource".into(),
            ApiError::InvalidIdempotencyKey => {
                "Idempotency-Key must be 1 to 255 printable ASCII characters".into()
            }
            ApiError::IdempotencyKeyReused => {
                "this Idempotency-Key was used with a different request".into()
            }
            ApiError::IdempotencyInProgress => {
                "a request with this Idempotency-Key is still in progress".into()
            }
            ApiError::Unauthorized(_) => {
                "a valid access token is required (Authorization: Bearer)".into()
            }
            ApiError::InvalidCredentials => "wrong e-mail address or password".into(),
            ApiError::RefreshTokenReused => {
                "this refresh token was already used; its session is revoked, sign in again".into()
            }
            ApiError::InvalidRefreshToken(why) => (*why).into(),
            ApiError::Forbidden => "you are not allowed to do this".into(),
            ApiError::RateLimited(wait) => format!(
                "too many requests; retry in {} s",
                wait.as_secs_f64().ceil().max(1.0)
            ),
        }
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.kind();
        let errors = match self {
            ApiError::Domain(DomainError::Validation(fields)) | ApiError::InvalidBody(fields) => {
                fields
                    .iter()
                    .map(|f| ProblemField {
                        field: f.field.clone(),
                        message: f.message.clone(),
                    })
                    .collect()
            }
            _ => vec![],
        };
        let (first_checked_in_at, first_gate) = match self {
            ApiError::Domain(DomainError::AlreadyCheckedIn { at, gate }) => {
                (Some(*at), gate.clone())
            }
            _ => (None, None),
        };
        let available = match self {
            ApiError::Domain(
                DomainError::SoldOut { available } | DomainError::NotSoldOut { available },
            ) => Some(*available),
            _ => None,
        };
        let reason = match self {
            ApiError::Domain(
                DomainError::VoucherNotValid { reason } | DomainError::NotOnSale { reason, .. },
            ) => Some((*reason).to_owned()),
            _ => None,
        };
        let remaining = match self {
            ApiError::Domain(DomainError::VoucherUsedUp { remaining }) => Some(*remaining),
            _ => None,
        };
        Problem {
            type_: format!("/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            detail: self.detail(),
            code: code.into(),
            errors,
            first_checked_in_at,
            first_gate,
            available,
            reason,
            remaining,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.kind();
        if status.is_server_error() {
            match &self {
                ApiError::Engine(EngineError::Storage(cause)) | ApiError::Internal(cause) => {
                    tracing::error!(cause = %cause, "internal error")
                }
                other => tracing::debug!(error = ?other, "request shed or unavailable"),
            }
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: the connection cannot be reused.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let secs = RETRY_AFTER_SECS.load(std::sync::atomic::Ordering::Relaxed);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let ApiError::RateLimited(wait) = &self {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            if let ApiError::Unauthorized(reason) = &self {
                tracing::debug!(reason, "unauthorized");
            }
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"regengine\""),
            );
        }
        response
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
