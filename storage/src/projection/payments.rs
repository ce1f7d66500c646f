//! Payment events in the read models: the payment on its registration's row (the pool's own
//! record, applied with the same function), the provider-reference index, and the provider
//! jobs (refunds to make, payments to cancel) the provider relay works through.

use super::Overlay;
use crate::store::Db;
use engine::ids::RegistrationId;
use engine::model::RegistrationStatus;
use engine::pool::PoolEvent;
use engine::ports::{RegistrationView, StoreError};

impl Overlay {
    /// A payment event on its registration's row, and the indexes and provider jobs it adds.
    pub(super) fn payment_projected(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
        event: &PoolEvent,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, registration_id)?;
        payment_event(view, event);
        match (event, &view.payment) {
            (PoolEvent::PaymentPending { provider_ref, .. }, Some(p)) => {
                let key = crate::keys::payment_ref(p.provider, provider_ref);
                self.payment_refs.push((key, *registration_id.as_bytes()));
            }
            (PoolEvent::RefundRequested { refund, .. }, Some(p)) => {
                let job = engine::payment::ProviderJob {
                    id: refund.id,
                    registration_id,
                    event_id: view.event_id,
                    pool_id: view.pool_id,
                    provider: refund.provider,
                    provider_ref: refund.provider_ref.clone(),
                    action: engine::payment::JobAction::Refund {
                        amount_minor: refund.amount_minor,
                        currency: p.currency.clone(),
                    },
                };
                self.provider_jobs.push((refund.id, Some(job)));
            }
            // A capture's own id (PayPal's refunds name only the capture they refund).
            (
                PoolEvent::PaymentReported {
                    report,
                    ignored: None,
                    ..
                },
                _,
            ) => {
                if let Some(reference) = &report.provider_ref {
                    let key = crate::keys::payment_ref(report.provider, reference);
                    self.payment_refs.push((key, *registration_id.as_bytes()));
                }
            }
            (PoolEvent::RefundSettled { refund_id, .. }, _) => {
                self.provider_jobs.push((*refund_id, None));
            }
            _ => {}
        }
        // Money captured or given back: an invoice or a credit note may be due.
        if matches!(
            event,
            PoolEvent::PaymentReported { .. } | PoolEvent::RefundSettled { .. }
        ) {
            self.invoice_job(db, registration_id)?;
        }
        Ok(())
    }

    /// A hold that ended with a payment the buyer has not completed: the provider's payment
    /// is canceled (a provider job), so it cannot be paid any more. (The row is in the batch:
    /// the caller just read it.)
    pub(super) fn cancel_unpaid(
        &mut self,
        registration_id: RegistrationId,
    ) -> Result<(), StoreError> {
        let Some(view) = self.registrations.get(&registration_id) else {
            return Ok(());
        };
        let Some(p) = &view.payment else {
            return Ok(());
        };
        // A declined card leaves a Stripe intent payable: anything not canceled is canceled.
        let open = p.attempt_state != engine::payment::PaymentState::Canceled;
        if let (true, true, Some(provider_ref)) = (
            open && p.captures.is_empty(),
            p.provider != engine::payment::Provider::Manual,
            &p.provider_ref,
        ) {
            let job = engine::payment::ProviderJob {
                id: registration_id.0,
                registration_id,
                event_id: view.event_id,
                pool_id: view.pool_id,
                provider: p.provider,
                provider_ref: provider_ref.clone(),
                action: engine::payment::JobAction::Cancel,
            };
            self.provider_jobs.push((registration_id.0, Some(job)));
        }
        Ok(())
    }
}

/// A payment event on its registration's row: the payment as the pool keeps it, a hold
/// extended while the buyer pays, a late payment's seats held again.
fn payment_event(view: &mut RegistrationView, event: &PoolEvent) {
    let account = view.user_id.map(|u| (u, view.ticket_type_id));
    match event {
        PoolEvent::PaymentStarted { hold_until, at, .. } => {
            if view.status == RegistrationStatus::Held && *hold_until > view.expires_at {
                view.expires_at = *hold_until;
            }
            view.updated_at = *at;
        }
        PoolEvent::SeatsRetaken { at, .. } => {
            view.status = RegistrationStatus::Held;
            view.updated_at = *at;
            return;
        }
        _ => {}
    }
    view.payment = Some(engine::pool::payment::Payment::applied(
        view.payment.take(),
        event,
        view.quantity,
        account,
    ));
}
