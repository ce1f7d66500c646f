//! Money's vocabulary: who takes a payment, the states a payment goes through, and what a
//! provider reports about it. Decisions on payments are seat decisions and live in the pool
//! (`pool::payment`); this file only names things, so the gateway, the store and the
//! `integrations` adapters share one vocabulary.
//!
//! A payment's money is kept as monotone facts (captured, refunded, disputed), each the
//! largest figure any report gave. Reports then commute: `succeeded` twice, `refunded` before
//! `succeeded`, any order of redeliveries ends in the same state, and the state a reader sees
//! is derived from the facts (`PaymentState::derive`).

use serde::{Deserialize, Serialize};

/// Longest provider event id or provider reference kept (Stripe's are about 30 characters).
pub const PROVIDER_ID_LEN_MAX: usize = 128;

/// Who takes the money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Stripe PaymentIntents.
    Stripe,
    /// PayPal Orders v2.
    Paypal,
    /// A bank transfer with a structured creditor reference.
    BankTransfer,
    /// An event manager's "mark paid" (box office, cash).
    Manual,
}

impl Provider {
    /// Its name in URLs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Paypal => "paypal",
            Provider::BankTransfer => "bank_transfer",
            Provider::Manual => "manual",
        }
    }

    /// The provider named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Provider::Stripe,
            Provider::Paypal,
            Provider::BankTransfer,
            Provider::Manual,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Decided by us; the provider has not answered yet.
    Created,
    /// The provider knows it (an intent, an order, a reference) and waits for the buyer.
    Pending,
    /// The last attempt failed; the buyer may try again.
    Failed,
    /// Canceled before any money moved.
    Canceled,
    /// The money is captured.
    Succeeded,
    /// Part of the captured money went back.
    PartiallyRefunded,
    /// All of the captured money went back.
    Refunded,
    /// The buyer's bank disputes the charge.
    Disputed,
}

impl PaymentState {
    /// Its name in JSON, metrics and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Created => "created",
            PaymentState::Pending => "pending",
            PaymentState::Failed => "failed",
            PaymentState::Canceled => "canceled",
            PaymentState::Succeeded => "succeeded",
            PaymentState::PartiallyRefunded => "partially_refunded",
            PaymentState::Refunded => "refunded",
            PaymentState::Disputed => "disputed",
        }
    }

    /// The state once money has been captured, from the facts: a dispute wins, then the
    /// refunds, then the capture.
    pub fn settled(captured_minor: i64, refunded_minor: i64, disputed: bool) -> Self {
        if disputed {
            PaymentState::Disputed
        } else if refunded_minor > 0 && refunded_minor >= captured_minor {
            PaymentState::Refunded
        } else if refunded_minor > 0 {
            PaymentState::PartiallyRefunded
        } else {
            PaymentState::Succeeded
        }
    }

    /// Whether money has been captured in this state.
    pub fn captured(self) -> bool {
        matches!(
            self,
            PaymentState::Succeeded
                | PaymentState::PartiallyRefunded
                | PaymentState::Refunded
                | PaymentState::Disputed
        )
    }
}

/// What a provider reported about a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Report {
    /// The money was captured: `amount_minor` of `currency`.
    Succeeded { amount_minor: i64, currency: String },
    /// The attempt failed (the buyer may try again).
    Failed {
        /// The provider's reason, shortened.
        reason: String,
    },
    /// The provider canceled it.
    Canceled,
    /// Money went back: `refunded_minor` in all so far (a running total, as Stripe's
    /// `charge.refunded` and PayPal's refund report it), of `captured_minor` captured (`None`:
    /// the report does not say; the capture must then be known already).
    Refunded {
        captured_minor: Option<i64>,
        refunded_minor: i64,
        currency: String,
    },
    /// The buyer's bank opened a dispute.
    Disputed,
}

impl Report {
    /// Its name (metrics, the audit trail).
    pub fn as_str(&self) -> &'static str {
        match self {
            Report::Succeeded { .. } => "succeeded",
            Report::Failed { .. } => "failed",
            Report::Canceled => "canceled",
            Report::Refunded { .. } => "refunded",
            Report::Disputed => "disputed",
        }
    }
}

/// One verified report from a provider, routed to its registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReport {
    pub provider: Provider,
    /// The provider's id of this delivery's event: a redelivery has the same id and is
    /// applied once.
    pub event_id: String,
    /// The provider's id of the payment (intent, order, statement line).
    pub provider_ref: Option<String>,
    pub report: Report,
}

/// Why a report changed nothing (recorded, counted, never a crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ignored {
    /// A capture for another amount or currency than the registration's total.
    AmountMismatch,
    /// `failed` or `canceled` after the money was captured.
    AfterCapture,
    /// A report that adds nothing to what is known (a second `succeeded` with another id).
    NoChange,
}

impl Ignored {
    /// Its name (metrics, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::AmountMismatch => "amount_mismatch",
            Ignored::AfterCapture => "after_capture",
            Ignored::NoChange => "no_change",
        }
    }
}

/// A refund's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Decided and journaled; the relay has not had the provider's answer yet.
    Requested,
    /// The provider refunded it.
    Succeeded,
    /// The provider refused it, after the bounded retries (the money is still captured).
    Failed,
}

