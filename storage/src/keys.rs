//! Key layouts. Every key is a fixed-width big-endian byte string so that prefix and range
//! scans follow id and sequence order (ids are UUIDv7: creation-time ordered).

use engine::ids::{EventId, RegistrationId, StreamId, UserId};

/// `journal`: stream (17 bytes) + first sequence number of the record (8 bytes).
pub fn journal(stream: &StreamId, first_seq: u64) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[..17].copy_from_slice(&stream.key());
    key[17..].copy_from_slice(&first_seq.to_be_bytes());
    key
}

/// Sequence number part of a `journal` key.
pub fn journal_seq(key: &[u8]) -> Option<u64> {
    key.get(17..25)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// `reg_by_event`: event (16) + registration (16).
pub fn reg_by_event(event: &EventId, reg: &RegistrationId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(event.as_bytes());
    key[16..].copy_from_slice(reg.as_bytes());
    key
}

/// `reg_by_user`: user (16) + registration (16).
pub fn reg_by_user(user: &UserId, reg: &RegistrationId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(user.as_bytes());
    key[16..].copy_from_slice(reg.as_bytes());
    key
}

/// `reg_by_email`: e-mail bytes + 0x00 + registration (16). E-mails contain no NUL.
pub fn reg_by_email(email: &str, reg: &RegistrationId) -> Vec<u8> {
    let mut key = email_prefix(email);
    key.extend_from_slice(reg.as_bytes());
    key
}

/// Prefix of all `reg_by_email` keys of one address.
pub fn email_prefix(email: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(email.len() + 17);
    key.extend_from_slice(email.as_bytes());
    key.push(0);
    key
}

/// The trailing 16-byte id of an index key.
pub fn trailing_id(key: &[u8]) -> Option<uuid::Uuid> {
    let start = key.len().checked_sub(16)?;
    uuid::Uuid::from_slice(&key[start..]).ok()
}

/// `idempotency`: event (16) + key digest (16).
pub fn idempotency(event: &EventId, key: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(event.as_bytes());
    out[16..].copy_from_slice(key);
    out
}

/// `vouchers`: event (16) + code (upper case ASCII, so codes sort by name).
pub fn voucher(event: &EventId, code: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + code.len());
    key.extend_from_slice(event.as_bytes());
    key.extend_from_slice(code.as_bytes());
    key
}

/// `revocations`: event (16) + version (8, big-endian).
pub fn revocation(event: &EventId, version: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(event.as_bytes());
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

/// The payment index's key: `provider:reference`.
pub fn payment_ref(provider: engine::payment::Provider, reference: &str) -> Vec<u8> {
    format!("{}:{reference}", provider.as_str()).into_bytes()
}

/// `documents`: registration (16) + ledger number (8), so a registration's documents are
/// contiguous and in number order.
pub fn document(registration: &RegistrationId, number: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(registration.as_bytes());
    key[16..].copy_from_slice(&number.to_be_bytes());
    key
}

/// `statement_exceptions`: event (16) + the statement line's id.
pub fn statement_exception(event: &EventId, line_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + line_id.len());
    key.extend_from_slice(event.as_bytes());
    key.extend_from_slice(line_id.as_bytes());
    key
}

/// `ledger`: organizer (16) + ledger number (8).
pub fn ledger(organizer: &UserId, number: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(organizer.as_bytes());
    key[16..].copy_from_slice(&number.to_be_bytes());
    key
}
