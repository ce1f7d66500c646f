//! Ticket codes: what a QR code carries and a scanner checks, signed so that a scanner with
//! the event's public key can verify a ticket offline.
//!
//! A code is `T2` + base32(payload ‖ signature), upper-case letters and digits only, so a QR
//! code holds it in alphanumeric mode. The payload (version 2, 54 bytes, no personal data):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (2) |
//! | 1 | key id: which of the event's keys signed it |
//! | 16 | event id |
//! | 16 | ticket id |
//! | 16 | ticket type id |
//! | 4 | issued at, seconds since 2020-01-01T00:00:00Z, big-endian |
//!
//! The signature is Ed25519 (64 bytes) over the payload. Every event has its own keys, derived
//! from the server's master secret (`ticket-signing.key` in the data directory):
//! seed = HMAC-SHA256(master, "regengine/ticket-key/v1" ‖ event id ‖ key id). Rotating an event's
//! key (`EventRecord::ticket_key`) re-keys every ticket of the event at once (codes are computed
//! when shown, never stored) and retires the old codes. Public keys are published to scanners.
//!
//! Online checks are cheap for codes this process has made or checked before: a bounded map
//! from ticket to a digest of its genuine code (payload and signature) answers without curve
//! arithmetic. A code not in it is signed again and compared (Ed25519 is deterministic), and a
//! signature that differs gets the full verification. `prepare` fills the map for a whole
//! event before its doors open.

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey};
use engine::ids::{EventId, TicketId, TicketTypeId};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use engine::cache::Cache;
use std::path::Path;
use std::sync::Arc;

/// Prefix (and format version) of codes.
const PREFIX: &str = "T2";
/// Payload format version.
const VERSION: u8 = 2;
/// Bytes of the payload.
const PAYLOAD_LEN: usize = 54;
/// Bytes of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;
/// Longest code a scanner may send (a valid one is 190 characters).
pub const CODE_LEN_MAX: usize = 256;
/// Derived keys cached (events × key ids); a full cache is emptied.
const KEYS_CACHED_MAX: usize = 4096;
/// Issued-at times count from here (2020-01-01T00:00:00Z), in seconds.
const EPOCH_2020: i64 = 1_577_836_800;

/// What a signed code says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketClaims {
    /// The key that signed it.
    pub key: u8,
    pub event_id: EventId,
    pub ticket_id: TicketId,
    pub ticket_type_id: TicketTypeId,
    /// When it was issued (to the second).
    pub issued_at: DateTime<Utc>,
}

/// Why a code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeError {
    /// Not a code of this format, or its signature does not verify.
    InvalidSignature,
    /// Signed with a key the event has retired (rotated away).
    RetiredKey,
    /// The code names an event this server does not know.
    UnknownEvent,
}

