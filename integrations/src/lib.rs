//! Outbound adapters: the code that talks to payment providers, mail and SMS services and
//! organizers' webhooks, implementing the ports the engine defines (DESIGN §2). It never serves
//! HTTP: inbound webhooks are gateway routes, which call the verifiers here on the raw bytes.

pub mod bank;
pub mod documents;
pub mod hooks;
pub mod http;
pub mod mail;
pub mod money;
pub mod paypal;
pub mod qr;
pub mod stripe;
pub mod twilio;
pub mod webhook;
