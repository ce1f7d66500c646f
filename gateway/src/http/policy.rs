//! Authorization policies, checked by handlers after authentication. Object-level rules
//! (OWASP API1) are here so every handler asks the same questions:
//! - `admin` may do everything;
//! - an event is managed by its owner (the organizer who created it) and its co-organizers;
//!   its staff may check tickets in there and do nothing else;
//! - a registration is visible to the account that holds it and to its event's managers.
//!
//! A caller who may not see an object gets the same 404 as for a missing one, so ids cannot
//! be probed; a caller who may see it but not change it gets 403.

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;
use engine::accounts::Role;
use engine::error::DomainError;
use engine::ids::EventId;
use engine::model::{EventRecord, EventRole};
use engine::ports::RegistrationView;

/// Operations anyone may call without a token (`METHOD path`); everything else under `/api/`
/// needs `Authorization: Bearer`. The authentication gate (`auth::gate`) enforces it, and the
/// OpenAPI document marks every other operation as needing a token.
pub(crate) const PUBLIC: [&str; 16] = [
    "GET /api/v1/events",
    "GET /api/v1/events/{id}",
    "GET /api/v1/events/{id}/availability",
    "GET /api/v1/ws",
    "POST /api/v1/auth/signup",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/refresh",
    "POST /api/v1/auth/logout",
    "POST /api/v1/auth/verify-email",
    "POST /api/v1/auth/password-reset",
    "POST /api/v1/auth/password-reset/confirm",
    // Authenticated by the provider's signature over the body instead.
    "POST /api/v1/payments/webhooks/stripe",
    "POST /api/v1/payments/webhooks/paypal",
    "POST /api/v1/notifications/webhooks/sendgrid",
    "POST /api/v1/notifications/webhooks/twilio",
    // Authenticated by the signed token in its URL (one-click unsubscribe from a mail).
    "POST /api/v1/unsubscribe",
];

/// 403 unless the caller holds one of `roles` (or is an admin).
pub fn require_any(principal: &Principal, roles: &[Role]) -> Result<(), ApiError> {
    if principal.has(Role::Admin) || roles.iter().any(|r| principal.has(*r)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// Whether the caller manages `event`: its owner, a co-organizer, or an admin.
pub fn manages(principal: &Principal, event: &EventRecord) -> bool {
    principal.has(Role::Admin) || event.role_of(principal.user_id) == Some(EventRole::Organizer)
}

/// Whether the caller may see `event` at all: anyone once it is published (or canceled or
/// completed); a draft only its managers.
pub fn sees_event(caller: Option<&Principal>, event: &EventRecord) -> bool {
    event.status != engine::model::EventStatus::Draft || caller.is_some_and(|p| manages(p, event))
}

/// The event if the caller may see it; a draft of someone else's is 404 like a missing one.
/// Reads the active event's record in memory when there is one (holds ask this).
pub fn visible_event(
    state: &AppState,
    caller: Option<&Principal>,
    id: EventId,
) -> Result<std::sync::Arc<EventRecord>, ApiError> {
    let event = state.engine.event_record(id)?;
    if sees_event(caller, &event) {
        Ok(event)
    } else {
        Err(DomainError::EventNotFound.into())
    }
}

/// The refusal for a caller not allowed to act on `event`: 403 if they may see it, else the
/// same 404 as for a missing event (a draft's existence is not revealed).
fn refusal(principal: &Principal, event: &EventRecord) -> ApiError {
    if sees_event(Some(principal), event) {
        ApiError::Forbidden
    } else {
        DomainError::EventNotFound.into()
    }
}

/// The event, if the caller may check tickets in at it (its managers and its staff): 404 if
/// it does not exist or the caller may not see it, 403 otherwise. Asked per scan, so it reads the active event's record in
/// memory when there is one.
pub fn scanning_event(
    state: &AppState,
    principal: &Principal,
    id: EventId,
) -> Result<std::sync::Arc<EventRecord>, ApiError> {
    let event = state.engine.event_record(id)?;
    if manages(principal, &event) || event.role_of(principal.user_id) == Some(EventRole::Staff) {
        Ok(event)
    } else {
        Err(refusal(principal, &event))
    }
}

/// The event, if the caller manages it: 404 if it does not exist or the caller may not see
/// it, 403 otherwise.
pub fn managed_event(
    state: &AppState,
    principal: &Principal,
    id: EventId,
) -> Result<EventRecord, ApiError> {
    let event = state.engine.event(id)?;
    if manages(principal, &event) {
        Ok(event)
    } else {
        Err(refusal(principal, &event))
    }
}

/// Whether the caller may see (and act on) `registration`: its holder, or a manager of its
/// event.
pub fn sees_registration(
    state: &AppState,
    principal: &Principal,
    registration: &RegistrationView,
) -> Result<bool, ApiError> {
    if principal.has(Role::Admin) || registration.user_id == Some(principal.user_id) {
        return Ok(true);
    }
    match state.engine.event(registration.event_id) {
        Ok(event) => Ok(manages(principal, &event)),
        Err(engine::error::EngineError::Domain(DomainError::EventNotFound)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The registration, if the caller may see it; 404 otherwise.
pub fn visible_registration(
    state: &AppState,
    principal: &Principal,
    id: engine::ids::RegistrationId,
) -> Result<RegistrationView, ApiError> {
    let registration = state.engine.registration(id)?;
    if sees_registration(state, principal, &registration)? {
        Ok(registration)
    } else {
        Err(DomainError::RegistrationNotFound.into())
    }
}
