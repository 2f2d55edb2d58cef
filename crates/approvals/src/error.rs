//! The crate's error type.

use portcullis_core::Side;

use crate::RequestState;

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The configuration is invalid; `key` names the setting (`approvals.webhooks[0].url`).
    #[error("invalid approvals configuration: {key}: {message}")]
    Config {
        /// Dotted path of the bad setting.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// No request or grant has this id.
    #[error("no approval request or grant {0:?}")]
    NotFound(String),
    /// The requester tried to approve or reject their own request.
    #[error(
        "{approver} asked for request {request} and cannot decide on it (separation of duties)"
    )]
    SelfApproval {
        /// The request.
        request: String,
        /// The caller.
        approver: String,
    },
    /// The caller is in none of the request's approver groups.
    #[error("{approver} is not in any approver group of request {request} ({groups})")]
    NotApprover {
        /// The request.
        request: String,
        /// The caller.
        approver: String,
        /// The request's approver groups, comma separated.
        groups: String,
    },
    /// The request is no longer open for votes.
    #[error("request {request} is already {state}")]
    AlreadyDecided {
        /// The request.
        request: String,
        /// Its state.
        state: RequestState,
    },
    /// The caller already voted on this request.
    #[error("{approver} already voted on request {request}")]
    AlreadyVoted {
        /// The request.
        request: String,
        /// The caller.
        approver: String,
    },
    /// The request lapsed before it was decided.
    #[error("request {0} has expired")]
    Expired(String),
    /// The grant has already ended (expired or revoked).
    #[error("grant {0} has already ended")]
    GrantEnded(String),
    /// The requested grant is not acceptable (too long, empty kind, with a rejection).
    #[error("bad grant: {0}")]
    BadGrant(String),
    /// A decision or revocation came without a justification.
    #[error("a justification is required")]
    MissingJustification,
    /// The approval database failed.
    #[error("approval store failed: {0}")]
    Store(String),
    /// An approval event could not be recorded; nothing was changed.
    #[error("approval event could not be recorded: {0}")]
    Audit(String),
    /// The service could not start (no tokio runtime, TLS setup).
    #[error("approval service failed: {0}")]
    Internal(String),
}

impl ApprovalError {
    /// Which side failed: the caller of the decisions API ([`Side::Client`]), a
    /// separation-of-duties rule ([`Side::Policy`]) or the gateway ([`Side::Internal`]).
    pub fn side(&self) -> Side {
        match self {
            ApprovalError::NotFound(_)
            | ApprovalError::AlreadyDecided { .. }
            | ApprovalError::AlreadyVoted { .. }
            | ApprovalError::Expired(_)
            | ApprovalError::GrantEnded(_)
            | ApprovalError::BadGrant(_)
            | ApprovalError::MissingJustification => Side::Client,
            ApprovalError::SelfApproval { .. } | ApprovalError::NotApprover { .. } => Side::Policy,
            ApprovalError::Config { .. }
            | ApprovalError::Store(_)
            | ApprovalError::Audit(_)
            | ApprovalError::Internal(_) => Side::Internal,
        }
    }

    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ApprovalError::NotFound(_) => 404,
            ApprovalError::SelfApproval { .. } | ApprovalError::NotApprover { .. } => 403,
            ApprovalError::AlreadyDecided { .. }
            | ApprovalError::AlreadyVoted { .. }
            | ApprovalError::Expired(_)
            | ApprovalError::GrantEnded(_) => 409,
            ApprovalError::BadGrant(_) | ApprovalError::MissingJustification => 400,
            ApprovalError::Config { .. }
            | ApprovalError::Store(_)
            | ApprovalError::Audit(_)
            | ApprovalError::Internal(_) => 500,
        }
    }
}

impl From<sled::Error> for ApprovalError {
    fn from(e: sled::Error) -> Self {
        ApprovalError::Store(e.to_string())
    }
}

impl From<ApprovalError> for portcullis_core::Error {
    /// A failure to resolve a review refuses the command.
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::Audit(m) => portcullis_core::Error::Audit(m),
            other => portcullis_core::Error::Internal(other.to_string()),
        }
    }
}
