//! Organizer tools for one event: bulk cancel, bulk resend of tickets, and CSV exports of
//! registrations and tickets. Managers of the event only. Bulk requests name at most
//! `BULK_MAX` registrations and answer per registration; exports stream page by page, so
//! memory stays bounded whatever the event's size.

use super::AppState;
use super::error::{ApiResult, Problem};
use super::extract::{ApiJson, PathId};
use super::policy::managed_event;
use super::registrations::tickets::ticket_context;
use crate::ticket_code::ticket_number;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use engine::error::{DomainError, EngineError};
use engine::ids::{EventId, RegistrationId};
use engine::model::RegistrationStatus;
use engine::outbox::{MessageKind, OutboxMessage};
use engine::ports::RegistrationView;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Most registrations one bulk request may name.
pub const BULK_MAX: usize = 500;
/// Bulk cancellations in flight at once (each is a pool actor round trip).
const BULK_CONCURRENCY: usize = 16;
/// Registrations read per page of an export.
const EXPORT_PAGE: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/events/{id}/registrations/bulk-cancel",
            post(bulk_cancel),
        )
        .route(
            "/api/v1/events/{id}/registrations/bulk-resend",
            post(bulk_resend),
        )
        .route(
            "/api/v1/events/{id}/registrations.csv",
            get(export_registrations),
        )
        .route("/api/v1/events/{id}/tickets.csv", get(export_tickets))
}

/// Body of the bulk operations.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::bulk_body))]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// 1 to 500 registrations of this event.
    #[schema(min_items = 1, max_items = 500)]
    pub registration_ids: Vec<Uuid>,
}

/// What happened to one registration of a bulk request.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::bulk_item))]
pub struct BulkItem {
    id: Uuid,
    /// bulk-cancel: `canceled`, `not_found`, `invalid_state`, `failed`; bulk-resend:
    /// `queued`, `not_found`, `not_confirmed`.
    result: String,
    /// The registration's status afterwards, when known.
    status: Option<String>,
}

/// The answer of a bulk request, one item per registration in request order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::bulk_result))]
pub struct BulkResult {
    items: Vec<BulkItem>,
}

fn check_bulk(body: &BulkBody) -> ApiResult<Vec<RegistrationId>> {
    let n = body.registration_ids.len();
    if !(1..=BULK_MAX).contains(&n) {
        return Err(DomainError::Validation(vec![engine::error::FieldError::new(
            "registration_ids",
            format!("must name 1 to {BULK_MAX} registrations"),
        )])
        .into());
    }
    Ok(body
        .registration_ids
        .iter()
        .copied()
        .map(RegistrationId)
        .collect())
}

/// The registration if it belongs to `event`.
fn of_event(state: &AppState, event: EventId, id: RegistrationId) -> Option<RegistrationView> {
    state
        .engine
        .registration(id)
        .ok()
        .filter(|r| r.event_id == event)
}

/// Cancel registrations of the event (held or confirmed; confirmed ones' tickets are revoked).
#[utoipa::path(post, path = "/api/v1/events/{id}/registrations/bulk-cancel", tag = "registrations",
    params(("id" = Uuid, Path)), request_body = BulkBody,
    responses((status = 200, body = BulkResult), (status = 404, body = Problem)))]
pub(crate) async fn bulk_cancel(
    State(state): State<AppState>,
    super::auth::Authenticated(principal): super::auth::Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<BulkBody>,
) -> ApiResult<Json<BulkResult>> {
    managed_event(&state, &principal, event_id)?;
    let ids = check_bulk(&body)?;
    let items: Vec<BulkItem> = futures::stream::iter(ids)
        .map(|id| {
            let state = state.clone();
            async move {
                let item = |result: &str, status: Option<RegistrationStatus>| BulkItem {
                    id: id.0,
                    result: result.into(),
                    status: status.map(|s| s.as_str().to_owned()),
                };
                if of_event(&state, event_id, id).is_none() {
                    return item("not_found", None);
                }
                match state.engine.cancel_registration(id).await {
                    Ok(view) => item("canceled", Some(view.status)),
                    Err(EngineError::Domain(DomainError::InvalidRegistrationState {
                        status,
                        ..
                    })) => item("invalid_state", Some(status)),
                    Err(e) => {
                        tracing::warn!(error = %e, registration = %id, "bulk cancel failed");
                        item("failed", None)
                    }
                }
            }
        })
        .buffered(BULK_CONCURRENCY)
        .collect()
        .await;
    tracing::info!(event = %event_id, by = %principal.user_id, n = items.len(), "bulk cancel");
    Ok(Json(BulkResult { items }))
}

