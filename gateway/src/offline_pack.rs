//! Attendee data for offline scanners, sealed per ticket under a key that only the ticket's own
//! code gives (after alf.io's offline check-in): a scanner carries the whole event's pack, yet a
//! lost or stolen scanner reveals no attendee until that attendee's QR is presented.
//!
//! For each ticket, with `code` the text of its QR (trimmed, upper-case):
//! - `lookup = HMAC-SHA256(key = "regengine/offline/lookup/v1", message = code)`: the entry's
//!   index;
//! - `key = HMAC-SHA256(key = "regengine/offline/key/v1", message = code)`: an AES-256-GCM key;
//! - `data = nonce (12 random bytes) ‖ AES-256-GCM(key, nonce, attendee JSON)` (tag included,
//!   no associated data).
//!
//! Both are sent base64url without padding. A code ends in a 64-byte Ed25519 signature that no
//! one without the event's signing key can produce, so entries cannot be opened by trying
//! codes. Rotating the event's key changes every code: scanners download the pack again.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC key of the lookup.
pub const LOOKUP_CONTEXT: &[u8] = b"regengine/offline/lookup/v1";
/// HMAC key of the sealing key.
pub const KEY_CONTEXT: &[u8] = b"regengine/offline/key/v1";
/// Bytes of the nonce in front of each sealed entry.
pub const NONCE_LEN: usize = 12;

fn derive(context: &[u8], code: &str) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(context).expect("any key length");
    mac.update(code.trim().to_ascii_uppercase().as_bytes());
    mac.finalize().into_bytes().into()
}

/// The index of a ticket's entry: what a scanner computes from the QR it reads.
pub fn lookup(code: &str) -> [u8; 32] {
    derive(LOOKUP_CONTEXT, code)
}

fn cipher(code: &str) -> Aes256Gcm {
    Aes256Gcm::new(&derive(KEY_CONTEXT, code).into())
}

/// Seals `plaintext` for the holder of `code` (a fresh random nonce each time).
pub fn seal(code: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| format!("random nonce: {e}"))?;
    let sealed = cipher(code)
        .encrypt(&Nonce::from(nonce), plaintext)
        .map_err(|e| format!("sealing: {e}"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens an entry with the code presented; `None` if it is not that code's entry or was
/// altered (what a scanner does; the server never needs it).
pub fn open(code: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    cipher(code).decrypt(&Nonce::from(nonce), ciphertext).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tickets_own_code_opens_its_entry() {
        let code = "T2ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let sealed = seal(code, br#"{"attendee_name":"Ada"}"#).unwrap();
        assert_eq!(
            open(code, &sealed).as_deref(),
            Some(&br#"{"attendee_name":"Ada"}"#[..])
        );
        // As a scanner reads it: surrounding blanks and lower case are the same code.
        assert!(open(&format!(" {} ", code.to_lowercase()), &sealed).is_some());
        assert_eq!(lookup(code), lookup(&code.to_lowercase()));
        // Another code neither finds nor opens it.
        let other = "T2ABCDEFGHIJKLMNOPQRSTUVWXYZ234566";
        assert_ne!(lookup(code), lookup(other));
        assert!(open(other, &sealed).is_none());
        // Nor does the entry survive tampering or truncation.
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(code, &altered).is_none());
        assert!(open(code, &sealed[..NONCE_LEN - 1]).is_none());
        // Fresh nonces: sealing twice gives two different entries, both opening.
        let again = seal(code, br#"{"attendee_name":"Ada"}"#).unwrap();
        assert_ne!(again, sealed);
        assert!(open(code, &again).is_some());
    }

    #[test]
    fn lookup_and_key_are_independent_derivations() {
        let code = "T2SOMECODE";
        assert_ne!(lookup(code), derive(KEY_CONTEXT, code));
    }
}
