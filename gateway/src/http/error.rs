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
    /// A provider's webhook delivery failed verification or could not be read.
    WebhookRejected(String),
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

/// The status of a domain refusal.
fn domain_status(e: &DomainError) -> StatusCode {
    use DomainError as D;
    use StatusCode as S;
    match e {
        D::Validation(_) | D::PoolNotFound | D::IdempotencyMismatch | D::VoucherNotValid { .. } => {
            S::UNPROCESSABLE_ENTITY
        }
        D::EventNotFound
        | D::TicketTypeNotFound
        | D::RegistrationNotFound
        | D::InvoiceNotFound
        | D::ExceptionNotFound
        | D::DeliveryNotFound
        | D::NotificationNotFound
        | D::WebhookEndpointNotFound
        | D::BroadcastNotFound
        | D::TicketNotFound
        | D::CheckInListNotFound
        | D::UserNotFound
        | D::VoucherNotFound
        | D::WaitlistEntryNotFound => S::NOT_FOUND,
        D::InvalidTransition { .. }
        | D::EventNotOpen(_)
        | D::SoldOut { .. }
        | D::InvalidRegistrationState { .. }
        | D::HoldExpired { .. }
        | D::AlreadyCheckedIn { .. }
        | D::TicketRevoked
        | D::NotYetValid { .. }
        | D::CheckInClosed { .. }
        | D::NotAllowedAtGate
        | D::NotCheckedIn
        | D::WrongEvent
        | D::LimitReached(_)
        | D::AccountLimitReached { .. }
        | D::EmailTaken
        | D::EmailAlreadyVerified
        | D::VoucherUsedUp { .. }
        | D::VoucherExists
        | D::NotOnSale { .. }
        | D::NotSoldOut { .. }
        | D::AlreadyWaiting
        | D::NothingToPay
        | D::AlreadyPaid
        | D::AlreadyResolved
        | D::DeliveryNotDead(_)
        | D::WebhookEndpointDisabled
        | D::AmountMismatch(_)
        | D::RefundTooLarge { .. } => S::CONFLICT,
        D::PaymentNotFound => S::NOT_FOUND,
        D::PaymentRequired { .. } => S::PAYMENT_REQUIRED,
        D::PaymentNotApproved | D::RefundWindowClosed { .. } => S::CONFLICT,
        D::ProviderNotConfigured(_) => S::UNPROCESSABLE_ENTITY,
        D::InvalidToken => S::BAD_REQUEST,
    }
}

