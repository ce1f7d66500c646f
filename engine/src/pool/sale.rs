//! Selling seats: a hold, its confirmation into tickets, its cancellation, and its expiry.
//!
//! - A hold takes seats for `ttl` and, with a voucher, the voucher's uses; a retried
//!   idempotency key gets the earlier registration back and decides nothing.
//! - A confirm issues one ticket per seat, numbered in the pool's confirmation order.
//! - A hold whose deadline passed expires exactly once: by its timer (`ExpireDue`), or by the
//!   confirm or cancel that found it overdue (which is then refused).
//! - A registration that reached a terminal status (expired, canceled) is forgotten, so the
//!   pool's memory is bounded by its live registrations.

use super::{
    HoldCommand, PoolEvent, PoolOutcome, PoolState, RegEntry, millis_to_time, voucher::Voucher,
};
use crate::error::DomainError;
use crate::ids::{RegistrationId, TicketId, TicketTypeId, UserId};
use crate::model::{EventStatus, RegistrationStatus};
use crate::values::IdempotencyToken;
use chrono::{DateTime, Utc};

impl PoolState {
    pub(super) fn decide_hold(
        &mut self,
        cmd: HoldCommand,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if let Some(replay) = self.replay_hold(cmd.idempotency.as_ref(), now) {
            return replay;
        }
        self.check_hold(&cmd, event_status)?;
        // A voucher's use is decided here, with the seats: the last use goes to one buyer.
        let voucher = self.redeemable_voucher(&cmd, now)?;
        // A reserving voucher's holder takes the seats set aside for it.
        let available = self.counts().available() + voucher.map_or(0, |v| v.reserved());
        if u32::from(cmd.quantity) > available {
            return Err(DomainError::SoldOut { available });
        }
        let price = crate::pricing::quote(
            cmd.unit_price_minor,
            &cmd.currency,
            cmd.quantity,
            voucher.map(|v| (v.def.code.as_str(), v.def.discount)),
        )
        .taxed(cmd.tax);
        // Millisecond precision: the durable format stores milliseconds.
        let expires_at = millis_to_time((now + cmd.ttl).timestamp_millis());
        let payment_due_at = cmd
            .payment_due_after
            .filter(|_| price.total_minor > 0)
            .map(|after| super::payment::payment_due_at(now, expires_at, after));
        let registration_id = cmd.registration_id;
        self.emit(
            events,
            PoolEvent::SeatsHeld {
                registration_id,
                event_id: cmd.event_id,
                ticket_type_id: cmd.ticket_type_id,
                quantity: cmd.quantity,
                attendee: cmd.attendee,
                user_id: cmd.user_id,
                idempotency: cmd.idempotency,
                expires_at,
                at: now,
                voucher: price.voucher.clone(),
                price: Some(price.clone()),
                payment_due_at,
            },
        );
        Ok(PoolOutcome::Held {
            registration_id,
            status: RegistrationStatus::Held,
            expires_at,
            at: now,
            replayed: false,
            price: Some(price),
        })
    }

    /// The answer to a hold whose idempotency key the pool already knows: the earlier
    /// registration, or a refusal if the key came with another request. `None`: a new key.
    fn replay_hold(
        &self,
        token: Option<&IdempotencyToken>,
        now: DateTime<Utc>,
    ) -> Option<Result<PoolOutcome, DomainError>> {
        let (id, request) = self.idempotency.get(&token?.key)?;
        if *request != token?.request {
            return Some(Err(DomainError::IdempotencyMismatch));
        }
        let Some(reg) = self.regs.get(id) else {
            return Some(Err(DomainError::RegistrationNotFound));
        };
        Some(Ok(PoolOutcome::Held {
            registration_id: *id,
            status: reg.status,
            expires_at: millis_to_time(reg.expires_at_ms),
            at: now,
            replayed: true,
            price: None,
        }))
    }

    /// Refusals that depend neither on seats nor on a voucher: the event is on sale, the id is
    /// new, the account stays within its limit.
    fn check_hold(&self, cmd: &HoldCommand, event_status: EventStatus) -> Result<(), DomainError> {
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        if self.regs.contains_key(&cmd.registration_id) {
            return Err(DomainError::Validation(vec![
                crate::error::FieldError::new("registration_id", "already exists"),
            ]));
        }
        if let (Some(max), Some(user)) = (cmd.max_per_account, cmd.user_id) {
            let held = self.live_seats_of(user, cmd.ticket_type_id);
            if held + u32::from(cmd.quantity) > u32::from(max) {
                return Err(DomainError::AccountLimitReached { max, held });
            }
        }
        Ok(())
    }

