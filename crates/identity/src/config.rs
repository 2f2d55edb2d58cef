//! Configuration types (`[identity]` in the gateway's TOML) and their validation.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use portcullis_core::{Secret, Timestamp};
use serde::{Deserialize, Serialize};

use crate::apikey::{StoredHash, valid_key_id};
use crate::error::IdentityError;

/// Longest accepted clock-skew leeway.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

fn default_groups_claim() -> String {
    "groups".to_owned()
}
fn default_subject_claim() -> String {
    "sub".to_owned()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_jwks_min_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_dev_max_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_dev_key_id() -> String {
    "portcullis-dev".to_owned()
}

/// The `[identity]` table: trusted token issuers, API keys and an optional development signer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Trusted JWT issuers (`[[identity.issuers]]`).
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Static API keys, stored hashed (`[[identity.api_keys]]`).
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// A local signer for development tokens (`[identity.dev_signer]`); its issuer is trusted too.
    #[serde(default)]
    pub dev_signer: Option<DevSignerConfig>,
    /// Claim holding the caller's groups; a dotted path (`realm_access.roles`) reaches into objects.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claim holding the caller's subject (default `sub`); dotted paths work as for groups.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// Clock-skew allowance for `exp` and `nbf` (default `30s`, at most `5m`).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// An extra HTTP request header that may carry a credential (for example `X-Api-Key`),
    /// read by [`crate::AuthLayer`] when `Authorization: Bearer` is absent.
    #[serde(default)]
    pub header: Option<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            api_keys: Vec::new(),
            dev_signer: None,
            groups_claim: default_groups_claim(),
            subject_claim: default_subject_claim(),
            leeway: default_leeway(),
            header: None,
        }
    }
}

/// One trusted JWT issuer (`[[identity.issuers]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Expected `iss` claim, compared exactly.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one of them.
    pub audiences: Vec<String>,
    /// Algorithms accepted for this issuer (`RS256`, `ES256`, `EdDSA`, `HS256`, ...). A token whose
    /// header names any other algorithm is refused; `none` can never be listed.
    pub algorithms: Vec<String>,
    /// Shared secret for `HS256`/`HS384`/`HS512` (development only; at least as many bytes as the hash).
    #[serde(default)]
    pub secret: Option<Secret<String>>,
    /// PEM public keys (RSA, EC P-256/P-384, Ed25519), inline or from files.
    #[serde(default)]
    pub public_keys: Vec<PublicKeyConfig>,
    /// JWKS endpoint (`https://...`; `http://` only for local tests).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// JWKS document on disk.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// How often the JWKS is re-read in the background (default `10m`).
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Least time between two JWKS fetches caused by tokens with unknown `kid`s (default `30s`).
    #[serde(default = "default_jwks_min_interval", with = "humantime_serde")]
    pub jwks_min_interval: Duration,
    /// Overrides `identity.groups_claim` for this issuer.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Overrides `identity.subject_claim` for this issuer.
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Overrides `identity.leeway` for this issuer.
    #[serde(default, with = "humantime_serde::option")]
    pub leeway: Option<Duration>,
}

impl IssuerConfig {
    /// An issuer with the given name, audiences and algorithms and no keys yet; the other
    /// settings take their defaults.
    pub fn new(issuer: impl Into<String>, audiences: &[&str], algorithms: &[&str]) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: audiences.iter().map(|s| (*s).to_owned()).collect(),
            algorithms: algorithms.iter().map(|s| (*s).to_owned()).collect(),
            secret: None,
            public_keys: Vec::new(),
            jwks_url: None,
            jwks_file: None,
            jwks_refresh: default_jwks_refresh(),
            jwks_min_interval: default_jwks_min_interval(),
            groups_claim: None,
            subject_claim: None,
            leeway: None,
        }
    }
}

