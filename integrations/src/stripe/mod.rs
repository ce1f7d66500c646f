//! Stripe: webhook signatures (`signature`), the events they carry (`webhook`), and the
//! PaymentIntents and Refunds APIs (`client`).

pub mod client;
pub mod signature;
pub mod webhook;

pub use client::StripeClient;