    /// The voucher the hold redeems, if it names one and may redeem it for all its seats.
    fn redeemable_voucher(
        &self,
        cmd: &HoldCommand,
        now: DateTime<Utc>,
    ) -> Result<Option<&Voucher>, DomainError> {
        let Some(code) = &cmd.voucher else {
            return Ok(None);
        };
        let index = self
            .vouchers
            .index(code)
            .ok_or(DomainError::VoucherNotValid { reason: "unknown" })?;
        let v = self.vouchers.get(index);
        if !v.active {
            return Err(DomainError::VoucherNotValid {
                reason: "deactivated",
            });
        }
        if let Some(reason) = v.def.refusal(cmd.ticket_type_id, now) {
            return Err(DomainError::VoucherNotValid { reason });
        }
        if u32::from(cmd.quantity) > v.remaining() {
            return Err(DomainError::VoucherUsedUp {
                remaining: v.remaining(),
            });
        }
        Ok(Some(v))
    }

    pub(super) fn decide_confirm(
        &mut self,
        id: RegistrationId,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let reg = *self
            .regs
            .get(&id)
            .ok_or(DomainError::RegistrationNotFound)?;
        // A canceled (or completed) event issues no tickets, and does not repeat that it did
        // (a repeated confirm between the cancellation and the close would answer 200 with
        // tickets about to be revoked); a draft has no holds.
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        if reg.status != RegistrationStatus::Held {
            return Err(DomainError::InvalidRegistrationState {
                status: reg.status,
                action: "confirm",
            });
        }
        // Only money confirms a registration that costs money (a verified payment, or a
        // manager's mark-paid, confirms it as it is recorded).
        if reg.total_minor > 0 {
            return Err(DomainError::PaymentRequired {
                total_minor: reg.total_minor,
                currency: reg.currency(),
            });
        }
        self.expire_if_overdue(id, reg, now, events)?;
        let tickets = self.issue_tickets(id, now, events);
        Ok(PoolOutcome::Confirmed { tickets })
    }

    pub(super) fn decide_cancel(
        &mut self,
        id: RegistrationId,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let reg = *self
            .regs
            .get(&id)
            .ok_or(DomainError::RegistrationNotFound)?;
        match reg.status {
            RegistrationStatus::Held | RegistrationStatus::Confirmed => {
                self.expire_if_overdue(id, reg, now, events)?;
                self.emit(
                    events,
                    PoolEvent::RegistrationCanceled {
                        registration_id: id,
                        user_id: reg.user(),
                        at: now,
                    },
                );
                Ok(PoolOutcome::Canceled)
            }
            status => Err(DomainError::InvalidRegistrationState {
                status,
                action: "cancel",
            }),
        }
    }

