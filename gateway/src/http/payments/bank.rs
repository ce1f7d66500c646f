//! Bank statements (managers): an uploaded CSV statement is read whole (an unreadable line
//! refuses it, naming the line), and each credit is matched by its `RF` reference to a
//! registration's bank-transfer payment of this event. A credit of exactly the amount and
//! currency due is reported to the registration's pool (keyed by the statement line, so a
//! statement uploaded twice applies once) and confirms it; anything else (no or unknown
//! reference, another event's, partial, over, another currency) is listed for a manager and
//! changes nothing.

use crate::http::AppState;
use crate::http::auth::Authenticated;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::PathId;
use crate::http::policy::managed_event;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use engine::ids::EventId;
use engine::payment::{Provider, ProviderReport, Report};
use integrations::bank::statement::{self, Line};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/{id}/bank-statements", post(upload))
}

/// A statement line that was not applied.
#[derive(Debug, Serialize, ToSchema)]
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
    /// Credits listed for a manager.
    exceptions: Vec<StatementException>,
}

/// Upload a bank statement (managers; `text/csv`, columns `amount`, `currency`, `reference`,
/// optional `id`, `date`, `name`, in any order). Exact matches by reference, amount and
/// currency confirm their registrations; the rest is listed. Audited.
#[utoipa::path(post, path = "/api/v1/events/{id}/bank-statements", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv",
        example = "id,date,name,reference,amount,currency\r\n2026-12-02-0001,2026-12-02,Ada Lovelace,RF41K3D9Q2ZP7X0M5B1C8V4N6T,72.00,EUR\r\n"),
    responses((status = 200, body = StatementResult), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, description = "an unreadable statement (the line is named); nothing applied", body = Problem)))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<StatementResult>> {
    managed_event(&state, &principal, event_id)?;
    let csv = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    if !csv {
        return Err(ApiError::UnsupportedMediaType);
    }
    let text =
        std::str::from_utf8(&body).map_err(|_| refused("the statement is not UTF-8 text"))?;
    let lines = statement::parse(text).map_err(|e| refused(&e.to_string()))?;
    let mut result = StatementResult {
        lines: lines.len(),
        applied: 0,
        duplicates: 0,
        exceptions: Vec::new(),
    };
    for line in &lines {
        match apply(&state, event_id, line).await? {
            Applied::Yes => result.applied += 1,
            Applied::Duplicate => result.duplicates += 1,
            Applied::No(exception) => result.exceptions.push(exception),
        }
    }
    metrics::counter!("bank_statement_lines_total", "result" => "applied")
        .increment(result.applied as u64);
    metrics::counter!("bank_statement_lines_total", "result" => "exception")
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
    No(StatementException),
}

/// Matches one credit and, if it is exact, reports it.
async fn apply(state: &AppState, event_id: EventId, line: &Line) -> ApiResult<Applied> {
    let mut exception = StatementException {
        line_id: line.id.clone(),
        reason: "unmatched".into(),
        reference: line.reference.clone(),
        registration_id: None,
        amount_minor: line.amount_minor,
        currency: line.currency.clone(),
        expected_minor: None,
        name: line.name.clone(),
        date: line.date.clone(),
    };
    let Some(reference) = &line.reference else {
        return Ok(Applied::No(exception));
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
        return Ok(Applied::No(exception));
    };
    exception.registration_id = Some(view.id.0);
    exception.expected_minor = Some(payment.amount_minor);
    if line.currency != payment.currency {
        exception.reason = "currency".into();
        return Ok(Applied::No(exception));
    }
    if line.amount_minor != payment.amount_minor {
        exception.reason = if line.amount_minor < payment.amount_minor {
            "partial"
        } else {
            "over"
        }
        .into();
        return Ok(Applied::No(exception));
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
            exception.reason = format!("not_payable: {}", why.as_str());
            Applied::No(exception)
        }
    })
}
