//! The crate's error type.

use portcullis_core::Side;

/// Errors of the recording crate. All of them are failures of the gateway itself
/// (its store or its configuration), never of the client or the target.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The recording configuration is invalid.
    #[error("invalid recording configuration: {0}")]
    Config(String),
    /// The storage engine failed (I/O error, engine error).
    #[error("event store failed: {0}")]
    Storage(String),
    /// Stored data could not be decoded or contradicts itself.
    #[error("event store is corrupt{}: {reason}", seq.map(|s| format!(" at seq {s}")).unwrap_or_default())]
    Corrupt {
        /// The global sequence number of the offending record, if known.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// An event could not be encoded.
    #[error("event could not be encoded: {0}")]
    Encode(String),
    /// The recorder failed earlier (a write or flush error); it refuses all further events.
    #[error("recorder failed: {0}")]
    Failed(String),
    /// The recorder was shut down.
    #[error("recorder is shut down")]
    Closed,
    /// The store backend does not implement an operation (checkpoints, keys, pruning).
    #[error("the event store does not support {0}")]
    Unsupported(String),
    /// The signing key file is missing, unreadable, malformed or too widely readable.
    #[error("signing key: {0}")]
    Key(String),
    /// An evidence bundle is incomplete or cannot be read (tampering is reported by
    /// verification, not as this error).
    #[error("evidence bundle: {0}")]
    Bundle(String),
    /// Another process holds the writer lock of this chain in a shared store: a
    /// second writer would fork the chain.
    #[error(
        "chain {chain:?} is already being written by another process ({holder}); every gateway sharing a store needs its own chain name"
    )]
    ChainInUse {
        /// The chain's name.
        chain: String,
        /// Who holds the lock, as far as the database tells.
        holder: String,
    },
    /// The chain failed verification, so the operation (signing, pruning) was refused.
    #[error("refused: the record failed verification: {0}")]
    Unverified(String),
}

impl RecordingError {
    /// Which side failed: always the gateway itself ([`Side::Internal`]).
    pub fn side(&self) -> Side {
        Side::Internal
    }
}

impl From<sled::Error> for RecordingError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { at, .. } => RecordingError::Corrupt {
                seq: None,
                reason: format!("sled reports corruption at {at:?}"),
            },
            other => RecordingError::Storage(other.to_string()),
        }
    }
}

impl From<std::io::Error> for RecordingError {
    fn from(e: std::io::Error) -> Self {
        RecordingError::Storage(e.to_string())
    }
}

impl From<RecordingError> for portcullis_core::Error {
    /// Any recording failure means the audit record is not written: the caller fails closed.
    fn from(e: RecordingError) -> Self {
        portcullis_core::Error::Audit(e.to_string())
    }
}

/// Result alias for this crate.
pub type Result<T, E = RecordingError> = std::result::Result<T, E>;
