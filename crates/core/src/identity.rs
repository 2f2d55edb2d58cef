//! Who is calling.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// How an identity proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A signed JSON Web Token (OIDC ID or access token, or a gateway-minted development token).
    Jwt,
    /// A static API key, stored hashed by the gateway.
    ApiKey,
    /// An SSH public key listed in configuration.
    SshKey,
    /// An OpenSSH user certificate signed by a trusted CA.
    SshCertificate,
}

/// A verified caller: a person, a CI job or an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable subject (`sub` claim, key owner, certificate key id).
    pub subject: String,
    /// Groups used by access checks, policy rules and approvals.
    pub groups: Vec<String>,
    /// How the identity authenticated.
    pub method: AuthMethod,
    /// Who vouched for it (JWT issuer, API key id, CA fingerprint).
    pub issuer: Option<String>,
    /// When the credential stops being valid, if it expires.
    pub expires_at: Option<Timestamp>,
}

impl Identity {
    /// Whether the identity is a member of `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether the identity is a member of any of `groups`.
    pub fn in_any(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| self.in_group(g))
    }
}
