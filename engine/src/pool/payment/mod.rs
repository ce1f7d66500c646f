//! Paying for seats: a payment per registration, the provider's reports on it, and refunds.
//!
//! - `StartPayment` records who takes the money and extends the hold while the buyer pays
//!   (at most `ATTEMPTS_MAX` attempts, so a hold cannot be stretched without end).
//! - A provider's report is applied once per provider event id (the id is journaled with the
//!   decision it causes). Money is kept as monotone facts (captures, refunds reported, a
//!   dispute), so reports commute: any order of deliveries ends in the same state, and a
//!   report that does not fit (`failed` after a capture) is journaled as ignored, not a crash.
//! - The first capture of exactly the registration's total confirms it, in the same batch:
//!   a hold still held is confirmed (even past its deadline: nobody took the seats); a hold
//!   that expired takes seats again if there are any; otherwise (no seats, registration
//!   canceled, event not on sale, a second capture) the money is refunded (`refund_due`).
//! - A refund is decided here (never more than what is captured and not yet refunded), then
//!   carried out by a relay that calls the provider with the refund's id as its idempotency
//!   key and reports back. Refunding everything cancels the registration (tickets revoked).
//!
//! Architecture Invariant: for every payment, refunds decided (requested or succeeded) never
//! exceed what is captured (asserted in `apply`).

use super::{PoolEvent, PoolOutcome, PoolState};
use crate::error::DomainError;
use crate::ids::{EventId, RegistrationId, TicketId};
use crate::model::{EventStatus, RegistrationStatus};
use crate::payment::{PaymentState, Provider, ProviderReport, RefundReason, RefundState, Report};
use chrono::{DateTime, Utc};
use uuid::Uuid;

mod due;
mod record;

pub use due::payment_due_at;
pub use record::{ATTEMPTS_MAX, Capture, MOVEMENTS_MAX, Payment, Payments, Refund, SEEN_MAX};

/// Start (or restart) paying for a held registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartPayment {
    pub registration_id: RegistrationId,
    pub event_id: EventId,
    pub provider: Provider,
    /// Keep the seats at least until then while the buyer pays.
    pub hold_until: DateTime<Utc>,
    /// The registration's currency (its total is the pool's).
    pub currency: String,
    /// The ticket type's per-account limit.
    pub max_per_account: Option<u16>,
    /// The attendee's address (told if the payment is refunded on its own).
    pub buyer_email: String,
    /// When to remind the buyer if it is still unpaid (bank transfers).
    pub remind_at: Option<DateTime<Utc>>,
    /// Who the invoice is made out to (validated), if the buyer said.
    pub billing: Option<crate::invoice::document::Party>,
}

/// A refund asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    pub registration_id: RegistrationId,
    /// Minor units; `None`: everything refundable.
    pub amount_minor: Option<i64>,
    pub reason: RefundReason,
}

impl PoolState {
    /// The payment of a registration, if one was started.
    pub fn payment(&self, id: RegistrationId) -> Option<&Payment> {
        self.payments.get(id)
    }

    /// The pool's payments.
    #[cfg(test)]
    pub fn payments(&self) -> &Payments {
        &self.payments
    }

    pub(super) fn decide_start_payment(
        &mut self,
        cmd: StartPayment,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let id = cmd.registration_id;
        let reg = self.payable(id, event_status, "pay", now, events)?;
        let (attempt, replay) = match self.payments.get(id) {
            Some(p) if p.provider == cmd.provider && p.attempt_state == PaymentState::Created => {
                (p.attempt, true)
            }
            Some(p) if p.provider == cmd.provider && p.attempt_state == PaymentState::Pending => {
                (p.attempt, true)
            }
            Some(p) if p.attempt >= ATTEMPTS_MAX => {
                return Err(DomainError::LimitReached("payment attempts"));
            }
            Some(p) => (p.attempt + 1, false),
            None => (1, false),
        };
        if !replay {
            let hold_until = cmd.hold_until.timestamp_millis().max(reg.expires_at_ms);
            self.emit(
                events,
                PoolEvent::PaymentStarted {
                    registration_id: id,
                    event_id: cmd.event_id,
                    provider: cmd.provider,
                    attempt,
                    amount_minor: reg.total_minor,
                    currency: cmd.currency,
                    max_per_account: cmd.max_per_account,
                    buyer_email: cmd.buyer_email,
                    hold_until: super::millis_to_time(hold_until),
                    at: now,
                    remind_at: cmd.remind_at.filter(|at| *at > now),
                    billing: cmd.billing,
                },
            );
        }
        Ok(self.payment_outcome(id))
    }

