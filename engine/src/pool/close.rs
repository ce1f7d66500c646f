//! Closing a canceled event: every live registration canceled (held seats back, issued
//! tickets revoked), every captured payment refunded, and every waiting place removed, a bounded number per turn, so a large
//! pool closes over several actor turns without holding other messages up.

use super::{PoolEvent, PoolOutcome, PoolState, RegEntry};
use crate::error::DomainError;
use crate::ids::RegistrationId;
use crate::model::{EventStatus, RegistrationStatus};
use crate::payment::RefundReason;
use chrono::{DateTime, Utc};

impl PoolState {
    /// Cancels up to `limit` live registrations of a canceled event, in id order, then
    /// removes waiting places up to what is left of `limit`. What is closed stays closed (a
    /// restart repeats it only for what was not made durable).
    pub(super) fn decide_close_canceled(
        &mut self,
        limit: usize,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if event_status != EventStatus::Canceled {
            return Err(DomainError::EventNotOpen(event_status));
        }
        let mut live: Vec<(RegistrationId, RegEntry)> = self
            .regs
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    RegistrationStatus::Held | RegistrationStatus::Confirmed
                )
            })
            .map(|(id, r)| (*id, *r))
            .collect();
        live.sort_by_key(|(id, _)| id.0);
        live.truncate(limit);
        let mut registrations = Vec::with_capacity(live.len());
        for (id, reg) in live {
            self.emit(
                events,
                PoolEvent::RegistrationCanceled {
                    registration_id: id,
                    user_id: reg.user(),
                    at: now,
                },
            );
            registrations.push((id, reg.status == RegistrationStatus::Confirmed));
        }
        // Every payment with money still captured goes back (once per payment: a cascade
        // refund that the provider refused is listed for a manager, not retried forever).
        let mut refunds = 0;
        let owed: Vec<RegistrationId> = self.payments.awaiting_cascade().collect();
        for id in owed {
            if registrations.len() + refunds >= limit {
                break;
            }
            refunds += self.refund_everything(id, RefundReason::EventCanceled, now, events);
        }
        let mut waitlist = Vec::new();
        while registrations.len() + refunds + waitlist.len() < limit
            && let Some(entry) = self.waitlist.first_fitting(|_| true).cloned()
        {
            self.emit(
                events,
                PoolEvent::WaitlistLeft {
                    entry_id: entry.id,
                    at: now,
                },
            );
            waitlist.push(entry);
        }
        Ok(PoolOutcome::Closed {
            registrations,
            waitlist,
        })
    }

    /// Whether anything is left for [`PoolCommand::CloseCanceledEvent`](super::PoolCommand::CloseCanceledEvent) to end.
    pub fn has_live_registrations(&self) -> bool {
        !self.waitlist.is_empty()
            || self.payments.awaiting_cascade().next().is_some()
            || self.regs.values().any(|r| {
                matches!(
                    r.status,
                    RegistrationStatus::Held | RegistrationStatus::Confirmed
                )
            })
    }
}
