//! What the pool knows of a payment: its captures, refunds and dispute as monotone facts, how
//! a provider's report changes them (`Payment::assess`, pure), and how an event applies to them
//! (`Payment::applied`, which the pool and the read model share).

use super::super::PoolEvent;
use crate::ids::{RegistrationId, TicketTypeId, UserId};
use crate::model::RegistrationStatus;
use crate::payment::{
    Ignored, PaymentState, Provider, ProviderReport, RefundReason, RefundState, Report,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// Provider event ids remembered per payment (a payment sees a handful; beyond this the
/// oldest are forgotten, and the monotone facts still make a redelivery change nothing).
pub const SEEN_MAX: usize = 64;
/// Payment attempts per registration (each extends the hold once).
pub const ATTEMPTS_MAX: u32 = 5;
/// Captures and refunds kept per payment (a double payment is a second capture).
pub const MOVEMENTS_MAX: usize = 16;

/// Money captured under one provider reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    pub provider: Provider,
    /// The provider's id of what captured it (a PaymentIntent, a capture, a statement line).
    pub provider_ref: String,
    pub amount_minor: i64,
    /// Refunded in all, as the provider last reported it.
    pub refunded_reported_minor: i64,
}

/// A refund we decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// Its id; also the outbound idempotency key.
    pub id: Uuid,
    pub provider: Provider,
    /// The capture it gives back.
    pub provider_ref: String,
    pub amount_minor: i64,
    pub reason: RefundReason,
    pub state: RefundState,
}

/// What the pool knows of a registration's payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Who takes the money in the current attempt.
    pub provider: Provider,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// The provider's id of the current attempt, once it has one.
    pub provider_ref: Option<String>,
    /// What is due: the total journaled with the hold.
    pub amount_minor: i64,
    pub currency: String,
    /// The current attempt's state while nothing is captured.
    pub attempt_state: PaymentState,
    pub captures: Vec<Capture>,
    pub refunds: Vec<Refund>,
    pub disputed: bool,
    /// Provider event ids applied (bounded by `SEEN_MAX`).
    pub seen: VecDeque<String>,
    /// The seats it pays for: count, and the account and ticket type they count against.
    pub quantity: u16,
    pub account: Option<(UserId, TicketTypeId)>,
    /// The ticket type's per-account limit (a late payment takes seats again within it).
    pub max_per_account: Option<u16>,
    /// How the registration ended, once the pool forgot it (expired, canceled).
    pub ended: Option<RegistrationStatus>,
    /// Who is told when money goes back on its own (a late payment refunded).
    #[serde(default)]
    pub buyer_email: String,
    /// The voucher the hold redeemed (its index in the pool): a late payment takes its use
    /// again with the seats, or is refunded when none is left. Pool-only.
    #[serde(default)]
    pub voucher: Option<u32>,
    /// When the buyer is to be reminded that it is still due (bank transfers; cleared once
    /// reminded).
    #[serde(default)]
    pub remind_at_ms: Option<i64>,
    /// Who the invoice is made out to, if the buyer gave billing details (the latest attempt
    /// that gave any).
    #[serde(default)]
    pub billing: Option<crate::invoice::document::Party>,
}

/// How a report changes a payment's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::pool) enum Change {
    /// New money captured.
    Captured(Capture),
    /// The attempt failed or was canceled (nothing captured).
    Attempt(PaymentState),
    /// Refunds reported on a capture (and the capture itself, if it was not known yet).
    RefundReported {
        provider: Provider,
        provider_ref: String,
        captured_minor: i64,
        refunded_minor: i64,
    },
    Disputed,
}

impl Payment {
    /// Money captured in all.
    pub fn captured_minor(&self) -> i64 {
        self.captures.iter().map(|c| c.amount_minor).sum()
    }

    /// Money refunded in all: per capture, the larger of what the provider reported and the
    /// refunds of ours it confirmed.
    pub fn refunded_minor(&self) -> i64 {
        self.captures
            .iter()
            .map(|c| {
                c.refunded_reported_minor
                    .max(self.refunds_on(&c.provider_ref, RefundState::Succeeded))
            })
            .sum()
    }

    /// Money refunded of the first capture, the one that paid the total (a second capture's
    /// refund gives back a double payment, not the sale).
    pub fn refunded_of_first_capture(&self) -> i64 {
        self.captures.first().map_or(0, |c| {
            c.refunded_reported_minor
                .max(self.refunds_on(&c.provider_ref, RefundState::Succeeded))
        })
    }

