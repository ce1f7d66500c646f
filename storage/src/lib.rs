//! Durable storage of the registration engine: the embedded fjall backend.
//!
//! - [`Db`] opens the keyspaces and implements the engine's [`engine::ports::Store`] reads.
//! - [`writer`] is the group-commit journal writer: it takes appends from every actor,
//!   checks each against its stream's next sequence number, projects the read models, and
//!   makes the whole batch durable with one atomic write and one fsync before completing
//!   any of them. A failed write is fatal: nothing is retried, the writer stops.

pub mod audit;
mod broadcasts;
mod codec;
mod deliveries;
mod delivery_state;
mod error;
mod hook_index;
mod inbox;
mod keys;
mod listing;
mod projection;
mod schedule;
mod store;
mod webhooks;
pub mod writer;

pub use store::{Db, DbOptions};
pub use writer::{JournalConfig, JournalWriter};

#[cfg(test)]
mod tests;
