//! The accounts side of the facade: sign-up, sessions and profiles, written to user streams
//! with optimistic concurrency (see `accounts`).

use super::{Engine, storage};
use crate::accounts::{NewUser, ProfilePatch, Refresh, Role, UserEvent, UserRecord};
use crate::error::{DomainError, EngineError, EngineResult};
use crate::ids::{StreamId, UserId};
use crate::ports::{JournalError, Snapshot, StreamEvent};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Attempts of a read-decide-append cycle before the caller gets a retryable error.
const ATTEMPTS_MAX: usize = 8;

impl Engine {
    /// Creates an account. `EmailTaken` if the address is registered or being registered.
    pub async fn signup(&self, new: NewUser) -> EngineResult<UserRecord> {
        // Claim the address among sign-ups in flight, then check the durable index: an
        // address is free only if neither knows it.
        if !self.signups.insert(new.email.clone()) {
            return Err(DomainError::EmailTaken.into());
        }
        let result = self.signup_claimed(&new).await;
        self.signups.remove(&new.email);
        result
    }

    async fn signup_claimed(&self, new: &NewUser) -> EngineResult<UserRecord> {
        if self
            .ctx
            .store
            .user_by_email(&new.email)
            .map_err(storage)?
            .is_some()
        {
            return Err(DomainError::EmailTaken.into());
        }
        let event = UserEvent::Registered {
            id: UserId::new(),
            email: new.email.clone(),
            name: new.name.clone(),
            password_hash: new.password_hash.clone(),
            roles: new.roles.clone(),
            at: self.now(),
        };
        let mut record = UserRecord::registered(&event)
            .ok_or_else(|| EngineError::Storage("registered event expected".into()))?;
        record.apply(&event);
        self.ctx
            .journal
            .append_and_wait(
                StreamId::User(record.id),
                1,
                vec![StreamEvent::User(event)],
                Some(Snapshot::User(Box::new(record.clone()))),
            )
            .await
            .map_err(journal)?;
        Ok(record)
    }

    /// Now, at the millisecond precision the records are stored with, so a reply shows the
    /// same times as a later read.
    fn now(&self) -> DateTime<Utc> {
        let now = self.ctx.clock.now();
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }

    /// An account by id.
    pub fn user(&self, id: UserId) -> EngineResult<UserRecord> {
        self.ctx
            .store
            .user(id)
            .map_err(storage)?
            .ok_or_else(|| DomainError::UserNotFound.into())
    }

    /// An account by e-mail address (normalised here).
    pub fn user_by_email(&self, email: &str) -> EngineResult<Option<UserRecord>> {
        let email = email.trim().to_lowercase();
        match self.ctx.store.user_by_email(&email).map_err(storage)? {
            Some(id) => self.user(id).map(Some),
            None => Ok(None),
        }
    }

    /// Starts a session (after a successful login): `token` is the digest of the family's
    /// first refresh token.
    pub async fn start_session(
        &self,
        user: UserId,
        family: Uuid,
        token: [u8; 32],
        ttl: Duration,
    ) -> EngineResult<UserRecord> {
        self.update_user(user, |u, now| {
            Ok((u.start_session(family, token, ttl, now), ()))
        })
        .await
        .map(|(u, ())| u)
    }

    /// Exchanges the refresh token with digest `presented` for `next`. A reused token
    /// revokes its family.
    pub async fn refresh_session(
        &self,
        user: UserId,
        family: Uuid,
        presented: [u8; 32],
        next: [u8; 32],
        ttl: Duration,
    ) -> EngineResult<(UserRecord, Refresh)> {
        self.update_user(user, |u, now| {
            Ok(u.refresh(family, &presented, next, ttl, now))
        })
        .await
    }

    /// Ends the session `family` if `presented` is one of its tokens.
    pub async fn end_session(
        &self,
        user: UserId,
        family: Uuid,
        presented: [u8; 32],
    ) -> EngineResult<()> {
        self.update_user(user, |u, now| Ok((u.logout(family, &presented, now), ())))
            .await
            .map(|_| ())
    }

    /// Applies a profile/preferences patch to one's own account.
    pub async fn update_profile(
        &self,
        user: UserId,
        patch: ProfilePatch,
    ) -> EngineResult<UserRecord> {
        self.update_user(user, |u, now| Ok((patch.decide(u, now)?, ())))
            .await
            .map(|(u, ())| u)
    }

    /// Replaces the password hash (checked by the caller against the current password) and
    /// ends every session of the account.
    pub async fn change_password(
        &self,
        user: UserId,
        password_hash: String,
    ) -> EngineResult<UserRecord> {
        self.update_user(user, |_, now| {
            let event = UserEvent::PasswordChanged {
                password_hash: password_hash.clone(),
                at: now,
            };
            Ok((vec![event], ()))
        })
        .await
        .map(|(u, ())| u)
    }

    /// Replaces an account's roles (sorted, without duplicates).
    pub async fn set_roles(&self, user: UserId, roles: Vec<Role>) -> EngineResult<UserRecord> {
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        self.update_user(user, |u, now| {
            let events = if u.roles == roles {
                vec![]
            } else {
                vec![UserEvent::RolesChanged {
                    roles: roles.clone(),
                    at: now,
                }]
            };
            Ok((events, ()))
        })
        .await
        .map(|(u, ())| u)
    }

    /// Read, decide, append with the expected sequence number; again on a conflict.
    async fn update_user<T>(
        &self,
        id: UserId,
        mut decide: impl FnMut(&UserRecord, DateTime<Utc>) -> Result<(Vec<UserEvent>, T), DomainError>,
    ) -> EngineResult<(UserRecord, T)> {
        for _ in 0..ATTEMPTS_MAX {
            let record = self.user(id)?;
            let (events, out) = decide(&record, self.now())?;
            if events.is_empty() {
                return Ok((record, out));
            }
            let mut next = record.clone();
            for event in &events {
                next.apply(event);
            }
            let appended = self
                .ctx
                .journal
                .append_and_wait(
                    StreamId::User(id),
                    record.seq + 1,
                    events.into_iter().map(StreamEvent::User).collect(),
                    Some(Snapshot::User(Box::new(next.clone()))),
                )
                .await;
            match appended {
                Ok(()) => return Ok((next, out)),
                // Another request changed the account first: decide again on its result.
                Err(JournalError::SequenceConflict { .. }) => continue,
                Err(e) => return Err(journal(e)),
            }
        }
        Err(EngineError::Unavailable("account busy; retry".into()))
    }
}

fn journal(e: JournalError) -> EngineError {
    match e {
        JournalError::Stopped => EngineError::Unavailable("journal stopped".into()),
        other => EngineError::Storage(other.to_string()),
    }
}
