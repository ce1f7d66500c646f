//! The accounts side of the facade: sign-up, sessions and profiles, written to user streams
//! with optimistic concurrency (see `accounts`).

use super::Engine;
use crate::accounts::{
    MintedToken, NewUser, PendingToken, ProfilePatch, Refresh, Role, UserEvent, UserRecord,
};
use crate::error::{DomainError, EngineError, EngineResult};
use crate::ids::{StreamId, UserId};
use crate::outbox::{MessageKind, OutboxMessage, Reservation};
use crate::ports::{AppendRequest, Completion, JournalError, Snapshot, StreamEvent};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Attempts of a read-decide-append cycle before the caller gets a retryable error.
const ATTEMPTS_MAX: usize = 8;

impl Engine {
    /// Creates an account. `EmailTaken` if the address is registered or being registered.
    /// With `verification`, a verification link goes out through the outbox in the same
    /// commit (unless the outbox is full: the account is created anyway, and the user asks
    /// for a new link later).
    pub async fn signup(
        &self,
        new: NewUser,
        verification: Option<MintedToken>,
    ) -> EngineResult<UserRecord> {
        // Claim the address among sign-ups in flight, then check the durable index: an
        // address is free only if neither knows it.
        if !self.signups.insert(new.email.clone()) {
            return Err(DomainError::EmailTaken.into());
        }
        let result = self.signup_claimed(&new, verification).await;
        self.signups.remove(&new.email);
        result
    }

    async fn signup_claimed(
        &self,
        new: &NewUser,
        verification: Option<MintedToken>,
    ) -> EngineResult<UserRecord> {
        if self
            .ctx
            .store
            .user_by_email(&new.email)
            .map_err(EngineError::Store)?
            .is_some()
        {
            return Err(DomainError::EmailTaken.into());
        }
        let now = self.now();
        let registered = UserEvent::Registered {
            id: new.id,
            email: new.email.clone(),
            name: new.name.clone(),
            password_hash: new.password_hash.clone(),
            roles: new.roles.clone(),
            at: now,
        };
        let mut record = UserRecord::registered(&registered)
            .ok_or_else(|| EngineError::Internal("a registration makes a user record".into()))?;
        let mut events = vec![registered];
        let mut outbox = Vec::new();
        let mut reservation = None;
        if let Some(minted) = verification {
            reservation = self.outbox.reserve(1);
            if reservation.is_some() {
                let (event, message) = verification_link(&record, minted, now);
                events.push(event);
                outbox.push(message);
            } else {
                metrics::counter!("regengine_outbox_refused_total").increment(1);
                tracing::warn!(user = %new.id, "outbox full: account created without a verification link");
            }
        }
        for event in &events {
            record.apply(event);
        }
        self.append_user(record.id, 1, events, &record, outbox, reservation)
            .await
            .map_err(super::journal_error)?;
        Ok(record)
    }

    /// Sends a new verification link (replacing any earlier one).
    pub async fn request_email_verification(
        &self,
        user: UserId,
        minted: MintedToken,
    ) -> EngineResult<()> {
        self.update_user_sending(user, |u, now| {
            if u.email_verified {
                return Err(DomainError::EmailAlreadyVerified);
            }
            let (event, message) = verification_link(u, minted.clone(), now);
            Ok((vec![event], vec![message], ()))
        })
        .await
        .map(|_| ())
    }

    /// Confirms an account's address with the digest of a verification token.
    pub async fn verify_email(&self, user: UserId, digest: [u8; 32]) -> EngineResult<UserRecord> {
        self.update_user(user, |u, now| Ok((u.verify_email(&digest, now)?, ())))
            .await
            .map(|(u, ())| u)
    }

    /// Sends a password-reset link to the account of `email`, if there is one (`false` if
    /// not: the caller answers the same either way). `mint` makes the link's token for the
    /// account found.
    pub async fn request_password_reset(
        &self,
        email: &str,
        mint: impl FnOnce(UserId) -> Result<MintedToken, String>,
    ) -> EngineResult<bool> {
        // Refused alike for every address, so a full outbox reveals nothing about accounts.
        if !self.outbox.has_room(1) {
            return Err(EngineError::Unavailable("outbox full".into()));
        }
        let Some(user) = self.user_by_email(email)? else {
            return Ok(false);
        };
        let minted = mint(user.id).map_err(EngineError::Internal)?;
        self.update_user_sending(user.id, |u, now| {
            let (event, message) = emailed_link(
                u,
                minted.clone(),
                now,
                |token, at| UserEvent::PasswordResetIssued { token, at },
                |token, expires_at| MessageKind::ResetPassword { token, expires_at },
            );
            Ok((vec![event], vec![message], ()))
        })
        .await
        .map(|_| true)
    }

    /// Sets a new password with the digest of a reset token; every session ends.
    pub async fn reset_password(
        &self,
        user: UserId,
        digest: [u8; 32],
        password_hash: String,
    ) -> EngineResult<UserRecord> {
        self.update_user(user, |u, now| {
            Ok((u.reset_password(&digest, &password_hash, now)?, ()))
        })
        .await
        .map(|(u, ())| u)
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
            .map_err(EngineError::Store)?
            .ok_or_else(|| DomainError::UserNotFound.into())
    }

