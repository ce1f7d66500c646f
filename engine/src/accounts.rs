//! User accounts: the aggregate (`UserRecord`), its events, and the pure decisions on it.
//!
//! An account is one journal stream (`StreamId::User`). Accounts are not contended the way
//! pools are, so they are written without an actor, with optimistic concurrency: read the
//! record (which is also the stream's snapshot, committed in the same batch as its events),
//! decide, append with the expected sequence number, and on a conflict read again and
//! decide again. Two concurrent uses of one refresh token therefore cannot both rotate it:
//! one wins the sequence number, the other re-reads, finds the token used, and the reuse
//! revokes the whole session family.
//!
//! Secrets never reach the engine in the clear: passwords arrive as PHC hash strings and
//! refresh tokens as SHA-256 digests; hashing and token formats belong to the gateway.

use crate::error::{DomainError, FieldError};
use crate::ids::UserId;
use crate::model::{check_text, normalize_email};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most concurrent sessions (refresh-token families) per account; the oldest is dropped.
pub const SESSIONS_MAX: usize = 10;
/// Used refresh-token digests remembered per session, to detect reuse.
pub const USED_TOKENS_MAX: usize = 16;
/// Longest display name.
pub const NAME_LEN_MAX: usize = 200;
/// Longest locale / time-zone identifier.
const IDENT_LEN_MAX: usize = 64;

/// What an account may do. Stored sorted and without duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including user administration and the audit log.
    Admin,
    /// Creates events and manages the events they own.
    Organizer,
    /// Scans tickets at the events they are assigned to.
    Staff,
    /// Buys tickets and manages their own registrations.
    Attendee,
}

impl Role {
    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Organizer => "organizer",
            Role::Staff => "staff",
            Role::Attendee => "attendee",
        }
    }
}

/// A category of messages one can unsubscribe from (transactional ones always go).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Event reminders.
    Reminders,
    /// News and offers.
    Marketing,
}

impl Category {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Reminders => "reminders",
            Category::Marketing => "marketing",
        }
    }

    /// Its one-byte code (in unsubscribe tokens).
    pub fn code(self) -> u8 {
        match self {
            Category::Reminders => 1,
            Category::Marketing => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Category> {
        [Category::Reminders, Category::Marketing]
            .into_iter()
            .find(|c| c.code() == code)
    }

    /// The category of messages of `kind`, unless it is transactional.
    pub fn of(kind: &crate::message::MessageKind) -> Option<Category> {
        kind.is_event_news().then_some(Category::Reminders)
    }
}

/// How a user wants to be notified about one category of messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPrefs {
    /// By e-mail.
    pub email: bool,
    /// By SMS.
    pub sms: bool,
    /// By push (WebSocket) notification.
    pub push: bool,
}

/// Locale, time zone and notification channels per category (stored now, used by the
/// notification service later).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// BCP 47 language tag, e.g. `en-GB`.
    pub locale: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Registration confirmations, tickets, waiting-list offers.
    pub transactional: ChannelPrefs,
    /// Event reminders and changes.
    pub reminders: ChannelPrefs,
    /// News and offers.
    pub marketing: ChannelPrefs,
}

impl Default for Preferences {
    fn default() -> Self {
        let on = ChannelPrefs {
            email: true,
            sms: false,
            push: true,
        };
        Self {
            locale: "en".into(),
            time_zone: "UTC".into(),
            transactional: on.clone(),
            reminders: on,
            marketing: ChannelPrefs::default(),
        }
    }
}

impl Preferences {
    /// The channels the account wants for messages of `kind`'s category.
    pub fn for_kind(&self, kind: &crate::message::MessageKind) -> &ChannelPrefs {
        if kind.is_event_news() {
            &self.reminders
        } else {
            &self.transactional
        }
    }

    /// Checks identifiers' shape (not their existence in the IANA/CLDR databases).
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        for (field, value) in [
            ("preferences.locale", &self.locale),
            ("preferences.time_zone", &self.time_zone),
        ] {
            let ok = !value.is_empty()
                && value.len() <= IDENT_LEN_MAX
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '+'));
            if !ok {
                errors.push(FieldError::new(
                    field,
                    format!("must be 1-{IDENT_LEN_MAX} letters, digits or -_/+"),
                ));
            }
        }
    }
}