    /// A held registration that costs money and is not paid yet (a hold found overdue
    /// expires now, and the command is refused).
    fn payable(
        &mut self,
        id: RegistrationId,
        event_status: EventStatus,
        action: &'static str,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<super::RegEntry, DomainError> {
        let reg = *self
            .regs
            .get(&id)
            .ok_or(DomainError::RegistrationNotFound)?;
        if self.payments.get(id).is_some_and(Payment::paid) {
            return Err(DomainError::AlreadyPaid);
        }
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        if reg.status != RegistrationStatus::Held {
            return Err(DomainError::InvalidRegistrationState {
                status: reg.status,
                action,
            });
        }
        if reg.total_minor <= 0 {
            return Err(DomainError::NothingToPay);
        }
        self.expire_if_overdue(id, reg, now, events)?;
        Ok(reg)
    }

    fn payment_outcome(&self, id: RegistrationId) -> PoolOutcome {
        let payment = self
            .payments
            .get(id)
            .cloned()
            .expect("payment just started");
        let expires_at = self
            .regs
            .get(&id)
            .map(|r| super::millis_to_time(r.expires_at_ms));
        PoolOutcome::Payment {
            payment: Box::new(payment),
            expires_at,
        }
    }

    /// The provider has its id for the current attempt (the attempt is now pending). A
    /// repeat, or a late answer for an earlier attempt, changes nothing.
    pub(super) fn decide_payment_pending(
        &mut self,
        id: RegistrationId,
        attempt: u32,
        provider_ref: String,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let p = self.payments.get(id).ok_or(DomainError::PaymentNotFound)?;
        if p.attempt == attempt && p.attempt_state == PaymentState::Created && p.captures.is_empty()
        {
            self.emit(
                events,
                PoolEvent::PaymentPending {
                    registration_id: id,
                    attempt,
                    provider_ref,
                    at: now,
                },
            );
        }
        Ok(self.payment_outcome(id))
    }

    /// A provider's verified report: applied once per event id, with what it causes.
    pub(super) fn decide_report(
        &mut self,
        id: RegistrationId,
        report: ProviderReport,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let p = self.payments.get(id).ok_or(DomainError::PaymentNotFound)?;
        if p.seen.iter().any(|seen| *seen == report.event_id) {
            return Ok(PoolOutcome::Reported {
                duplicate: true,
                ignored: None,
                state: p.state(),
            });
        }
        let was_paid = p.paid();
        let before = (p.captures.len(), p.refunded_minor());
        let ignored = p.assess(&report).err();
        self.emit(
            events,
            PoolEvent::PaymentReported {
                registration_id: id,
                report: Box::new(report),
                ignored,
                at: now,
            },
        );
        if ignored.is_none() {
            self.follow_up(id, was_paid, before, event_status, now, events);
        }
        let state = self.payments.get(id).map(Payment::state);
        Ok(PoolOutcome::Reported {
            duplicate: false,
            ignored,
            state: state.expect("payment kept"),
        })
    }

    /// What a change of money causes for the seats, in the same batch.
    fn follow_up(
        &mut self,
        id: RegistrationId,
        was_paid: bool,
        (captures_before, refunded_before): (usize, i64),
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) {
        let p = self.payments.get(id).expect("payment kept");
        let (paid, captures, refunded) = (p.paid(), p.captures.len(), p.refunded_minor());
        let captured = p.captured_minor();
        if paid && !was_paid {
            // Money reported refunded in full before its capture came and went: no seats.
            if refunded < captured {
                self.seat_paid(id, event_status, now, events);
            }
        } else if captures > captures_before {
            // A second capture (a double payment): what is left of it goes back.
            let capture = p.captures.last().cloned().expect("a capture");
            let amount = p.refundable_of(&capture);
            if amount > 0 {
                self.request_refund(id, &capture, amount, RefundReason::RefundDue, now, events);
            }
        }
        // Everything refunded at the provider: the registration ends with its money.
        if refunded > refunded_before
            && refunded >= captured
            && self.regs.get(&id).map(|r| r.status) == Some(RegistrationStatus::Confirmed)
        {
            self.cancel_paid(id, now, events);
        }
    }

