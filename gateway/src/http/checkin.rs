//! Check-in over HTTP: check-in lists, single scans (entry or exit, with a nonce so a retry is
//! applied once), door preparation and live statistics; and how any scan (HTTP, hub, offline
//! upload) is decided into a result. What offline scanners need (the sealed attendee pack, the
//! upload of scans made offline) is in `offline`. Scanners are the event's staff and managers;
//! lists are made by managers.

pub(super) mod offline;

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, PathId};
use super::policy::{managed_event, scanning_event};
use super::registrations::tickets::verify_code;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::ScanRequest;
use engine::error::{DomainError, EngineError, FieldError};
use engine::ids::{CheckInListId, EventId, TicketTypeId};
use engine::model::CheckInList;
use engine::pool::scan::{Direction, ScanResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest nonce, in bytes (only a digest of it is kept).
const NONCE_LEN_MAX: usize = 128;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/events/{id}/checkin-lists",
            post(create_list).get(list_lists),
        )
        .route("/api/v1/events/{id}/check-ins", post(check_in))
        .route(
            "/api/v1/events/{id}/checkin-stats",
            axum::routing::get(stats),
        )
        .route("/api/v1/events/{id}/check-in/prepare", post(prepare))
        .merge(offline::router())
}

/// Registrations read per page while preparing.
const PREPARE_PAGE: usize = 500;
/// One preparation at a time (it is CPU-bound: one signature per ticket).
static PREPARING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// What a preparation did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::prepared))]
pub struct PreparedDto {
    /// Tickets of the event whose codes are now remembered.
    tickets: usize,
    /// Codes remembered in all (bounded by `auth.verified_codes_cached_max`).
    remembered: usize,
    elapsed_ms: u64,
}

