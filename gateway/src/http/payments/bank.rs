//! Bank statements (managers): an uploaded CSV statement is read whole (an unreadable line
//! refuses it, naming the line), and each credit is matched by its `RF` reference to a
//! registration's bank-transfer payment of this event. A credit of exactly the amount and
//! currency due is reported to the registration's pool (keyed by the statement line, so a
//! statement uploaded twice applies once) and confirms it; anything else (no or unknown
//! reference, another event's, partial, over, another currency) changes nothing and is
//! recorded (once per line) as an exception for a manager to resolve: apply, refund, ignore.

use crate::http::AppState;
use crate::http::auth::Authenticated;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::PathId;
use crate::http::policy::managed_event;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::ids::{EventId, RegistrationId};
use engine::payment::{Provider, ProviderReport, Report};
use engine::statement::{Action, Exception, ExceptionReason};
use integrations::bank::statement::{self, Line};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        // Statements are files: read with their own limit, not the JSON bodies' one.
        .route(
            "/api/v1/events/{id}/bank-statements",
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/events/{id}/bank-statements/exceptions",
            get(list_exceptions),
        )
        .route(
            "/api/v1/events/{id}/bank-statements/exceptions/{line_id}/resolve",
            post(resolve),
        )
}

/// A statement line that was not applied, and what a manager decided about it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::statement_exception))]
pub struct StatementException {
    line_id: String,
    /// `unmatched` (no valid `RF` reference, or one of no payment of this event),
    /// `partial` / `over` (another amount than due), `currency` (another currency),
    /// `not_payable` (the payment refused it: see the registration).
    reason: String,
    reference: Option<String>,
    registration_id: Option<Uuid>,
    amount_minor: i64,
    currency: String,
    /// What the payment is due, when one was found.
    expected_minor: Option<i64>,
    name: String,
    date: String,
    recorded_at: DateTime<Utc>,
    /// Absent while open.
    resolution: Option<ResolutionDto>,
}

/// A manager's decision on an exception.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolutionDto {
    /// `apply`, `refund` or `ignore`.
    action: String,
    /// The registration it paid (apply).
    registration_id: Option<Uuid>,
    /// To pay back by hand: the whole credit (refund) or what exceeded the amount due (apply).
    to_refund_minor: i64,
    note: String,
    by: Uuid,
    at: DateTime<Utc>,
}

impl From<&Exception> for StatementException {
    fn from(e: &Exception) -> Self {
        Self {
            line_id: e.line_id.clone(),
            reason: e.reason.as_str().to_owned(),
            reference: e.reference.clone(),
            registration_id: e.registration_id.map(|r| r.0),
            amount_minor: e.amount_minor,
            currency: e.currency.clone(),
            expected_minor: e.expected_minor,
            name: e.name.clone(),
            date: e.date.clone(),
            recorded_at: e.recorded_at,
            resolution: e.resolution.as_ref().map(|r| ResolutionDto {
                action: r.action.as_str().to_owned(),
                registration_id: r.registration_id.map(|id| id.0),
                to_refund_minor: r.to_refund_minor,
                note: r.note.clone(),
                by: r.by.0,
                at: r.at,
            }),
        }
    }
}

/// What a statement did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::statement_result))]
pub struct StatementResult {
    /// Credits read.
    lines: usize,
    /// Credits applied (each confirms its registration, or is refunded if its seats are gone).
    applied: usize,
    /// Credits already applied by an earlier upload.
    duplicates: usize,
    /// Credits listed for a manager (recorded once per line: an upload of the same line
    /// lists it again, open or resolved as it is).
    exceptions: Vec<StatementException>,
}

