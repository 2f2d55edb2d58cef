//! Errors of the PostgreSQL adapter, each with the side that failed and a SQLSTATE.

use portcullis_core::Side;

/// What went wrong in a PostgreSQL session.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The client broke the protocol (garbage, oversized or out-of-place messages).
    #[error("protocol violation by client: {0}")]
    ClientProtocol(String),
    /// Reading from or writing to the client failed.
    #[error("client connection failed: {0}")]
    ClientIo(#[source] std::io::Error),
    /// The client disconnected.
    #[error("client disconnected{0}")]
    ClientGone(&'static str),
    /// The client's credential was refused.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The requested database names no target.
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
    /// The listener requires TLS and the client did not use it.
    #[error("this gateway requires TLS (use sslmode=require)")]
    TlsRequired,
    /// The client asked for something the gateway does not offer.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The upstream could not be reached.
    #[error("upstream unreachable: {0}")]
    UpstreamConnect(String),
    /// The upstream refused the gateway's credential.
    #[error("upstream refused the gateway's credential: {0}")]
    UpstreamAuth(String),
    /// The upstream broke the protocol or closed unexpectedly.
    #[error("upstream protocol error: {0}")]
    UpstreamProtocol(String),
    /// Reading from or writing to the upstream failed.
    #[error("upstream connection failed: {0}")]
    UpstreamIo(#[source] std::io::Error),
    /// The audit record could not be written; nothing was forwarded.
    #[error("audit record could not be written: {0}")]
    Audit(String),
    /// Invalid adapter configuration.
    #[error("configuration error: {0}")]
    Config(String),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Shutdown,
}

impl PgError {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            PgError::ClientProtocol(_)
            | PgError::ClientIo(_)
            | PgError::ClientGone(_)
            | PgError::Auth(_)
            | PgError::UnknownTarget(_)
            | PgError::TlsRequired
            | PgError::Unsupported(_) => Side::Client,
            PgError::AccessDenied { .. } => Side::Policy,
            PgError::UpstreamConnect(_)
            | PgError::UpstreamAuth(_)
            | PgError::UpstreamProtocol(_)
            | PgError::UpstreamIo(_) => Side::Upstream,
            PgError::Audit(_) | PgError::Config(_) | PgError::Shutdown => Side::Internal,
        }
    }

    /// The SQLSTATE reported to the client.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            PgError::ClientProtocol(_) | PgError::UpstreamProtocol(_) => "08P01",
            PgError::ClientIo(_) | PgError::ClientGone(_) => "08006",
            PgError::Auth(_) => "28P01",
            PgError::UnknownTarget(_) => "3D000",
            PgError::AccessDenied { .. } | PgError::TlsRequired => "28000",
            PgError::Unsupported(_) => "0A000",
            PgError::UpstreamConnect(_) => "08001",
            PgError::UpstreamAuth(_) => "08004",
            PgError::UpstreamIo(_) => "08006",
            PgError::Audit(_) | PgError::Config(_) => "58000",
            PgError::Shutdown => "57P01",
        }
    }
}