/// The digest a genuine code is remembered by: SHA-256 of payload and signature, 16 bytes.
fn code_digest(payload: &[u8], signature: &[u8]) -> [u8; 16] {
    let full: [u8; 32] = Sha256::new()
        .chain_update(payload)
        .chain_update(signature)
        .finalize()
        .into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Signs and verifies ticket codes.
#[derive(Clone)]
pub struct TicketCodes {
    master: [u8; 32],
    /// Derived signing keys, by event and key id.
    keys: Arc<Cache<(EventId, u8), SigningKey>>,
    /// Digests of genuine codes, by ticket.
    verified: Arc<Cache<TicketId, [u8; 16]>>,
}

impl TicketCodes {
    /// Loads the master secret from `path`, creating a random one on first start (0600).
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_master(crate::key_file::load_or_create(path)?))
    }

    /// Codes signed with keys derived from `master`.
    pub fn from_master(master: [u8; 32]) -> Self {
        Self {
            master,
            keys: Arc::new(Cache::new("ticket_keys", KEYS_CACHED_MAX)),
            verified: Arc::new(Cache::new("verified_codes", 0)),
        }
    }

    /// The same codes, remembering up to `max` genuine codes (0: none) for cheap online checks.
    pub fn with_verified_cache(mut self, max: usize) -> Self {
        self.verified = Arc::new(Cache::new("verified_codes", max));
        self
    }

    /// Genuine codes remembered.
    pub fn verified_len(&self) -> usize {
        self.verified.len()
    }

    /// The event's signing key `key`.
    fn signing_key(&self, event: EventId, key: u8) -> SigningKey {
        if let Some(k) = self.keys.get(&(event, key)) {
            return k;
        }
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.master)
            .expect("HMAC takes any key length");
        mac.update(b"regengine/ticket-key/v1");
        mac.update(event.as_bytes());
        mac.update(&[key]);
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        let signing = SigningKey::from_bytes(&seed);
        self.keys.put((event, key), signing.clone());
        signing
    }

    /// The public key (Ed25519, 32 bytes) of the event's key `key`, for scanners.
    pub fn public_key(&self, event: EventId, key: u8) -> [u8; 32] {
        self.signing_key(event, key).verifying_key().to_bytes()
    }

    /// The code of a ticket, signed with the event's key `key` (and remembered as genuine).
    pub fn encode(
        &self,
        key: u8,
        event: EventId,
        ticket: TicketId,
        ticket_type: TicketTypeId,
        issued_at: DateTime<Utc>,
    ) -> String {
        let bytes = self.signed(key, event, ticket, ticket_type, issued_at);
        format!("{PREFIX}{}", BASE32_NOPAD.encode(&bytes))
    }

    /// Remembers a ticket's code as genuine without spelling it out (the doors prep).
    pub fn remember(
        &self,
        key: u8,
        event: EventId,
        ticket: TicketId,
        ticket_type: TicketTypeId,
        issued_at: DateTime<Utc>,
    ) {
        self.signed(key, event, ticket, ticket_type, issued_at);
    }

    /// Payload ‖ signature of a ticket's code, remembered as genuine.
    fn signed(
        &self,
        key: u8,
        event: EventId,
        ticket: TicketId,
        ticket_type: TicketTypeId,
        issued_at: DateTime<Utc>,
    ) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(PAYLOAD_LEN + SIGNATURE_LEN);
        bytes.push(VERSION);
        bytes.push(key);
        bytes.extend_from_slice(event.as_bytes());
        bytes.extend_from_slice(ticket.as_bytes());
        bytes.extend_from_slice(ticket_type.as_bytes());
        let secs = (issued_at.timestamp() - EPOCH_2020).clamp(0, i64::from(u32::MAX)) as u32;
        bytes.extend_from_slice(&secs.to_be_bytes());
        let signature = self.signing_key(event, key).sign(&bytes).to_bytes();
        self.remember_genuine(ticket, &bytes, &signature);
        bytes.extend_from_slice(&signature);
        bytes
    }

    fn remember_genuine(&self, ticket: TicketId, payload: &[u8], signature: &[u8]) {
        let digest = code_digest(payload, signature);
        self.verified.put(ticket, digest);
    }

    /// Verifies a code: well-formed, signed by its event's current key (`current_key` of an
    /// event id: `None` for an unknown event). Says nothing about which event is scanning:
    /// the caller compares `event_id`.
    pub fn verify(
        &self,
        code: &str,
        current_key: impl FnOnce(EventId) -> Option<u8>,
    ) -> Result<TicketClaims, CodeError> {
        let claims_and_parts = parse(code).ok_or(CodeError::InvalidSignature)?;
        let (claims, payload, signature) = claims_and_parts;
        let current = current_key(claims.event_id).ok_or(CodeError::UnknownEvent)?;
        if claims.key > current || claims.key == 0 {
            return Err(CodeError::InvalidSignature);
        }
        // Ed25519 signatures are deterministic (RFC 8032): the one this server made for the
        // payload is `sign(payload)`. Signing and comparing costs a fixed-base multiplication
        // (~4x cheaper than a verification), which is what a venue's scan rate needs; any
        // other signature (made elsewhere with the key, or forged) takes the full check.
        let presented = signature.to_bytes();
        let known = self
            .verified
            .get(&claims.ticket_id)
            .is_some_and(|d| d == code_digest(&payload, &presented));
        if !known {
            let signing = self.signing_key(claims.event_id, claims.key);
            let expected = signing.sign(&payload).to_bytes();
            let differ = expected
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differ != 0 {
                signing
                    .verifying_key()
                    .verify_strict(&payload, &signature)
                    .map_err(|_| CodeError::InvalidSignature)?;
            }
            self.remember_genuine(claims.ticket_id, &payload, &presented);
        }
        if claims.key < current {
            return Err(CodeError::RetiredKey);
        }
        Ok(claims)
    }
}