impl RefundState {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "requested",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
        }
    }
}

/// Why a refund was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// A manager asked for it.
    Requested,
    /// The payment came after its seats were gone (or the registration was canceled).
    RefundDue,
    /// The event was canceled.
    EventCanceled,
    /// The buyer canceled within the event's refund window.
    BuyerCanceled,
}

impl RefundReason {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::Requested => "requested",
            RefundReason::RefundDue => "refund_due",
            RefundReason::EventCanceled => "event_canceled",
            RefundReason::BuyerCanceled => "buyer_canceled",
        }
    }
}

/// Why an outbound call to a provider failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the request (a 4xx): repeating it will not help.
    #[error("refused by the provider: {0}")]
    Rejected(String),
    /// The provider could not be reached or failed (a timeout, a 5xx, a 429): the call may
    /// be repeated with the same idempotency key.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// A payment to create at a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePayment {
    pub registration_id: crate::ids::RegistrationId,
    pub event_id: crate::ids::EventId,
    pub amount_minor: i64,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// Sent as the provider's idempotency key: the same attempt creates one payment.
    pub idempotency_key: String,
    /// What the buyer's statement and the provider's dashboard show.
    pub description: String,
}

/// What the provider created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedPayment {
    /// Its id at the provider (a PaymentIntent, an order).
    pub provider_ref: String,
    /// What the buyer's browser needs to pay (Stripe's client secret); never stored.
    pub client_secret: Option<String>,
    /// Where the buyer approves the payment (PayPal), if anywhere.
    pub approve_url: Option<String>,
}

/// A refund to make at a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundCall {
    /// Our refund's id: the outbound idempotency key.
    pub refund_id: uuid::Uuid,
    pub registration_id: crate::ids::RegistrationId,
    /// The capture to give back.
    pub provider_ref: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// A payment provider's API, as the engine needs it. Implemented by the `integrations`
/// crate; every call carries an idempotency key, so a repeat after a crash or a timeout
/// does not pay or refund twice.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Creates a payment for the buyer to complete.
    fn create<'a>(
        &'a self,
        req: &'a CreatePayment,
    ) -> crate::values::BoxFuture<'a, Result<CreatedPayment, ProviderError>>;
    /// Cancels a payment nobody completed (a hold that expired).
    fn cancel<'a>(
        &'a self,
        provider_ref: &'a str,
    ) -> crate::values::BoxFuture<'a, Result<(), ProviderError>>;
    /// Refunds (part of) a capture; returns the provider's id of the refund.
    fn refund<'a>(
        &'a self,
        req: &'a RefundCall,
    ) -> crate::values::BoxFuture<'a, Result<String, ProviderError>>;
    /// Captures a payment the buyer approved (PayPal's orders, once the buyer is back);
    /// `idempotency_key` makes a repeat capture nothing twice. Providers whose payments
    /// capture on their own refuse it.
    fn capture<'a>(
        &'a self,
        provider_ref: &'a str,
        idempotency_key: &'a str,
    ) -> crate::values::BoxFuture<'a, Result<Captured, ProviderError>> {
        let _ = (provider_ref, idempotency_key);
        Box::pin(async {
            Err(ProviderError::Rejected(
                "this provider captures on its own".into(),
            ))
        })
    }
}

/// What a capture took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// The provider's id of the capture (what a refund gives back).
    pub capture_ref: String,
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    /// Whether the money is captured (`false`: pending or declined at the provider).
    pub completed: bool,
}

/// The providers this server is configured with.
#[derive(Clone, Default)]
pub struct PaymentProviders {
    by_provider: std::collections::HashMap<Provider, std::sync::Arc<dyn PaymentProvider>>,
}

impl PaymentProviders {
    /// With `adapter` taking `provider`'s payments.
    pub fn with(
        mut self,
        provider: Provider,
        adapter: std::sync::Arc<dyn PaymentProvider>,
    ) -> Self {
        self.by_provider.insert(provider, adapter);
        self
    }

    /// The adapter of `provider`, if configured.
    pub fn get(&self, provider: Provider) -> Option<&std::sync::Arc<dyn PaymentProvider>> {
        self.by_provider.get(&provider)
    }
}

impl std::fmt::Debug for PaymentProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.by_provider.keys().map(|p| p.as_str()))
            .finish()
    }
}

/// A call the provider relay has to make: written by the read model in the batch of the
/// decision, removed when it is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderJob {
    /// Its id: a refund's id (also its outbound idempotency key), or for a cancellation the
    /// registration's.
    pub id: uuid::Uuid,
    pub registration_id: crate::ids::RegistrationId,
    pub event_id: crate::ids::EventId,
    pub pool_id: crate::ids::PoolId,
    pub provider: Provider,
    /// The provider's payment it concerns (the capture to give back, the payment to cancel).
    pub provider_ref: String,
    pub action: JobAction,
}

/// What a provider job does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    /// Refund `amount_minor` (the refund's answer is reported to the pool).
    Refund { amount_minor: i64, currency: String },
    /// Cancel a payment nobody completed before its hold ended (best effort: a payment that
    /// completed meanwhile is reported by its webhook and refunded or seated).
    Cancel,
}
