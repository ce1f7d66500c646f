//! Credentials: argon2id password hashing on blocking threads behind a bounded gate,
//! HS256 access tokens (algorithm, `typ`, `iss` and `aud` pinned; `kid` for key rotation),
//! and opaque refresh tokens of which only SHA-256 digests are stored.
//!
//! A refresh token is `rt1.` + base64url(user id ‖ family id ‖ 32 random bytes): the ids
//! route the token to its account and session; the random part makes it unguessable. The
//! engine stores the digest of the whole token and rotates it on every use.
//!
//! E-mailed links carry single-use tokens of the same shape: `ev1.` (verify the address) or
//! `pr1.` (reset the password) + base64url(user id ‖ 32 random bytes). Only the digest is
//! kept with the account; the token itself lives in the outbox until delivered.

use crate::config::AuthConfig;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm as Argon, Argon2, Params, Version};
use data_encoding::BASE64URL_NOPAD;
use engine::accounts::{MintedToken, Role, UserRecord};
use engine::cache::Cache;
use engine::ids::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// The JWT `typ` of access tokens (RFC 9068), checked on every request (RFC 8725 §3.11).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Shortest signing key accepted.
const KEY_LEN_MIN: usize = 32;
/// Prefix (and format version) of refresh tokens.
const REFRESH_PREFIX: &str = "rt1.";
/// Passwords: at least this many characters...
pub const PASSWORD_LEN_MIN: usize = 10;
/// ... and at most this many bytes (argon2 cost does not depend on length, but bodies do).
pub const PASSWORD_BYTES_MAX: usize = 256;

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: String,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Token id.
    pub jti: String,
    /// The user's roles when the token was issued.
    pub roles: Vec<Role>,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: UserId,
    /// Roles from the token.
    pub roles: Vec<Role>,
    /// When the token stops being accepted (its `exp` plus the leeway; Unix seconds): a
    /// long-lived connection authenticated by it ends its private subscriptions then.
    pub valid_until: u64,
}

impl Principal {
    /// Whether the caller holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// A place in the hashing queue, given back when dropped: a request that times out (or whose
/// client leaves) while waiting for a slot leaves the queue, instead of holding a place for
/// ever and one day making every sign-in answer 503.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// Requests already waiting when this one entered.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!("regengine_auth_hashing_waiting").increment(1.0);
        Waiting { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("regengine_auth_hashing_waiting").decrement(1.0);
    }
}

/// Why hashing could not run.
#[derive(Debug)]
pub enum HashError {
    /// Too many hash requests waiting.
    Busy,
    /// The hasher failed (a bug or an invalid stored hash).
    Failed(String),
}

/// What an e-mailed single-use token is for (its prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Confirm the e-mail address.
    VerifyEmail,
    /// Choose a new password.
    ResetPassword,
}

impl LinkPurpose {
    fn prefix(self) -> &'static str {
        match self {
            LinkPurpose::VerifyEmail => "ev1.",
            LinkPurpose::ResetPassword => "pr1.",
        }
    }
}

/// A parsed refresh token.
pub struct RefreshToken {
    /// Its account.
    pub user_id: UserId,
    /// Its session family.
    pub family: Uuid,
    /// SHA-256 of the whole token string.
    pub digest: [u8; 32],
}

/// Issues and checks credentials. Cheap to share behind an `Arc`.
pub struct Auth {
    config: AuthConfig,
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    verified: VerifiedTokens,
    argon: Params,
    hashing: Semaphore,
    waiting: AtomicUsize,
    /// A hash of a random password, verified when the e-mail is unknown so that a login
    /// takes as long for a missing account as for a wrong password.
    dummy_hash: String,
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| format!("random bytes: {e}"))?;
    Ok(bytes)
}

fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let key = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if key.len() < KEY_LEN_MIN {
        return Err(format!(
            "{} must hold at least {KEY_LEN_MIN} bytes",
            path.display()
        ));
    }
    Ok(key)
}

/// Reads the signing key at `path`, creating a random one (owner-only permissions) on first
/// start.
fn load_or_create_key(path: &Path) -> Result<Vec<u8>, String> {
    if path.exists() {
        return read_key(path);
    }
    let key = random::<32>()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, &key)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(key.to_vec())
}