/// A PEM public key of an issuer: exactly one of `pem` and `file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// Key id; when set, a token naming a `kid` only uses the key with that id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The PEM text (`-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----`).
    #[serde(default)]
    pub pem: Option<String>,
    /// A file holding the PEM text.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// One API key (`[[identity.api_keys]]`). Only a hash of the key is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Public key id: the `<id>` in `pk_<id>_<secret>` (letters, digits and `-`).
    pub id: String,
    /// Stored hash, `hmac-sha256:<salt hex>:<mac hex>`, as printed by [`crate::generate_api_key`].
    pub hash: String,
    /// Subject of the identity the key authenticates.
    pub subject: String,
    /// Groups of that identity.
    #[serde(default)]
    pub groups: Vec<String>,
    /// RFC 3339 time after which the key is refused (for example `"2026-12-31T00:00:00Z"`).
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// The development signer (`[identity.dev_signer]`): exactly one of `secret` (HS256),
/// `private_key_file` or `private_key_pem` (Ed25519, PKCS#8 PEM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSignerConfig {
    /// `iss` of minted tokens; this issuer is trusted like a configured one.
    pub issuer: String,
    /// `aud` of minted tokens.
    pub audience: String,
    /// HS256 shared secret (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<Secret<String>>,
    /// Ed25519 private key file (PKCS#8 PEM).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Ed25519 private key PEM text.
    #[serde(default)]
    pub private_key_pem: Option<Secret<String>>,
    /// Longest lifetime a minted token may have (default `24h`).
    #[serde(default = "default_dev_max_ttl", with = "humantime_serde")]
    pub max_ttl: Duration,
    /// `kid` header of minted tokens (default `portcullis-dev`).
    #[serde(default = "default_dev_key_id")]
    pub key_id: String,
}

impl DevSignerConfig {
    /// An HS256 development signer.
    pub fn hs256(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            secret: Some(Secret::new(secret.into())),
            private_key_file: None,
            private_key_pem: None,
            max_ttl: default_dev_max_ttl(),
            key_id: default_dev_key_id(),
        }
    }

    /// An Ed25519 development signer from PKCS#8 PEM text.
    pub fn ed25519(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        private_key_pem: impl Into<String>,
    ) -> Self {
        Self {
            secret: None,
            private_key_pem: Some(Secret::new(private_key_pem.into())),
            ..Self::hs256(issuer, audience, String::new())
        }
    }
}

/// Minimum HMAC secret length for an algorithm (the hash output size, RFC 7518 §3.2).
pub(crate) fn min_secret_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// Parses an algorithm name from configuration.
pub(crate) fn parse_algorithm(key: &str, name: &str) -> Result<Algorithm, IdentityError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(IdentityError::config(
            key,
            "the `none` algorithm is never accepted",
        ));
    }
    Algorithm::from_str(name).map_err(|_| {
        IdentityError::config(
            key,
            format!(
                "unknown algorithm {name:?} (use HS256, HS384, HS512, RS256, RS384, RS512, \
                 PS256, PS384, PS512, ES256, ES384 or EdDSA)"
            ),
        )
    })
}

/// Parses an RFC 3339 expiry.
pub(crate) fn parse_expiry(key: &str, value: &str) -> Result<Timestamp, IdentityError> {
    humantime::parse_rfc3339_weak(value)
        .map(Timestamp::from_system)
        .map_err(|e| IdentityError::config(key, format!("not an RFC 3339 time: {e}")))
}

fn check_claim_name(key: &str, value: &str) -> Result<(), IdentityError> {
    if value.is_empty() || value.split('.').any(str::is_empty) {
        return Err(IdentityError::config(
            key,
            "must be a claim name or a dotted path of non-empty names",
        ));
    }
    Ok(())
}

fn check_leeway(key: &str, leeway: Duration) -> Result<(), IdentityError> {
    if leeway > MAX_LEEWAY {
        return Err(IdentityError::config(
            key,
            "leeway is for clock skew and may be at most 5m",
        ));
    }
    Ok(())
}

