//! The registration engine's domain: ids, records, commands, the sans-IO pool state
//! machine, the actors that own state, and the ports (journal, store, clock) that the
//! `storage` crate implements. No HTTP, no database, no network here.

#![warn(missing_docs)]

pub mod clock;
pub mod error;
pub mod ids;
pub mod model;
pub mod pool;