/// Profile fields a user may edit. The profile is complete when `name`, `phone` and
/// `organization` are all set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// Phone number (E.164-ish: digits, spaces, `+-()`).
    pub phone: Option<String>,
    /// Company or organisation.
    pub organization: Option<String>,
}

impl Profile {
    /// Fields still missing for a complete profile.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.name.trim().is_empty() {
            missing.push("name");
        }
        if self.phone.is_none() {
            missing.push("phone");
        }
        if self.organization.is_none() {
            missing.push("organization");
        }
        missing
    }

    /// Validates every field.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        check_text(errors, "name", &self.name, 1, NAME_LEN_MAX);
        if let Some(phone) = &self.phone {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            let ok = (6..=20).contains(&digits)
                && phone.len() <= 32
                && phone
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')'));
            if !ok {
                errors.push(FieldError::new(
                    "phone",
                    "must be a phone number (6-20 digits)",
                ));
            }
        }
        if let Some(org) = &self.organization {
            check_text(errors, "organization", org, 1, NAME_LEN_MAX);
        }
    }
}

/// One signed-in device: a refresh-token family. Only digests are stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The family id (carried inside its refresh tokens).
    pub family: Uuid,
    /// Digest of the one refresh token that may be used next.
    pub current: [u8; 32],
    /// Digests of tokens already used: presenting one again means a token was stolen.
    pub used: Vec<[u8; 32]>,
    /// When the family was started (login).
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub started_at: DateTime<Utc>,
    /// When the current token stops being accepted.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub expires_at: DateTime<Utc>,
}

