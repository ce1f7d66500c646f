//! Check-in over HTTP: check-in lists, single scans (entry or exit, with a nonce so a retry is
//! applied once), and uploads of scans made offline (with their original times: the earliest
//! admission wins, later ones come back as duplicates). Scanners are the event's staff and
//! managers; lists are made by managers.

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiQuery, PathId};
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
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Most scans in one offline upload (a backlog goes up in chunks: one upload stays well under
/// the request body limit).
pub const UPLOAD_MAX: usize = 100;
/// Uploaded scans decided at once.
const UPLOAD_CONCURRENCY: usize = 32;
/// Longest nonce.
const NONCE_LEN_MAX: usize = 128;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/events/{id}/checkin-lists",
            post(create_list).get(list_lists),
        )
        .route("/api/v1/events/{id}/check-ins", post(check_in))
        .route(
            "/api/v1/events/{id}/check-ins/offline",
            post(upload_offline),
        )
        .route(
            "/api/v1/events/{id}/checkin-stats",
            axum::routing::get(stats),
        )
        .route("/api/v1/events/{id}/check-in/prepare", post(prepare))
        .route(
            "/api/v1/events/{id}/check-in/offline-pack",
            axum::routing::get(offline_pack),
        )
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

/// Most confirmed registrations (each up to 100 tickets) per offline-pack page.
const PACK_PAGE_MAX: usize = 100;
/// Offline-pack pages built at once.
static PACKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Query of `GET /api/v1/events/{id}/check-in/offline-pack`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PackParams {
    /// Continue after this registration (the previous page's `next`).
    after: Option<Uuid>,
    /// Confirmed registrations per page (each up to 100 tickets), 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// One page of an event's offline pack: attendee data for scanners that work offline, one
/// sealed entry per ticket that only the ticket's own code opens.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::offline_pack))]
pub struct OfflinePack {
    event_id: Uuid,
    /// `regengine-offline-v1`: for a ticket whose QR reads `code` (trimmed, upper-case),
    /// `lookup` = HMAC-SHA256(key "regengine/offline/lookup/v1", code) and `data` = 12-byte nonce
    /// ‖ AES-256-GCM(key = HMAC-SHA256(key "regengine/offline/key/v1", code), nonce, JSON
    /// {ticket_id, ticket_number, ticket_type_id, ticket_type, registration_id, attendee_name}),
    /// both base64url without padding.
    scheme: &'static str,
    /// The signing key the entries' codes are made with: after a rotation, download again.
    key_id: u8,
    /// The revocation list's version when this page was made: catch up with
    /// `GET /api/v1/events/{id}/revocations?since=`.
    revocations_version: u64,
    /// Entries of this page's tickets.
    entries: Vec<PackEntry>,
    /// Cursor of the next page (`after`), if any.
    next: Option<Uuid>,
}

/// One ticket's sealed attendee data.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::pack_entry))]
pub struct PackEntry {
    /// Where a scanner finds the entry from the code it reads (base64url).
    lookup: String,
    /// Nonce ‖ ciphertext (base64url).
    data: String,
}

/// What an entry holds once opened.
#[derive(Serialize)]
struct SealedAttendee<'a> {
    ticket_id: Uuid,
    ticket_number: &'a str,
    ticket_type_id: Uuid,
    ticket_type: &'a str,
    registration_id: Uuid,
    attendee_name: &'a str,
}

/// Attendee data for offline scanners (staff and managers), in pages of confirmed
/// registrations: each ticket's entry is sealed with a key derived from its own code, so a
/// scanner holding the whole pack shows an attendee's name only when that attendee's QR is
/// presented, and a lost scanner leaks nobody (after alf.io's offline check-in). Pair it with
/// the event's public keys (to check codes) and its revocation list.
#[utoipa::path(get, path = "/api/v1/events/{id}/check-in/offline-pack", tag = "check-in",
    params(("id" = Uuid, Path), PackParams),
    responses((status = 200, body = OfflinePack), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, description = "other pages are being built: retry", body = Problem)))]
