//! [`IdentityError`]: why a credential was refused or the configuration is unusable.

use portcullis_core::Side;

/// Why authentication failed, or why the identity configuration cannot be used.
///
/// Messages never contain the presented token, API key or any configured secret. Values taken
/// from an unverified token (an issuer name, a key id, an algorithm name) are quoted, escaped and
/// cut to a short length before they appear in a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No credential was presented.
    #[error("no credential presented")]
    MissingCredential,
    /// The credential is neither a JWT nor an API key, or a JWT that cannot be parsed.
    #[error("malformed credential: {0}")]
    Malformed(&'static str),
    /// The token's `exp` lies in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// The token's `nbf` lies in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token's `aud` names none of the issuer's configured audiences.
    #[error("token audience is not accepted by issuer {issuer:?}")]
    WrongAudience {
        /// The (configured) issuer whose audiences were checked.
        issuer: String,
    },
    /// The token's `iss` names no configured issuer.
    #[error("unknown token issuer {issuer:?}")]
    UnknownIssuer {
        /// The issuer named by the token (shortened).
        issuer: String,
    },
    /// The signature does not verify with the issuer's key.
    #[error("bad token signature")]
    BadSignature,
    /// No key of the issuer matches the token's `kid` (after a JWKS refresh, when one was allowed).
    #[error("no key {kid:?} known for issuer {issuer:?}")]
    UnknownKey {
        /// The issuer.
        issuer: String,
        /// The key id named by the token (shortened), if any.
        kid: Option<String>,
    },
    /// The token's header `alg` is not among the algorithms pinned for its issuer (`none` never is).
    #[error("algorithm {alg:?} is not allowed for issuer {issuer:?}")]
    DisallowedAlgorithm {
        /// The issuer.
        issuer: String,
        /// The algorithm named by the token header (shortened).
        alg: String,
    },
    /// A required claim is absent.
    #[error("required claim {claim:?} is missing")]
    MissingClaim {
        /// The claim name (or dotted path).
        claim: String,
    },
    /// A claim is present but has the wrong type or value.
    #[error("claim {claim:?} is invalid: {reason}")]
    InvalidClaim {
        /// The claim name (or dotted path).
        claim: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The API key's id is unknown or its secret does not match.
    #[error("unknown API key")]
    UnknownApiKey,
    /// The API key matched but its configured expiry has passed.
    #[error("API key expired")]
    ApiKeyExpired,
    /// The configuration is invalid; `key` names the offending setting (e.g. `identity.issuers[1].algorithms`).
    #[error("{key}: {reason}")]
    Config {
        /// Dotted path of the bad setting.
        key: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The issuer's JWKS could not be fetched or parsed.
    #[error("JWKS for issuer {issuer:?} unavailable: {reason}")]
    JwksFetch {
        /// The issuer.
        issuer: String,
        /// What failed (never includes key material).
        reason: String,
    },
    /// A development token was requested but no `[identity.dev_signer]` is configured.
    #[error("no development signer is configured ([identity.dev_signer])")]
    NoDevSigner,
    /// Signing a development token, hashing a key, or another local operation failed.
    #[error("internal identity error: {0}")]
    Internal(String),
}

impl IdentityError {
    /// Which side is at fault: the caller for credential problems, the identity provider for
    /// JWKS fetch failures, the gateway for configuration and internal failures.
    pub fn side(&self) -> Side {
        match self {
            IdentityError::Config { .. }
            | IdentityError::NoDevSigner
            | IdentityError::Internal(_) => Side::Internal,
            IdentityError::JwksFetch { .. } => Side::Upstream,
            _ => Side::Client,
        }
    }

    /// A short, stable, machine-readable code (used in HTTP error bodies and logs).
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::MissingCredential => "missing_credential",
            IdentityError::Malformed(_) => "malformed",
            IdentityError::Expired => "expired",
            IdentityError::NotYetValid => "not_yet_valid",
            IdentityError::WrongAudience { .. } => "wrong_audience",
            IdentityError::UnknownIssuer { .. } => "unknown_issuer",
            IdentityError::BadSignature => "bad_signature",
            IdentityError::UnknownKey { .. } => "unknown_key",
            IdentityError::DisallowedAlgorithm { .. } => "disallowed_algorithm",
            IdentityError::MissingClaim { .. } => "missing_claim",
            IdentityError::InvalidClaim { .. } => "invalid_claim",
            IdentityError::UnknownApiKey => "unknown_api_key",
            IdentityError::ApiKeyExpired => "api_key_expired",
            IdentityError::Config { .. } => "config",
            IdentityError::JwksFetch { .. } => "jwks_unavailable",
            IdentityError::NoDevSigner => "no_dev_signer",
            IdentityError::Internal(_) => "internal",
        }
    }

    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        IdentityError::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Shortens a value taken from an unverified credential before it goes into a message.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX)
        .collect();
    if value.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_codes() {
        assert_eq!(IdentityError::Expired.side(), Side::Client);
        assert_eq!(IdentityError::config("a", "b").side(), Side::Internal);
        assert_eq!(IdentityError::config("a.b", "why").to_string(), "a.b: why");
        let fetch = IdentityError::JwksFetch {
            issuer: "x".into(),
            reason: "down".into(),
        };
        assert_eq!(fetch.side(), Side::Upstream);
        assert_eq!(fetch.code(), "jwks_unavailable");
    }

    #[test]
    fn shorten_cuts_and_strips_control_characters() {
        assert_eq!(shorten("a\nb"), "ab");
        let long = "x".repeat(100);
        let s = shorten(&long);
        assert_eq!(s.chars().count(), 65);
        assert!(s.ends_with('…'));
    }
}