    /// The first capture of the total: confirm the seats, take them again, or give the
    /// money back.
    fn seat_paid(
        &mut self,
        id: RegistrationId,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) {
        let p = self.payments.get(id).expect("payment kept");
        let (quantity, ended) = (p.quantity, p.ended);
        let within_limit = match (p.account, p.max_per_account) {
            (Some((user, tt)), Some(max)) => {
                self.live_seats_of(user, tt) + u32::from(quantity) <= u32::from(max)
            }
            _ => true,
        };
        // The voucher the hold redeemed must have a use left for the seats (a reserving
        // voucher's own seats count as available to it), as for a hold.
        let (voucher_ok, own_seats) = match p.voucher.map(|v| self.vouchers.get(v)) {
            Some(v) => (v.remaining() >= u32::from(quantity), v.reserved()),
            None => (true, 0),
        };
        let open = event_status == EventStatus::Published;
        let held = self.regs.get(&id).map(|r| r.status) == Some(RegistrationStatus::Held);
        if open && held {
            self.issue_tickets(id, now, events);
        } else if open
            && ended == Some(RegistrationStatus::Expired)
            && within_limit
            && voucher_ok
            && u32::from(quantity) <= self.counts().available() + own_seats
        {
            self.emit(
                events,
                PoolEvent::SeatsRetaken {
                    registration_id: id,
                    at: now,
                },
            );
            self.issue_tickets(id, now, events);
        } else {
            let p = self.payments.get(id).expect("payment kept");
            let capture = p.captures.first().cloned().expect("paid means captured");
            let amount = p.refundable_of(&capture);
            self.request_refund(id, &capture, amount, RefundReason::RefundDue, now, events);
        }
    }

