//! A payment as the API shows it (in a registration, a listing, a refund's answer): a leaf
//! module, so the registration routes can show payments without depending on the payment
//! routes.

use engine::pool::payment::Payment;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A refund of a registration's payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundDto {
    id: Uuid,
    /// Minor units.
    amount_minor: i64,
    /// requested, succeeded or failed.
    state: String,
    /// requested (by a manager), refund_due (paid after the seats were gone, or twice),
    /// event_canceled, buyer_canceled (within the event's refund window).
    reason: String,
}

/// Money captured under one provider reference.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptureDto {
    provider: String,
    /// The provider's id of what captured it (a PaymentIntent, a PayPal capture).
    provider_ref: String,
    amount_minor: i64,
    /// Refunded, as the provider last reported it.
    refunded_reported_minor: i64,
}

/// A registration's payment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::payment))]
pub struct PaymentDto {
    /// stripe, paypal, bank_transfer or manual.
    provider: String,
    /// created, pending, failed, canceled, succeeded, partially_refunded, refunded, disputed.
    state: String,
    /// The attempt, from 1.
    attempt: u32,
    /// What is due, in minor units of `currency`.
    amount_minor: i64,
    currency: String,
    /// The provider's id of the current attempt (a PaymentIntent, a PayPal order).
    provider_ref: Option<String>,
    /// The money captured, per provider capture (a second one is a double payment, refunded).
    captures: Vec<CaptureDto>,
    captured_minor: i64,
    refunded_minor: i64,
    /// Refunds decided and not yet answered by the provider.
    refunding_minor: i64,
    disputed: bool,
    refunds: Vec<RefundDto>,
}

impl From<&Payment> for PaymentDto {
    fn from(p: &Payment) -> Self {
        Self {
            provider: p.provider.as_str().into(),
            state: p.state().as_str().into(),
            attempt: p.attempt,
            amount_minor: p.amount_minor,
            currency: p.currency.clone(),
            provider_ref: p.provider_ref.clone(),
            captures: p
                .captures
                .iter()
                .map(|c| CaptureDto {
                    provider: c.provider.as_str().into(),
                    provider_ref: c.provider_ref.clone(),
                    amount_minor: c.amount_minor,
                    refunded_reported_minor: c.refunded_reported_minor,
                })
                .collect(),
            captured_minor: p.captured_minor(),
            refunded_minor: p.refunded_minor(),
            refunding_minor: p.refunding_minor(),
            disputed: p.disputed,
            refunds: p
                .refunds
                .iter()
                .map(|r| RefundDto {
                    id: r.id,
                    amount_minor: r.amount_minor,
                    state: r.state.as_str().into(),
                    reason: r.reason.as_str().into(),
                })
                .collect(),
        }
    }
}