    /// Refunds decided and not yet answered by the provider.
    pub fn refunding_minor(&self) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.state == RefundState::Requested)
            .map(|r| r.amount_minor)
            .sum()
    }

    pub(in crate::pool) fn refunds_on(&self, provider_ref: &str, state: RefundState) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.state == state && r.provider_ref == provider_ref)
            .map(|r| r.amount_minor)
            .sum()
    }

    /// What can still be refunded of one capture: its amount, less what went back (reported
    /// or ours) and what we are refunding.
    pub(in crate::pool) fn refundable_of(&self, c: &Capture) -> i64 {
        let done = c
            .refunded_reported_minor
            .max(self.refunds_on(&c.provider_ref, RefundState::Succeeded));
        (c.amount_minor - done - self.refunds_on(&c.provider_ref, RefundState::Requested)).max(0)
    }

    /// What can still be refunded in all.
    pub fn refundable_minor(&self) -> i64 {
        self.captures.iter().map(|c| self.refundable_of(c)).sum()
    }

    /// Where the payment stands.
    pub fn state(&self) -> PaymentState {
        if self.captures.is_empty() {
            self.attempt_state
        } else {
            PaymentState::settled(self.captured_minor(), self.refunded_minor(), self.disputed)
        }
    }

    /// Whether the registration's total is captured (by its first capture).
    pub fn paid(&self) -> bool {
        self.captures
            .first()
            .is_some_and(|c| c.amount_minor == self.amount_minor)
    }

    /// How `report` changes the facts, or why it changes nothing. Pure: `decide` and `apply`
    /// both ask it, so live state and replayed state agree.
    pub(in crate::pool) fn assess(&self, report: &ProviderReport) -> Result<Change, Ignored> {
        let reference = report.provider_ref.clone().unwrap_or_default();
        let capture = self.captures.iter().find(|c| c.provider_ref == reference);
        match &report.report {
            Report::Succeeded {
                amount_minor,
                currency,
            } => {
                if *amount_minor != self.amount_minor || *currency != self.currency {
                    Err(Ignored::AmountMismatch)
                } else if capture.is_some() || self.captures.len() >= MOVEMENTS_MAX {
                    Err(Ignored::NoChange)
                } else {
                    Ok(Change::Captured(Capture {
                        provider: report.provider,
                        provider_ref: reference,
                        amount_minor: *amount_minor,
                        refunded_reported_minor: 0,
                    }))
                }
            }
            Report::Failed { .. } | Report::Canceled if !self.captures.is_empty() => {
                Err(Ignored::AfterCapture)
            }
            // About an earlier attempt's payment: the current attempt is what counts.
            Report::Failed { .. } | Report::Canceled
                if report.provider_ref.is_some()
                    && self.provider_ref.is_some()
                    && report.provider_ref != self.provider_ref =>
            {
                Err(Ignored::NoChange)
            }
            Report::Failed { .. } => Ok(Change::Attempt(PaymentState::Failed)),
            Report::Canceled => Ok(Change::Attempt(PaymentState::Canceled)),
            Report::Refunded {
                captured_minor,
                refunded_minor,
                currency,
            } => {
                if *currency != self.currency
                    || *refunded_minor < 0
                    || captured_minor.is_some_and(|c| c != self.amount_minor)
                {
                    return Err(Ignored::AmountMismatch);
                }
                let amount = match capture {
                    Some(c) if *refunded_minor <= c.refunded_reported_minor => {
                        return Err(Ignored::NoChange);
                    }
                    Some(c) => c.amount_minor,
                    // A refund reported before its capture: the capture is a fact too.
                    None if self.captures.len() >= MOVEMENTS_MAX => return Err(Ignored::NoChange),
                    None => captured_minor.ok_or(Ignored::NoChange)?,
                };
                if *refunded_minor > amount {
                    return Err(Ignored::AmountMismatch);
                }
                Ok(Change::RefundReported {
                    provider: report.provider,
                    provider_ref: reference,
                    captured_minor: amount,
                    refunded_minor: *refunded_minor,
                })
            }
            // A dispute reported before its capture is kept: the state shows it once the
            // capture is known (disputes exist only for captured money).
            Report::Disputed if self.disputed => Err(Ignored::NoChange),
            Report::Disputed => Ok(Change::Disputed),
        }
    }

    pub(in crate::pool) fn apply_change(&mut self, change: Change) {
        match change {
            Change::Captured(capture) => self.captures.push(capture),
            Change::Attempt(state) => self.attempt_state = state,
            Change::RefundReported {
                provider,
                provider_ref,
                captured_minor,
                refunded_minor,
            } => match self
                .captures
                .iter_mut()
                .find(|c| c.provider_ref == provider_ref)
            {
                Some(c) => c.refunded_reported_minor = refunded_minor,
                None => self.captures.push(Capture {
                    provider,
                    provider_ref,
                    amount_minor: captured_minor,
                    refunded_reported_minor: refunded_minor,
                }),
            },
            Change::Disputed => self.disputed = true,
        }
    }

    /// `slot` after a payment event: the pool and the read model both keep a payment with
    /// it, so what a reader sees is what the pool decided on. A payment starts with the
    /// seats it pays for (`quantity`, `account`). Events that concern the seats only
    /// (`SeatsRetaken`) leave it as it is.
    ///
    /// # Panics
    /// On an event for a payment that was never started (a corrupt journal).
    pub fn applied(
        slot: Option<Payment>,
        event: &PoolEvent,
        quantity: u16,
        account: Option<(UserId, TicketTypeId)>,
    ) -> Payment {
        if let PoolEvent::PaymentStarted {
            provider,
            attempt,
            amount_minor,
            currency,
            max_per_account,
            buyer_email,
            remind_at,
            billing,
            ..
        } = event
        {
            let mut p = slot.unwrap_or_else(|| Payment {
                provider: *provider,
                attempt: *attempt,
                provider_ref: None,
                amount_minor: *amount_minor,
                currency: currency.clone(),
                attempt_state: PaymentState::Created,
                captures: Vec::new(),
                refunds: Vec::new(),
                disputed: false,
                seen: VecDeque::new(),
                quantity,
                account,
                max_per_account: *max_per_account,
                ended: None,
                buyer_email: buyer_email.clone(),
                voucher: None,
                remind_at_ms: None,
                billing: None,
            });
            p.remind_at_ms = remind_at.map(|t| t.timestamp_millis());
            if billing.is_some() {
                p.billing.clone_from(billing);
            }
            p.max_per_account = *max_per_account;
            if !buyer_email.is_empty() {
                p.buyer_email.clone_from(buyer_email);
            }
            p.provider = *provider;
            p.attempt = *attempt;
            p.provider_ref = None;
            p.attempt_state = PaymentState::Created;
            return p;
        }
        let mut p = slot.expect("event for a payment never started");
        match event {
            PoolEvent::PaymentPending { provider_ref, .. } => {
                p.provider_ref = Some(provider_ref.clone());
                p.attempt_state = PaymentState::Pending;
            }
            PoolEvent::PaymentReported { report, .. } => {
                if let Ok(change) = p.assess(report) {
                    p.apply_change(change);
                }
                p.remember(&report.event_id);
            }
            PoolEvent::RefundRequested { refund, .. } => p.refunds.push(refund.clone()),
            PoolEvent::PaymentReminded { .. } => p.remind_at_ms = None,
            PoolEvent::RefundSettled {
                refund_id, state, ..
            } => {
                let refund = p.refunds.iter_mut().find(|r| r.id == *refund_id);
                refund.expect("settled refund is known").state = *state;
            }
            _ => {}
        }
        p
    }

    pub(in crate::pool) fn remember(&mut self, event_id: &str) {
        if self.seen.len() >= SEEN_MAX {
            self.seen.pop_front();
        }
        self.seen.push_back(event_id.to_owned());
    }
}

