//! PayPal: Orders v2 (create with intent CAPTURE, capture when the buyer is back), refunds of
//! captures, the OAuth2 client-credentials token (cached until it expires), and webhooks,
//! which PayPal verifies itself (`verify-webhook-signature`), read into the engine's reports.

pub mod client;
pub mod webhook;

pub use client::{PayPalClient, PayPalSettings, WebhookHeaders};
