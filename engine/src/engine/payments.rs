//! The facade's payment side: starting a payment (the pool records it and extends the hold,
//! then the provider creates it outside any actor), a provider's verified report, a
//! manager's mark-paid and refunds. Every decision is the registration's pool's.

use super::Engine;
use crate::error::{DomainError, EngineError, EngineResult};
use crate::ids::RegistrationId;
use crate::payment::{CreatePayment, Provider, ProviderError, ProviderReport, RefundReason};
use crate::pool::payment::{Payment, RefundRequest, StartPayment};
use crate::pool::{PoolCommand, PoolOutcome};
use crate::ports::RegistrationView;
use chrono::{DateTime, Utc};

/// A payment as the buyer needs it to pay.
#[derive(Clone, Debug)]
pub struct PaymentStart {
    /// The pool's record of it.
    pub payment: Payment,
    /// What the buyer's browser completes the payment with (never stored).
    pub client_secret: Option<String>,
    /// Where the buyer approves it, for providers that redirect.
    pub approve_url: Option<String>,
    /// The hold's deadline, extended while the buyer pays.
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// A bank transfer's payee (the event's, or the server's).
    pub bank: Option<crate::model::BankTransferSettings>,
}

/// What a provider's report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportOutcome {
    /// A redelivery of a report already applied.
    pub duplicate: bool,
    /// Why it changed nothing, if it did not.
    pub ignored: Option<crate::payment::Ignored>,
    /// The payment's state after it.
    pub state: crate::payment::PaymentState,
}

impl Engine {
    /// Starts paying for a held registration with `provider`: the pool records the attempt
    /// and extends the hold, then the provider creates the payment (with the attempt as its
    /// idempotency key, so a retry after a failure creates nothing twice).
    pub async fn start_payment(
        &self,
        id: RegistrationId,
        provider: Provider,
        billing: Option<crate::invoice::document::Party>,
    ) -> EngineResult<PaymentStart> {
        if let Some(b) = &billing {
            b.check_billing("billing")?;
        }
        let adapter = self
            .ctx
            .payments
            .get(provider)
            .cloned()
            .ok_or(DomainError::ProviderNotConfigured(provider.as_str()))?;
        let view = self.registration(id)?;
        let price = view.price.clone().ok_or(DomainError::NothingToPay)?;
        let record = self.event(view.event_id)?;
        let max_per_account = record
            .ticket_type(view.ticket_type_id)
            .and_then(|t| t.max_per_account);
        let bank = self.bank_payee(provider, &record)?;
        let (hold_until, remind_at) = self.payment_window(bank.as_ref());
        let start = StartPayment {
            registration_id: id,
            event_id: view.event_id,
            provider,
            hold_until,
            remind_at,
            billing,
            currency: price.currency.clone(),
            max_per_account,
            buyer_email: view.attendee.email.clone(),
        };
        let command = PoolCommand::StartPayment(Box::new(start));
        let (payment, _) = self.payment_command(&view, command).await?;
        let created = adapter
            .create(&CreatePayment {
                registration_id: id,
                event_id: view.event_id,
                amount_minor: payment.amount_minor,
                currency: payment.currency.clone(),
                idempotency_key: format!("{id}-{}", payment.attempt),
                description: format!("{} × {}", view.quantity, record.title),
            })
            .await
            .map_err(|e| {
                metrics::counter!("regengine_payments_total", "provider" => provider.as_str(), "result" => "create_failed")
                    .increment(1);
                tracing::warn!(registration = %id, provider = provider.as_str(), error = %e, "payment creation failed");
                match e {
                    ProviderError::Rejected(m) | ProviderError::Unavailable(m) => {
                        EngineError::Unavailable(format!("payment provider: {m}"))
                    }
                }
            })?;
        let command = PoolCommand::PaymentPending {
            registration_id: id,
            attempt: payment.attempt,
            provider_ref: created.provider_ref.clone(),
        };
        let (payment, hold_expires_at) = self.payment_command(&view, command).await?;
        metrics::counter!("regengine_payments_total", "provider" => provider.as_str(), "result" => "started")
            .increment(1);
        Ok(PaymentStart {
            payment,
            client_secret: created.client_secret,
            approve_url: created.approve_url,
            hold_expires_at,
            bank,
        })
    }

