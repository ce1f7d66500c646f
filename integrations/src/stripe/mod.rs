//! Stripe: webhook signatures (`signature.rs`); PaymentIntents and refunds follow (issue 13).

pub mod signature;
