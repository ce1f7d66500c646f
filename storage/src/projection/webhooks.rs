//! Happenings the organizers' webhook endpoints hear about, decided by the read model in the
//! batch of the happening: for each enabled endpoint of the event (or of its owner) that
//! wants it, a log entry with its message and queued delivery (see `engine::webhooks`).
//! Nothing here runs while no endpoint is enabled.

use super::{Overlay, PoolEvents};
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::ids::{PoolId, RegistrationId, TicketId};
use engine::payment::{RefundState, Report};
use engine::pool::PoolEvent;
use engine::pool::scan::ScanResult;
use engine::ports::{RegistrationView, StoreError};
use engine::webhooks::{CheckInData, Happening, HookData, HookType, PaymentData, RegistrationData};
use fjall::OwnedWriteBatch;

/// What a pool event tells the endpoints, read before it is projected (projecting consumes
/// it) and completed from the read model after.
pub(super) enum Pending {
    Registration(HookType, RegistrationId, DateTime<Utc>),
    Paid(Paid),
    Refunded {
        registration_id: RegistrationId,
        refund_id: uuid::Uuid,
        at: DateTime<Utc>,
    },
    Admitted {
        registration_id: RegistrationId,
        ticket_id: TicketId,
        gate: Option<String>,
        at: DateTime<Utc>,
    },
}

/// A captured payment, as its report tells it.
pub(super) struct Paid {
    registration_id: RegistrationId,
    provider: &'static str,
    provider_ref: Option<String>,
    amount_minor: i64,
    currency: String,
    at: DateTime<Utc>,
}

/// The happening `event` is, if it is one an endpoint can hear about.
pub(super) fn pending(event: &PoolEvent) -> Option<Pending> {
    use HookType as H;
    let registration =
        |kind, id: &RegistrationId, at: &DateTime<Utc>| Some(Pending::Registration(kind, *id, *at));
    match event {
        PoolEvent::SeatsHeld {
            registration_id,
            at,
            ..
        }
        | PoolEvent::WaitlistOffered {
            registration_id,
            at,
            ..
        } => registration(H::RegistrationHeld, registration_id, at),
        PoolEvent::RegistrationConfirmed {
            registration_id,
            at,
            ..
        } => registration(H::RegistrationConfirmed, registration_id, at),
        PoolEvent::RegistrationCanceled {
            registration_id,
            at,
            ..
        } => registration(H::RegistrationCanceled, registration_id, at),
        PoolEvent::HoldExpired {
            registration_id,
            at,
            ..
        } => registration(H::RegistrationExpired, registration_id, at),
        PoolEvent::PaymentReported {
            registration_id,
            report,
            ignored: None,
            at,
        } => match &report.report {
            Report::Succeeded {
                amount_minor,
                currency,
            } => Some(Pending::Paid(Paid {
                registration_id: *registration_id,
                provider: report.provider.as_str(),
                provider_ref: report.provider_ref.clone(),
                amount_minor: *amount_minor,
                currency: currency.clone(),
                at: *at,
            })),
            _ => None,
        },
        PoolEvent::RefundSettled {
            registration_id,
            refund_id,
            state: RefundState::Succeeded,
            at,
        } => Some(Pending::Refunded {
            registration_id: *registration_id,
            refund_id: *refund_id,
            at: *at,
        }),
        PoolEvent::Scanned {
            registration_id,
            ticket_id,
            admission,
            result: ScanResult::Admitted,
            ..
        } => Some(Pending::Admitted {
            registration_id: *registration_id,
            ticket_id: *ticket_id,
            gate: admission.gate.clone(),
            at: admission.at,
        }),
        _ => None,
    }
}

