//! The crate's error type.

use portcullis_core::Side;

/// Errors of the SIEM export. A sink that cannot deliver is the SIEM's side
/// (upstream); reading the record or the cursor is the gateway's (internal).
#[derive(Debug, thiserror::Error)]
pub enum SiemError {
    /// A sink's configuration is invalid (names the key).
    #[error("invalid sink configuration: {0}")]
    Config(String),
    /// The sink's peer could not be reached or refused the batch.
    #[error("sink delivery failed: {0}")]
    Delivery(String),
    /// The record could not be read.
    #[error("reading the record failed: {0}")]
    Record(#[from] portcullis_recording::RecordingError),
    /// The cursor file could not be read or written.
    #[error("sink cursor: {0}")]
    Cursor(String),
}

impl SiemError {
    /// Which side failed: the SIEM for delivery errors, the gateway otherwise.
    pub fn side(&self) -> Side {
        match self {
            SiemError::Delivery(_) => Side::Upstream,
            _ => Side::Internal,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = SiemError> = std::result::Result<T, E>;
