//! Ticket codes: what a QR code carries and a scanner sends. A code is the ticket id plus a
//! truncated HMAC-SHA256 over it with the server's signing key, in base32 (upper-case
//! letters and digits only, so it fits QR alphanumeric mode). A code cannot be forged
//! without the key, and it carries no personal data.

use data_encoding::BASE32_NOPAD;
use engine::ids::TicketId;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::Path;

/// Bytes of MAC kept in a code (80 bits).
const MAC_LEN: usize = 10;
/// Version prefix of the code format.
const PREFIX: &str = "T1";

/// Signs and verifies ticket codes.
#[derive(Clone)]
pub struct TicketCodes {
    key: [u8; 32],
}

impl TicketCodes {
    /// Loads the signing key from `path`, creating a random one on first start.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        if let Ok(bytes) = std::fs::read(path) {
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                std::io::Error::other(format!("{} must hold 32 bytes", path.display()))
            })?;
            return Ok(Self { key });
        }
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        std::fs::write(path, key)?;
        Ok(Self { key })
    }

    fn mac(&self, id: &TicketId) -> [u8; MAC_LEN] {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The code of a ticket.
    pub fn encode(&self, id: &TicketId) -> String {
        let mut payload = Vec::with_capacity(16 + MAC_LEN);
        payload.extend_from_slice(id.as_bytes());
        payload.extend_from_slice(&self.mac(id));
        format!("{PREFIX}{}", BASE32_NOPAD.encode(&payload))
    }

    /// The ticket a code names, if the code is well-formed and correctly signed.
    pub fn decode(&self, code: &str) -> Option<TicketId> {
        let body = code.trim().to_ascii_uppercase();
        let payload = BASE32_NOPAD
            .decode(body.strip_prefix(PREFIX)?.as_bytes())
            .ok()?;
        if payload.len() != 16 + MAC_LEN {
            return None;
        }
        let id = TicketId(uuid::Uuid::from_slice(&payload[..16]).ok()?);
        let expected = self.mac(&id);
        // Constant-time comparison of the MAC.
        let diff = expected
            .iter()
            .zip(&payload[16..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reject_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let codes = TicketCodes::load_or_create(&dir.path().join("k")).unwrap();
        let id = TicketId::new();
        let code = codes.encode(&id);
        assert!(
            code.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
        assert_eq!(codes.decode(&code), Some(id));
        let mut tampered = code.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(codes.decode(std::str::from_utf8(&tampered).unwrap()), None);
        let other = TicketCodes::load_or_create(&dir.path().join("k2")).unwrap();
        assert_eq!(other.decode(&code), None);
        // Same key file, same codes after a restart.
        let again = TicketCodes::load_or_create(&dir.path().join("k")).unwrap();
        assert_eq!(again.decode(&code), Some(id));
    }
}