impl IdentityConfig {
    /// Checks the configuration without touching files or the network. Errors name the bad
    /// setting, e.g. `identity.issuers[1].algorithms: HS256 needs a secret`.
    pub fn validate(&self) -> Result<(), IdentityError> {
        check_claim_name("identity.groups_claim", &self.groups_claim)?;
        check_claim_name("identity.subject_claim", &self.subject_claim)?;
        check_leeway("identity.leeway", self.leeway)?;
        if let Some(header) = &self.header {
            if http::HeaderName::from_str(header).is_err() {
                return Err(IdentityError::config(
                    "identity.header",
                    "not a valid HTTP header name",
                ));
            }
            if header.eq_ignore_ascii_case("authorization") {
                return Err(IdentityError::config(
                    "identity.header",
                    "Authorization is always read; name another header",
                ));
            }
        }

        let mut names = HashSet::new();
        for (i, issuer) in self.issuers.iter().enumerate() {
            let at = format!("identity.issuers[{i}]");
            validate_issuer(&at, issuer)?;
            if !names.insert(issuer.issuer.as_str()) {
                return Err(IdentityError::config(
                    format!("{at}.issuer"),
                    format!("issuer {:?} is configured twice", issuer.issuer),
                ));
            }
        }

        let mut ids = HashSet::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            let at = format!("identity.api_keys[{i}]");
            if !valid_key_id(&key.id) {
                return Err(IdentityError::config(
                    format!("{at}.id"),
                    "must be 1 to 64 letters, digits or `-`",
                ));
            }
            if !ids.insert(key.id.as_str()) {
                return Err(IdentityError::config(
                    format!("{at}.id"),
                    format!("API key id {:?} is configured twice", key.id),
                ));
            }
            StoredHash::parse(&key.hash)
                .map_err(|reason| IdentityError::config(format!("{at}.hash"), reason.to_owned()))?;
            if key.subject.is_empty() {
                return Err(IdentityError::config(
                    format!("{at}.subject"),
                    "must not be empty",
                ));
            }
            if let Some(expiry) = &key.expires_at {
                parse_expiry(&format!("{at}.expires_at"), expiry)?;
            }
        }

