//! Where the caller is going.

use serde::{Deserialize, Serialize};

/// The wire protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// PostgreSQL frontend/backend protocol v3.
    Postgres,
    /// SSH.
    Ssh,
    /// HTTP/1.1 and HTTP/2.
    Http,
}

/// A named upstream that identities reach through the gateway.
///
/// The target's own credential is not part of this type: adapters hold it in a
/// [`crate::Secret`] next to their connection settings, so that a `Target` can be
/// logged, recorded and shown to clients freely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Name the client asks for (database name, SSH login, HTTP host).
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Upstream address (`host:port`).
    pub upstream: String,
    /// Groups allowed to connect at all; empty means nobody.
    pub allowed_groups: Vec<String>,
}

impl Target {
    /// Whether an identity with these groups may open a session.
    pub fn admits(&self, identity: &crate::Identity) -> bool {
        identity.in_any(&self.allowed_groups)
    }
}