pub(crate) async fn offline_pack(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiQuery(p): ApiQuery<PackParams>,
) -> ApiResult<Json<OfflinePack>> {
    let event = scanning_event(&state, &principal, event_id)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=PACK_PAGE_MAX).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {PACK_PAGE_MAX}"
        )));
    }
    // CPU-bound (a signature and a sealing per ticket): a few pages at a time, else 503.
    let _permit = PACKING.try_acquire().map_err(|_| ApiError::Overloaded)?;
    // The version first: a revocation made while the page is built is caught up on later.
    let (_, revocations_version) = state.engine.revocations(event_id, u64::MAX, 0)?;
    // Key and pool numbering from the one record read above, so `key_id` is the key the
    // entries' codes are made with.
    let key_id = event.ticket_key;
    let work = state.clone();
    let after = p.after.map(engine::ids::RegistrationId);
    // One signature per ticket: off the async workers.
    let (entries, next) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let page = work.engine.registrations_by_event(
            event_id,
            Some(engine::model::RegistrationStatus::Confirmed),
            after,
            limit,
        )?;
        let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
        let mut entries = Vec::new();
        for reg in &page.items {
            let pool_ordinal = super::registrations::tickets::pool_ordinal(&event, reg.pool_id);
            let issued_at = reg.confirmed_at.unwrap_or(reg.updated_at);
            let ticket_type = event
                .ticket_types
                .iter()
                .find(|t| t.id == reg.ticket_type_id)
                .map_or("", |t| t.name.as_str());
            for (ticket, number) in reg.tickets.iter().zip(reg.first_ticket_number..) {
                let code =
                    work.codes
                        .encode(key_id, event_id, *ticket, reg.ticket_type_id, issued_at);
                let ticket_number =
                    crate::ticket_code::ticket_number(event_id, pool_ordinal, number);
                let attendee = serde_json::to_vec(&SealedAttendee {
                    ticket_id: ticket.0,
                    ticket_number: &ticket_number,
                    ticket_type_id: reg.ticket_type_id.0,
                    ticket_type,
                    registration_id: reg.id.0,
                    attendee_name: &reg.attendee.name,
                })
                .map_err(|e| ApiError::Internal(e.to_string()))?;
                let sealed =
                    crate::offline_pack::seal(&code, &attendee).map_err(ApiError::Internal)?;
                entries.push(PackEntry {
                    lookup: b64(&crate::offline_pack::lookup(&code)),
                    data: b64(&sealed),
                });
            }
        }
        Ok((entries, page.next.map(|n| n.0)))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(OfflinePack {
        event_id: event_id.0,
        scheme: "regengine-offline-v1",
        key_id,
        revocations_version,
        entries,
        next,
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

/// A check-in list.
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

/// Body of a check-in scan.
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
    let input = ScanInput {
        ticket_code: body.ticket_code,
        gate: body.gate,
        list_id: body.list_id,
        direction: body.direction,
        nonce: body.nonce,
        scanned_at: None,
    };
    let request = scan_request(&state, event_id, input)?;
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

/// One scan made offline.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::offline_scan))]
#[serde(deny_unknown_fields)]
pub struct OfflineScan {
    /// The code from the ticket's QR.
    pub ticket_code: String,
    /// When the scanner made it (not in the future).
    pub scanned_at: DateTime<Utc>,
    /// The gate.
    pub gate: Option<String>,
    /// The check-in list (absent: the default list).
    pub list_id: Option<Uuid>,
    /// `entry` (default) or `exit`.
    #[schema(value_type = Option<String>, pattern = "^(entry|exit)$")]
    pub direction: Option<Direction>,
    /// The scanner's id for this scan: uploading it again applies it once.
    #[schema(min_length = 1, max_length = 128)]
    pub nonce: Option<String>,
}

/// Body of an offline upload.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(super::examples::offline_upload))]
#[serde(deny_unknown_fields)]
pub struct OfflineUpload {
    /// 1 to 100 scans, in any order (upload a longer backlog in chunks).
    #[schema(min_items = 1, max_items = 100)]
    pub scans: Vec<OfflineScan>,
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

/// The answer to an upload, one result per scan in upload order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::examples::offline_report))]
pub struct OfflineReport {
    items: Vec<OfflineResult>,
    /// Scans that are the ticket's standing admission.
    admitted: usize,
    /// Scans recorded as duplicates.
    duplicates: usize,
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

async fn decide_offline(state: &AppState, event_id: EventId, scan: OfflineScan) -> OfflineResult {
    let input = ScanInput {
        ticket_code: scan.ticket_code,
        gate: scan.gate,
        list_id: scan.list_id,
        direction: scan.direction,
        nonce: scan.nonce,
        scanned_at: Some(scan.scanned_at),
    };
    decide(state, event_id, input).await
}

/// Upload scans made offline, with their original times (staff and managers). The earliest
/// admission of a ticket on a list wins whatever the order of uploads; every other scan of it
/// comes back as `duplicate`. Nothing is lost and nothing counts twice; a scan uploaded again
/// with its nonce is applied once.
#[utoipa::path(post, path = "/api/v1/events/{id}/check-ins/offline", tag = "check-in", params(("id" = Uuid, Path)),
    request_body = OfflineUpload,
    responses((status = 200, body = OfflineReport), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn upload_offline(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(event_id): PathId<EventId>,
    ApiJson(body): ApiJson<OfflineUpload>,
) -> ApiResult<Json<OfflineReport>> {
    use futures::StreamExt;
    scanning_event(&state, &principal, event_id)?;
    if !(1..=UPLOAD_MAX).contains(&body.scans.len()) {
        return Err(DomainError::Validation(vec![FieldError::new(
            "scans",
            format!("must hold 1 to {UPLOAD_MAX} scans"),
        )])
        .into());
    }
    let now = state.engine.clock().now();
    if let Some(i) = body
        .scans
        .iter()
        .position(|s| s.scanned_at > now + chrono::Duration::minutes(5))
    {
        return Err(DomainError::Validation(vec![FieldError::new(
            format!("scans[{i}].scanned_at"),
            "is in the future",
        )])
        .into());
    }
    // Malformed scans refuse the whole upload (nothing is decided): the scanner's bug, not a
    // ticket's fate.
    let mut errors = Vec::new();
    for (i, scan) in body.scans.iter().enumerate() {
        if nonce_digest(scan.nonce.as_deref(), "nonce", None).is_err() {
            errors.push(FieldError::new(
                format!("scans[{i}].nonce"),
                "must be 1 to 128 characters",
            ));
        }
        if scan.ticket_code.len() > crate::ticket_code::CODE_LEN_MAX {
            errors.push(FieldError::new(
                format!("scans[{i}].ticket_code"),
                "too long",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    // One ticket's scans are decided one after another in time order (an exit never
    // overtakes its entry); different tickets concurrently.
    let n = body.scans.len();
    let mut groups: std::collections::BTreeMap<String, Vec<(usize, OfflineScan)>> =
        std::collections::BTreeMap::new();
    for (i, scan) in body.scans.into_iter().enumerate() {
        groups
            .entry(scan.ticket_code.trim().to_ascii_uppercase())
            .or_default()
            .push((i, scan));
    }
    let decided: Vec<Vec<(usize, OfflineResult)>> = futures::stream::iter(groups.into_values())
        .map(|mut group| {
            let state = &state;
            async move {
                group.sort_by_key(|(_, s)| s.scanned_at);
                let mut out = Vec::with_capacity(group.len());
                for (i, scan) in group {
                    out.push((i, decide_offline(state, event_id, scan).await));
                }
                out
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .collect()
        .await;
    let mut items: Vec<Option<OfflineResult>> = (0..n).map(|_| None).collect();
    for (i, result) in decided.into_iter().flatten() {
        items[i] = Some(result);
    }
    let items: Vec<OfflineResult> = items.into_iter().flatten().collect();
    let admitted = items.iter().filter(|i| i.result == "admitted").count();
    let duplicates = items.iter().filter(|i| i.result == "duplicate").count();
    metrics::counter!("checkin_offline_scans_total").increment(items.len() as u64);
    Ok(Json(OfflineReport {
        items,
        admitted,
        duplicates,
    }))
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
