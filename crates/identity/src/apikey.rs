//! API keys: `pk_<id>_<secret>` presented by clients, stored as salted HMAC-SHA256 hashes.
//!
//! The stored form is `hmac-sha256:<salt hex>:<mac hex>` where `salt` is 16 random bytes and
//! `mac = HMAC-SHA256(key = salt, message = the whole presented key)`. The secret part of a key is
//! 32 bytes from the operating system's CSPRNG, so the hash does not need to be slow: nobody can
//! guess 256 bits, and a slow KDF (PBKDF2, Argon2) would only add latency to every request. The
//! per-key salt defeats precomputed tables and makes equal keys hash differently; the MAC covers the
//! id, so a stored hash cannot be moved to another id. Comparison is constant-time.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use portcullis_core::{AuthMethod, Identity, Secret, Timestamp};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{ApiKeyConfig, parse_expiry};
use crate::error::IdentityError;

/// Prefix of every API key.
pub const API_KEY_PREFIX: &str = "pk_";
const HASH_SCHEME: &str = "hmac-sha256";
const SALT_LEN: usize = 16;
const SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Whether `id` is a valid API key id: 1 to 64 ASCII letters, digits or `-`.
pub(crate) fn valid_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A parsed stored hash.
#[derive(Clone)]
pub(crate) struct StoredHash {
    salt: [u8; SALT_LEN],
    mac: [u8; 32],
}

impl StoredHash {
    pub(crate) fn parse(text: &str) -> Result<Self, &'static str> {
        const FORMAT: &str = "expected hmac-sha256:<32 hex digits of salt>:<64 hex digits of MAC>";
        let mut parts = text.split(':');
        let (Some(scheme), Some(salt), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(FORMAT);
        };
        if scheme != HASH_SCHEME {
            return Err(FORMAT);
        }
        let mut out = StoredHash {
            salt: [0; SALT_LEN],
            mac: [0; 32],
        };
        hex::decode_to_slice(salt, &mut out.salt).map_err(|_| FORMAT)?;
        hex::decode_to_slice(mac, &mut out.mac).map_err(|_| FORMAT)?;
        Ok(out)
    }

    fn compute(salt: &[u8; SALT_LEN], key: &str) -> Result<[u8; 32], IdentityError> {
        let mut mac = HmacSha256::new_from_slice(salt)
            .map_err(|_| IdentityError::Internal("HMAC key setup failed".into()))?;
        mac.update(key.as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    fn matches(&self, key: &str) -> Result<bool, IdentityError> {
        let mac = Self::compute(&self.salt, key)?;
        Ok(bool::from(mac.ct_eq(&self.mac)))
    }

    fn encode(&self) -> String {
        format!(
            "{HASH_SCHEME}:{}:{}",
            hex::encode(self.salt),
            hex::encode(self.mac)
        )
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut out = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| IdentityError::Internal("system random generator failed".into()))?;
    Ok(out)
}

/// Computes the stored form (`hmac-sha256:<salt>:<mac>`) of a presented API key, with a fresh
/// random salt. Use it to hash a key that was generated elsewhere; [`generate_api_key`] does both.
pub fn hash_api_key(key: &str) -> Result<String, IdentityError> {
    if parse_presented(key).is_none() {
        return Err(IdentityError::Malformed(
            "API keys look like pk_<id>_<secret>",
        ));
    }
    let salt = random_bytes::<SALT_LEN>()?;
    let mac = StoredHash::compute(&salt, key)?;
    Ok(StoredHash { salt, mac }.encode())
}

/// Checks a presented API key against a stored hash, in constant time.
pub fn verify_api_key_hash(key: &str, stored: &str) -> Result<bool, IdentityError> {
    let stored = StoredHash::parse(stored)
        .map_err(|reason| IdentityError::config("api key hash", reason))?;
    stored.matches(key)
}

/// A freshly generated API key: hand `key` to the client once, put `hash` into the configuration.
#[derive(Debug, Clone)]
pub struct GeneratedApiKey {
    /// The key id.
    pub id: String,
    /// The full key, `pk_<id>_<secret>`; shown once, never stored by the gateway.
    pub key: Secret<String>,
    /// The stored form for `identity.api_keys[].hash`.
    pub hash: String,
}

impl GeneratedApiKey {
    /// A `[[identity.api_keys]]` TOML block for this key (the key itself is not included).
    pub fn toml_snippet(&self, subject: &str, groups: &[String]) -> String {
        let groups = groups
            .iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[[identity.api_keys]]\nid = {:?}\nhash = {:?}\nsubject = {subject:?}\ngroups = [{groups}]\n",
            self.id, self.hash
        )
    }
}

