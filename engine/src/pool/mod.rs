//! The pool: a quota of seats and every decision on it, as a sans-IO state machine.
//!
//! `PoolState::execute(command, now)` decides, returns the domain events it produced and
//! applies them with the same `apply` that replays the journal, so live state and state
//! rebuilt from the journal cannot drift apart. The `PoolActor` is a thin shell around it.
//!
//! This file only dispatches. One file per feature holds its commands' decisions and its
//! events' `apply` arms: `sale` (hold, confirm, cancel, expiry), `scan` (check-in), `voucher`,
//! `waitlist`, `close` (closing a canceled event); `types` holds the commands, events,
//! outcomes and the state's fields, `state` the queries and the snapshot's derived indexes.
//!
//! Architecture Invariant: after every applied event, `held + confirmed + reserved <=
//! capacity`, where `reserved` are the seats set aside by vouchers (asserted in `apply`,
//! proven by the property test in `tests.rs`).

use crate::error::DomainError;
use crate::model::EventStatus;
use chrono::{DateTime, Utc};

mod close;
pub mod payment;
mod sale;
pub mod scan;
mod state;
#[cfg(test)]
mod tests;
mod types;
pub mod voucher;
pub mod waitlist;

pub use crate::values::{GATE_LEN_MAX, IdempotencyToken};
pub(crate) use sale::SeatsHold;
use types::RegEntry;
pub use types::{
    Admission, HoldCommand, PoolCommand, PoolCounts, PoolEvent, PoolOutcome, PoolState, ScanCommand,
};

impl PoolState {
    /// Decides `command` at time `now` for an event in status `event_status`, applies the
    /// events it produced, and returns them with the outcome. Events are returned even when
    /// the outcome is a refusal (a confirm of an expired hold journals the expiry).
    pub fn execute(
        &mut self,
        command: PoolCommand,
        event_status: EventStatus,
        now: DateTime<Utc>,
    ) -> (Vec<PoolEvent>, Result<PoolOutcome, DomainError>) {
        // The durable format keeps milliseconds: decide at that precision so what a caller is
        // told equals what a reader later reads.
        let now = millis_to_time(now.timestamp_millis());
        let mut events = Vec::new();
        let outcome = self.decide(command, event_status, now, &mut events);
        // Seats that came back (expiry, cancellation, a reservation's end) go to the waiting
        // list in this same turn, before anyone else can take them.
        if event_status == EventStatus::Published {
            self.offer_freed(now, &mut events);
        }
        (events, outcome)
    }

    fn decide(
        &mut self,
        command: PoolCommand,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        match command {
            PoolCommand::Hold(cmd) => self.decide_hold(*cmd, event_status, now, events),
            PoolCommand::Confirm(id) => self.decide_confirm(id, event_status, now, events),
            PoolCommand::Cancel(id) => self.decide_cancel(id, now, events),
            PoolCommand::Scan(cmd) => self.decide_scan(*cmd, event_status, now, events),
            PoolCommand::CreateVoucher(def) => self.decide_create_voucher(*def, now, events),
            PoolCommand::DeactivateVoucher(code) => {
                self.decide_deactivate_voucher(&code, now, events)
            }
            PoolCommand::JoinWaitlist(entry) => {
                self.decide_join_waitlist(*entry, event_status, now, events)
            }
            PoolCommand::LeaveWaitlist { entry_id, user_id } => {
                self.decide_leave_waitlist(entry_id, user_id, now, events)
            }
            PoolCommand::WaitlistPosition(entry_id) => self.waitlist_position(entry_id),
            PoolCommand::ExpireDue => Ok(PoolOutcome::Expired(self.decide_expire_due(now, events))),
            PoolCommand::CloseCanceledEvent(limit) => {
                self.decide_close_canceled(limit, event_status, now, events)
            }
            PoolCommand::StartPayment(cmd) => {
                self.decide_start_payment(*cmd, event_status, now, events)
            }
            PoolCommand::PaymentPending {
                registration_id,
                attempt,
                provider_ref,
            } => self.decide_payment_pending(registration_id, attempt, provider_ref, now, events),
            PoolCommand::Report(id, report) => {
                self.decide_report(id, *report, event_status, now, events)
            }
            PoolCommand::MarkPaid {
                registration_id,
                event_id,
                reference,
            } => self.decide_mark_paid(
                registration_id,
                event_id,
                reference,
                event_status,
                now,
                events,
            ),
            PoolCommand::Refund(req) => self.decide_refund(req, now, events),
            PoolCommand::RefundSettled {
                registration_id,
                refund_id,
                state,
            } => self.decide_refund_settled(registration_id, refund_id, state, now, events),
        }
    }

    /// Applies `event` now and records it for the journal.
    fn emit(&mut self, events: &mut Vec<PoolEvent>, event: PoolEvent) {
        self.apply(self.seq + 1, &event);
        events.push(event);
    }

    /// Applies one event with sequence number `seq`, live or on replay.
    ///
    /// # Panics
    /// On an event that the state cannot have produced (a bug or a corrupt journal): the
    /// actor fails and its supervisor restarts it from durable state.
    pub fn apply(&mut self, seq: u64, event: &PoolEvent) {
        assert_eq!(
            seq,
            self.seq + 1,
            "pool {} applies seq {seq} after {}",
            self.pool_id,
            self.seq
        );
        match event {
            PoolEvent::SeatsHeld { .. } => self.apply_seats_held(event),
            PoolEvent::HoldExpired {
                registration_id, ..
            } => self.apply_hold_expired(*registration_id),
            PoolEvent::RegistrationConfirmed {
                registration_id,
                tickets,
                ..
            } => self.apply_confirmed(*registration_id, tickets),
            PoolEvent::RegistrationCanceled {
                registration_id, ..
            } => self.apply_canceled(*registration_id),
            PoolEvent::Scanned { .. } => self.apply_scanned(event),
            PoolEvent::AttendeeCheckedIn {
                registration_id,
                ticket_index,
                admission,
                ..
            } => self.apply_checked_in(*registration_id, *ticket_index, admission),
            PoolEvent::VoucherCreated { voucher, .. } => self.apply_voucher_created(voucher),
            PoolEvent::VoucherDeactivated { code, .. } => self.apply_voucher_deactivated(code),
            PoolEvent::WaitlistJoined { entry, .. } => self.apply_waitlist_joined(entry),
            PoolEvent::WaitlistLeft { entry_id, .. } => self.apply_waitlist_left(*entry_id),
            PoolEvent::WaitlistOffered { .. } => self.apply_waitlist_offered(event),
            PoolEvent::PaymentDue {
                registration_id, ..
            } => self.clear_payment_due(*registration_id),
            PoolEvent::PaymentStarted { .. }
            | PoolEvent::PaymentReminded { .. }
            | PoolEvent::PaymentPending { .. }
            | PoolEvent::PaymentReported { .. }
            | PoolEvent::SeatsRetaken { .. }
            | PoolEvent::RefundRequested { .. }
            | PoolEvent::RefundSettled { .. } => {
                let id = event.payment_registration().expect("a payment event");
                self.apply_payment_event(id, event);
            }
        }
        self.seq = seq;
        // Architecture Invariant: no oversell (seats set aside by vouchers included).
        assert!(
            self.held + self.confirmed + self.vouchers.reserved() <= self.capacity,
            "pool {} oversold",
            self.pool_id
        );
    }
}

fn millis_to_time(ms: i64) -> DateTime<Utc> {
    // Every stored deadline came from a valid DateTime, so it converts back.
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