/// Splits a code into its claims, payload and signature (unverified).
fn parse(code: &str) -> Option<(TicketClaims, Vec<u8>, Signature)> {
    let code = code.trim();
    if code.len() > CODE_LEN_MAX {
        return None;
    }
    let body = code.to_ascii_uppercase();
    let bytes = BASE32_NOPAD
        .decode(body.strip_prefix(PREFIX)?.as_bytes())
        .ok()?;
    if bytes.len() != PAYLOAD_LEN + SIGNATURE_LEN || bytes[0] != VERSION {
        return None;
    }
    let (payload, signature) = bytes.split_at(PAYLOAD_LEN);
    let id = |at: usize| uuid::Uuid::from_slice(&payload[at..at + 16]).ok();
    let secs = u32::from_be_bytes(payload[50..54].try_into().ok()?);
    let claims = TicketClaims {
        key: payload[1],
        event_id: EventId(id(2)?),
        ticket_id: TicketId(id(18)?),
        ticket_type_id: TicketTypeId(id(34)?),
        issued_at: DateTime::from_timestamp(EPOCH_2020 + i64::from(secs), 0)?,
    };
    let signature = Signature::from_bytes(signature.try_into().ok()?);
    Some((claims, payload.to_vec(), signature))
}

/// A pool's place in its event (1, 2, ...; 0 if the event has no such pool), as ticket numbers
/// print it.
pub fn pool_ordinal(record: &engine::model::EventRecord, pool: engine::ids::PoolId) -> usize {
    record
        .pools
        .iter()
        .position(|p| p.id == pool)
        .map_or(0, |i| i + 1)
}

impl TicketCodes {
    /// A confirmed registration's tickets: each one's printed number and signed code (with
    /// the event's current key).
    pub fn lines(
        &self,
        record: &engine::model::EventRecord,
        view: &engine::ports::RegistrationView,
    ) -> Vec<engine::message::TicketLine> {
        let ordinal = pool_ordinal(record, view.pool_id);
        let issued_at = view.confirmed_at.unwrap_or(view.updated_at);
        view.tickets
            .iter()
            .zip(view.first_ticket_number..)
            .map(|(t, number)| engine::message::TicketLine {
                number: ticket_number(view.event_id, ordinal, number),
                code: self.encode(
                    record.ticket_key,
                    view.event_id,
                    *t,
                    view.ticket_type_id,
                    issued_at,
                ),
            })
            .collect()
    }
}

/// The printed ticket number: `PPPP-O-NNNNNN-C`, where `PPPP` comes from the event id, `O` is
/// the pool's place in the event (1, 2, ...), `NNNNNN` the ticket's number in its pool, and
/// `C` a Luhn check digit over `O` and `NNNNNN` (catches any single mistyped digit and most
/// swaps of neighbours).
pub fn ticket_number(event: EventId, pool_ordinal: usize, number: u64) -> String {
    // The last bytes of a UUIDv7 are random: events created together still differ here.
    let prefix: String = BASE32_NOPAD
        .encode(&event.as_bytes()[11..16])
        .chars()
        .take(4)
        .collect();
    let digits = format!("{pool_ordinal}{number:06}");
    format!(
        "{prefix}-{pool_ordinal}-{number:06}-{}",
        luhn_check_digit(&digits)
    )
}