/// Get doors ready (staff and managers): computes the code of every issued ticket of the event
/// once, so this server checks scanned codes by a digest lookup instead of signature
/// arithmetic. Optional: an unprepared code is still checked, at a higher cost. Run it after
/// the sale and before doors open (and again after rotating the event's key).
#[utoipa::path(post, path = "/api/v1/events/{id}/check-in/prepare", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, body = PreparedDto), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 503, description = "another preparation is running", body = Problem)))]
pub(crate) async fn prepare(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<Json<PreparedDto>> {
    let event = scanning_event(&state, &principal, event_id)?;
    let _one = PREPARING.try_acquire().map_err(|_| ApiError::Overloaded)?;
    let started = std::time::Instant::now();
    let work = state.clone();
    let tickets = tokio::task::spawn_blocking(move || -> ApiResult<usize> {
        let (mut after, mut tickets) = (None, 0);
        loop {
            let page = work.engine.registrations_by_event(
                event_id,
                Some(engine::model::RegistrationStatus::Confirmed),
                after,
                PREPARE_PAGE,
            )?;
            for reg in &page.items {
                work.engine.remember_routes(reg);
                let issued_at = reg.confirmed_at.unwrap_or(reg.updated_at);
                for ticket in &reg.tickets {
                    work.codes.remember(
                        event.ticket_key,
                        event_id,
                        *ticket,
                        reg.ticket_type_id,
                        issued_at,
                    );
                    tickets += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(tickets),
            }
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(PreparedDto {
        tickets,
        remembered: state.codes.verified_len(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    }))
}

/// Body of `POST /api/v1/events/{id}/checkin-lists`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::create_list))]
#[serde(deny_unknown_fields)]
pub struct CreateList {
    /// 1 to 200 characters.
    pub name: String,
    /// Ticket types admitted (absent or empty: all).
    #[serde(default)]
    pub ticket_type_ids: Vec<Uuid>,
    /// Gates that scan on it (absent or empty: any).
    #[serde(default)]
    pub gates: Vec<String>,
    /// Whether a ticket that exited may enter again (default false).
    #[serde(default)]
    pub allow_reentry: bool,
    /// No admission before.
    pub opens_at: Option<DateTime<Utc>>,
    /// No admission after.
    pub closes_at: Option<DateTime<Utc>>,
}

/// A check-in list: the ticket types it admits, at which gates, and when.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::list))]
pub struct ListDto {
    id: Uuid,
    name: String,
    ticket_type_ids: Vec<Uuid>,
    gates: Vec<String>,
    allow_reentry: bool,
    opens_at: Option<DateTime<Utc>>,
    closes_at: Option<DateTime<Utc>>,
}

impl From<&CheckInList> for ListDto {
    fn from(l: &CheckInList) -> Self {
        Self {
            id: l.id.0,
            name: l.name.clone(),
            ticket_type_ids: l.ticket_types.iter().map(|t| t.0).collect(),
            gates: l.gates.clone(),
            allow_reentry: l.allow_reentry,
            opens_at: l.opens_at,
            closes_at: l.closes_at,
        }
    }
}

/// The event's check-in lists.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::list_page))]
pub struct ListPage {
    items: Vec<ListDto>,
}

/// Create a check-in list (managers). A ticket is admitted once per list.
#[utoipa::path(post, path = "/api/v1/events/{id}/checkin-lists", tag = "check-in", params(("id" = Uuid, Path)),
    request_body = CreateList,
    responses((status = 201, body = ListDto), (status = 404, body = Problem),
        (status = 409, description = "limit_reached", body = Problem)))]
pub(crate) async fn create_list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<CreateList>,
) -> ApiResult<impl IntoResponse> {
    managed_event(&state, &principal, event_id)?;
    let (_, list) = state
        .engine
        .create_checkin_list(event_id, |event| {
            CheckInList::new(
                event,
                &body.name,
                body.ticket_type_ids
                    .iter()
                    .copied()
                    .map(TicketTypeId)
                    .collect(),
                body.gates.clone(),
                body.allow_reentry,
                body.opens_at,
                body.closes_at,
            )
        })
        .await?;
    Ok((StatusCode::CREATED, Json(ListDto::from(&list))))
}

/// The event's check-in lists (staff and managers).
#[utoipa::path(get, path = "/api/v1/events/{id}/checkin-lists", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, body = ListPage), (status = 404, body = Problem)))]
pub(crate) async fn list_lists(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<Json<ListPage>> {
    let event = scanning_event(&state, &principal, event_id)?;
    Ok(Json(ListPage {
        items: event.checkin_lists.iter().map(ListDto::from).collect(),
    }))
}

/// Body of a check-in scan. The same scan arrives in an offline upload (`OfflineScan`, which
/// adds its time) and over the hub (a `scan` frame, which adds its event and the scanner's
/// reference); each wire shape rejects the others' fields, and each becomes a [`ScanInput`].
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::scan))]
#[serde(deny_unknown_fields)]
pub struct CheckInBody {
    /// The code from the ticket's QR.
    pub ticket_code: String,
    /// The gate scanning, 1..=64 characters.
    pub gate: Option<String>,
    /// The check-in list (absent: the event's default list).
    pub list_id: Option<Uuid>,
    /// `entry` (default) or `exit`.
    #[schema(value_type = Option<String>, pattern = "^(entry|exit)$")]
    pub direction: Option<Direction>,
    /// The scanner's id for this scan (1 to 128 characters): a retry with the same nonce is
    /// applied once and gets the first answer.
    #[schema(min_length = 1, max_length = 128)]
    pub nonce: Option<String>,
}

impl From<CheckInBody> for ScanInput {
    fn from(body: CheckInBody) -> Self {
        Self {
            ticket_code: body.ticket_code,
            gate: body.gate,
            list_id: body.list_id,
            direction: body.direction,
            nonce: body.nonce,
            scanned_at: None,
        }
    }
}

/// A decided scan.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::check_in))]
pub struct CheckInDto {
    /// `admitted` or `exited` (refusals are problem documents).
    result: String,
    ticket_id: Uuid,
    registration_id: Uuid,
    ticket_type_id: Uuid,
    /// The ticket's first admission on the list.
    admitted_at: DateTime<Utc>,
    gate: Option<String>,
}

