//! The facade's waiting-list side: join, leave, read (with the place in line). Offers are
//! made by the pool actor itself, in the turn that frees the seats.

use super::Engine;
use crate::error::{DomainError, EngineError, EngineResult, FieldError};
use crate::ids::{EventId, TicketTypeId, UserId, WaitlistEntryId};
use crate::model::Attendee;
use crate::pool::waitlist::WaitlistEntry;
use crate::pool::{PoolCommand, PoolOutcome};
use crate::ports::{WaitlistStatus, WaitlistView};

/// A request to join a waiting list, as the caller sent it.
#[derive(Clone, Debug)]
pub struct JoinWaitlist {
    pub event_id: EventId,
    /// The sold-out ticket type.
    pub ticket_type_id: TicketTypeId,
    /// Seats wanted.
    pub quantity: i64,
    /// Attendee name, unvalidated.
    pub attendee_name: String,
    /// Attendee e-mail, unvalidated (offers are sent there).
    pub attendee_email: String,
    /// The signed-in account.
    pub user_id: UserId,
}

impl Engine {
    /// Joins a sold-out ticket type's waiting list; answers the place and its position.
    pub async fn join_waitlist(&self, req: JoinWaitlist) -> EngineResult<(WaitlistView, usize)> {
        let h = self.handle(req.event_id).await?;
        let record = h.shared.record();
        let tt = record
            .ticket_type(req.ticket_type_id)
            .ok_or_else(|| {
                DomainError::Validation(vec![FieldError::new(
                    "ticket_type_id",
                    "no such ticket type in this event",
                )])
            })?
            .clone();
        let mut errors = Vec::new();
        if req.quantity < i64::from(tt.min_per_order) || req.quantity > i64::from(tt.max_per_order)
        {
            errors.push(FieldError::new(
                "quantity",
                format!(
                    "must be between {} and {} (the ticket type's order limits)",
                    tt.min_per_order, tt.max_per_order
                ),
            ));
        }
        let attendee = Attendee::new(&req.attendee_name, &req.attendee_email).map_err(|mut e| {
            errors.append(&mut e);
        });
        let (Ok(attendee), true) = (attendee, errors.is_empty()) else {
            return Err(DomainError::Validation(errors).into());
        };
        record.on_sale(&tt, self.ctx.clock.now())?;
        let entry = WaitlistEntry {
            id: WaitlistEntryId::new(),
            user_id: req.user_id,
            ticket_type_id: tt.id,
            // Checked above against max_per_order (at most PER_ORDER_MAX).
            quantity: req.quantity as u16,
            attendee,
            unit_price_minor: tt.price_minor,
            currency: tt.currency.clone(),
            max_per_account: tt.max_per_account,
            offer_ttl_secs: self.ctx.config.waitlist_offer_secs,
            joined_at: self.ctx.clock.now(),
            sales_end: tt.sales_end,
            tax: Some(tt.tax_rule(&record)),
        };
        let outcome = self
            .pool_command(
                req.event_id,
                tt.pool_id,
                PoolCommand::JoinWaitlist(Box::new(entry)),
            )
            .await?;
        let PoolOutcome::Waitlisted { entry_id, position } = outcome else {
            return Err(EngineError::Unavailable("unexpected outcome".into()));
        };
        Ok((self.waitlist_view(entry_id)?, position))
    }

    /// Leaves the waiting list (only the place's account may).
    pub async fn leave_waitlist(
        &self,
        id: WaitlistEntryId,
        user_id: UserId,
    ) -> EngineResult<WaitlistView> {
        let view = self.waitlist_view(id)?;
        if view.status != WaitlistStatus::Waiting {
            return Err(DomainError::WaitlistEntryNotFound.into());
        }
        self.pool_command(
            view.event_id,
            view.pool_id,
            PoolCommand::LeaveWaitlist {
                entry_id: id,
                user_id,
            },
        )
        .await?;
        self.waitlist_view(id)
    }

    /// A waiting-list place, with its position while it waits (1 = next).
    pub async fn waitlist_entry(
        &self,
        id: WaitlistEntryId,
    ) -> EngineResult<(WaitlistView, Option<usize>)> {
        let view = self.waitlist_view(id)?;
        if view.status != WaitlistStatus::Waiting {
            return Ok((view, None));
        }
        match self
            .pool_command(
                view.event_id,
                view.pool_id,
                PoolCommand::WaitlistPosition(id),
            )
            .await
        {
            Ok(PoolOutcome::Waitlisted { position, .. }) => Ok((view, Some(position))),
            // Offered or left since the read: read again.
            Err(EngineError::Domain(DomainError::WaitlistEntryNotFound)) => {
                Ok((self.waitlist_view(id)?, None))
            }
            Err(e) => Err(e),
            Ok(_) => Err(EngineError::Unavailable("unexpected outcome".into())),
        }
    }

    /// A waiting-list place from its read model.
    pub fn waitlist_view(&self, id: WaitlistEntryId) -> EngineResult<WaitlistView> {
        self.ctx
            .store
            .waitlist_entry(id)
            .map_err(EngineError::Store)?
            .ok_or(DomainError::WaitlistEntryNotFound.into())
    }
}