    /// An account by e-mail address (normalised here).
    pub fn user_by_email(&self, email: &str) -> EngineResult<Option<UserRecord>> {
        let email = email.trim().to_lowercase();
        match self
            .ctx
            .store
            .user_by_email(&email)
            .map_err(EngineError::Store)?
        {
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

    /// Turns e-mail off for `category` (a one-click unsubscribe), reading the preferences as
    /// they are when the change is decided (a concurrent profile change is not undone).
    pub async fn unsubscribe(
        &self,
        user: UserId,
        category: crate::accounts::Category,
    ) -> EngineResult<UserRecord> {
        self.update_user(user, |u, now| {
            let mut preferences = u.preferences.clone();
            match category {
                crate::accounts::Category::Reminders => preferences.reminders.email = false,
                crate::accounts::Category::Marketing => preferences.marketing.email = false,
            }
            let patch = ProfilePatch {
                preferences: Some(preferences),
                ..ProfilePatch::default()
            };
            Ok((patch.decide(u, now)?, ()))
        })
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

    /// Queues messages that no state change causes (an organizer resending tickets): they are
    /// committed to the outbox alone. 503 when the outbox has no room for all of them.
    pub async fn send_messages(&self, messages: Vec<OutboxMessage>) -> EngineResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let Some(reservation) = self.outbox.reserve(messages.len()) else {
            metrics::counter!("regengine_outbox_refused_total").increment(1);
            return Err(EngineError::Unavailable("outbox full".into()));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = Completion::new(move |result| {
            if result.is_ok() {
                reservation.commit();
            }
            let _ = tx.send(result);
        });
        // No events: a barrier that carries the messages.
        let request =
            AppendRequest::barrier(StreamId::User(UserId(Uuid::nil())), done).with_outbox(messages);
        self.ctx.journal.append(request).await;
        rx.await
            .unwrap_or(Err(JournalError::Stopped))
            .map_err(super::journal_error)
    }

    /// Appends `events` (with `record`, the state after them, as snapshot) and `outbox` to the
    /// user's stream and waits until durable. The outbox `reservation` is kept in the
    /// journal's completion once durable (even if this future was dropped meanwhile) and given
    /// back otherwise.
    async fn append_user(
        &self,
        id: UserId,
        first_seq: u64,
        events: Vec<UserEvent>,
        record: &UserRecord,
        outbox: Vec<OutboxMessage>,
        reservation: Option<Reservation>,
    ) -> Result<(), JournalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = Completion::new(move |result| {
            if result.is_ok()
                && let Some(reservation) = reservation
            {
                reservation.commit();
            }
            let _ = tx.send(result);
        });
        let events = events.into_iter().map(StreamEvent::User).collect();
        // Unfenced: the account's writes retry on a sequence conflict themselves.
        let request = AppendRequest::unfenced(StreamId::User(id), first_seq, events, done)
            .with_snapshot(Some(Snapshot::User(Box::new(record.clone()))))
            .with_outbox(outbox);
        self.ctx.journal.append(request).await;
        rx.await.unwrap_or(Err(JournalError::Stopped))
    }

    /// Read, decide, append with the expected sequence number; again on a conflict.
    async fn update_user<T>(
        &self,
        id: UserId,
        mut decide: impl FnMut(&UserRecord, DateTime<Utc>) -> Result<(Vec<UserEvent>, T), DomainError>,
    ) -> EngineResult<(UserRecord, T)> {
        self.update_user_sending(id, |u, now| {
            decide(u, now).map(|(events, out)| (events, Vec::new(), out))
        })
        .await
    }

    /// [`Self::update_user`] for decisions that also send messages (committed with their
    /// events into the outbox, which must have room for them).
    async fn update_user_sending<T>(
        &self,
        id: UserId,
        mut decide: impl FnMut(
            &UserRecord,
            DateTime<Utc>,
        ) -> Result<(Vec<UserEvent>, Vec<OutboxMessage>, T), DomainError>,
    ) -> EngineResult<(UserRecord, T)> {
        for _ in 0..ATTEMPTS_MAX {
            let record = self.user(id)?;
            let (events, outbox, out) = decide(&record, self.now())?;
            if events.is_empty() {
                return Ok((record, out));
            }
            let reservation = if outbox.is_empty() {
                None
            } else {
                let reserved = self.outbox.reserve(outbox.len());
                if reserved.is_none() {
                    metrics::counter!("regengine_outbox_refused_total").increment(1);
                    return Err(EngineError::Unavailable("outbox full".into()));
                }
                reserved
            };
            let mut next = record.clone();
            for event in &events {
                next.apply(event);
            }
            let appended = self
                .append_user(id, record.seq + 1, events, &next, outbox, reservation)
                .await;
            match appended {
                Ok(()) => return Ok((next, out)),
                // Another request changed the account first: decide again on its result.
                Err(JournalError::SequenceConflict { .. }) => continue,
                Err(e) => return Err(super::journal_error(e)),
            }
        }
        Err(EngineError::Unavailable("account busy; retry".into()))
    }
}

/// The event and the message of a new verification link for `user`.
fn verification_link(
    user: &UserRecord,
    minted: MintedToken,
    now: DateTime<Utc>,
) -> (UserEvent, OutboxMessage) {
    emailed_link(
        user,
        minted,
        now,
        |token, at| UserEvent::EmailVerificationIssued { token, at },
        |token, expires_at| MessageKind::VerifyEmail { token, expires_at },
    )
}

/// The event that records an e-mailed link's pending token (its digest) and the message that
/// carries the token itself.
fn emailed_link(
    user: &UserRecord,
    minted: MintedToken,
    now: DateTime<Utc>,
    event: impl FnOnce(PendingToken, DateTime<Utc>) -> UserEvent,
    kind: impl FnOnce(String, DateTime<Utc>) -> MessageKind,
) -> (UserEvent, OutboxMessage) {
    let expires_at = now + minted.ttl;
    let pending = PendingToken {
        digest: minted.digest,
        expires_at,
    };
    let message = OutboxMessage::new(
        &user.email,
        Some(user.id),
        kind(minted.token, expires_at),
        now,
    );
    (event(pending, now), message)
}
