//! What scanners that work offline need: a sealed copy of the event's attendee data (the
//! offline pack, in pages) and the upload of the scans they made while offline, decided with
//! their original times.

use super::{OfflineResult, ScanInput, decide, nonce_digest};
use crate::http::AppState;
use crate::http::auth::Authenticated;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{ApiJson, ApiQuery, PathId};
use crate::http::policy::scanning_event;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::error::{DomainError, FieldError};
use engine::ids::EventId;
use engine::model::EventRecord;
use engine::pool::scan::Direction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/events/{id}/check-ins/offline",
            post(upload_offline),
        )
        .route(
            "/api/v1/events/{id}/check-in/offline-pack",
            get(offline_pack),
        )
}

/// Most scans in one offline upload (a backlog goes up in chunks: one upload stays well under
/// the request body limit).
pub const UPLOAD_MAX: usize = 100;
/// Uploaded scans decided at once.
const UPLOAD_CONCURRENCY: usize = 32;

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
#[schema(examples(crate::http::examples::offline_pack))]
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
#[schema(examples(crate::http::examples::pack_entry))]
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
    let limit = crate::http::extract::page_limit(p.limit, 50, PACK_PAGE_MAX)?;
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
    let (entries, next) =
        tokio::task::spawn_blocking(move || seal_page(&work, &event, after, limit))
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

/// One page of the pack: the sealed entries of the tickets of up to `limit` confirmed
/// registrations after `after`, their codes made with the event's current key; and the cursor
/// of the next page.
fn seal_page(
    state: &AppState,
    event: &EventRecord,
    after: Option<engine::ids::RegistrationId>,
    limit: usize,
) -> ApiResult<(Vec<PackEntry>, Option<Uuid>)> {
    let page = state.engine.registrations_by_event(
        event.id,
        Some(engine::model::RegistrationStatus::Confirmed),
        after,
        limit,
    )?;
    let mut entries = Vec::new();
    for reg in &page.items {
        let pool_ordinal = crate::ticket_code::pool_ordinal(event, reg.pool_id);
        let issued_at = reg.confirmed_at.unwrap_or(reg.updated_at);
        let ticket_type = event
            .ticket_types
            .iter()
            .find(|t| t.id == reg.ticket_type_id)
            .map_or("", |t| t.name.as_str());
        for (ticket, number) in reg.tickets.iter().zip(reg.first_ticket_number..) {
            let code = state.codes.encode(
                event.ticket_key,
                event.id,
                *ticket,
                reg.ticket_type_id,
                issued_at,
            );
            let attendee = SealedAttendee {
                ticket_id: ticket.0,
                ticket_number: &crate::ticket_code::ticket_number(event.id, pool_ordinal, number),
                ticket_type_id: reg.ticket_type_id.0,
                ticket_type,
                registration_id: reg.id.0,
                attendee_name: &reg.attendee.name,
            };
            entries.push(seal_entry(&code, &attendee)?);
        }
    }
    Ok((entries, page.next.map(|n| n.0)))
}

/// A ticket's entry: its attendee data sealed with a key only its code derives, found by a
/// lookup only its code derives.
fn seal_entry(code: &str, attendee: &SealedAttendee) -> ApiResult<PackEntry> {
    let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
    let plain = serde_json::to_vec(attendee).map_err(|e| ApiError::Internal(e.to_string()))?;
    let sealed = crate::offline_pack::seal(code, &plain).map_err(ApiError::Internal)?;
    Ok(PackEntry {
        lookup: b64(&crate::offline_pack::lookup(code)),
        data: b64(&sealed),
    })
}