        if let Some(dev) = &self.dev_signer {
            let at = "identity.dev_signer";
            if dev.issuer.is_empty() {
                return Err(IdentityError::config(
                    format!("{at}.issuer"),
                    "must not be empty",
                ));
            }
            if names.contains(dev.issuer.as_str()) {
                return Err(IdentityError::config(
                    format!("{at}.issuer"),
                    format!(
                        "issuer {:?} is also listed in identity.issuers; the development issuer \
                         must be distinct",
                        dev.issuer
                    ),
                ));
            }
            if dev.audience.is_empty() {
                return Err(IdentityError::config(
                    format!("{at}.audience"),
                    "must not be empty",
                ));
            }
            let sources = [
                dev.secret.is_some(),
                dev.private_key_file.is_some(),
                dev.private_key_pem.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources != 1 {
                return Err(IdentityError::config(
                    at,
                    "set exactly one of secret, private_key_file, private_key_pem",
                ));
            }
            if let Some(secret) = &dev.secret
                && secret.expose().len() < 32
            {
                return Err(IdentityError::config(
                    format!("{at}.secret"),
                    "HS256 secret must be at least 32 bytes",
                ));
            }
            if dev.max_ttl.is_zero() {
                return Err(IdentityError::config(
                    format!("{at}.max_ttl"),
                    "must be positive",
                ));
            }
            if dev.key_id.is_empty() {
                return Err(IdentityError::config(
                    format!("{at}.key_id"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

fn validate_issuer(at: &str, issuer: &IssuerConfig) -> Result<(), IdentityError> {
    if issuer.issuer.is_empty() {
        return Err(IdentityError::config(
            format!("{at}.issuer"),
            "must not be empty",
        ));
    }
    if issuer.audiences.is_empty() || issuer.audiences.iter().any(String::is_empty) {
        return Err(IdentityError::config(
            format!("{at}.audiences"),
            "list at least one non-empty audience",
        ));
    }
    if issuer.algorithms.is_empty() {
        return Err(IdentityError::config(
            format!("{at}.algorithms"),
            "list at least one algorithm",
        ));
    }
    let mut algorithms = Vec::new();
    for (j, name) in issuer.algorithms.iter().enumerate() {
        algorithms.push(parse_algorithm(&format!("{at}.algorithms[{j}]"), name)?);
    }
    let has_jwks = issuer.jwks_url.is_some() || issuer.jwks_file.is_some();
    let has_public = !issuer.public_keys.is_empty() || has_jwks;
    for alg in &algorithms {
        if alg.family() == AlgorithmFamily::Hmac {
            match &issuer.secret {
                None => {
                    return Err(IdentityError::config(
                        format!("{at}.algorithms"),
                        format!("{alg:?} needs a secret"),
                    ));
                }
                Some(secret) if secret.expose().len() < min_secret_len(*alg) => {
                    return Err(IdentityError::config(
                        format!("{at}.secret"),
                        format!(
                            "{alg:?} needs a secret of at least {} bytes",
                            min_secret_len(*alg)
                        ),
                    ));
                }
                _ => {}
            }
        } else if !has_public {
            return Err(IdentityError::config(
                format!("{at}.algorithms"),
                format!("{alg:?} needs public_keys, jwks_url or jwks_file"),
            ));
        }
    }
    if issuer.secret.is_some()
        && !algorithms
            .iter()
            .any(|a| a.family() == AlgorithmFamily::Hmac)
    {
        return Err(IdentityError::config(
            format!("{at}.secret"),
            "a secret is set but no HS256/HS384/HS512 algorithm is allowed",
        ));
    }
    if !issuer.public_keys.is_empty()
        && !algorithms
            .iter()
            .any(|a| a.family() != AlgorithmFamily::Hmac)
    {
        return Err(IdentityError::config(
            format!("{at}.public_keys"),
            "public keys are set but only HMAC algorithms are allowed",
        ));
    }
    for (j, key) in issuer.public_keys.iter().enumerate() {
        if key.pem.is_some() == key.file.is_some() {
            return Err(IdentityError::config(
                format!("{at}.public_keys[{j}]"),
                "set exactly one of pem and file",
            ));
        }
    }
    if issuer.jwks_url.is_some() && issuer.jwks_file.is_some() {
        return Err(IdentityError::config(
            format!("{at}.jwks_url"),
            "set either jwks_url or jwks_file, not both",
        ));
    }
    if let Some(url) = &issuer.jwks_url {
        let ok = http::Uri::from_str(url).ok().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("https" | "http")) && uri.host().is_some()
        });
        if !ok {
            return Err(IdentityError::config(
                format!("{at}.jwks_url"),
                "must be an absolute https:// (or http:// for local tests) URL",
            ));
        }
    }
    if has_jwks && issuer.jwks_refresh < Duration::from_secs(1) {
        return Err(IdentityError::config(
            format!("{at}.jwks_refresh"),
            "must be at least 1s",
        ));
    }
    if has_jwks && issuer.jwks_min_interval < Duration::from_secs(1) {
        return Err(IdentityError::config(
            format!("{at}.jwks_min_interval"),
            "must be at least 1s, or unknown key ids could make the gateway hammer the JWKS endpoint",
        ));
    }
    if let Some(claim) = &issuer.groups_claim {
        check_claim_name(&format!("{at}.groups_claim"), claim)?;
    }
    if let Some(claim) = &issuer.subject_claim {
        check_claim_name(&format!("{at}.subject_claim"), claim)?;
    }
    if let Some(leeway) = issuer.leeway {
        check_leeway(&format!("{at}.leeway"), leeway)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &IdentityConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let c = IdentityConfig::default();
        c.validate().unwrap();
        assert_eq!(c.leeway, Duration::from_secs(30));
        assert_eq!(c.groups_claim, "groups");
    }

    #[test]
    fn names_the_bad_key() {
        let mut c = IdentityConfig::default();
        c.issuers.push(IssuerConfig::new("a", &["x"], &["RS256"]));
        c.issuers[0].public_keys.push(PublicKeyConfig {
            pem: Some("p".into()),
            ..Default::default()
        });
        c.issuers.push(IssuerConfig::new("b", &["x"], &["HS256"]));
        assert_eq!(
            err(&c),
            "identity.issuers[1].algorithms: HS256 needs a secret"
        );

        c.issuers[1].secret = Some(Secret::new("short".into()));
        assert!(
            err(&c).starts_with("identity.issuers[1].secret: HS256 needs a secret of at least")
        );

        c.issuers[1].secret = Some(Secret::new("x".repeat(32)));
        c.validate().unwrap();

        c.issuers[1].algorithms.push("none".into());
        assert_eq!(
            err(&c),
            "identity.issuers[1].algorithms[1]: the `none` algorithm is never accepted"
        );
        c.issuers[1].algorithms.pop();

        c.issuers[0].algorithms = vec!["ES256".into()];
        c.issuers[0].public_keys.clear();
        assert_eq!(
            err(&c),
            "identity.issuers[0].algorithms: ES256 needs public_keys, jwks_url or jwks_file"
        );
        c.issuers[0].jwks_url = Some("ftp://idp/keys".into());
        assert!(err(&c).starts_with("identity.issuers[0].jwks_url:"));
        c.issuers[0].jwks_url = Some("https://idp.example/keys".into());
        c.validate().unwrap();

        c.issuers[0].audiences.clear();
        assert!(err(&c).starts_with("identity.issuers[0].audiences:"));
    }

    #[test]
    fn api_keys_and_dev_signer_are_checked() {
        let mut c = IdentityConfig::default();
        c.api_keys.push(ApiKeyConfig {
            id: "ci_bot".into(),
            hash: "x".into(),
            subject: "ci".into(),
            groups: vec![],
            expires_at: None,
        });
        assert!(err(&c).starts_with("identity.api_keys[0].id:"));
        c.api_keys[0].id = "ci-bot".into();
        assert!(err(&c).starts_with("identity.api_keys[0].hash:"));

        let mut c = IdentityConfig {
            dev_signer: Some(DevSignerConfig::hs256("dev", "portcullis", "short")),
            ..Default::default()
        };
        assert_eq!(
            err(&c),
            "identity.dev_signer.secret: HS256 secret must be at least 32 bytes"
        );
        c.leeway = Duration::from_secs(3600);
        assert!(err(&c).starts_with("identity.leeway:"));
    }

    #[test]
    fn parses_toml_shape() {
        let c: IdentityConfig = toml::from_str(
            r#"
            groups_claim = "realm_access.roles"
            leeway = "10s"
            [[issuers]]
            issuer = "https://idp.example/realms/main"
            audiences = ["portcullis"]
            algorithms = ["RS256"]
            jwks_url = "https://idp.example/realms/main/protocol/openid-connect/certs"
            jwks_refresh = "5m"
            [[api_keys]]
            id = "ci"
            hash = "hmac-sha256:00112233445566778899aabbccddeeff:0000000000000000000000000000000000000000000000000000000000000000"
            subject = "ci-bot"
            groups = ["deployers"]
            expires_at = "2030-01-01T00:00:00Z"
            [dev_signer]
            issuer = "portcullis-dev"
            audience = "portcullis"
            secret = "0123456789abcdef0123456789abcdef"
            max_ttl = "8h"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.leeway, Duration::from_secs(10));
        assert_eq!(c.issuers[0].jwks_refresh, Duration::from_secs(300));
        assert_eq!(c.issuers[0].jwks_min_interval, Duration::from_secs(30));
        assert_eq!(c.dev_signer.unwrap().max_ttl, Duration::from_secs(8 * 3600));
    }
}