/// Generates a new API key `pk_<id>_<43 base64url characters>` (256 random bits) and its stored hash.
pub fn generate_api_key(id: &str) -> Result<GeneratedApiKey, IdentityError> {
    if !valid_key_id(id) {
        return Err(IdentityError::config(
            "api key id",
            "must be 1 to 64 letters, digits or `-`",
        ));
    }
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_LEN>()?);
    let key = format!("{API_KEY_PREFIX}{id}_{secret}");
    let hash = hash_api_key(&key)?;
    Ok(GeneratedApiKey {
        id: id.to_owned(),
        key: Secret::new(key),
        hash,
    })
}

/// Splits `pk_<id>_<secret>` into id and secret.
fn parse_presented(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (valid_key_id(id) && !secret.is_empty()).then_some((id, secret))
}

struct ApiKeyEntry {
    hash: StoredHash,
    subject: String,
    groups: Vec<String>,
    expires_at: Option<Timestamp>,
}

/// The configured API keys, by id.
pub(crate) struct ApiKeys {
    by_id: HashMap<String, ApiKeyEntry>,
    /// Used for unknown ids so that they cost about as much as known ones.
    decoy: StoredHash,
}

impl ApiKeys {
    pub(crate) fn from_config(keys: &[ApiKeyConfig]) -> Result<Self, IdentityError> {
        let mut by_id = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            let at = format!("identity.api_keys[{i}]");
            let hash = StoredHash::parse(&key.hash)
                .map_err(|reason| IdentityError::config(format!("{at}.hash"), reason))?;
            let expires_at = key
                .expires_at
                .as_deref()
                .map(|e| parse_expiry(&format!("{at}.expires_at"), e))
                .transpose()?;
            by_id.insert(
                key.id.clone(),
                ApiKeyEntry {
                    hash,
                    subject: key.subject.clone(),
                    groups: key.groups.clone(),
                    expires_at,
                },
            );
        }
        Ok(Self {
            by_id,
            decoy: StoredHash {
                salt: random_bytes()?,
                mac: [0; 32],
            },
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn authenticate(&self, key: &str) -> Result<Identity, IdentityError> {
        let (id, _) = parse_presented(key).ok_or(IdentityError::Malformed(
            "API keys look like pk_<id>_<secret>",
        ))?;
        let Some(entry) = self.by_id.get(id) else {
            // Same work as a known id, result ignored.
            let _ = self.decoy.matches(key);
            return Err(IdentityError::UnknownApiKey);
        };
        if !entry.hash.matches(key)? {
            return Err(IdentityError::UnknownApiKey);
        }
        if let Some(expiry) = entry.expires_at
            && expiry <= Timestamp::now()
        {
            return Err(IdentityError::ApiKeyExpired);
        }
        Ok(Identity {
            subject: entry.subject.clone(),
            groups: entry.groups.clone(),
            method: AuthMethod::ApiKey,
            issuer: Some(format!("api-key:{id}")),
            expires_at: entry.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips() {
        let generated = generate_api_key("ci-bot").unwrap();
        let key = generated.key.expose();
        assert!(key.starts_with("pk_ci-bot_"));
        assert_eq!(key.len(), "pk_ci-bot_".len() + 43);
        assert!(verify_api_key_hash(key, &generated.hash).unwrap());
        assert!(!verify_api_key_hash(&format!("{key}x"), &generated.hash).unwrap());
        // A fresh salt every time.
        assert_ne!(hash_api_key(key).unwrap(), generated.hash);
        assert!(!format!("{generated:?}").contains(key.as_str()));
        let snippet = generated.toml_snippet("ci", &["deployers".into()]);
        assert!(snippet.contains("id = \"ci-bot\""));
        assert!(!snippet.contains(key.as_str()));
    }

    #[test]
    fn parses_presented_keys() {
        assert_eq!(parse_presented("pk_a_b_c"), Some(("a", "b_c")));
        assert_eq!(parse_presented("pk_a_"), None);
        assert_eq!(parse_presented("pk__x"), None);
        assert_eq!(parse_presented("xx_a_b"), None);
        assert!(generate_api_key("bad_id").is_err());
        assert!(StoredHash::parse("hmac-sha256:00:00").is_err());
    }
}