/// Send confirmed registrations' tickets to their attendees again (through the outbox).
#[utoipa::path(post, path = "/api/v1/events/{id}/registrations/bulk-resend", tag = "registrations",
    params(("id" = Uuid, Path)), request_body = BulkBody,
    responses((status = 200, body = BulkResult), (status = 404, body = Problem)))]
pub(crate) async fn bulk_resend(
    State(state): State<AppState>,
    super::auth::Authenticated(principal): super::auth::Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<BulkBody>,
) -> ApiResult<Json<BulkResult>> {
    let event = managed_event(&state, &principal, event_id)?;
    let ids = check_bulk(&body)?;
    let now = state.engine.clock().now();
    let mut items = Vec::with_capacity(ids.len());
    let mut messages = Vec::new();
    for id in ids {
        let Some(view) = of_event(&state, event_id, id) else {
            items.push(BulkItem {
                id: id.0,
                result: "not_found".into(),
                status: None,
            });
            continue;
        };
        let status = Some(view.status.as_str().to_owned());
        if view.status != RegistrationStatus::Confirmed {
            items.push(BulkItem {
                id: id.0,
                result: "not_confirmed".into(),
                status,
            });
            continue;
        }
        let tickets = state.codes.lines(&event, &view);
        let kind = MessageKind::Tickets {
            event_title: event.title.clone(),
            registration_id: id,
            tickets,
        };
        messages.push(OutboxMessage::new(
            &view.attendee.email,
            view.user_id,
            kind,
            now,
        ));
        items.push(BulkItem {
            id: id.0,
            result: "queued".into(),
            status,
        });
    }
    // All or nothing: one commit queues every message (503 if the outbox is full).
    state.engine.send_messages(messages).await?;
    Ok(Json(BulkResult { items }))
}

/// One CSV cell: quoted when needed, and defused against formula injection (a cell a
/// spreadsheet would run, starting with `=`, `+`, `-`, `@`, tab or CR, gets a leading `'`).
/// Bidirectional overrides, embeddings and isolates (U+202A–U+202E, U+2066–U+2069: they make
/// a cell display as something other than what it holds, e.g. a name that reads backwards)
/// and control characters other than line breaks and tabs (input refuses them; older records
/// may hold some) are each replaced by U+FFFD, visibly.
fn cell(value: &str) -> String {
    let value: String = value
        .chars()
        .map(|c| match c {
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => '\u{FFFD}',
            c if engine::model::is_stray_control(c) => '\u{FFFD}',
            c => c,
        })
        .collect();
    // A negative integer (an amount credited) is no formula: it stays a number.
    let negative_number = value
        .strip_prefix('-')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) && !negative_number {
        format!("'{value}")
    } else {
        value
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

pub(crate) fn row(cells: &[&str]) -> String {
    let mut line = cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

pub(super) fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Streams `header` and then the rows `rows_of` makes of each registration of the event,
/// page by page.
pub(super) fn csv_stream(
    state: AppState,
    event_id: EventId,
    header: &'static [&'static str],
    rows_of: fn(&AppState, &RegistrationView, &mut String),
    filename: String,
) -> impl IntoResponse {
    let first = row(header);
    let pages = futures::stream::unfold(
        (state, Some(None::<RegistrationId>)),
        move |(state, cursor)| async move {
            let after = cursor?;
            let page = match state
                .engine
                .registrations_by_event(event_id, None, after, EXPORT_PAGE)
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, event = %event_id, "export failed");
                    return Some((Err(std::io::Error::other("export failed")), (state, None)));
                }
            };
            let mut chunk = String::new();
            for view in &page.items {
                rows_of(&state, view, &mut chunk);
            }
            let next = page.next.map(Some);
            Some((Ok::<_, std::io::Error>(chunk), (state, next)))
        },
    );
    // Fused: the compression layer may poll again after the end.
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain(pages)
        .fuse();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
}

const REGISTRATION_COLUMNS: &[&str] = &[
    "registration_id",
    "status",
    "ticket_type_id",
    "quantity",
    "attendee_name",
    "attendee_email",
    "user_id",
    "created_at",
    "expires_at",
    "confirmed_at",
    "updated_at",
];

fn registration_rows(_: &AppState, v: &RegistrationView, out: &mut String) {
    out.push_str(&row(&[
        &v.id.to_string(),
        v.status.as_str(),
        &v.ticket_type_id.to_string(),
        &v.quantity.to_string(),
        &v.attendee.name,
        &v.attendee.email,
        &v.user_id.map(|u| u.to_string()).unwrap_or_default(),
        &time(Some(v.created_at)),
        &time(Some(v.expires_at)),
        &time(v.confirmed_at),
        &time(Some(v.updated_at)),
    ]));
}

const TICKET_COLUMNS: &[&str] = &[
    "ticket_number",
    "ticket_id",
    "registration_id",
    "status",
    "ticket_type_id",
    "attendee_name",
    "attendee_email",
    "code",
    "issued_at",
    "checked_in_at",
    "gate",
];

