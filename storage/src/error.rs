//! How this crate's failures become the engine's [`StoreError`]: the store's own errors
//! (fjall, the file system) are I/O, a record that does not decode is a codec failure, and the
//! error itself is kept as the cause, so the log line at the edge shows the whole chain.

use engine::ports::{Cause, StoreError};

/// A record that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Serialising a record failed.
    #[error("encoding a record")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A stored record is not what its keyspace holds (corrupt, or an incompatible version).
    #[error("decoding a record")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A key is shorter than its keyspace's layout.
    #[error("malformed key in {0}")]
    Key(&'static str),
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Codec(Cause::new(e))
    }
}

/// Why the journal writer stopped; handed to its `on_fatal`, which ends the process.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The writer thread's runtime could not be built.
    #[error("starting the journal writer's runtime")]
    Runtime(#[source] std::io::Error),
    /// The snapshot thread could not be started.
    #[error("starting the snapshot thread")]
    SnapshotThread(#[source] std::io::Error),
    /// A batch's write or fsync failed.
    #[error("journal write failed")]
    Write(#[source] StoreError),
    /// The sync at shutdown failed.
    #[error("final persist failed")]
    Persist(#[source] StoreError),
}

/// Errors this crate meets, each with its kind of [`StoreError`].
pub(crate) trait Failure {
    fn into_store_error(self) -> StoreError;
}

impl Failure for fjall::Error {
    fn into_store_error(self) -> StoreError {
        StoreError::Io(Cause::new(self))
    }
}

impl Failure for std::io::Error {
    fn into_store_error(self) -> StoreError {
        StoreError::Io(Cause::new(self))
    }
}

impl Failure for CodecError {
    fn into_store_error(self) -> StoreError {
        self.into()
    }
}

/// A stored id that is not 16 bytes.
impl Failure for uuid::Error {
    fn into_store_error(self) -> StoreError {
        StoreError::Codec(Cause::new(self))
    }
}

impl Failure for StoreError {
    fn into_store_error(self) -> StoreError {
        self
    }
}

/// For `map_err`: `e` as the engine's [`StoreError`] of its kind.
pub(crate) fn err(e: impl Failure) -> StoreError {
    e.into_store_error()
}
