//! Bank-statement exceptions: recorded once per statement line in the event's statements
//! stream, listed, and resolved by a manager (see `crate::statement`). Appends are
//! read-decide-append with the expected sequence number, again on a conflict, so two uploads
//! of one statement record each line once and two managers resolve a line once.

use super::Engine;
use crate::error::{DomainError, EngineError, EngineResult, FieldError};
use crate::failure::JournalError;
use crate::ids::{EventId, RegistrationId, StreamId, UserId};
use crate::payment::{Provider, ProviderReport, Report};
use crate::ports::StreamEvent;
use crate::statement::{Action, Exception, Resolution, StatementEvent};

/// A manager's decision on one exception.
#[derive(Clone, Debug)]
pub struct Decision {
    pub action: Action,
    /// The registration to apply it to (default: the one its reference names).
    pub registration_id: Option<RegistrationId>,
    pub note: String,
    pub by: UserId,
}

impl Engine {
    /// An event's statement exceptions, in line-id order.
    pub fn statement_exceptions(&self, event: EventId) -> EngineResult<Vec<Exception>> {
        self.ctx
            .store
            .statement_exceptions(event)
            .map_err(EngineError::Store)
    }

    /// One of an event's statement exceptions, as recorded (and resolved, if it was).
    pub fn statement_exception(
        &self,
        event: EventId,
        line_id: &str,
    ) -> EngineResult<Option<Exception>> {
        self.ctx
            .store
            .statement_exception(event, line_id)
            .map_err(EngineError::Store)
    }