impl Auth {
    /// Loads keys (relative paths are inside `data_dir`) and prepares the hasher.
    pub fn new(config: &AuthConfig, data_dir: &Path) -> Result<Self, String> {
        let at = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                data_dir.join(p)
            }
        };
        let signing = load_or_create_key(&at(&config.signing_key_file))?;
        let mut decoding = HashMap::new();
        decoding.insert(
            config.signing_kid.clone(),
            DecodingKey::from_secret(&signing),
        );
        for (kid, file) in &config.verify_keys {
            if *kid == config.signing_kid {
                return Err(format!("auth.verify_keys repeats the signing kid {kid}"));
            }
            decoding.insert(kid.clone(), DecodingKey::from_secret(&read_key(&at(file))?));
        }
        let argon = Params::new(config.argon2_memory_kib, config.argon2_iterations, 1, None)
            .map_err(|e| format!("argon2 parameters: {e}"))?;
        let dummy = BASE64URL_NOPAD.encode(&random::<16>()?);
        let dummy_hash = Argon2::new(Argon::Argon2id, Version::V0x13, argon.clone())
            .hash_password(dummy.as_bytes())
            .map_err(|e| format!("argon2: {e}"))?
            .to_string();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(Self {
            config: config.clone(),
            kid: config.signing_kid.clone(),
            encoding: EncodingKey::from_secret(&signing),
            decoding,
            validation,
            verified: VerifiedTokens::new(config.verified_tokens_cached_max),
            hashing: Semaphore::new(config.hashing_concurrency_max),
            waiting: AtomicUsize::new(0),
            argon,
            dummy_hash,
        })
    }

    /// Lifetime of access tokens, in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.config.access_ttl_secs
    }

    /// Lifetime of refresh tokens.
    pub fn refresh_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.config.refresh_ttl_secs as i64)
    }

    /// Runs `f` on a blocking thread once a hashing slot is free; `Busy` if the queue is full.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let place = Waiting::enter(&self.waiting);
        if place.ahead >= self.config.hashing_queue_max {
            metrics::counter!("regengine_auth_hashing_rejected_total").increment(1);
            return Err(HashError::Busy);
        }
        let permit = self.hashing.acquire().await;
        // Left the queue (also when the request is dropped while waiting: `place`'s drop).
        drop(place);
        let _permit = permit.map_err(|e| HashError::Failed(e.to_string()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(Argon::Argon2id, Version::V0x13, self.argon.clone())
    }

    /// The PHC string of `password`'s argon2id hash.
    pub async fn hash_password(&self, password: String) -> Result<String, HashError> {
        let hasher = self.hasher();
        self.hashing(move || {
            hasher
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Failed(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) a dummy hash is
    /// checked so the answer takes as long.
    pub async fn verify_password(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let hasher = self.hasher();
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (self.dummy_hash.clone(), false),
        };
        let ok = self
            .hashing(move || {
                hasher
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(ok && real)
    }

    /// A signed access token for `user`.
    pub fn issue_access(&self, user: &UserRecord) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user.id.to_string(),
            exp: now + self.config.access_ttl_secs,
            nbf: now,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            roles: user.roles.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// Verifies an access token: `typ`, `alg` (HS256 only), `kid`, signature, `iss`, `aud`,
    /// `exp` and `nbf` (with the configured leeway), and a well-formed `sub`. A token verified
    /// before is found in a bounded cache of verified tokens (its expiry is checked again on
    /// every use), so a client's requests do not each pay for parsing and HMAC.
    pub fn verify_access(&self, token: &str) -> Result<Principal, &'static str> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        if let Some(principal) = self.verified.get(token, now, self.config.leeway_secs) {
            return Ok(principal);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if header.alg != Algorithm::HS256 {
            return Err("algorithm not allowed");
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err("not an access token");
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or("unknown key id")?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|_| "invalid token")?;
        let user_id = Uuid::parse_str(&data.claims.sub)
            .map(UserId)
            .map_err(|_| "invalid subject")?;
        let principal = Principal {
            user_id,
            roles: data.claims.roles,
            valid_until: data.claims.exp + self.config.leeway_secs,
        };
        self.verified.put(token, principal.clone(), data.claims.exp);
        Ok(principal)
    }

    /// A new refresh token for `user`'s session `family`, and its digest.
    pub fn new_refresh(&self, user: UserId, family: Uuid) -> Result<(String, [u8; 32]), String> {
        let mut raw = Vec::with_capacity(64);
        raw.extend_from_slice(user.as_bytes());
        raw.extend_from_slice(family.as_bytes());
        raw.extend_from_slice(&random::<32>()?);
        let token = format!("{REFRESH_PREFIX}{}", BASE64URL_NOPAD.encode(&raw));
        let digest = digest(&token);
        Ok((token, digest))
    }

    /// A new single-use token for `purpose`, naming `user`, working for the configured time.
    pub fn mint_link(&self, purpose: LinkPurpose, user: UserId) -> Result<MintedToken, String> {
        let mut raw = Vec::with_capacity(48);
        raw.extend_from_slice(user.as_bytes());
        raw.extend_from_slice(&random::<32>()?);
        let token = format!("{}{}", purpose.prefix(), BASE64URL_NOPAD.encode(&raw));
        let ttl_secs = match purpose {
            LinkPurpose::VerifyEmail => self.config.email_token_ttl_secs,
            LinkPurpose::ResetPassword => self.config.reset_token_ttl_secs,
        };
        Ok(MintedToken {
            digest: digest(&token),
            token,
            ttl: chrono::Duration::seconds(ttl_secs as i64),
        })
    }

    /// The account and digest of a single-use token for `purpose`; `None` if malformed.
    pub fn parse_link(&self, purpose: LinkPurpose, token: &str) -> Option<(UserId, [u8; 32])> {
        let body = token.strip_prefix(purpose.prefix())?;
        let raw = BASE64URL_NOPAD.decode(body.as_bytes()).ok()?;
        if raw.len() != 48 {
            return None;
        }
        let user_id = UserId(Uuid::from_slice(&raw[..16]).ok()?);
        Some((user_id, digest(token)))
    }

    /// Parses a refresh token (its signature is its digest matching the stored one).
    pub fn parse_refresh(&self, token: &str) -> Option<RefreshToken> {
        let body = token.strip_prefix(REFRESH_PREFIX)?;
        let raw = BASE64URL_NOPAD.decode(body.as_bytes()).ok()?;
        if raw.len() != 64 {
            return None;
        }
        let user_id = UserId(Uuid::from_slice(&raw[..16]).ok()?);
        let family = Uuid::from_slice(&raw[16..32]).ok()?;
        Some(RefreshToken {
            user_id,
            family,
            digest: digest(token),
        })
    }
}

/// Access tokens already verified, with their principal and expiry: bounded (an evicted token
/// is verified again on its next use).
struct VerifiedTokens(Cache<Box<str>, (Principal, u64)>);

impl VerifiedTokens {
    fn new(max: usize) -> Self {
        Self(Cache::new("verified_tokens", max))
    }

    fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Principal> {
        match self.0.get(token) {
            Some((principal, exp)) if now < exp + leeway => Some(principal),
            _ => None,
        }
    }

    fn put(&self, token: &str, principal: Principal, exp: u64) {
        self.0.put(token.into(), (principal, exp));
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Shared handle.
pub type SharedAuth = Arc<Auth>;

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            user_id: UserId::new(),
            roles: vec![Role::Attendee],
            valid_until: 0,
        }
    }

    #[test]
    fn cached_tokens_still_expire_and_the_cache_is_bounded() {
        let cache = VerifiedTokens::new(16);
        let now = 1_000_000;
        cache.put("a.b.c", principal(), now + 10);
        assert!(cache.get("a.b.c", now, 30).is_some());
        // Past exp + leeway, a cached token is refused like any expired one.
        assert!(cache.get("a.b.c", now + 40, 30).is_none());
        assert!(cache.get("a.b.d", now, 30).is_none(), "exact match only");
        // The bound holds whatever is put.
        for i in 0..1_000 {
            cache.put(&format!("t{i}.y.z"), principal(), now + 10);
        }
        let kept = (0..1_000)
            .filter(|i| cache.get(&format!("t{i}.y.z"), now, 30).is_some())
            .count();
        assert!(kept <= 16, "{kept} tokens kept in a cache of 16");
    }

    /// A sign-in dropped while it waits for a hashing slot (its request timed out, its client
    /// left) gives its place in the queue back.
    #[tokio::test]
    async fn a_request_dropped_while_waiting_leaves_the_hashing_queue() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::load(None, std::iter::empty())
            .unwrap()
            .auth;
        (config.hashing_concurrency_max, config.hashing_queue_max) = (1, 1);
        let auth = Arc::new(Auth::new(&config, dir.path()).unwrap());
        // The only slot, held until released.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let auth = auth.clone();
            async move { auth.hashing(move || released.recv().is_ok()).await }
        });
        for _ in 0..10_000 {
            if auth.hashing.available_permits() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            auth.hashing.available_permits(),
            0,
            "the holder has the slot"
        );
        // One waits for the slot and is dropped; the queue (of one) is free again.
        assert!(auth.hashing(|| 1).now_or_never().is_none(), "waiting");
        let mut next = Box::pin(auth.hashing(|| 2));
        assert!(
            (&mut next).now_or_never().is_none(),
            "queued, not refused as busy"
        );
        assert!(
            matches!(
                auth.hashing(|| 3).now_or_never(),
                Some(Err(HashError::Busy))
            ),
            "the queue's bound still holds"
        );
        release.send(()).unwrap();
        assert!(holder.await.unwrap().unwrap());
        assert_eq!(next.await.unwrap(), 2);
    }
}