/// Events of a user stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserEvent {
    /// The account was created.
    Registered {
        id: UserId,
        /// Normalised (trimmed, lower-case) e-mail: unique across accounts.
        email: String,
        /// Display name.
        name: String,
        /// PHC string of the password hash.
        password_hash: String,
        /// Initial roles.
        roles: Vec<Role>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// Profile fields changed.
    ProfileUpdated {
        /// The whole new profile.
        profile: Profile,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// Preferences changed.
    PreferencesUpdated {
        /// The whole new preferences.
        preferences: Preferences,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// The password changed; every session ends with it.
    PasswordChanged {
        /// PHC string of the new hash.
        password_hash: String,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// An admin set the account's roles.
    RolesChanged {
        /// The whole new set, sorted.
        roles: Vec<Role>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A login started a session.
    SessionStarted {
        /// The new family.
        family: Uuid,
        /// Digest of its first refresh token.
        token: [u8; 32],
        /// When that token runs out.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        expires_at: DateTime<Utc>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A refresh token was exchanged for the next one of its family.
    SessionRotated {
        family: Uuid,
        /// Digest of the new token.
        token: [u8; 32],
        /// When the new token runs out.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        expires_at: DateTime<Utc>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A verification link was sent; it replaces any earlier one.
    EmailVerificationIssued {
        /// The link's single-use token (its digest).
        token: PendingToken,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// The address was confirmed with the pending verification token (which is used up).
    EmailVerified {
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A password-reset link was sent; it replaces any earlier one.
    PasswordResetIssued {
        /// The link's single-use token (its digest).
        token: PendingToken,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// The password was reset with the pending reset token: the token is used up, every
    /// session ends, and the address counts as verified (the link reached it).
    PasswordReset {
        /// PHC string of the new hash.
        password_hash: String,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A session ended: logout, or a reused refresh token revoked its family.
    SessionRevoked {
        family: Uuid,
        /// Why.
        reason: RevokeReason,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
}

impl UserEvent {
    /// When it happened: every user event carries its time, which becomes the record's
    /// `updated_at`.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            UserEvent::Registered { at, .. }
            | UserEvent::ProfileUpdated { at, .. }
            | UserEvent::PreferencesUpdated { at, .. }
            | UserEvent::PasswordChanged { at, .. }
            | UserEvent::RolesChanged { at, .. }
            | UserEvent::SessionStarted { at, .. }
            | UserEvent::SessionRotated { at, .. }
            | UserEvent::EmailVerificationIssued { at, .. }
            | UserEvent::EmailVerified { at }
            | UserEvent::PasswordResetIssued { at, .. }
            | UserEvent::PasswordReset { at, .. }
            | UserEvent::SessionRevoked { at, .. } => *at,
        }
    }
}

/// A single-use token sent by e-mail: only its SHA-256 digest is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingToken {
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    /// When it stops working.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub expires_at: DateTime<Utc>,
}

impl PendingToken {
    /// Whether `digest` is this token's and it has not expired at `now`.
    pub fn accepts(&self, digest: &[u8; 32], now: DateTime<Utc>) -> bool {
        // Digests of 256-bit random tokens: comparing them leaks nothing useful.
        self.digest == *digest && now < self.expires_at
    }
}

/// A single-use token made by the gateway for an e-mailed link: the token goes into the
/// outbox message, its digest into the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintedToken {
    /// The token, as it appears in the link.
    pub token: String,
    /// Its SHA-256 digest.
    pub digest: [u8; 32],
    /// How long it works.
    pub ttl: Duration,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The user logged out.
    Logout,
    /// A refresh token of the family was presented a second time.
    TokenReused,
    /// More than `SESSIONS_MAX` sessions: the oldest goes.
    TooManySessions,
}

/// A user account: the aggregate, the stream's snapshot and the read model in one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: UserId,
    /// Sequence number of the last applied event.
    pub seq: u64,
    /// Normalised e-mail (unique).
    pub email: String,
    /// Whether the e-mail address was verified.
    pub email_verified: bool,
    /// PHC string of the password hash.
    pub password_hash: String,
    /// Roles, sorted.
    pub roles: Vec<Role>,
    /// Editable profile.
    pub profile: Profile,
    pub preferences: Preferences,
    /// Live sessions, oldest first.
    pub sessions: Vec<Session>,
    /// When the account was created.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub updated_at: DateTime<Utc>,
    /// The verification link's token, until used or replaced.
    #[serde(default)]
    pub email_token: Option<PendingToken>,
    /// The password-reset link's token, until used or replaced.
    #[serde(default)]
    pub reset_token: Option<PendingToken>,
}

/// A new account, validated by [`NewUser::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    /// Its id (chosen before sign-up so a verification link can name the account).
    pub id: UserId,
    /// Normalised e-mail.
    pub email: String,
    /// Display name (trimmed).
    pub name: String,
    /// PHC string of the password hash.
    pub password_hash: String,
    pub roles: Vec<Role>,
}

impl NewUser {
    /// Validates e-mail and name; the password was checked and hashed by the caller.
    pub fn new(
        email: &str,
        name: &str,
        password_hash: String,
        roles: Vec<Role>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let email = normalize_email(email, "email", &mut errors);
        let name = name.trim();
        check_text(&mut errors, "name", name, 1, NAME_LEN_MAX);
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        Ok(Self {
            id: UserId::new(),
            email,
            name: name.to_owned(),
            password_hash,
            roles,
        })
    }
}

/// The result of presenting a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The token was current: the family moves on to the new token.
    Rotated,
    /// The token was already used: the family is revoked (the caller answers 401).
    Reused,
    /// Unknown family, unknown token, or expired (the caller answers 401; nothing changes).
    Invalid,
}

impl UserRecord {
    /// The record created by a `Registered` event.
    pub fn registered(event: &UserEvent) -> Option<UserRecord> {
        match event {
            UserEvent::Registered {
                id,
                email,
                name,
                password_hash,
                roles,
                at,
            } => Some(UserRecord {
                id: *id,
                seq: 0,
                email: email.clone(),
                email_verified: false,
                password_hash: password_hash.clone(),
                roles: roles.clone(),
                profile: Profile {
                    name: name.clone(),
                    ..Profile::default()
                },
                preferences: Preferences::default(),
                sessions: Vec::new(),
                created_at: *at,
                updated_at: *at,
                email_token: None,
                reset_token: None,
            }),
            _ => None,
        }
    }

    /// Applies one event (the same code live and on replay) and advances `seq`.
    pub fn apply(&mut self, event: &UserEvent) {
        self.seq += 1;
        match event {
            UserEvent::Registered { .. } => {}
            UserEvent::ProfileUpdated { profile, .. } => self.profile = profile.clone(),
            UserEvent::PreferencesUpdated { preferences, .. } => {
                self.preferences = preferences.clone();
            }
            UserEvent::RolesChanged { roles, .. } => self.roles = roles.clone(),
            UserEvent::PasswordChanged { password_hash, .. } => {
                self.password_hash = password_hash.clone();
                // Whoever had a session with the old password loses it, and a reset link
                // sent before the change no longer works.
                self.sessions.clear();
                self.reset_token = None;
            }
            UserEvent::EmailVerificationIssued { token, .. } => {
                self.email_token = Some(token.clone());
            }
            UserEvent::EmailVerified { .. } => {
                self.email_verified = true;
                self.email_token = None;
            }
            UserEvent::PasswordResetIssued { token, .. } => self.reset_token = Some(token.clone()),
            UserEvent::PasswordReset { password_hash, .. } => {
                self.password_hash = password_hash.clone();
                self.sessions.clear();
                self.reset_token = None;
                self.email_verified = true;
                self.email_token = None;
            }
            UserEvent::SessionStarted {
                family,
                token,
                expires_at,
                at,
            } => self.sessions.push(Session {
                family: *family,
                current: *token,
                used: Vec::new(),
                started_at: *at,
                expires_at: *expires_at,
            }),
            UserEvent::SessionRotated {
                family,
                token,
                expires_at,
                ..
            } => self.rotate_session(*family, *token, *expires_at),
            UserEvent::SessionRevoked { family, .. } => {
                self.sessions.retain(|s| s.family != *family);
            }
        }
        self.updated_at = event.at();
    }

    /// Moves a session's current token to its used ones (the oldest beyond
    /// `USED_TOKENS_MAX` forgotten) and makes `token` current until `expires_at`.
    fn rotate_session(&mut self, family: Uuid, token: [u8; 32], expires_at: DateTime<Utc>) {
        if let Some(s) = self.sessions.iter_mut().find(|s| s.family == family) {
            s.used.push(s.current);
            if s.used.len() > USED_TOKENS_MAX {
                s.used.remove(0);
            }
            s.current = token;
            s.expires_at = expires_at;
        }
    }

    /// The events of confirming the address with the token of digest `digest`.
    pub fn verify_email(
        &self,
        digest: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Vec<UserEvent>, DomainError> {
        match &self.email_token {
            Some(t) if t.accepts(digest, now) => Ok(vec![UserEvent::EmailVerified { at: now }]),
            _ => Err(DomainError::InvalidToken),
        }
    }

    /// The events of resetting the password with the token of digest `digest`.
    pub fn reset_password(
        &self,
        digest: &[u8; 32],
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserEvent>, DomainError> {
        match &self.reset_token {
            Some(t) if t.accepts(digest, now) => Ok(vec![UserEvent::PasswordReset {
                password_hash: password_hash.to_owned(),
                at: now,
            }]),
            _ => Err(DomainError::InvalidToken),
        }
    }

    /// Whether the account holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Events of a login: a new session, and the oldest one dropped (or an expired one pruned)
    /// beyond `SESSIONS_MAX`.
    pub fn start_session(
        &self,
        family: Uuid,
        token: [u8; 32],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Vec<UserEvent> {
        let mut events: Vec<UserEvent> = self
            .sessions
            .iter()
            .filter(|s| s.expires_at <= now)
            .map(|s| UserEvent::SessionRevoked {
                family: s.family,
                reason: RevokeReason::TooManySessions,
                at: now,
            })
            .collect();
        let live = self.sessions.len() - events.len();
        if live >= SESSIONS_MAX
            && let Some(oldest) = self.sessions.iter().find(|s| s.expires_at > now)
        {
            events.push(UserEvent::SessionRevoked {
                family: oldest.family,
                reason: RevokeReason::TooManySessions,
                at: now,
            });
        }
        events.push(UserEvent::SessionStarted {
            family,
            token,
            expires_at: now + ttl,
            at: now,
        });
        events
    }

    /// Decides a refresh: the presented token's digest `presented` of `family`, to be
    /// replaced by `next`.
    pub fn refresh(
        &self,
        family: Uuid,
        presented: &[u8; 32],
        next: [u8; 32],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> (Vec<UserEvent>, Refresh) {
        let Some(session) = self.sessions.iter().find(|s| s.family == family) else {
            return (vec![], Refresh::Invalid);
        };
        if session.used.iter().any(|u| u == presented) {
            let revoke = UserEvent::SessionRevoked {
                family,
                reason: RevokeReason::TokenReused,
                at: now,
            };
            return (vec![revoke], Refresh::Reused);
        }
        if session.current != *presented || session.expires_at <= now {
            return (vec![], Refresh::Invalid);
        }
        let rotate = UserEvent::SessionRotated {
            family,
            token: next,
            expires_at: now + ttl,
            at: now,
        };
        (vec![rotate], Refresh::Rotated)
    }

    /// Events of a logout of `family` presenting the token digest `presented` (its current
    /// token, or any used one: logging out with a stale token still ends the session).
    pub fn logout(&self, family: Uuid, presented: &[u8; 32], now: DateTime<Utc>) -> Vec<UserEvent> {
        let known = self
            .sessions
            .iter()
            .any(|s| s.family == family && (s.current == *presented || s.used.contains(presented)));
        if known {
            vec![UserEvent::SessionRevoked {
                family,
                reason: RevokeReason::Logout,
                at: now,
            }]
        } else {
            vec![]
        }
    }
}

/// A change to one's own profile and preferences; absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    /// New display name.
    pub name: Option<String>,
    /// New phone (`Some(None)` clears it).
    pub phone: Option<Option<String>>,
    /// New organisation (`Some(None)` clears it).
    pub organization: Option<Option<String>>,
    /// New preferences (whole).
    pub preferences: Option<Preferences>,
}

impl ProfilePatch {
    /// The events that apply this patch to `user`, validated; none if nothing changes.
    pub fn decide(
        &self,
        user: &UserRecord,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserEvent>, DomainError> {
        let mut profile = user.profile.clone();
        if let Some(name) = &self.name {
            profile.name = name.trim().to_owned();
        }
        if let Some(phone) = &self.phone {
            profile.phone = phone.as_ref().map(|p| p.trim().to_owned());
        }
        if let Some(org) = &self.organization {
            profile.organization = org.as_ref().map(|o| o.trim().to_owned());
        }
        let mut errors = Vec::new();
        profile.validate(&mut errors);
        if let Some(p) = &self.preferences {
            p.validate(&mut errors);
        }
        if !errors.is_empty() {
            return Err(DomainError::Validation(errors));
        }
        let mut events = Vec::new();
        if profile != user.profile {
            events.push(UserEvent::ProfileUpdated { profile, at: now });
        }
        if let Some(p) = &self.preferences
            && *p != user.preferences
        {
            events.push(UserEvent::PreferencesUpdated {
                preferences: p.clone(),
                at: now,
            });
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(now: DateTime<Utc>) -> UserRecord {
        let event = UserEvent::Registered {
            id: UserId::new(),
            email: "a@example.com".into(),
            name: "A".into(),
            password_hash: "$argon2id$...".into(),
            roles: vec![Role::Attendee],
            at: now,
        };
        let mut u = UserRecord::registered(&event).unwrap();
        u.apply(&event);
        u
    }

    fn apply(u: &mut UserRecord, events: &[UserEvent]) {
        for e in events {
            u.apply(e);
        }
    }

    #[test]
    fn rotation_then_reuse_revokes_the_family() {
        let now = Utc::now();
        let mut u = user(now);
        let family = Uuid::new_v4();
        let ttl = Duration::days(30);
        let events = u.start_session(family, [1; 32], ttl, now);
        apply(&mut u, &events);
        let (events, outcome) = u.refresh(family, &[1; 32], [2; 32], ttl, now);
        assert_eq!(outcome, Refresh::Rotated);
        apply(&mut u, &events);
        // The old token again: reuse, the family goes.
        let (events, outcome) = u.refresh(family, &[1; 32], [3; 32], ttl, now);
        assert_eq!(outcome, Refresh::Reused);
        apply(&mut u, &events);
        assert!(u.sessions.is_empty());
        // And the token that was current is now useless too.
        let (events, outcome) = u.refresh(family, &[2; 32], [4; 32], ttl, now);
        assert_eq!((events.len(), outcome), (0, Refresh::Invalid));
    }

    #[test]
    fn unknown_or_expired_tokens_change_nothing() {
        let now = Utc::now();
        let mut u = user(now);
        let family = Uuid::new_v4();
        let events = u.start_session(family, [1; 32], Duration::seconds(10), now);
        apply(&mut u, &events);
        let (events, outcome) = u.refresh(family, &[9; 32], [2; 32], Duration::days(1), now);
        assert_eq!((events.len(), outcome), (0, Refresh::Invalid));
        let later = now + Duration::seconds(11);
        let (events, outcome) = u.refresh(family, &[1; 32], [2; 32], Duration::days(1), later);
        assert_eq!((events.len(), outcome), (0, Refresh::Invalid));
        let (events, outcome) =
            u.refresh(Uuid::new_v4(), &[1; 32], [2; 32], Duration::days(1), now);
        assert_eq!((events.len(), outcome), (0, Refresh::Invalid));
    }

    #[test]
    fn emailed_tokens_work_once_until_they_expire_or_are_replaced() {
        let now = Utc::now();
        let mut u = user(now);
        let issue = |digest: u8, at: DateTime<Utc>| UserEvent::EmailVerificationIssued {
            token: PendingToken {
                digest: [digest; 32],
                expires_at: at + Duration::hours(1),
            },
            at,
        };
        apply(&mut u, &[issue(1, now), issue(2, now)]);
        // Replaced, wrong, expired: refused.
        assert_eq!(
            u.verify_email(&[1; 32], now),
            Err(DomainError::InvalidToken)
        );
        assert_eq!(
            u.verify_email(&[3; 32], now),
            Err(DomainError::InvalidToken)
        );
        let late = now + Duration::hours(1);
        assert_eq!(
            u.verify_email(&[2; 32], late),
            Err(DomainError::InvalidToken)
        );
        let events = u.verify_email(&[2; 32], now).unwrap();
        apply(&mut u, &events);
        assert!(u.email_verified);
        assert_eq!(
            u.verify_email(&[2; 32], now),
            Err(DomainError::InvalidToken)
        );

        // A reset ends every session, and a password change voids a pending reset.
        let reset = |digest: u8| UserEvent::PasswordResetIssued {
            token: PendingToken {
                digest: [digest; 32],
                expires_at: now + Duration::minutes(30),
            },
            at: now,
        };
        let session = u.start_session(Uuid::new_v4(), [9; 32], Duration::days(1), now);
        apply(&mut u, &session);
        apply(&mut u, &[reset(4)]);
        let changed = UserEvent::PasswordChanged {
            password_hash: "$argon2id$changed".into(),
            at: now,
        };
        apply(&mut u, &[changed]);
        assert_eq!(
            u.reset_password(&[4; 32], "$argon2id$x", now),
            Err(DomainError::InvalidToken)
        );
        let session = u.start_session(Uuid::new_v4(), [10; 32], Duration::days(1), now);
        apply(&mut u, &session);
        apply(&mut u, &[reset(5)]);
        let events = u.reset_password(&[5; 32], "$argon2id$new", now).unwrap();
        apply(&mut u, &events);
        assert_eq!(u.password_hash, "$argon2id$new");
        assert!(u.sessions.is_empty() && u.reset_token.is_none());
        assert_eq!(
            u.reset_password(&[5; 32], "$argon2id$again", now),
            Err(DomainError::InvalidToken)
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let now = Utc::now();
        let mut u = user(now);
        for i in 0..(SESSIONS_MAX as u8 + 5) {
            let events = u.start_session(Uuid::new_v4(), [i; 32], Duration::days(1), now);
            apply(&mut u, &events);
        }
        assert_eq!(u.sessions.len(), SESSIONS_MAX);
        assert_eq!(
            u.sessions.last().unwrap().current,
            [SESSIONS_MAX as u8 + 4; 32]
        );
    }

    #[test]
    fn profile_patch_validates_and_reports_completeness() {
        let now = Utc::now();
        let u = user(now);
        assert_eq!(u.profile.missing(), vec!["phone", "organization"]);
        let bad = ProfilePatch {
            phone: Some(Some("call me".into())),
            ..ProfilePatch::default()
        };
        assert!(matches!(
            bad.decide(&u, now),
            Err(DomainError::Validation(_))
        ));
        let good = ProfilePatch {
            phone: Some(Some("+49 30 1234567".into())),
            organization: Some(Some("ACME".into())),
            ..ProfilePatch::default()
        };
        let mut u2 = u.clone();
        apply(&mut u2, &good.decide(&u, now).unwrap());
        assert!(u2.profile.missing().is_empty());
        assert!(ProfilePatch::default().decide(&u2, now).unwrap().is_empty());
    }
}
