//! The payment link of an unpaid hold: a priced hold is journaled with the time its buyer is
//! due the link (`SeatsHeld::payment_due_at`); the pool keeps those times with its expiries
//! and, when one comes while the hold is still held with no payment started, emits
//! `PaymentDue` (the read model writes the message with it: once, across restarts). A
//! confirmation, an end of the hold or a payment started first forgets it.

use super::super::{PoolEvent, PoolState};
use crate::ids::RegistrationId;
use crate::model::RegistrationStatus;
use chrono::{DateTime, Utc};

/// When a hold made `at` and held until `expires_at` is due its payment link: `after` later,
/// but no later than halfway through the hold (so half of it is left to pay).
pub fn payment_due_at(
    at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    after: std::time::Duration,
) -> DateTime<Utc> {
    let half = (expires_at - at) / 2;
    let after = chrono::Duration::from_std(after).unwrap_or(half);
    let due = at + after.min(half).max(chrono::Duration::zero());
    // Millisecond precision: the durable format stores milliseconds.
    super::super::millis_to_time(due.timestamp_millis())
}

impl PoolState {
    /// Remembers when registration `id` (just held) is due its payment link.
    pub(in crate::pool) fn arm_payment_due(&mut self, id: RegistrationId, due: DateTime<Utc>) {
        let ms = due.timestamp_millis();
        if let Some(reg) = self.regs.get_mut(&id) {
            reg.payment_due_at_ms = Some(ms);
            self.payment_dues.insert((ms, id));
        }
    }

    /// Forgets registration `id`'s payment link (sent, paid, being paid, or the hold ended).
    pub(in crate::pool) fn clear_payment_due(&mut self, id: RegistrationId) {
        if let Some(reg) = self.regs.get_mut(&id)
            && let Some(ms) = reg.payment_due_at_ms.take()
        {
            self.payment_dues.remove(&(ms, id));
        }
    }

    /// The payment links due at `now`: each still-held registration with no payment started
    /// gets `PaymentDue` (the others were forgotten when they were paid or ended).
    pub(in crate::pool) fn decide_payment_dues(
        &mut self,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) {
        let now_ms = now.timestamp_millis();
        let due: Vec<(i64, RegistrationId)> = self
            .payment_dues
            .iter()
            .take_while(|(ms, _)| *ms <= now_ms)
            .copied()
            .collect();
        for (ms, id) in due {
            let held = self
                .regs
                .get(&id)
                .is_some_and(|r| r.status == RegistrationStatus::Held);
            if held && self.payments.get(id).is_none() {
                self.emit(
                    events,
                    PoolEvent::PaymentDue {
                        registration_id: id,
                        at: now,
                    },
                );
            } else {
                // Unreachable: confirming, ending or paying forgets the link as it applies.
                // Dropped without an event all the same, so the timer cannot spin on it.
                debug_assert!(false, "payment link of {id} left behind");
                self.payment_dues.remove(&(ms, id));
            }
        }
    }

    /// The registrations' payment links still due (rebuilt after a snapshot is decoded).
    pub(in crate::pool) fn payment_dues_of_regs(
        &self,
    ) -> std::collections::BTreeSet<(i64, RegistrationId)> {
        self.regs
            .iter()
            .filter_map(|(id, r)| Some((r.payment_due_at_ms?, *id)))
            .collect()
    }
}
