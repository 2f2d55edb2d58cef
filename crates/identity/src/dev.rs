//! The development signer: mints short-lived tokens for a local issuer that the gateway trusts.

use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use portcullis_core::Secret;
use serde_json::json;

use crate::config::DevSignerConfig;
use crate::error::IdentityError;
use crate::keys::KeyEntry;

/// Signs development tokens (`portcullis token`). Its issuer is verified like any other.
pub struct DevSigner {
    issuer: String,
    audience: String,
    key_id: String,
    alg: Algorithm,
    key: EncodingKey,
    verify_key: DecodingKey,
    max_ttl: Duration,
}

impl std::fmt::Debug for DevSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSigner")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl DevSigner {
    /// Loads the signer from `[identity.dev_signer]` (reads `private_key_file` if set). Needs no
    /// runtime and touches no network, so a CLI can mint tokens without building an
    /// [`crate::Authenticator`].
    pub fn from_config(config: &DevSignerConfig) -> Result<Self, IdentityError> {
        let at = "identity.dev_signer";
        let (alg, key, verify_key) = if let Some(secret) = &config.secret {
            if secret.expose().len() < 32 {
                return Err(IdentityError::config(
                    format!("{at}.secret"),
                    "HS256 secret must be at least 32 bytes",
                ));
            }
            let bytes = secret.expose().as_bytes();
            (
                Algorithm::HS256,
                EncodingKey::from_secret(bytes),
                DecodingKey::from_secret(bytes),
            )
        } else {
            let (pem, key_at) = match (&config.private_key_pem, &config.private_key_file) {
                (Some(pem), None) => (
                    Secret::new(pem.expose().as_bytes().to_vec()),
                    format!("{at}.private_key_pem"),
                ),
                (None, Some(path)) => (
                    Secret::new(std::fs::read(path).map_err(|e| {
                        IdentityError::config(
                            format!("{at}.private_key_file"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?),
                    format!("{at}.private_key_file"),
                ),
                _ => {
                    return Err(IdentityError::config(
                        at,
                        "set exactly one of secret, private_key_file, private_key_pem",
                    ));
                }
            };
            let key = EncodingKey::from_ed_pem(pem.expose()).map_err(|_| {
                IdentityError::config(&key_at, "not an Ed25519 private key in PKCS#8 PEM")
            })?;
            let pair = Ed25519KeyPair::from_pkcs8(key.inner()).map_err(|_| {
                IdentityError::config(&key_at, "not an Ed25519 private key in PKCS#8 PEM")
            })?;
            let verify_key = DecodingKey::from_ed_der(pair.public_key().as_ref());
            (Algorithm::EdDSA, key, verify_key)
        };
        Ok(Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            key_id: config.key_id.clone(),
            alg,
            key,
            verify_key,
            max_ttl: config.max_ttl,
        })
    }

    /// The issuer (`iss`) of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing algorithm (`HS256` or `EdDSA`).
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Mints a token for `subject` in `groups`, valid for `ttl` (at most `max_ttl`).
    /// Claims: `iss`, `aud`, `sub`, `groups`, `iat`, `nbf`, `exp`, `jti`.
    pub fn mint(
        &self,
        subject: &str,
        groups: &[String],
        ttl: Duration,
    ) -> Result<Secret<String>, IdentityError> {
        if subject.is_empty() {
            return Err(IdentityError::MissingClaim {
                claim: "sub".into(),
            });
        }
        if ttl.is_zero() || ttl > self.max_ttl {
            return Err(IdentityError::config(
                "ttl",
                format!(
                    "must be positive and at most identity.dev_signer.max_ttl ({})",
                    humantime::format_duration(self.max_ttl)
                ),
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| IdentityError::Internal("system clock is before 1970".into()))?
            .as_secs();
        let jti = uuid_like()?;
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(ttl.as_secs().max(1)),
            "jti": jti,
        });
        let mut header = Header::new(self.alg);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|_| IdentityError::Internal("signing the development token failed".into()))
    }

    /// The verification key of the development issuer.
    pub(crate) fn verification_key(&self) -> KeyEntry {
        KeyEntry {
            kid: Some(self.key_id.clone()),
            alg: Some(self.alg),
            key: self.verify_key.clone(),
        }
    }

    pub(crate) fn audience(&self) -> &str {
        &self.audience
    }
}

fn uuid_like() -> Result<String, IdentityError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdentityError::Internal("system random generator failed".into()))?;
    Ok(hex::encode(bytes))
}