/// Upload a bank statement (managers): `text/csv` (columns `amount`, `currency`, `reference`,
/// optional `id`, `date`, `name`, in any order) or `application/xml` (ISO 20022 CAMT.053: every
/// booked credit, a batch booking per transaction). Exact matches by reference, amount and
/// currency confirm their registrations; the rest is recorded as exceptions. Audited.
#[utoipa::path(post, path = "/api/v1/events/{id}/bank-statements", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    request_body(content(
        (String = "text/csv",
            example = "id,date,name,reference,amount,currency\r\n2026-12-02-0001,2026-12-02,Ada Lovelace,RF41K3D9Q2ZP7X0M5B1C8V4N6T,72.00,EUR\r\n"),
        (String = "application/xml",
            example = "<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\"><BkToCstmrStmt><Stmt><Ntry><Amt Ccy=\"EUR\">72.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><AcctSvcrRef>2026120200001</AcctSvcrRef></Ntry></Stmt></BkToCstmrStmt></Document>"))),
    responses((status = 200, body = StatementResult), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, description = "an unreadable statement (the line is named); nothing applied", body = Problem)))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Json<StatementResult>> {
    managed_event(&state, &principal, event_id)?;
    let media = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let xml = ["application/xml", "text/xml"]
        .iter()
        .any(|t| media.starts_with(t));
    if !xml && !media.starts_with("text/csv") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = crate::http::body::read(body, state.statement_bytes_max).await?;
    let text =
        std::str::from_utf8(&body).map_err(|_| refused("the statement is not UTF-8 text"))?;
    let lines = if xml {
        integrations::bank::camt::parse(text)
    } else {
        statement::parse(text)
    }
    .map_err(|e| refused(&e.to_string()))?;
    let mut result = StatementResult {
        lines: lines.len(),
        applied: 0,
        duplicates: 0,
        exceptions: Vec::new(),
    };
    let mut exceptions = Vec::new();
    for line in &lines {
        match apply(&state, event_id, line).await? {
            Applied::Yes => result.applied += 1,
            Applied::Duplicate => result.duplicates += 1,
            Applied::No(exception) => exceptions.push(*exception),
        }
    }
    // Durable before the answer: each line once (a second upload finds it, maybe resolved).
    state
        .engine
        .record_exceptions(event_id, exceptions.clone())
        .await?;
    for e in &exceptions {
        let recorded = state.engine.statement_exception(event_id, &e.line_id)?;
        result
            .exceptions
            .push(StatementException::from(recorded.as_ref().unwrap_or(e)));
    }
    metrics::counter!("regengine_bank_statement_lines_total", "result" => "applied")
        .increment(result.applied as u64);
    metrics::counter!("regengine_bank_statement_lines_total", "result" => "exception")
        .increment(result.exceptions.len() as u64);
    Ok(Json(result))
}

fn refused(why: &str) -> ApiError {
    engine::error::DomainError::Validation(vec![engine::error::FieldError::new(
        "statement",
        why.to_owned(),
    )])
    .into()
}

enum Applied {
    Yes,
    Duplicate,
    No(Box<Exception>),
}

/// Matches one credit and, if it is exact, reports it.
async fn apply(state: &AppState, event_id: EventId, line: &Line) -> ApiResult<Applied> {
    let mut exception = Exception {
        line_id: line.id.clone(),
        reason: ExceptionReason::Unmatched,
        reference: line.reference.clone(),
        registration_id: None,
        amount_minor: line.amount_minor,
        currency: line.currency.clone(),
        expected_minor: None,
        name: line.name.clone(),
        date: line.date.clone(),
        recorded_at: chrono::Utc::now(),
        resolution: None,
    };
    let Some(reference) = &line.reference else {
        return Ok(Applied::No(Box::new(exception)));
    };
    let found = state
        .engine
        .registration_by_payment_ref(Provider::BankTransfer, reference)?
        .and_then(|id| state.engine.registration(id).ok())
        .filter(|r| r.event_id == event_id);
    let Some((view, payment)) = found
        .as_ref()
        .and_then(|view| Some((view, view.payment.as_ref()?)))
    else {
        return Ok(Applied::No(Box::new(exception)));
    };
    exception.registration_id = Some(view.id);
    exception.expected_minor = Some(payment.amount_minor);
    if line.currency != payment.currency {
        exception.reason = ExceptionReason::Currency;
        return Ok(Applied::No(Box::new(exception)));
    }
    if line.amount_minor != payment.amount_minor {
        exception.reason = if line.amount_minor < payment.amount_minor {
            ExceptionReason::Partial
        } else {
            ExceptionReason::Over
        };
        return Ok(Applied::No(Box::new(exception)));
    }
    let report = ProviderReport {
        provider: Provider::BankTransfer,
        event_id: format!("bank:{}", line.id),
        provider_ref: Some(reference.clone()),
        report: Report::Succeeded {
            amount_minor: line.amount_minor,
            currency: line.currency.clone(),
        },
    };
    let outcome = state.engine.report_payment(view.id, report).await?;
    Ok(match (outcome.duplicate, outcome.ignored) {
        (true, _) => Applied::Duplicate,
        (false, None) => Applied::Yes,
        (false, Some(why)) => {
            tracing::info!(line = %line.id, registration = %view.id, reason = why.as_str(), "statement line not payable");
            exception.reason = ExceptionReason::NotPayable;
            Applied::No(Box::new(exception))
        }
    })
}

