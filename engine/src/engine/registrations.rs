//! The facade's registration side: holds (validated against the ticket type before the pool
//! decides), confirmations and cancellations (decided by the registration's pool), and reads of
//! registrations from their read model.

use super::{Engine, vouchers};
use crate::error::{DomainError, EngineError, EngineResult, FieldError};
use crate::ids::{EventId, PoolId, RegistrationId, TicketTypeId, UserId};
use crate::model::{Attendee, EventRecord, RegistrationStatus};
use crate::pool::{HoldCommand, IdempotencyToken, PoolCommand, PoolOutcome};
use crate::ports::{NewHold, Page, RegistrationView};

/// What a hold answered: the registration, and whether it is an earlier one returned for a
/// retried idempotency key (nothing new was booked).
#[derive(Clone, Debug)]
pub struct Hold {
    /// The registration.
    pub view: RegistrationView,
    /// A retry's answer: the registration was made by an earlier request with the same key.
    pub replayed: bool,
}

/// A request to hold seats, as the gateway parsed it.
#[derive(Clone, Debug)]
pub struct HoldRequest {
    pub event_id: EventId,
    pub ticket_type_id: TicketTypeId,
    /// Seats wanted.
    pub quantity: i64,
    /// Attendee name, unvalidated.
    pub attendee_name: String,
    /// Attendee e-mail, unvalidated.
    pub attendee_email: String,
    /// The client's idempotency key and request digest.
    pub idempotency: Option<IdempotencyToken>,
    /// The signed-in account holding the seats.
    pub user_id: Option<UserId>,
    /// A voucher code to redeem, as typed.
    pub voucher: Option<String>,
}

impl Engine {
    /// Holds seats. Returns the registration and whether it is an earlier one returned for a
    /// retried idempotency key.
    pub async fn hold(&self, req: HoldRequest) -> EngineResult<Hold> {
        let h = self.handle(req.event_id).await?;
        // A key seen before (durably, for any ticket type of this event) answers with its
        // registration, or 422 if the request differs. Concurrent first uses of one key are
        // decided by the pool's own map (same ticket type) or the gateway's in-flight marker.
        if let Some(id) = self.idempotent(req.event_id, req.idempotency)? {
            return Ok(Hold {
                view: self.registration(RegistrationId(id))?,
                replayed: true,
            });
        }
        let record = h.shared.record();
        let (hold, pool_id) = self.hold_command(&record, req)?;
        let command = PoolCommand::Hold(Box::new(hold.clone()));
        let outcome = self.call_pool(&h, pool_id, command).await;
        let outcome = self.explain_voucher_refusal(outcome, &hold)?;
        self.held(outcome, hold, pool_id)
    }

    /// Validates a hold request against the event (every problem at once) and makes the
    /// pool's command; with the ticket type's pool.
    fn hold_command(
        &self,
        record: &EventRecord,
        req: HoldRequest,
    ) -> EngineResult<(HoldCommand, PoolId)> {
        let mut errors = Vec::new();
        let ticket_type = record.ticket_type(req.ticket_type_id);
        match ticket_type {
            None => errors.push(FieldError::new(
                "ticket_type_id",
                "no such ticket type in this event",
            )),
            Some(tt)
                if req.quantity < i64::from(tt.min_per_order)
                    || req.quantity > i64::from(tt.max_per_order) =>
            {
                errors.push(FieldError::new(
                    "quantity",
                    format!(
                        "must be between {} and {} (the ticket type's min_per_order and \
                         max_per_order)",
                        tt.min_per_order, tt.max_per_order
                    ),
                ))
            }
            Some(_) => {}
        }
        let voucher = match &req.voucher {
            None => None,
            Some(code) => {
                let code = vouchers::normalize_code(code);
                if code.is_none() {
                    errors.push(FieldError::new("voucher", "not a voucher code"));
                }
                code
            }
        };
        let attendee = Attendee::new(&req.attendee_name, &req.attendee_email).map_err(|mut e| {
            errors.append(&mut e);
            errors.clone()
        });
        let (Some(tt), Ok(attendee), true) = (ticket_type, attendee, errors.is_empty()) else {
            return Err(DomainError::Validation(errors).into());
        };
        record.on_sale(tt, self.ctx.clock.now())?;
        let hold = HoldCommand {
            registration_id: RegistrationId::new(),
            event_id: req.event_id,
            ticket_type_id: tt.id,
            // Checked above against max_per_order, which is at most PER_ORDER_MAX.
            quantity: req.quantity as u16,
            attendee,
            user_id: req.user_id,
            max_per_account: tt.max_per_account,
            ttl: chrono::Duration::seconds(i64::from(record.hold_ttl_secs)),
            idempotency: req.idempotency,
            unit_price_minor: tt.price_minor,
            currency: tt.currency.clone(),
            voucher,
            tax: Some(tt.tax_rule(record)),
            payment_due_after: self.ctx.config.payment_due_after,
        };
        Ok((hold, tt.pool_id))
    }