/// The digest a pool remembers a nonce by. It binds the nonce to the scan it was made for (the
/// ticket, the list, the direction), so two scanners that number their scans alike never get
/// each other's answers.
pub(super) fn nonce_digest(
    nonce: Option<&str>,
    field: &str,
    scan: Option<(engine::ids::TicketId, Option<Uuid>, Direction)>,
) -> ApiResult<Option<[u8; 16]>> {
    match nonce {
        None => Ok(None),
        Some(n) if n.is_empty() || n.len() > NONCE_LEN_MAX => {
            Err(DomainError::Validation(vec![FieldError::new(
                field,
                "must be 1 to 128 characters",
            )])
            .into())
        }
        Some(n) => {
            let mut hasher = Sha256::new();
            hasher.update(n.as_bytes());
            if let Some((ticket, list, direction)) = scan {
                hasher.update(ticket.as_bytes());
                hasher.update(list.map(|l| *l.as_bytes()).unwrap_or([0; 16]));
                hasher.update([u8::from(direction == Direction::Exit)]);
            }
            let digest = hasher.finalize();
            let mut out = [0u8; 16];
            out.copy_from_slice(&digest[..16]);
            Ok(Some(out))
        }
    }
}

/// Scan a ticket in (or out) on a list, exactly once: a second entry gets 409
/// `already_checked_in` naming when and at which gate the ticket was first admitted (unless the
/// list allows re-entry after an exit).
#[utoipa::path(post, path = "/api/v1/events/{id}/check-ins", tag = "check-in", params(("id" = Uuid, Path)),
    request_body = CheckInBody,
    responses((status = 200, body = CheckInDto),
        (status = 404, description = "ticket_not_found, check_in_list_not_found", body = Problem),
        (status = 409, description = "already_checked_in, ticket_revoked, wrong_event, event_not_open, not_yet_valid, check_in_closed, not_allowed_at_gate, not_checked_in", body = Problem),
        (status = 422, description = "validation_failed: a malformed, tampered or forged code", body = Problem),
        (status = 503, body = Problem)))]
pub(crate) async fn check_in(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<CheckInBody>,
) -> ApiResult<Json<CheckInDto>> {
    scanning_event(&state, &principal, event_id)?;
    let request = scan_request(&state, event_id, body.into())?;
    let (ticket, result, first) = state.engine.scan(request).await?;
    let result = match result {
        ScanResult::Duplicate => {
            return Err(DomainError::AlreadyCheckedIn {
                at: first.at,
                gate: first.gate,
            }
            .into());
        }
        ScanResult::Admitted => "admitted",
        ScanResult::Exited => "exited",
    };
    Ok(Json(CheckInDto {
        result: result.into(),
        ticket_id: ticket.id.0,
        registration_id: ticket.registration_id.0,
        ticket_type_id: ticket.ticket_type_id.0,
        admitted_at: first.at,
        gate: first.gate,
    }))
}

/// What became of one uploaded scan.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::offline_result))]
pub struct OfflineResult {
    /// `admitted` (the earliest admission known for the ticket on the list), `exited`,
    /// `duplicate` (an earlier admission stands), or a refusal: `invalid_signature`,
    /// `wrong_event`, `revoked`, `unknown_ticket`, `not_allowed_at_gate`, `not_yet_valid`,
    /// `check_in_closed`, `not_checked_in`, `unknown_list`, `invalid`, `failed` (retry).
    result: String,
    ticket_id: Option<Uuid>,
    /// The admission that stands for the ticket on the list.
    first_checked_in_at: Option<DateTime<Utc>>,
    first_gate: Option<String>,
}

fn refusal(result: &str) -> OfflineResult {
    OfflineResult {
        result: result.into(),
        ticket_id: None,
        first_checked_in_at: None,
        first_gate: None,
    }
}

/// One scan from a scanner (hub or offline upload), decided into a result value: refusals
/// are results too, since a scanner needs an answer per scan.
pub(super) struct ScanInput {
    pub ticket_code: String,
    pub gate: Option<String>,
    pub list_id: Option<Uuid>,
    pub direction: Option<Direction>,
    pub nonce: Option<String>,
    pub scanned_at: Option<DateTime<Utc>>,
}

/// The engine's request for a scan: its code verified and of this event (422 on
/// `ticket_code` or 409 `wrong_event` otherwise), its nonce bound to the scan.
fn scan_request(state: &AppState, event_id: EventId, scan: ScanInput) -> ApiResult<ScanRequest> {
    let claims = verify_code(state, &scan.ticket_code)?;
    if claims.event_id != event_id {
        return Err(DomainError::WrongEvent.into());
    }
    let direction = scan.direction.unwrap_or(Direction::Entry);
    let bound = (claims.ticket_id, scan.list_id, direction);
    Ok(ScanRequest {
        event_id,
        ticket_id: claims.ticket_id,
        list_id: scan.list_id.map(CheckInListId),
        direction,
        gate: scan.gate,
        scanned_at: scan.scanned_at,
        nonce: nonce_digest(scan.nonce.as_deref(), "nonce", Some(bound))?,
    })
}