/// The stable code and short title of a domain refusal.
fn domain_code_and_title(e: &DomainError) -> (&'static str, &'static str) {
    use DomainError as D;
    match e {
        D::Validation(_) => ("validation_failed", "Validation failed"),
        D::EventNotFound => ("event_not_found", "Event not found"),
        D::TicketTypeNotFound => ("ticket_type_not_found", "Ticket type not found"),
        D::PoolNotFound => ("pool_not_found", "Pool not found"),
        D::RegistrationNotFound => ("registration_not_found", "Registration not found"),
        D::InvoiceNotFound => ("invoice_not_found", "Invoice not found"),
        D::ExceptionNotFound => ("exception_not_found", "Statement exception not found"),
        D::AlreadyResolved => ("already_resolved", "Already resolved"),
        D::DeliveryNotFound => ("delivery_not_found", "Delivery not found"),
        D::NotificationNotFound => ("notification_not_found", "Notification not found"),
        D::WebhookEndpointNotFound => ("webhook_endpoint_not_found", "Webhook endpoint not found"),
        D::BroadcastNotFound => ("broadcast_not_found", "Broadcast not found"),
        D::WebhookEndpointDisabled => ("webhook_endpoint_disabled", "Webhook endpoint disabled"),
        D::DeliveryNotDead(_) => ("delivery_not_dead", "Delivery not dead"),
        D::AmountMismatch(_) => ("amount_mismatch", "Amount mismatch"),
        D::TicketNotFound => ("ticket_not_found", "Ticket not found"),
        D::InvalidTransition { .. } => ("invalid_transition", "Invalid status transition"),
        D::EventNotOpen(_) => ("event_not_open", "Event not open"),
        D::SoldOut { .. } => ("sold_out", "Sold out"),
        D::InvalidRegistrationState { .. } => {
            ("invalid_registration_state", "Invalid registration state")
        }
        D::HoldExpired { .. } => ("hold_expired", "Hold expired"),
        D::AlreadyCheckedIn { .. } => ("already_checked_in", "Already checked in"),
        D::TicketRevoked => ("ticket_revoked", "Ticket revoked"),
        D::NotYetValid { .. } => ("not_yet_valid", "Check-in not open yet"),
        D::CheckInClosed { .. } => ("check_in_closed", "Check-in closed"),
        D::NotAllowedAtGate => ("not_allowed_at_gate", "Not admitted at this gate"),
        D::NotCheckedIn => ("not_checked_in", "Ticket never admitted"),
        D::CheckInListNotFound => ("check_in_list_not_found", "Check-in list not found"),
        D::WrongEvent => ("wrong_event", "Ticket of another event"),
        D::IdempotencyMismatch => ("idempotency_key_reused", "Idempotency key reused"),
        D::LimitReached(_) => ("limit_reached", "Limit reached"),
        D::AccountLimitReached { .. } => ("account_limit_reached", "Per-account limit reached"),
        D::UserNotFound => ("user_not_found", "User not found"),
        D::EmailTaken => ("email_taken", "E-mail address already registered"),
        D::InvalidToken => ("invalid_token", "Invalid, used or expired link"),
        D::EmailAlreadyVerified => ("email_already_verified", "E-mail address already verified"),
        D::VoucherNotValid { .. } => ("voucher_not_valid", "Voucher not valid"),
        D::VoucherUsedUp { .. } => ("voucher_used_up", "Voucher used up"),
        D::VoucherExists => ("voucher_exists", "Voucher exists"),
        D::VoucherNotFound => ("voucher_not_found", "Voucher not found"),
        D::NotOnSale { .. } => ("not_on_sale", "Not on sale"),
        D::NotSoldOut { .. } => ("not_sold_out", "Not sold out"),
        D::AlreadyWaiting => ("already_waiting", "Already on the waiting list"),
        D::WaitlistEntryNotFound => ("waitlist_entry_not_found", "Waiting list place not found"),
        D::PaymentRequired { .. } => ("payment_required", "Payment required"),
        D::NothingToPay => ("nothing_to_pay", "Nothing to pay"),
        D::AlreadyPaid => ("already_paid", "Already paid"),
        D::PaymentNotFound => ("payment_not_found", "Payment not found"),
        D::PaymentNotApproved => ("payment_not_approved", "Payment not approved"),
        D::RefundWindowClosed { .. } => ("refund_window_closed", "Refund window closed"),
        D::RefundTooLarge { .. } => (
            "refund_too_large",
            "Refund larger than what can be refunded",
        ),
        D::ProviderNotConfigured(_) => {
            ("provider_not_configured", "Payment provider not configured")
        }
    }
}