/// The payments of a pool's registrations, by registration. A payment outlives its
/// registration's hold: a late capture, a refund and a report still find it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payments {
    pub(in crate::pool) by_registration: HashMap<RegistrationId, Payment>,
}

impl Payments {
    /// The payment of `id`, if one was started.
    pub fn get(&self, id: RegistrationId) -> Option<&Payment> {
        self.by_registration.get(&id)
    }

    /// Payments known.
    pub fn len(&self) -> usize {
        self.by_registration.len()
    }

    /// Whether no payment is known.
    pub fn is_empty(&self) -> bool {
        self.by_registration.is_empty()
    }

    /// Refunds decided and not yet answered, with their registration (the relay reads them
    /// from the provider jobs; the model test from here).
    #[cfg(test)]
    pub fn pending_refunds(&self) -> impl Iterator<Item = (RegistrationId, &Refund)> {
        self.by_registration.iter().flat_map(|(id, p)| {
            p.refunds
                .iter()
                .filter(|r| r.state == RefundState::Requested)
                .map(move |r| (*id, r))
        })
    }

    /// Registrations whose payment has money to give back and no event-cancellation refund
    /// yet, in id order (what closing a canceled event refunds).
    pub(in crate::pool) fn awaiting_cascade(&self) -> impl Iterator<Item = RegistrationId> + '_ {
        let mut ids: Vec<RegistrationId> = self
            .by_registration
            .iter()
            .filter(|(_, p)| {
                p.refundable_minor() > 0
                    && !p
                        .refunds
                        .iter()
                        .any(|r| r.reason == RefundReason::EventCanceled)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_by_key(|id| id.0);
        ids.into_iter()
    }

    /// Records that the pool forgot registration `id` in `status` (its payment stays).
    /// Reminders still to send: (when, registration).
    pub(in crate::pool) fn reminders(&self) -> impl Iterator<Item = (i64, RegistrationId)> + '_ {
        self.by_registration
            .iter()
            .filter(|(_, p)| p.ended.is_none())
            .filter_map(|(id, p)| p.remind_at_ms.map(|ms| (ms, *id)))
    }

    pub(in crate::pool) fn registration_ended(
        &mut self,
        id: RegistrationId,
        status: RegistrationStatus,
    ) {
        if let Some(p) = self.by_registration.get_mut(&id) {
            p.ended = Some(status);
        }
    }
}