    /// A hold whose deadline passed before its timer fired expires now, and the command that
    /// found it so is refused: the expiry wins, exactly once. Anything else passes.
    pub(super) fn expire_if_overdue(
        &mut self,
        id: RegistrationId,
        reg: RegEntry,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<(), DomainError> {
        if reg.status != RegistrationStatus::Held || now.timestamp_millis() < reg.expires_at_ms {
            return Ok(());
        }
        self.emit(
            events,
            PoolEvent::HoldExpired {
                registration_id: id,
                user_id: reg.user(),
                at: now,
            },
        );
        Err(DomainError::HoldExpired {
            expired_at: millis_to_time(reg.expires_at_ms),
        })
    }

    /// Expires every hold whose deadline is at or before `now`, then deactivates reserving
    /// vouchers past their validity; returns how many holds expired.
    pub(super) fn decide_expire_due(
        &mut self,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> usize {
        let now_ms = now.timestamp_millis();
        let due: Vec<RegistrationId> = self
            .expiries
            .iter()
            .take_while(|(ms, _)| *ms <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        for id in &due {
            let user_id = self.regs.get(id).and_then(RegEntry::user);
            self.emit(
                events,
                PoolEvent::HoldExpired {
                    registration_id: *id,
                    user_id,
                    at: now,
                },
            );
        }
        self.deactivate_due_vouchers(now, events);
        self.decide_reminders(now, events);
        self.decide_payment_dues(now, events);
        due.len()
    }

    pub(super) fn apply_seats_held(&mut self, event: &PoolEvent) {
        let PoolEvent::SeatsHeld {
            registration_id,
            ticket_type_id,
            quantity,
            user_id,
            idempotency,
            expires_at,
            voucher,
            price,
            payment_due_at,
            ..
        } = event
        else {
            unreachable!("apply_seats_held of {event:?}");
        };
        let voucher = voucher.as_deref().map(|code| {
            let index = self
                .vouchers
                .index(code)
                .expect("hold with an unknown voucher");
            self.vouchers.take(index, u32::from(*quantity));
            index
        });
        let (total_minor, currency) = price
            .as_ref()
            .map_or((0, ""), |p| (p.total_minor, p.currency.as_str()));
        self.hold_seats(
            *registration_id,
            SeatsHold {
                quantity: *quantity,
                account: user_id.map(|u| (u, *ticket_type_id)),
                expires_at: *expires_at,
                total_minor,
                currency,
            },
            idempotency.as_ref(),
            voucher,
        );
        if let Some(due) = payment_due_at {
            self.arm_payment_due(*registration_id, *due);
        }
    }

    pub(super) fn apply_hold_expired(&mut self, id: RegistrationId) {
        let reg = self.transition(id, RegistrationStatus::Held, RegistrationStatus::Expired);
        self.held -= u32::from(reg.quantity);
        self.expiries.remove(&(reg.expires_at_ms, id));
        self.forget(id, reg);
    }

    pub(super) fn apply_confirmed(&mut self, id: RegistrationId, tickets: &[TicketId]) {
        let reg = self.transition(id, RegistrationStatus::Held, RegistrationStatus::Confirmed);
        assert_eq!(
            tickets.len(),
            usize::from(reg.quantity),
            "one ticket per seat"
        );
        self.held -= u32::from(reg.quantity);
        self.confirmed += u32::from(reg.quantity);
        self.tickets_issued += tickets.len() as u64;
        self.expiries.remove(&(reg.expires_at_ms, id));
        self.clear_reminder(id);
        self.clear_payment_due(id);
    }

    pub(super) fn apply_canceled(&mut self, id: RegistrationId) {
        let reg = self
            .regs
            .get_mut(&id)
            .expect("cancel of an unknown registration");
        let was = reg.status;
        reg.status = RegistrationStatus::Canceled;
        let (quantity, expires_at_ms) = (u32::from(reg.quantity), reg.expires_at_ms);
        match was {
            RegistrationStatus::Held => {
                self.held -= quantity;
                self.expiries.remove(&(expires_at_ms, id));
            }
            RegistrationStatus::Confirmed => self.confirmed -= quantity,
            other => panic!("cancel of a {other:?} registration"),
        }
        let reg = *reg;
        self.forget(id, reg);
    }

    /// Records a new held registration (a hold, a waiting-list offer, a late payment's
    /// seats taken again).
    pub(super) fn hold_seats(
        &mut self,
        id: RegistrationId,
        seats: SeatsHold<'_>,
        idempotency: Option<&IdempotencyToken>,
        voucher: Option<u32>,
    ) {
        let SeatsHold {
            quantity,
            account,
            expires_at,
            total_minor,
            currency,
        } = seats;
        let expires_at_ms = expires_at.timestamp_millis();
        if let Some(account) = account {
            *self.per_account.entry(account).or_default() += u32::from(quantity);
        }
        let previous = self.regs.insert(
            id,
            RegEntry {
                quantity,
                status: RegistrationStatus::Held,
                expires_at_ms,
                idempotency_key: idempotency.map(|t| t.key),
                account,
                voucher,
                total_minor,
                currency: currency_code(currency),
                payment_due_at_ms: None,
            },
        );
        assert!(previous.is_none(), "registration {id} held twice");
        self.held += u32::from(quantity);
        self.expiries.insert((expires_at_ms, id));
        if let Some(token) = idempotency {
            self.idempotency.insert(token.key, (id, token.request));
        }
    }

    /// Drops a registration that reached a terminal status (expired, canceled): nothing the
    /// pool decides depends on it any more, so pool memory is bounded by live registrations,
    /// which hold at least one seat each (at most `capacity` of them). Its read model keeps
    /// the history; the engine facade uses it to refine "unknown" into the precise refusal.
    fn forget(&mut self, id: RegistrationId, reg: RegEntry) {
        self.regs.remove(&id);
        self.clear_reminder(id);
        if let Some(ms) = reg.payment_due_at_ms {
            self.payment_dues.remove(&(ms, id));
        }
        // Its seats no longer count against its account.
        if let Some(account) = reg.account
            && let std::collections::hash_map::Entry::Occupied(mut e) =
                self.per_account.entry(account)
        {
            *e.get_mut() -= u32::from(reg.quantity);
            if *e.get() == 0 {
                e.remove();
            }
        }
        if let Some(key) = reg.idempotency_key {
            self.idempotency.remove(&key);
        }
        // Its voucher uses come back (and with them, a reserving voucher's seats).
        if let Some(voucher) = reg.voucher {
            self.vouchers.release(voucher, u32::from(reg.quantity));
        }
        self.presence.remove(&id);
        self.payments.registration_ended(id, reg.status);
    }

    fn transition(
        &mut self,
        id: RegistrationId,
        from: RegistrationStatus,
        to: RegistrationStatus,
    ) -> RegEntry {
        let reg = self
            .regs
            .get_mut(&id)
            .expect("transition of an unknown registration");
        assert_eq!(reg.status, from, "registration {id} is not {from:?}");
        reg.status = to;
        *reg
    }
}

/// The seats of a new held registration, and what they cost.
pub(crate) struct SeatsHold<'a> {
    pub(crate) quantity: u16,
    /// The account and ticket type they count against.
    pub(crate) account: Option<(UserId, TicketTypeId)>,
    pub(crate) expires_at: DateTime<Utc>,
    /// The total journaled with the hold.
    pub(crate) total_minor: i64,
    /// Its ISO 4217 code.
    pub(crate) currency: &'a str,
}

/// An ISO 4217 code as three bytes (anything else: blank).
fn currency_code(code: &str) -> [u8; 3] {
    code.as_bytes().try_into().unwrap_or([b' '; 3])
}
