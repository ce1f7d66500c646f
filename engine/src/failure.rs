//! How the storage behind the ports fails: [`StoreError`] for reads, [`JournalError`] for
//! durable writes. The engine knows no database, so the store's own error travels as a
//! [`Cause`]: kept whole (its chain of sources is logged at the edge), and shared, because one
//! failed batch answers every append waiting in it.

use crate::ids::StreamId;
use std::sync::Arc;
use thiserror::Error;

/// The underlying error of a storage failure.
#[derive(Clone, Debug)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Wraps the store's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are alike when they say the same: errors from other crates have no equality,
/// and the engine's results (compared in tests) must keep theirs.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// Why a read failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store itself (its files, its own log, a background task) failed.
    #[error("store I/O failed")]
    Io(#[source] Cause),
    /// A record could not be encoded or decoded: corrupt, or from an incompatible version.
    #[error("stored record unreadable")]
    Codec(#[source] Cause),
    /// Records contradict each other (an event of one stream journaled in another, a read
    /// model missing the row its event implies).
    #[error("store inconsistent: {0}")]
    Inconsistent(String),
}

/// Why a journal write did not become durable.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum JournalError {
    /// The journal stopped after a fatal storage error; nothing more is accepted.
    #[error("journal stopped")]
    Stopped,
    /// The batch's write or fsync failed. The process is stopping.
    #[error("journal write failed")]
    Io(#[source] StoreError),
    /// The append's first sequence number is not the stream's next one (gap or
    /// duplicate): another writer owns the stream, or the actor's state diverged.
    #[error("sequence conflict on {stream}: expected {expected}, got {got}")]
    SequenceConflict {
        stream: StreamId,
        /// The next sequence number the store expects.
        expected: u64,
        /// The one the append carried.
        got: u64,
    },
}

/// `error` and its sources, one after the other (`a: b: c`), for a log line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_keeps_every_cause() {
        let io = std::io::Error::other("disk full");
        let error = JournalError::Io(StoreError::Io(Cause::new(io)));
        assert_eq!(
            chain(&error),
            "journal write failed: store I/O failed: disk full"
        );
    }
}
