//! Stripe webhook signatures. Each delivery carries `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`:
//! `v1` is HMAC-SHA256, keyed by the endpoint's secret (`whsec_…`), over `"{t}.{raw body}"`.
//! A delivery is genuine when one `v1` matches one of the configured secrets (several while a
//! secret is being rolled) and `t` is within the tolerance of now (300 s by default, so a captured
//! delivery cannot be replayed later). Verification works on the raw bytes, before any parsing,
//! and compares in constant time.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// Stripe's default tolerance between the signature's timestamp and now.
pub const TOLERANCE_SECS_DEFAULT: u64 = 300;

/// Signatures of one header at most: a header with more is refused rather than checked
/// (each costs an HMAC per secret).
const SIGNATURES_MAX: usize = 8;

/// Why a delivery is not taken as Stripe's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix>,v1=<hex>…`: no timestamp, a malformed item, too many
    /// signatures.
    #[error("malformed Stripe-Signature header")]
    Malformed,
    /// The header has no `v1` signature (only other schemes).
    #[error("no v1 signature")]
    NoSignature,
    /// The timestamp is further from now than the tolerance: a stale or replayed delivery.
    #[error("signature timestamp {age_secs} s from now, beyond the tolerance")]
    OutsideTolerance {
        /// How far the timestamp is from now, either way.
        age_secs: u64,
    },
    /// No `v1` matches any configured secret: forged, or signed with a secret not configured.
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` for the raw `payload` against `secrets` at `now_unix`; returns the signed
/// timestamp.
pub fn verify(
    header: &str,
    payload: &[u8],
    secrets: &[&[u8]],
    now_unix: u64,
    tolerance_secs: u64,
) -> Result<u64, SignatureError> {
    let (timestamp, signatures) = parse(header)?;
    let age_secs = now_unix.abs_diff(timestamp);
    if age_secs > tolerance_secs {
        return Err(SignatureError::OutsideTolerance { age_secs });
    }
    let genuine = secrets.iter().any(|secret| {
        signatures.iter().any(|signature| {
            // HMAC takes keys of any length: this cannot fail.
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
                .expect("HMAC takes any key length");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(payload);
            // Constant time.
            mac.verify_slice(signature).is_ok()
        })
    });
    if genuine {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The timestamp and the decoded `v1` signatures of a header; other schemes (`v0`) are
/// skipped, as Stripe's libraries do.
fn parse(header: &str) -> Result<(u64, Vec<Vec<u8>>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                let t = value.parse().map_err(|_| SignatureError::Malformed)?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            "v1" => {
                if signatures.len() == SIGNATURES_MAX {
                    return Err(SignatureError::Malformed);
                }
                let bytes = data_encoding::HEXLOWER_PERMISSIVE
                    .decode(value.as_bytes())
                    .map_err(|_| SignatureError::Malformed)?;
                signatures.push(bytes);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    Ok((timestamp, signatures))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret_one";
    const OLD_SECRET: &[u8] = b"whsec_test_secret_old";
    const PAYLOAD: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    /// Stripe's scheme computed by another implementation (Python's `hmac`), so a mistake in
    /// ours cannot hide behind the same mistake in the test.
    fn signed_elsewhere(secret: &[u8], timestamp: u64, payload: &[u8]) -> String {
        let script = "import hmac, hashlib, sys\n\
            secret, message = sys.argv[1].encode(), sys.stdin.buffer.read()\n\
            print(hmac.new(secret, message, hashlib.sha256).hexdigest())";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script, std::str::from_utf8(secret).unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let message = [format!("{timestamp}.").as_bytes(), payload].concat();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &message).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn a_genuine_delivery_verifies_with_any_configured_secret() {
        let now = 1_800_000_000;
        let v1 = signed_elsewhere(SECRET, now - 10, PAYLOAD);
        let header = format!("t={},v1={v1}", now - 10);
        assert_eq!(verify(&header, PAYLOAD, &[SECRET], now, 300), Ok(now - 10));
        // During a rotation the old and the new secret are both accepted.
        assert_eq!(
            verify(&header, PAYLOAD, &[OLD_SECRET, SECRET], now, 300),
            Ok(now - 10)
        );
        // Stripe signs with both secrets while one is rolled: one match is enough.
        let old = signed_elsewhere(OLD_SECRET, now, PAYLOAD);
        let both = format!(
            "t={now},v1={old},v0=ignored,v1={}",
            signed_elsewhere(SECRET, now, PAYLOAD)
        );
        assert_eq!(verify(&both, PAYLOAD, &[SECRET], now, 300), Ok(now));
    }

    #[test]
    fn forged_altered_stale_and_malformed_deliveries_are_refused() {
        let now = 1_800_000_000;
        let v1 = signed_elsewhere(SECRET, now, PAYLOAD);
        let header = format!("t={now},v1={v1}");
        assert_eq!(
            verify(&header, PAYLOAD, &[OLD_SECRET], now, 300),
            Err(SignatureError::Mismatch),
            "a secret that is not configured"
        );
        let altered = br#"{"id":"evt_1","type":"payment_intent.succeeded "}"#;
        assert_eq!(
            verify(&header, altered, &[SECRET], now, 300),
            Err(SignatureError::Mismatch),
            "one byte of the body changed"
        );
        let shifted = format!("t={},v1={v1}", now + 1);
        assert_eq!(
            verify(&shifted, PAYLOAD, &[SECRET], now, 300),
            Err(SignatureError::Mismatch),
            "the timestamp is signed too"
        );
        assert_eq!(
            verify(&header, PAYLOAD, &[SECRET], now + 301, 300),
            Err(SignatureError::OutsideTolerance { age_secs: 301 }),
            "a replay after the tolerance"
        );
        assert_eq!(
            verify(&header, PAYLOAD, &[SECRET], now - 301, 300),
            Err(SignatureError::OutsideTolerance { age_secs: 301 }),
            "a timestamp from the future"
        );
        for malformed in [
            "",
            "v1=00",
            "t=abc,v1=00",
            "t=1,t=2,v1=00",
            "t=1,v1=zz",
            "t=1;v1=00",
            &format!("t=1{}", ",v1=00".repeat(SIGNATURES_MAX + 1)),
        ] {
            assert_eq!(
                verify(malformed, PAYLOAD, &[SECRET], 1, 300),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            verify("t=1,v0=00", PAYLOAD, &[SECRET], 1, 300),
            Err(SignatureError::NoSignature)
        );
    }
}