    /// A bank transfer's payee: the event's, or the server's; with neither there is none.
    fn bank_payee(
        &self,
        provider: Provider,
        record: &crate::model::EventRecord,
    ) -> EngineResult<Option<crate::model::BankTransferSettings>> {
        if provider != Provider::BankTransfer {
            return Ok(None);
        }
        let payee = record
            .bank_transfer
            .clone()
            .or_else(|| self.ctx.config.bank_transfer.clone())
            .ok_or(DomainError::ProviderNotConfigured(provider.as_str()))?;
        Ok(Some(payee))
    }

    /// How long a payment keeps the seats (a transfer: until its deadline), and when a
    /// transfer's buyer is reminded (`bank_reminder_before` the deadline; the pool drops a
    /// reminder time already past).
    fn payment_window(
        &self,
        bank: Option<&crate::model::BankTransferSettings>,
    ) -> (
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let extension = i64::from(
            bank.map_or(self.ctx.config.payment_hold_extension_secs, |b| {
                b.deadline_hours * 3600
            }),
        );
        let hold_until = self.ctx.clock.now() + chrono::Duration::seconds(extension);
        let remind_at = match (bank, self.ctx.config.bank_reminder_before) {
            (Some(_), Some(lead)) => chrono::Duration::from_std(lead)
                .ok()
                .map(|lead| hold_until - lead),
            _ => None,
        };
        (hold_until, remind_at)
    }

    /// Applies a provider's verified report to its registration's payment (once per
    /// provider event id).
    pub async fn report_payment(
        &self,
        id: RegistrationId,
        report: ProviderReport,
    ) -> EngineResult<ReportOutcome> {
        let view = self.registration(id)?;
        let provider = report.provider.as_str();
        let kind = report.report.as_str();
        let command = PoolCommand::Report(id, Box::new(report));
        match self
            .pool_command(view.event_id, view.pool_id, command)
            .await?
        {
            PoolOutcome::Reported {
                duplicate,
                ignored,
                state,
            } => {
                let result = match (duplicate, ignored) {
                    (true, _) => "duplicate",
                    (false, Some(i)) => i.as_str(),
                    (false, None) => "applied",
                };
                metrics::counter!("regengine_payment_reports_total", "provider" => provider, "report" => kind, "result" => result)
                    .increment(1);
                self.wake_invoices();
                // A late or second capture may have decided a refund.
                if !duplicate {
                    self.wake_refunds();
                }
                Ok(ReportOutcome {
                    duplicate,
                    ignored,
                    state,
                })
            }
            _ => Err(EngineError::Internal("unexpected outcome".into())),
        }
    }

    /// Captures an approved payment (PayPal: the buyer is back from approving the order) and
    /// reports the capture to the pool, which confirms the registration. A repeat after the
    /// capture answers the registration as it is.
    pub async fn capture_payment(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        let view = self.registration(id)?;
        let payment = view.payment.clone().ok_or(DomainError::PaymentNotFound)?;
        if payment.paid() {
            return Ok(view);
        }
        // Capturing is ours to decide: never for a hold that ended or an event off sale (the
        // money would only go back, and the fees with it).
        if view.status != crate::model::RegistrationStatus::Held {
            return Err(DomainError::InvalidRegistrationState {
                status: view.status,
                action: "capture",
            }
            .into());
        }
        let status = self.event(view.event_id)?.status;
        if status != crate::model::EventStatus::Published {
            return Err(DomainError::EventNotOpen(status).into());
        }
        let order = payment
            .provider_ref
            .clone()
            .ok_or(DomainError::PaymentNotFound)?;
        let adapter = self.ctx.payments.get(payment.provider).cloned().ok_or(
            DomainError::ProviderNotConfigured(payment.provider.as_str()),
        )?;
        let provider = payment.provider.as_str();
        let captured = adapter
            .capture(&order, &format!("capture-{order}"))
            .await
            .map_err(|e| match e {
                ProviderError::Rejected(why) => {
                    tracing::info!(registration = %id, provider, %why, "capture refused");
                    EngineError::Domain(DomainError::PaymentNotApproved)
                }
                ProviderError::Unavailable(why) => {
                    EngineError::Unavailable(format!("payment provider: {why}"))
                }
            })?;
        if captured.completed {
            let report = ProviderReport {
                provider: payment.provider,
                event_id: format!("capture:{}", captured.capture_ref),
                provider_ref: Some(captured.capture_ref),
                report: crate::payment::Report::Succeeded {
                    amount_minor: captured.amount_minor,
                    currency: captured.currency,
                },
            };
            self.report_payment(id, report).await?;
        }
        self.registration(id)
    }