fn ticket_rows(state: &AppState, v: &RegistrationView, out: &mut String) {
    if v.tickets.is_empty() {
        return;
    }
    let context = ticket_context(state, v.event_id, v.pool_id);
    let issued_at = v.confirmed_at.unwrap_or(v.updated_at);
    let status = if v.status == RegistrationStatus::Canceled {
        "revoked"
    } else {
        "valid"
    };
    for (id, number) in v.tickets.iter().zip(v.first_ticket_number..) {
        let admission = state.engine.ticket(*id).ok().and_then(|t| t.admission);
        out.push_str(&row(&[
            &ticket_number(v.event_id, context.pool_ordinal, number),
            &id.to_string(),
            &v.id.to_string(),
            status,
            &v.ticket_type_id.to_string(),
            &v.attendee.name,
            &v.attendee.email,
            &state
                .codes
                .encode(context.key, v.event_id, *id, v.ticket_type_id, issued_at),
            &time(Some(issued_at)),
            &time(admission.as_ref().map(|a| a.at)),
            admission
                .as_ref()
                .and_then(|a| a.gate.as_deref())
                .unwrap_or(""),
        ]));
    }
}

/// Every registration of the event as CSV (UTF-8, CRLF, a header row).
#[utoipa::path(get, path = "/api/v1/events/{id}/registrations.csv", tag = "registrations",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/csv", body = String,
        example = "registration_id,status,ticket_type_id,quantity,attendee_name,attendee_email,user_id,created_at,expires_at,confirmed_at,updated_at\r\n01a40086-8440-7e27-8fcb-ce0c87b12e2e,confirmed,01a40073-4a60-788d-88d7-3e52775065e2,2,Ada Lovelace,ada@example.org,01a40080-1ba0-71c7-90a1-17932cfa3578,2027-04-02T10:15:00.000Z,2027-04-02T10:25:00.000Z,2027-04-02T10:17:42.000Z,2027-04-02T10:17:42.000Z\r\n"),
        (status = 404, body = Problem)))]
pub(crate) async fn export_registrations(
    State(state): State<AppState>,
    super::auth::Authenticated(principal): super::auth::Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<impl IntoResponse> {
    managed_event(&state, &principal, event_id)?;
    Ok(csv_stream(
        state,
        event_id,
        REGISTRATION_COLUMNS,
        registration_rows,
        format!("registrations-{event_id}.csv"),
    ))
}

/// Every ticket of the event as CSV, with its number, signed code, status and admission.
#[utoipa::path(get, path = "/api/v1/events/{id}/tickets.csv", tag = "registrations",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/csv", body = String,
        example = "ticket_number,ticket_id,registration_id,status,ticket_type_id,attendee_name,attendee_email,code,issued_at,checked_in_at,gate\r\nUOER-1-000001-6,01a4008c-ece0-7c0b-84b6-c0a99b782f77,01a40086-8440-7e27-8fcb-ce0c87b12e2e,valid,01a40073-4a60-788d-88d7-3e52775065e2,Ada Lovelace,ada@example.org,T2AIAQDJAANTQ4A5OCV5J6PI4JCHJHOANEACGOZYD4BOCLNQFJTN4C65YBUQAHGSTAPCGYRVZ6KJ3VAZPCBWRZJRUUJGSIH2GOSKOT3OHNJCGG6GXRYYIQ3TE2UBFWCY5H3MZM66QPJCAECH2THKISGPIQV7QYYUJFD5QGMDW7ISRXBXL5YH2ESQ6STG7AC,2027-04-02T10:17:42.000Z,2027-06-12T18:42:10.000Z,A\r\n"),
        (status = 404, body = Problem)))]
pub(crate) async fn export_tickets(
    State(state): State<AppState>,
    super::auth::Authenticated(principal): super::auth::Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<impl IntoResponse> {
    managed_event(&state, &principal, event_id)?;
    Ok(csv_stream(
        state,
        event_id,
        TICKET_COLUMNS,
        ticket_rows,
        format!("tickets-{event_id}.csv"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+1 555"), "'+1 555");
        assert_eq!(cell("-15300"), "-15300");
        assert_eq!(cell("-1+1"), "'-1+1");
        assert_eq!(cell("-"), "'-");
        // A name that would display reversed, and a NUL from an older record.
        assert_eq!(cell("Eve\u{202E}gpj.exe"), "Eve\u{FFFD}gpj.exe");
        assert_eq!(cell("a\u{2067}b\u{2069}"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(cell("nul\0bel\u{7}"), "nul\u{FFFD}bel\u{FFFD}");
        assert_eq!(row(&["a", "b"]), "a,b\r\n");
    }
}
