//! Errors of the SSH adapter, each with the side that failed.

use portcullis_core::Side;

/// What went wrong in an SSH session or in the adapter's configuration.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The client's credential was refused.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The login name selects no target.
    #[error("target \"{0}\" does not exist")]
    UnknownTarget(String),
    /// The identity may not use the target.
    #[error("{subject} is not allowed on target \"{target}\"")]
    AccessDenied {
        /// Who asked.
        subject: String,
        /// Which target.
        target: String,
    },
    /// The client asked for something the gateway refuses (forwarding, X11...).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The client connection failed or closed.
    #[error("client connection failed: {0}")]
    Client(String),
    /// The upstream host could not be reached.
    #[error("upstream unreachable: {0}")]
    UpstreamConnect(String),
    /// The upstream host presented a key that is not pinned for the target.
    #[error(
        "upstream host key mismatch for target \"{target}\": got {presented}, expected one of [{expected}]"
    )]
    HostKeyMismatch {
        /// Which target.
        target: String,
        /// Fingerprint of the key the host presented.
        presented: String,
        /// Fingerprints pinned in configuration.
        expected: String,
    },
    /// The upstream host refused the gateway's credential.
    #[error("upstream refused the gateway's credential for {user}@{target}")]
    UpstreamAuth {
        /// Which target.
        target: String,
        /// The upstream user name.
        user: String,
    },
    /// The upstream connection failed after login.
    #[error("upstream connection failed: {0}")]
    Upstream(String),
    /// The audit record could not be written; nothing was forwarded.
    #[error("audit record could not be written: {0}")]
    Audit(String),
    /// Invalid adapter configuration.
    #[error("configuration error: {0}")]
    Config(String),
    /// A local file (recording, key) could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            SshError::Auth(_) | SshError::UnknownTarget(_) | SshError::Client(_) => Side::Client,
            SshError::AccessDenied { .. } | SshError::NotAllowed(_) => Side::Policy,
            SshError::UpstreamConnect(_)
            | SshError::HostKeyMismatch { .. }
            | SshError::UpstreamAuth { .. }
            | SshError::Upstream(_) => Side::Upstream,
            SshError::Audit(_) | SshError::Config(_) | SshError::Io { .. } => Side::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SshError {
        let context = context.into();
        move |source| SshError::Io { context, source }
    }
}

/// The error type russh handlers return: an adapter error or a protocol error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("ssh protocol: {0}")]
    Russh(#[from] russh::Error),
}
