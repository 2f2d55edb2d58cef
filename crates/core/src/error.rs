//! Errors that say which side failed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which side of the gateway a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The caller sent something wrong: bad credentials, malformed input, unknown target.
    Client,
    /// The target failed: unreachable, refused the gateway's credential, broke the protocol.
    Upstream,
    /// A rule refused the command or the connection.
    Policy,
    /// The gateway itself failed: store, configuration, a bug.
    Internal,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Policy => "policy",
            Side::Internal => "internal",
        })
    }
}

/// Errors of the shared pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's request was malformed or not acceptable.
    #[error("client error: {0}")]
    Client(String),
    /// The target failed or refused.
    #[error("upstream error: {message}")]
    Upstream {
        /// What went wrong.
        message: String,
        /// Whether sending the same command again is safe (nothing reached the target).
        retryable: bool,
    },
    /// A policy refused the command; carries the deciding rule.
    #[error("denied by policy rule {rule}: {reason}")]
    Policy {
        /// The rule id that decided.
        rule: String,
        /// Why.
        reason: String,
    },
    /// The command's audit record could not be written; the command was not forwarded.
    #[error("audit record could not be written: {0}")]
    Audit(String),
    /// Masking failed; the output was withheld.
    #[error("masking failed: {0}")]
    Masking(String),
    /// The gateway failed internally.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Error::Client(_) => Side::Client,
            Error::Upstream { .. } => Side::Upstream,
            Error::Policy { .. } => Side::Policy,
            Error::Audit(_) | Error::Masking(_) | Error::Internal(_) => Side::Internal,
        }
    }

    /// Whether the command may be sent again without risk of running twice.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Upstream { retryable, .. } => *retryable,
            Error::Audit(_) => true,
            _ => false,
        }
    }
}

/// Result alias for the pipeline.
pub type Result<T, E = Error> = std::result::Result<T, E>;