pub(super) async fn decide(state: &AppState, event_id: EventId, scan: ScanInput) -> OfflineResult {
    let code_field = |e: &FieldError| e.field == "ticket_code";
    let request = match scan_request(state, event_id, scan) {
        Ok(r) => r,
        Err(ApiError::Domain(DomainError::WrongEvent)) => return refusal("wrong_event"),
        Err(ApiError::Domain(DomainError::Validation(e))) if e.iter().any(code_field) => {
            return refusal("invalid_signature");
        }
        Err(_) => return refusal("invalid"),
    };
    let mut out = refusal("");
    out.ticket_id = Some(request.ticket_id.0);
    match state.engine.scan(request).await {
        Ok((_, result, first)) => {
            out.result = match result {
                ScanResult::Admitted => "admitted",
                ScanResult::Exited => "exited",
                ScanResult::Duplicate => "duplicate",
            }
            .into();
            out.first_checked_in_at = Some(first.at);
            out.first_gate = first.gate;
        }
        Err(EngineError::Domain(d)) => {
            out.result = match d {
                DomainError::TicketRevoked => "revoked",
                DomainError::TicketNotFound => "unknown_ticket",
                DomainError::WrongEvent => "wrong_event",
                DomainError::NotAllowedAtGate => "not_allowed_at_gate",
                DomainError::NotYetValid { .. } => "not_yet_valid",
                DomainError::CheckInClosed { .. } => "check_in_closed",
                DomainError::NotCheckedIn => "not_checked_in",
                DomainError::CheckInListNotFound => "unknown_list",
                DomainError::EventNotOpen(_) => "event_not_open",
                _ => "invalid",
            }
            .into();
        }
        Err(e) => {
            tracing::warn!(error = %e, "scan not decided");
            out.result = "failed".into();
        }
    }
    out
}

/// Admissions at one gate.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::gate_count))]
pub struct GateCount {
    /// The gate (`""`: none named; `other`: beyond the 100 gates counted by name).
    gate: String,
    admitted: u64,
}

/// Admissions in one minute.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::minute_count))]
pub struct MinuteCount {
    /// The minute's start.
    minute: DateTime<Utc>,
    admitted: u64,
}

/// An event's check-in statistics.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::stats))]
pub struct StatsDto {
    /// Admissions (first admissions, re-entries, earlier offline scans), all lists.
    admitted: u64,
    /// Scans refused as duplicates.
    duplicates: u64,
    /// Exit scans.
    exits: u64,
    per_gate: Vec<GateCount>,
    /// The last three hours with admissions, oldest first.
    per_minute: Vec<MinuteCount>,
}

pub(super) fn stats_dto(s: &engine::ports::CheckInStats) -> StatsDto {
    StatsDto {
        admitted: s.admitted,
        duplicates: s.duplicates,
        exits: s.exits,
        per_gate: s
            .per_gate
            .iter()
            .map(|(gate, n)| GateCount {
                gate: gate.clone(),
                admitted: *n,
            })
            .collect(),
        per_minute: s
            .per_minute
            .iter()
            .filter_map(|(m, n)| {
                Some(MinuteCount {
                    minute: DateTime::from_timestamp(m * 60, 0)?,
                    admitted: *n,
                })
            })
            .collect(),
    }
}

/// Live check-in statistics of an event: totals, per gate, per minute (staff and managers; also
/// pushed on the hub's `checkin:{event_id}` topic).
#[utoipa::path(get, path = "/api/v1/events/{id}/checkin-stats", tag = "check-in", params(("id" = Uuid, Path)),
    responses((status = 200, body = StatsDto), (status = 404, body = Problem)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
) -> ApiResult<Json<StatsDto>> {
    scanning_event(&state, &principal, event_id)?;
    Ok(Json(stats_dto(&state.engine.checkin_stats(event_id)?)))
}