    /// A manager's "mark paid" (box office, cash): records the total as captured and issues
    /// the tickets. `reference` names the action, so a retry changes nothing.
    pub async fn mark_paid(
        &self,
        id: RegistrationId,
        reference: String,
    ) -> EngineResult<RegistrationView> {
        let view = self.registration(id)?;
        let command = PoolCommand::MarkPaid {
            registration_id: id,
            event_id: view.event_id,
            reference,
        };
        self.payment_command(&view, command).await?;
        metrics::counter!("regengine_payments_total", "provider" => "manual", "result" => "succeeded")
            .increment(1);
        self.wake_invoices();
        self.registration(id)
    }

    /// Refunds `amount_minor` (everything refundable if `None`) of a registration's payment;
    /// refunding everything cancels the registration. The provider is called by the refund
    /// relay.
    pub async fn refund(
        &self,
        id: RegistrationId,
        amount_minor: Option<i64>,
        reason: RefundReason,
    ) -> EngineResult<Payment> {
        let view = self.registration(id)?;
        let command = PoolCommand::Refund(RefundRequest {
            registration_id: id,
            amount_minor,
            reason,
        });
        let (payment, _) = self.payment_command(&view, command).await?;
        self.wake_refunds();
        Ok(payment)
    }

    /// The registration whose payment `provider` knows as `reference`.
    pub fn registration_by_payment_ref(
        &self,
        provider: Provider,
        reference: &str,
    ) -> EngineResult<Option<RegistrationId>> {
        self.ctx
            .store
            .registration_by_payment_ref(provider, reference)
            .map_err(EngineError::Store)
    }

    /// A buyer cancels their paid registration: within the event's refund window everything
    /// captured is refunded, which cancels it (tickets revoked); outside it (or without one)
    /// the cancellation is refused and nothing changes.
    pub async fn cancel_paid_by_buyer(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        let view = self.registration(id)?;
        let record = self.event(view.event_id)?;
        let open = record
            .refund_until
            .is_some_and(|until| self.ctx.clock.now() < until);
        if !open {
            return Err(DomainError::RefundWindowClosed {
                until: record.refund_until,
            }
            .into());
        }
        self.refund(id, None, RefundReason::BuyerCanceled).await?;
        self.registration(id)
    }

    async fn payment_command(
        &self,
        view: &RegistrationView,
        command: PoolCommand,
    ) -> EngineResult<(Payment, Option<DateTime<Utc>>)> {
        let outcome = self
            .pool_command(view.event_id, view.pool_id, command)
            .await;
        match outcome {
            Ok(PoolOutcome::Payment {
                payment,
                expires_at,
            }) => Ok((*payment, expires_at)),
            // The pool forgets ended registrations; the read model knows how they ended.
            Err(EngineError::Domain(DomainError::RegistrationNotFound)) => {
                let status = self.registration(view.id)?.status;
                Err(DomainError::InvalidRegistrationState {
                    status,
                    action: "pay",
                }
                .into())
            }
            Ok(_) => Err(EngineError::Internal("unexpected outcome".into())),
            Err(e) => Err(e),
        }
    }
}