/// One scan made offline.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::offline_scan))]
#[serde(deny_unknown_fields)]
pub struct OfflineScan {
    /// The code from the ticket's QR.
    pub ticket_code: String,
    /// When the scanner made it (not in the future).
    pub scanned_at: DateTime<Utc>,
    /// The gate that scanned it, 1..=64 characters.
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
#[schema(examples(crate::http::examples::offline_upload))]
#[serde(deny_unknown_fields)]
pub struct OfflineUpload {
    /// 1 to 100 scans, in any order (upload a longer backlog in chunks).
    #[schema(min_items = 1, max_items = 100)]
    pub scans: Vec<OfflineScan>,
}

/// The answer to an upload, one result per scan in upload order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::offline_report))]
pub struct OfflineReport {
    items: Vec<OfflineResult>,
    /// Scans that are the ticket's standing admission.
    admitted: usize,
    /// Scans recorded as duplicates.
    duplicates: usize,
}

impl From<OfflineScan> for ScanInput {
    fn from(scan: OfflineScan) -> Self {
        Self {
            ticket_code: scan.ticket_code,
            gate: scan.gate,
            list_id: scan.list_id,
            direction: scan.direction,
            nonce: scan.nonce,
            scanned_at: Some(scan.scanned_at),
        }
    }
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
    scanning_event(&state, &principal, event_id)?;
    check_upload(&body.scans, state.engine.clock().now())?;
    let items = decide_by_ticket(&state, event_id, body.scans).await;
    metrics::counter!("regengine_checkin_offline_scans_total").increment(items.len() as u64);
    let count = |result: &str| items.iter().filter(|i| i.result == result).count();
    Ok(Json(OfflineReport {
        admitted: count("admitted"),
        duplicates: count("duplicate"),
        items,
    }))
}

/// Refuses a malformed upload whole, before anything is decided (a malformed scan is the
/// scanner's bug, not a ticket's fate): 1 to `UPLOAD_MAX` scans, none from the future (beyond
/// five minutes of clock skew), each nonce and code of an acceptable length.
fn check_upload(scans: &[OfflineScan], now: DateTime<Utc>) -> ApiResult<()> {
    let invalid =
        |errors: Vec<FieldError>| -> ApiResult<()> { Err(DomainError::Validation(errors).into()) };
    if !(1..=UPLOAD_MAX).contains(&scans.len()) {
        let message = format!("must hold 1 to {UPLOAD_MAX} scans");
        return invalid(vec![FieldError::new("scans", message)]);
    }
    let latest = now + chrono::Duration::minutes(5);
    if let Some(i) = scans.iter().position(|s| s.scanned_at > latest) {
        let field = format!("scans[{i}].scanned_at");
        return invalid(vec![FieldError::new(field, "is in the future")]);
    }
    let mut errors = Vec::new();
    for (i, scan) in scans.iter().enumerate() {
        if nonce_digest(scan.nonce.as_deref(), "nonce", None).is_err() {
            let field = format!("scans[{i}].nonce");
            errors.push(FieldError::new(field, "must be 1 to 128 characters"));
        }
        if scan.ticket_code.len() > crate::ticket_code::CODE_LEN_MAX {
            errors.push(FieldError::new(
                format!("scans[{i}].ticket_code"),
                "too long",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        invalid(errors)
    }
}

/// Decides the scans into one result each, in upload order. One ticket's scans are decided
/// one after another in time order (an exit never overtakes its entry); different tickets
/// concurrently, `UPLOAD_CONCURRENCY` at a time.
async fn decide_by_ticket(
    state: &AppState,
    event_id: EventId,
    scans: Vec<OfflineScan>,
) -> Vec<OfflineResult> {
    use futures::StreamExt;
    let n = scans.len();
    let mut groups: BTreeMap<String, Vec<(usize, OfflineScan)>> = BTreeMap::new();
    for (i, scan) in scans.into_iter().enumerate() {
        groups
            .entry(scan.ticket_code.trim().to_ascii_uppercase())
            .or_default()
            .push((i, scan));
    }
    let decided: Vec<Vec<(usize, OfflineResult)>> = futures::stream::iter(groups.into_values())
        .map(|mut group| async move {
            group.sort_by_key(|(_, s)| s.scanned_at);
            let mut out = Vec::with_capacity(group.len());
            for (i, scan) in group {
                out.push((i, decide(state, event_id, scan.into()).await));
            }
            out
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .collect()
        .await;
    let mut items: Vec<Option<OfflineResult>> = (0..n).map(|_| None).collect();
    for (i, result) in decided.into_iter().flatten() {
        items[i] = Some(result);
    }
    items.into_iter().flatten().collect()
}