/// The digit that makes `digits` + it pass the Luhn check.
fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes() -> TicketCodes {
        TicketCodes::from_master([7; 32])
    }

    #[test]
    fn codes_verify_and_carry_their_claims() {
        let codes = codes();
        let (event, ticket, tt) = (EventId::new(), TicketId::new(), TicketTypeId::new());
        let issued = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let code = codes.encode(1, event, ticket, tt, issued);
        assert!(code.len() <= CODE_LEN_MAX);
        assert!(
            code.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
            "QR alphanumeric mode"
        );
        let claims = codes.verify(&code, |_| Some(1)).unwrap();
        assert_eq!(
            (
                claims.event_id,
                claims.ticket_id,
                claims.ticket_type_id,
                claims.issued_at
            ),
            (event, ticket, tt, issued)
        );
        // Lower case (some scanners) is the same code.
        assert!(codes.verify(&code.to_lowercase(), |_| Some(1)).is_ok());
    }

    #[test]
    fn tampered_forged_and_retired_codes_are_refused() {
        // The same answers whether genuine codes are remembered or not.
        for codes in [codes(), codes().with_verified_cache(100)] {
            refuses_bad_codes(&codes);
        }
    }

    #[test]
    fn remembered_codes_are_bounded_and_only_genuine_ones_are_remembered() {
        let codes = codes().with_verified_cache(32);
        let event = EventId::new();
        for _ in 0..100 {
            let code = codes.encode(1, event, TicketId::new(), TicketTypeId::new(), Utc::now());
            assert!(codes.verify(&code, |_| Some(1)).is_ok());
        }
        assert!(codes.verified_len() <= 32);
        // A code with the right ticket but another type: not the remembered one, and refused.
        let ticket = TicketId::new();
        let genuine = codes.encode(1, event, ticket, TicketTypeId::new(), Utc::now());
        let bytes = BASE32_NOPAD
            .decode(genuine.strip_prefix(PREFIX).unwrap().as_bytes())
            .unwrap();
        let mut altered = bytes.clone();
        altered[40] ^= 1; // inside the ticket type id
        let altered = format!("{PREFIX}{}", BASE32_NOPAD.encode(&altered));
        assert_eq!(
            codes.verify(&altered, |_| Some(1)),
            Err(CodeError::InvalidSignature)
        );
        assert!(codes.verify(&genuine, |_| Some(1)).is_ok());
    }

    fn refuses_bad_codes(codes: &TicketCodes) {
        let event = EventId::new();
        let code = codes.encode(1, event, TicketId::new(), TicketTypeId::new(), Utc::now());
        // Any changed character breaks the signature (or the format).
        let mut bytes = code.clone().into_bytes();
        bytes[40] = if bytes[40] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            codes.verify(&tampered, |_| Some(1)),
            Err(CodeError::InvalidSignature)
        );
        // Another server's master secret: not ours.
        let forged = TicketCodes::from_master([8; 32]).encode(
            1,
            event,
            TicketId::new(),
            TicketTypeId::new(),
            Utc::now(),
        );
        assert_eq!(
            codes.verify(&forged, |_| Some(1)),
            Err(CodeError::InvalidSignature)
        );
        // Rotated away; a key id from the future; an unknown event; garbage.
        assert_eq!(codes.verify(&code, |_| Some(2)), Err(CodeError::RetiredKey));
        let future = codes.encode(3, event, TicketId::new(), TicketTypeId::new(), Utc::now());
        assert_eq!(
            codes.verify(&future, |_| Some(2)),
            Err(CodeError::InvalidSignature)
        );
        assert_eq!(codes.verify(&code, |_| None), Err(CodeError::UnknownEvent));
        assert_eq!(
            codes.verify("T2NOTACODE", |_| Some(1)),
            Err(CodeError::InvalidSignature)
        );
    }

    #[test]
    fn public_keys_verify_codes_offline() {
        let codes = codes();
        let event = EventId::new();
        let code = codes.encode(1, event, TicketId::new(), TicketTypeId::new(), Utc::now());
        let (_, payload, signature) = parse(&code).unwrap();
        let public = ed25519_dalek::VerifyingKey::from_bytes(&codes.public_key(event, 1)).unwrap();
        assert!(public.verify_strict(&payload, &signature).is_ok());
        assert_ne!(codes.public_key(event, 1), codes.public_key(event, 2));
        assert_ne!(
            codes.public_key(event, 1),
            codes.public_key(EventId::new(), 1)
        );
    }

    #[test]
    fn ticket_numbers_carry_a_luhn_digit() {
        let event = EventId::new();
        let n = ticket_number(event, 2, 123);
        let parts: Vec<&str> = n.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[1], parts[2]), ("2", "000123"));
        // 2000123 + check digit passes Luhn.
        assert_eq!(
            luhn_check_digit("2000123"),
            parts[3].parse::<u32>().unwrap()
        );
        assert_eq!(luhn_check_digit("7992739871"), 3); // the textbook example
        // One changed digit changes the check digit.
        assert_ne!(luhn_check_digit("2000123"), luhn_check_digit("2000124"));
    }
}