    /// Issues the tickets of a held registration.
    pub(super) fn issue_tickets(
        &mut self,
        id: RegistrationId,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Vec<TicketId> {
        let reg = self.regs[&id];
        let tickets: Vec<TicketId> = (0..reg.quantity)
            .map(|_| TicketId(Uuid::new_v4()))
            .collect();
        self.emit(
            events,
            PoolEvent::RegistrationConfirmed {
                registration_id: id,
                user_id: reg.user(),
                tickets: tickets.clone(),
                first_number: self.tickets_issued + 1,
                at: now,
            },
        );
        tickets
    }

    fn cancel_paid(&mut self, id: RegistrationId, now: DateTime<Utc>, events: &mut Vec<PoolEvent>) {
        let user_id = self.regs.get(&id).and_then(super::RegEntry::user);
        self.emit(
            events,
            PoolEvent::RegistrationCanceled {
                registration_id: id,
                user_id,
                at: now,
            },
        );
    }

    fn request_refund(
        &mut self,
        id: RegistrationId,
        capture: &Capture,
        amount_minor: i64,
        reason: RefundReason,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) {
        self.emit(
            events,
            PoolEvent::RefundRequested {
                registration_id: id,
                refund: Refund {
                    id: Uuid::new_v4(),
                    provider: capture.provider,
                    provider_ref: capture.provider_ref.clone(),
                    amount_minor,
                    reason,
                    state: RefundState::Requested,
                },
                at: now,
            },
        );
    }

    /// A manager's "mark paid" (box office, cash): a manual capture of the total, then the
    /// tickets. `reference` names it (a retry with the same reference changes nothing).
    pub(super) fn decide_mark_paid(
        &mut self,
        id: RegistrationId,
        event_id: EventId,
        reference: String,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if self
            .payments
            .get(id)
            .is_some_and(|p| p.seen.contains(&reference))
        {
            return Ok(self.payment_outcome(id));
        }
        let reg = self.payable(id, event_status, "mark paid", now, events)?;
        let currency = self.payments.get(id).map(|p| p.currency.clone());
        let currency = currency.unwrap_or_else(|| reg.currency());
        let attempt = self.payments.get(id).map_or(1, |p| p.attempt + 1);
        let max_per_account = self.payments.get(id).and_then(|p| p.max_per_account);
        let buyer_email = self
            .payments
            .get(id)
            .map(|p| p.buyer_email.clone())
            .unwrap_or_default();
        self.emit(
            events,
            PoolEvent::PaymentStarted {
                registration_id: id,
                event_id,
                provider: Provider::Manual,
                attempt,
                amount_minor: reg.total_minor,
                currency: currency.clone(),
                max_per_account,
                buyer_email,
                hold_until: super::millis_to_time(reg.expires_at_ms),
                at: now,
                remind_at: None,
                billing: None,
            },
        );
        let report = ProviderReport {
            provider: Provider::Manual,
            event_id: reference.clone(),
            provider_ref: Some(reference),
            report: Report::Succeeded {
                amount_minor: reg.total_minor,
                currency,
            },
        };
        self.decide_report(id, report, event_status, now, events)?;
        Ok(self.payment_outcome(id))
    }

    /// A refund asked for by a manager (or the buyer within the refund window): at most what
    /// is captured and not yet refunded, spread over the captures; everything refunded
    /// cancels the registration.
    pub(super) fn decide_refund(
        &mut self,
        req: RefundRequest,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let id = req.registration_id;
        let p = self.payments.get(id).ok_or(DomainError::PaymentNotFound)?;
        let refundable = p.refundable_minor();
        let amount = req.amount_minor.unwrap_or(refundable);
        if refundable == 0 || amount <= 0 || amount > refundable {
            return Err(DomainError::RefundTooLarge {
                refundable_minor: refundable,
            });
        }
        let mut left = amount;
        let parts: Vec<(Capture, i64)> = p
            .captures
            .iter()
            .filter_map(|c| {
                let part = p.refundable_of(c).min(left);
                left -= part;
                (part > 0).then(|| (c.clone(), part))
            })
            .collect();
        for (capture, part) in parts {
            self.request_refund(id, &capture, part, req.reason, now, events);
        }
        let everything = self
            .payments
            .get(id)
            .is_some_and(|p| p.refundable_minor() == 0);
        let live = matches!(
            self.regs.get(&id).map(|r| r.status),
            Some(RegistrationStatus::Held | RegistrationStatus::Confirmed)
        );
        if everything && live {
            self.cancel_paid(id, now, events);
        }
        Ok(self.payment_outcome(id))
    }

    /// Requests refunds of everything refundable of `id`'s payment, one per capture; returns
    /// how many.
    pub(super) fn refund_everything(
        &mut self,
        id: RegistrationId,
        reason: RefundReason,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> usize {
        let Some(p) = self.payments.get(id) else {
            return 0;
        };
        let parts: Vec<(Capture, i64)> = p
            .captures
            .iter()
            .map(|c| (c.clone(), p.refundable_of(c)))
            .filter(|(_, amount)| *amount > 0)
            .collect();
        let n = parts.len();
        for (capture, amount) in parts {
            self.request_refund(id, &capture, amount, reason, now, events);
        }
        n
    }

    /// The relay's answer for a refund; a repeat, or an answer for a refund already
    /// answered, changes nothing.
    pub(super) fn decide_refund_settled(
        &mut self,
        id: RegistrationId,
        refund_id: Uuid,
        state: RefundState,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let p = self.payments.get(id).ok_or(DomainError::PaymentNotFound)?;
        let pending = p
            .refunds
            .iter()
            .any(|r| r.id == refund_id && r.state == RefundState::Requested);
        if pending && state != RefundState::Requested {
            self.emit(
                events,
                PoolEvent::RefundSettled {
                    registration_id: id,
                    refund_id,
                    state,
                    at: now,
                },
            );
        }
        Ok(self.payment_outcome(id))
    }

    pub(super) fn apply_payment_event(&mut self, id: RegistrationId, event: &PoolEvent) {
        // A new attempt replaces the reminder of the last one; a reminder sent is done.
        if matches!(
            event,
            PoolEvent::PaymentStarted { .. } | PoolEvent::PaymentReminded { .. }
        ) {
            self.clear_reminder(id);
            // A payment under way: the buyer needs no link.
            self.clear_payment_due(id);
        }
        match event {
            PoolEvent::PaymentStarted { hold_until, .. } => {
                let reg = self
                    .regs
                    .get_mut(&id)
                    .expect("payment for a held registration");
                let until = hold_until.timestamp_millis();
                if reg.status == RegistrationStatus::Held && until > reg.expires_at_ms {
                    self.expiries.remove(&(reg.expires_at_ms, id));
                    reg.expires_at_ms = until;
                    self.expiries.insert((until, id));
                }
                let (quantity, account, voucher) = (reg.quantity, reg.account, reg.voucher);
                let slot = self.payments.by_registration.remove(&id);
                let mut payment = Payment::applied(slot, event, quantity, account);
                payment.voucher = voucher;
                if let Some(ms) = payment.remind_at_ms {
                    self.reminders.insert((ms, id));
                }
                self.payments.by_registration.insert(id, payment);
            }
            PoolEvent::SeatsRetaken { .. } => self.apply_seats_retaken(id),
            _ => {
                let p = self.payment_mut(id);
                let (quantity, account) = (p.quantity, p.account);
                let slot = self.payments.by_registration.remove(&id);
                let payment = Payment::applied(slot, event, quantity, account);
                self.payments.by_registration.insert(id, payment);
            }
        }
        // Architecture Invariant: refunds decided never exceed the money captured.
        if let Some(p) = self.payments.get(id) {
            let decided: i64 = p
                .refunds
                .iter()
                .filter(|r| r.state != RefundState::Failed)
                .map(|r| r.amount_minor)
                .sum();
            assert!(
                decided <= p.captured_minor(),
                "registration {id}: refunds {decided} exceed captured {}",
                p.captured_minor()
            );
        }
    }

    /// A paid registration whose hold had expired takes its seats again (held, confirmed
    /// next in the same batch).
    fn apply_seats_retaken(&mut self, id: RegistrationId) {
        let p = self.payment_mut(id);
        assert_eq!(p.ended, Some(RegistrationStatus::Expired), "retake of {id}");
        p.ended = None;
        let (quantity, account, total) = (p.quantity, p.account, p.amount_minor);
        let (currency, voucher) = (p.currency.clone(), p.voucher);
        if let Some(index) = voucher {
            self.vouchers.take(index, u32::from(quantity));
        }
        self.hold_seats(
            id,
            super::SeatsHold {
                quantity,
                account,
                expires_at: DateTime::<Utc>::MAX_UTC,
                total_minor: total,
                currency: &currency,
            },
            None,
            voucher,
        );
    }

    /// Forgets a registration's pending reminder (sent, replaced, or its hold ended).
    pub(super) fn clear_reminder(&mut self, id: RegistrationId) {
        if let Some(p) = self.payments.by_registration.get_mut(&id)
            && let Some(ms) = p.remind_at_ms.take()
        {
            self.reminders.remove(&(ms, id));
        }
    }

    /// Reminders due at `now`: each held registration's buyer is told once that its payment
    /// is still due (the message is committed with the event by the actor).
    pub(super) fn decide_reminders(&mut self, now: DateTime<Utc>, events: &mut Vec<PoolEvent>) {
        let now_ms = now.timestamp_millis();
        let due: Vec<RegistrationId> = self
            .reminders
            .iter()
            .take_while(|(ms, _)| *ms <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            let Some(reg) = self.regs.get(&id) else {
                continue;
            };
            self.emit(
                events,
                PoolEvent::PaymentReminded {
                    registration_id: id,
                    deadline: super::millis_to_time(reg.expires_at_ms),
                    at: now,
                },
            );
        }
    }

    fn payment_mut(&mut self, id: RegistrationId) -> &mut Payment {
        self.payments
            .by_registration
            .get_mut(&id)
            .expect("event for a known payment")
    }
}
