//! Errors of the policy crate.

use portcullis_core::Side;

/// Why a policy could not be compiled or loaded.
///
/// All variants are configuration errors: they belong to the gateway's own side
/// ([`Side::Internal`]) and are reported when the configuration is loaded, never
/// while commands are decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A rule is invalid.
    #[error("policy rule rules[{index}] (id `{id}`): key `{key}`: {message}")]
    Rule {
        /// Position of the rule in the file (from 0).
        index: usize,
        /// The rule's id (may be empty when the id itself is the problem).
        id: String,
        /// The offending key.
        key: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// A setting outside the rules is invalid.
    #[error("policy setting `{key}`: {message}")]
    Setting {
        /// The offending key.
        key: String,
        /// Why it is invalid.
        message: String,
    },
    /// The configuration text could not be read.
    #[error("policy configuration could not be read: {0}")]
    Syntax(String),
}

impl PolicyError {
    /// Which side failed: always the gateway's configuration.
    pub fn side(&self) -> Side {
        Side::Internal
    }
}
