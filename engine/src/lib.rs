//! The registration engine's domain: ids, records, commands, the sans-IO pool state
//! machine, the actors that own state, and the ports (journal, store, clock) that the
//! `storage` crate implements. No HTTP, no database, no network here.

pub mod accounts;
mod actors;
pub mod broadcast;
pub mod cache;
pub mod clock;
pub mod config;
mod engine;
pub mod error;
pub mod failure;
pub mod feeds;
pub mod ids;
pub mod invoice;
pub mod message;
pub mod model;
pub mod notify;
pub mod outbox;
pub mod payment;
pub mod pool;
pub mod ports;
pub mod pricing;
pub mod statement;
pub mod values;
pub mod webhooks;

pub use actors::Availability;
pub use config::EngineConfig;
pub use engine::{
    AvailabilityFeed, Decision, Engine, EventAvailability, Hold, HoldRequest, JoinWaitlist,
    NewVoucher, PaymentStart, ReportOutcome, ScanRequest, TicketTypeAvailability,
    normalize_voucher_code,
};