impl ApiError {
    /// Status, code and title of this error.
    pub fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        let (code, title) = self.code_and_title();
        (self.status(), code, title)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use StatusCode as S;
        match self {
            ApiError::Domain(d) => domain_status(d),
            ApiError::Engine(
                EngineError::Overloaded | EngineError::Timeout | EngineError::Unavailable(_),
            ) => S::SERVICE_UNAVAILABLE,
            ApiError::Engine(
                EngineError::Store(_)
                | EngineError::Journal(_)
                | EngineError::Internal(_)
                | EngineError::Domain(_),
            ) => S::INTERNAL_SERVER_ERROR,
            ApiError::MalformedJson(_)
            | ApiError::BodyIncomplete
            | ApiError::InvalidPath(_)
            | ApiError::NotWebSocket(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidIdempotencyKey
            | ApiError::WebhookRejected(_) => S::BAD_REQUEST,
            ApiError::InvalidBody(_) | ApiError::IdempotencyKeyReused => S::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => S::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => S::REQUEST_TIMEOUT,
            ApiError::RouteNotFound => S::NOT_FOUND,
            ApiError::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            ApiError::IdempotencyInProgress => S::CONFLICT,
            ApiError::Overloaded | ApiError::RequestTimeout => S::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_)
            | ApiError::InvalidCredentials
            | ApiError::InvalidRefreshToken(_)
            | ApiError::RefreshTokenReused => S::UNAUTHORIZED,
            ApiError::Forbidden => S::FORBIDDEN,
            ApiError::RateLimited(_) => S::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code (the problem's type is `/problems/{code}`) and a short title.
    fn code_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Domain(d) => domain_code_and_title(d),
            ApiError::Engine(e) => match e {
                EngineError::Overloaded => ("overloaded", "Overloaded"),
                EngineError::Timeout => ("timeout", "Timed out"),
                EngineError::Unavailable(_) => ("unavailable", "Temporarily unavailable"),
                EngineError::Store(_)
                | EngineError::Journal(_)
                | EngineError::Internal(_)
                | EngineError::Domain(_) => ("internal", "Internal error"),
            },
            ApiError::MalformedJson(_) => ("malformed_json", "Malformed JSON"),
            ApiError::InvalidBody(_) => ("invalid_body", "Invalid request body"),
            ApiError::UnsupportedMediaType => ("unsupported_media_type", "Unsupported media type"),
            ApiError::PayloadTooLarge(_) => ("payload_too_large", "Payload too large"),
            ApiError::BodyTimeout(_) => ("body_timeout", "Request body too slow"),
            ApiError::BodyIncomplete => ("body_incomplete", "Request body incomplete"),
            ApiError::InvalidPath(_) => ("invalid_path_parameter", "Invalid path parameter"),
            ApiError::NotWebSocket(_) => ("not_websocket", "Not a WebSocket upgrade"),
            ApiError::InvalidQuery(_) => ("invalid_query", "Invalid query parameter"),
            ApiError::WebhookRejected(_) => ("webhook_rejected", "Webhook rejected"),
            ApiError::RouteNotFound => ("not_found", "Not found"),
            ApiError::MethodNotAllowed => ("method_not_allowed", "Method not allowed"),
            ApiError::InvalidIdempotencyKey => {
                ("invalid_idempotency_key", "Invalid Idempotency-Key header")
            }
            ApiError::IdempotencyKeyReused => ("idempotency_key_reused", "Idempotency key reused"),
            ApiError::IdempotencyInProgress => ("idempotency_in_progress", "Request in progress"),
            ApiError::Overloaded => ("overloaded", "Overloaded"),
            ApiError::RequestTimeout => ("timeout", "Timed out"),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            ApiError::InvalidCredentials => ("invalid_credentials", "Invalid credentials"),
            ApiError::InvalidRefreshToken(_) => ("invalid_refresh_token", "Invalid refresh token"),
            ApiError::RefreshTokenReused => ("refresh_token_reused", "Refresh token reused"),
            ApiError::Forbidden => ("forbidden", "Forbidden"),
            ApiError::RateLimited(_) => ("rate_limited", "Too many requests"),
            ApiError::Internal(_) => ("internal", "Internal error"),
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
            ApiError::WebhookRejected(why) => format!("the delivery was not accepted: {why}"),
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
                ApiError::Engine(
                    error @ (EngineError::Store(_)
                    | EngineError::Journal(_)
                    | EngineError::Internal(_)),
                ) => {
                    let cause = engine::failure::chain(error);
                    tracing::error!(%cause, "internal error")
                }
                ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
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