    /// Records the exceptions of an upload that are not recorded yet (by line id); returns
    /// how many were new.
    pub async fn record_exceptions(
        &self,
        event: EventId,
        rows: Vec<Exception>,
    ) -> EngineResult<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        for _ in 0..super::APPEND_ATTEMPTS_MAX {
            let head = self.statements_head(event)?;
            let mut new: Vec<&Exception> = Vec::new();
            for row in &rows {
                let repeated = new.iter().any(|n| n.line_id == row.line_id);
                if !repeated && self.statement_exception(event, &row.line_id)?.is_none() {
                    new.push(row);
                }
            }
            if new.is_empty() {
                return Ok(0);
            }
            let events = new
                .iter()
                .map(|r| StatementEvent::ExceptionRecorded(Box::new((*r).clone())))
                .collect();
            match self.append_statements(event, head + 1, events).await {
                Ok(()) => return Ok(new.len()),
                Err(JournalError::SequenceConflict { .. }) => continue,
                Err(e) => return Err(super::journal_error(e)),
            }
        }
        Err(EngineError::Unavailable("statements busy; retry".into()))
    }

    /// Resolves an open exception. Applying it is claimed first: the resolution (naming the
    /// registration) is journaled, then the registration is paid with a capture keyed by the
    /// statement line, so the line pays at most once even if two managers race (the loser's
    /// append conflicts and finds it resolved). An apply interrupted between the two (a crash,
    /// a pool unavailable) is finished by asking for the same apply again.
    pub async fn resolve_exception(
        &self,
        event: EventId,
        line_id: &str,
        decision: Decision,
    ) -> EngineResult<Exception> {
        for _ in 0..super::APPEND_ATTEMPTS_MAX {
            let head = self.statements_head(event)?;
            let mut row = self
                .statement_exception(event, line_id)?
                .ok_or(DomainError::ExceptionNotFound)?;
            if let Some(done) = &row.resolution {
                let same_apply = done.action == Action::Apply
                    && decision.action == Action::Apply
                    && (decision.registration_id.is_none()
                        || decision.registration_id == done.registration_id);
                return match (same_apply, done.registration_id) {
                    (true, Some(id)) => {
                        self.pay_with_credit(&row, id).await?;
                        Ok(row)
                    }
                    _ => Err(DomainError::AlreadyResolved.into()),
                };
            }
            let (registration_id, to_refund_minor) = match decision.action {
                Action::Apply => {
                    let (id, due) = self.credit_fits(event, &row, &decision)?;
                    (Some(id), row.amount_minor - due)
                }
                Action::Refund => (None, row.amount_minor),
                Action::Ignore => (None, 0),
            };
            let resolution = Resolution {
                action: decision.action,
                registration_id,
                to_refund_minor,
                note: decision.note.clone(),
                by: decision.by,
                at: self.ctx.clock.now(),
            };
            let events = vec![StatementEvent::ExceptionResolved {
                line_id: line_id.to_owned(),
                resolution: resolution.clone(),
            }];
            match self.append_statements(event, head + 1, events).await {
                Ok(()) => {}
                Err(JournalError::SequenceConflict { .. }) => continue,
                Err(e) => return Err(super::journal_error(e)),
            }
            metrics::counter!("regengine_bank_statement_exceptions_resolved_total", "action" => decision.action.as_str())
                .increment(1);
            if let Some(id) = registration_id {
                self.pay_with_credit(&row, id).await?;
            }
            row.resolution = Some(resolution);
            return Ok(row);
        }
        Err(EngineError::Unavailable("statements busy; retry".into()))
    }

    /// The registration a credit may pay (it covers what is due, in its currency), and what is
    /// due.
    fn credit_fits(
        &self,
        event: EventId,
        row: &Exception,
        decision: &Decision,
    ) -> EngineResult<(RegistrationId, i64)> {
        let id = decision
            .registration_id
            .or(row.registration_id)
            .ok_or_else(|| {
                DomainError::Validation(vec![FieldError::new(
                    "registration_id",
                    "the line names no registration: say which one it pays",
                )])
            })?;
        let view = self.registration(id)?;
        if view.event_id != event {
            return Err(DomainError::RegistrationNotFound.into());
        }
        let payment = view.payment.as_ref().ok_or(DomainError::PaymentNotFound)?;
        if payment.provider != Provider::BankTransfer {
            return Err(DomainError::AmountMismatch(
                "the registration is not paying by bank transfer".into(),
            )
            .into());
        }
        if payment.paid() {
            return Err(DomainError::AlreadyPaid.into());
        }
        if row.currency != payment.currency {
            return Err(DomainError::AmountMismatch(format!(
                "the credit is in {}, the registration is due {}",
                row.currency, payment.currency
            ))
            .into());
        }
        if row.amount_minor < payment.amount_minor {
            return Err(DomainError::AmountMismatch(
                "a partial credit cannot pay the registration: refund or ignore it".into(),
            )
            .into());
        }
        Ok((id, payment.amount_minor))
    }

    /// Reports the credit to the registration's pool as a capture of what is due, keyed by the
    /// statement line (a repeat is a duplicate).
    async fn pay_with_credit(&self, row: &Exception, id: RegistrationId) -> EngineResult<()> {
        let view = self.registration(id)?;
        let payment = view.payment.as_ref().ok_or(DomainError::PaymentNotFound)?;
        let report = ProviderReport {
            provider: Provider::BankTransfer,
            event_id: format!("bank:{}", row.line_id),
            provider_ref: payment.provider_ref.clone(),
            report: Report::Succeeded {
                amount_minor: payment.amount_minor,
                currency: payment.currency.clone(),
            },
        };
        let outcome = self.report_payment(id, report).await?;
        if let (false, Some(why)) = (outcome.duplicate, outcome.ignored) {
            tracing::warn!(line = %row.line_id, registration = %id, reason = why.as_str(), "an applied credit was not taken by the payment");
        }
        Ok(())
    }

    fn statements_head(&self, event: EventId) -> EngineResult<u64> {
        self.ctx
            .store
            .statements_head(event)
            .map_err(EngineError::Store)
    }

    async fn append_statements(
        &self,
        event: EventId,
        first: u64,
        events: Vec<StatementEvent>,
    ) -> Result<(), JournalError> {
        let events = events.into_iter().map(StreamEvent::Statements).collect();
        self.append_unfenced(StreamId::Statements(event), first, events)
            .await
    }
}