/// A settled refund of `view`'s payment.
fn refunded(
    view: &RegistrationView,
    refund_id: uuid::Uuid,
    at: DateTime<Utc>,
) -> Option<Happening> {
    let payment = view.payment.as_ref()?;
    let refund = payment.refunds.iter().find(|r| r.id == refund_id)?;
    Some(Happening {
        kind: HookType::PaymentRefunded,
        event_id: view.event_id,
        subject: refund_id,
        at,
        data: HookData::Payment(PaymentData {
            registration_id: view.id,
            event_id: view.event_id,
            provider: refund.provider.as_str().to_owned(),
            amount_minor: refund.amount_minor,
            currency: payment.currency.clone(),
            provider_ref: Some(refund.provider_ref.clone()).filter(|r| !r.is_empty()),
            refund_id: Some(refund_id),
        }),
    })
}

fn registration_data(view: &RegistrationView) -> RegistrationData {
    RegistrationData {
        registration_id: view.id,
        event_id: view.event_id,
        ticket_type_id: view.ticket_type_id,
        quantity: view.quantity,
        status: view.status.as_str().to_owned(),
        attendee_name: view.attendee.name.clone(),
        attendee_email: view.attendee.email.clone(),
        user_id: view.user_id,
        expires_at: view.expires_at,
        total_minor: view.price.as_ref().map(|p| p.total_minor),
        currency: view.price.as_ref().map(|p| p.currency.clone()),
        tickets: view.tickets.clone(),
    }
}

impl Overlay {
    /// The happening `pending` describes, completed from the rows this batch changed.
    pub(super) fn pool_hook(
        &mut self,
        db: &Db,
        pools: &PoolEvents,
        pool_id: PoolId,
        pending: Pending,
    ) -> Result<(), StoreError> {
        let happening = match pending {
            Pending::Registration(kind, id, at) => {
                let view = self.registration(db, id)?;
                Some(Happening {
                    kind,
                    event_id: view.event_id,
                    subject: id.0,
                    at,
                    data: HookData::Registration(registration_data(view)),
                })
            }
            Pending::Paid(paid) => Some(self.paid(db, paid)?),
            Pending::Refunded {
                registration_id,
                refund_id,
                at,
            } => refunded(self.registration(db, registration_id)?, refund_id, at),
            Pending::Admitted {
                registration_id,
                ticket_id,
                gate,
                at,
            } => {
                // The scan learned its pool's event.
                pools.0.get(&pool_id).map(|event_id| Happening {
                    kind: HookType::CheckinAdmitted,
                    event_id: *event_id,
                    subject: ticket_id.0,
                    at,
                    data: HookData::CheckIn(CheckInData {
                        ticket_id,
                        registration_id,
                        event_id: *event_id,
                        gate,
                        admitted_at: at,
                    }),
                })
            }
        };
        match happening {
            Some(happening) => self.hook(db, happening),
            None => Ok(()),
        }
    }

    fn paid(&mut self, db: &Db, paid: Paid) -> Result<Happening, StoreError> {
        let Paid {
            registration_id,
            provider,
            provider_ref,
            amount_minor,
            currency,
            at,
        } = paid;
        let event_id = self.registration(db, registration_id)?.event_id;
        Ok(Happening {
            kind: HookType::PaymentSucceeded,
            event_id,
            subject: registration_id.0,
            at,
            data: HookData::Payment(PaymentData {
                registration_id,
                event_id,
                provider: provider.to_owned(),
                amount_minor,
                currency,
                provider_ref,
                refund_id: None,
            }),
        })
    }

    /// Entries of `happening` for every endpoint that wants it.
    pub(super) fn hook(&mut self, db: &Db, happening: Happening) -> Result<(), StoreError> {
        if !db
            .delivery_state
            .channels()
            .contains(engine::notify::Channel::Webhook)
        {
            return Ok(());
        }
        let owner = if db.hooks.organizer_wide() {
            db.event_owner(happening.event_id)?
        } else {
            None
        };
        for endpoint in db.hooks.targets(happening.event_id, owner, happening.kind) {
            self.hooks
                .push(engine::webhooks::entry(endpoint, &happening));
        }
        Ok(())
    }

    /// The batch's webhook entries into the write batch.
    pub(super) fn write_hooks(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
    ) -> Result<(), StoreError> {
        for entry in self.hooks.drain(..) {
            db.stage_hook(batch, &entry)?;
        }
        Ok(())
    }
}
