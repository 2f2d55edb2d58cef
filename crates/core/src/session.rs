//! Sessions: one authenticated connection from an identity to a target.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Identity, Target, Timestamp};

/// Identifier of a session; a UUIDv7, so identifiers sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub uuid::Uuid);

impl SessionId {
    /// A new, time-ordered identifier.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// The 16 raw bytes (big-endian, time first), as used in store keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for SessionId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// Everything the pipeline knows about the session a command belongs to.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// Session identifier.
    pub id: SessionId,
    /// The verified caller.
    pub identity: Identity,
    /// The target it reached.
    pub target: Arc<Target>,
    /// Where the client connected from.
    pub client_addr: Option<SocketAddr>,
    /// When the session was opened.
    pub opened_at: Timestamp,
}