/// An event's statement exceptions.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::exception_list))]
pub struct ExceptionList {
    exceptions: Vec<StatementException>,
}

/// `?status=`: `open` (the default), `resolved` or `all`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExceptionQuery {
    /// `open` (default), `resolved` or `all`.
    status: Option<String>,
}

/// The event's bank-statement exceptions (managers), in line-id order: open ones by default.
#[utoipa::path(get, path = "/api/v1/events/{id}/bank-statements/exceptions", tag = "payments",
    params(("id" = Uuid, Path), ExceptionQuery), security(("bearer" = [])),
    responses((status = 200, body = ExceptionList), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn list_exceptions(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    crate::http::extract::ApiQuery(query): crate::http::extract::ApiQuery<ExceptionQuery>,
) -> ApiResult<Json<ExceptionList>> {
    managed_event(&state, &principal, event_id)?;
    let keep: fn(&Exception) -> bool = match query.status.as_deref() {
        None | Some("open") => |e| e.resolution.is_none(),
        Some("resolved") => |e| e.resolution.is_some(),
        Some("all") => |_| true,
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "status must be open, resolved or all, not `{other}`"
            )));
        }
    };
    let rows = state.engine.statement_exceptions(event_id)?;
    Ok(Json(ExceptionList {
        exceptions: rows.iter().filter(|e| keep(e)).map(Into::into).collect(),
    }))
}

/// Body of `POST …/exceptions/{line_id}/resolve`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::resolve_exception))]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `apply` (pay a registration with it: its amount must cover what is due; an excess is
    /// listed to pay back), `refund` (it goes back by hand) or `ignore` (not a payment for this
    /// event).
    action: ActionDto,
    /// The registration to apply it to; default: the one its reference names.
    registration_id: Option<Uuid>,
    /// Up to 500 characters.
    #[serde(default)]
    note: String,
}

/// What a manager does with an exception.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionDto {
    Apply,
    Refund,
    Ignore,
}

impl From<ActionDto> for Action {
    fn from(a: ActionDto) -> Self {
        match a {
            ActionDto::Apply => Action::Apply,
            ActionDto::Refund => Action::Refund,
            ActionDto::Ignore => Action::Ignore,
        }
    }
}

/// Resolve a bank-statement exception (managers; once). Applying pays the registration
/// (confirming it) with a capture keyed by the statement line. Audited.
#[utoipa::path(post, path = "/api/v1/events/{id}/bank-statements/exceptions/{line_id}/resolve", tag = "payments",
    params(("id" = Uuid, Path), ("line_id" = String, Path)), security(("bearer" = [])), request_body = ResolveBody,
    responses((status = 200, body = StatementException), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, description = "exception_not_found, registration_not_found or payment_not_found", body = Problem),
        (status = 409, description = "already_resolved or amount_mismatch", body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path((event_id, line_id)): Path<(String, String)>,
    crate::http::extract::ApiJson(body): crate::http::extract::ApiJson<ResolveBody>,
) -> ApiResult<Json<StatementException>> {
    let event_id = Uuid::parse_str(&event_id)
        .map(EventId)
        .map_err(|_| ApiError::InvalidPath(format!("`{event_id}` is not a valid id")))?;
    managed_event(&state, &principal, event_id)?;
    if body.note.chars().count() > 500 {
        return Err(
            engine::error::DomainError::Validation(vec![engine::error::FieldError::new(
                "note",
                "must be at most 500 characters",
            )])
            .into(),
        );
    }
    let decision = engine::Decision {
        action: body.action.into(),
        registration_id: body.registration_id.map(RegistrationId),
        note: body.note,
        by: principal.user_id,
    };
    let row = state
        .engine
        .resolve_exception(event_id, &line_id, decision)
        .await?;
    Ok(Json(StatementException::from(&row)))
}
