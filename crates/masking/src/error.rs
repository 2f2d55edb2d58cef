//! Errors of the masking crate.

use portcullis_core::Side;

/// Errors of the masking engine. Every error fails closed: output is withheld.
#[derive(Debug, thiserror::Error)]
pub enum MaskingError {
    /// The masking configuration is invalid: `key` names the offending setting.
    #[error("invalid masking configuration at `{key}`: {reason}")]
    Config {
        /// Path of the offending setting, such as `detectors.emial` or `custom[0].regex`.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The engine failed internally (a bug); the output was withheld.
    #[error("masking engine failure: {0}")]
    Internal(String),
}

impl MaskingError {
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        MaskingError::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Which side failed: the gateway's own configuration or code, so always internal.
    pub fn side(&self) -> Side {
        Side::Internal
    }
}

impl From<MaskingError> for portcullis_core::Error {
    fn from(e: MaskingError) -> Self {
        portcullis_core::Error::Masking(e.to_string())
    }
}