    /// A voucher code the pool does not know may be one another pool of the event knows: it
    /// is then for other ticket types, and the refusal says so.
    fn explain_voucher_refusal(
        &self,
        outcome: EngineResult<PoolOutcome>,
        hold: &HoldCommand,
    ) -> EngineResult<PoolOutcome> {
        match (outcome, &hold.voucher) {
            (
                Err(EngineError::Domain(DomainError::VoucherNotValid { reason: "unknown" })),
                Some(code),
            ) if self
                .ctx
                .store
                .voucher(hold.event_id, code)
                .map_err(EngineError::Store)?
                .is_some() =>
            {
                Err(DomainError::VoucherNotValid {
                    reason: "wrong_ticket_type",
                }
                .into())
            }
            (outcome, _) => outcome,
        }
    }

    /// The answer to a decided hold: a replay's registration as it is now, or the new one as
    /// the read model got it in the same durable batch.
    fn held(&self, outcome: PoolOutcome, hold: HoldCommand, pool_id: PoolId) -> EngineResult<Hold> {
        match outcome {
            PoolOutcome::Held {
                registration_id,
                replayed: true,
                ..
            } => Ok(Hold {
                view: self.registration(registration_id)?,
                replayed: true,
            }),
            PoolOutcome::Held {
                registration_id,
                status,
                expires_at,
                at,
                replayed: false,
                price,
            } => {
                let view = RegistrationView {
                    status,
                    ..RegistrationView::held(NewHold {
                        id: registration_id,
                        event_id: hold.event_id,
                        pool_id,
                        ticket_type_id: hold.ticket_type_id,
                        quantity: hold.quantity,
                        attendee: hold.attendee,
                        user_id: hold.user_id,
                        expires_at,
                        at,
                        price,
                        waitlist_entry: None,
                    })
                };
                Ok(Hold {
                    view,
                    replayed: false,
                })
            }
            _ => Err(EngineError::Unavailable("unexpected outcome".into())),
        }
    }

    /// Confirms a hold; issues one ticket per seat. Confirming a confirmed registration
    /// returns it unchanged.
    pub async fn confirm(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        let view = match self
            .registration_command(id, PoolCommand::Confirm(id))
            .await
        {
            Err(EngineError::Domain(DomainError::InvalidRegistrationState {
                status: RegistrationStatus::Confirmed,
                ..
            })) => self.registration(id),
            other => other.and_then(|_| self.registration(id)),
        }?;
        // A cancel that came right after the confirm (or after the earlier confirm this one
        // repeats) won: the caller is not handed tickets that are already revoked.
        if view.status != RegistrationStatus::Confirmed {
            return Err(DomainError::InvalidRegistrationState {
                status: view.status,
                action: "confirm",
            }
            .into());
        }
        Ok(view)
    }

    /// Cancels a hold or a confirmed registration; its seats return to the pool.
    pub async fn cancel_registration(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        self.registration_command(id, PoolCommand::Cancel(id))
            .await?;
        self.registration(id)
    }

    async fn registration_command(
        &self,
        id: RegistrationId,
        command: PoolCommand,
    ) -> EngineResult<PoolOutcome> {
        let reg = self.registration(id)?;
        let action = match command {
            PoolCommand::Confirm(_) => "confirm",
            _ => "cancel",
        };
        let result = self.pool_command(reg.event_id, reg.pool_id, command).await;
        match result {
            // The pool forgets terminal registrations; the read model (updated with the same
            // durable batch) knows which terminal status it reached.
            Err(EngineError::Domain(DomainError::RegistrationNotFound)) => {
                let status = self.registration(id)?.status;
                Err(DomainError::InvalidRegistrationState { status, action }.into())
            }
            other => other,
        }
    }

    /// A registration, from its read model.
    pub fn registration(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        self.ctx
            .store
            .registration(id)
            .map_err(EngineError::Store)?
            .ok_or(DomainError::RegistrationNotFound.into())
    }

    /// An event's registrations (of `status`, if given) in id order after `after`; an unknown
    /// event is `EventNotFound`.
    pub fn registrations_by_event(
        &self,
        event: EventId,
        status: Option<RegistrationStatus>,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> EngineResult<Page<RegistrationView, RegistrationId>> {
        self.event(event)?;
        self.ctx
            .store
            .registrations_by_event(event, status, after, limit)
            .map_err(EngineError::Store)
    }

    /// Registrations for an attendee e-mail.
    pub fn registrations_by_email(
        &self,
        email: &str,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> EngineResult<Page<RegistrationView, RegistrationId>> {
        self.ctx
            .store
            .registrations_by_email(&email.trim().to_lowercase(), after, limit)
            .map_err(EngineError::Store)
    }

    /// Registrations held by a signed-in account, by id order.
    pub fn registrations_by_user(
        &self,
        user: UserId,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> EngineResult<Page<RegistrationView, RegistrationId>> {
        self.ctx
            .store
            .registrations_by_user(user, after, limit)
            .map_err(EngineError::Store)
    }
}
