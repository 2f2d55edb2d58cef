//! [`Authenticator`]: the single entry point from a credential string to an [`Identity`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Identity, Secret};
use tokio::task::JoinHandle;

use crate::apikey::{API_KEY_PREFIX, ApiKeys};
use crate::config::{IdentityConfig, parse_algorithm};
use crate::dev::DevSigner;
use crate::error::{IdentityError, shorten};
use crate::jwt::{Attempt, ClaimNames, IssuerVerifier, peek};
use crate::keys::{
    JwksLocation, JwksSource, JwksStatus, KeyEntry, Trigger, http_client, key_from_pem,
};
use crate::verified::VerifiedCache;

/// Longest credential accepted (a JWT with many groups stays well below this).
const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

/// Verifies JWTs and API keys and turns them into [`Identity`] values.
///
/// Cheap to clone (one `Arc`), `Send + Sync`. Tokens signed by an already-known key are verified
/// without I/O or locks held across awaits; only a token naming an unknown `kid` of a JWKS issuer
/// may wait for a (rate-limited) JWKS fetch in [`Authenticator::authenticate`].
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: HashMap<String, IssuerVerifier>,
    api_keys: ApiKeys,
    dev: Option<DevSigner>,
    header: Option<http::HeaderName>,
    refresh_tasks: Vec<JoinHandle<()>>,
    verified: VerifiedCache,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.refresh_tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut issuers: Vec<&str> = self.inner.issuers.keys().map(String::as_str).collect();
        issuers.sort_unstable();
        f.debug_struct("Authenticator")
            .field("issuers", &issuers)
            .field("api_keys", &self.inner.api_keys.len())
            .field(
                "dev_signer",
                &self.inner.dev.as_ref().map(DevSigner::issuer),
            )
            .finish()
    }
}

impl Authenticator {
    /// Validates the configuration, loads PEM keys and key files, fetches every JWKS once (an
    /// unreachable JWKS fails start-up) and starts a background refresh task per JWKS.
    ///
    /// Must run inside a Tokio runtime when any issuer uses `jwks_url` or `jwks_file`.
    pub async fn from_config(config: &IdentityConfig) -> Result<Self, IdentityError> {
        config.validate()?;
        let need_http = config.issuers.iter().any(|i| i.jwks_url.is_some());
        let need_https = config.issuers.iter().any(|i| {
            i.jwks_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https:"))
        });
        let client = if need_http {
            Some(http_client(need_https)?)
        } else {
            None
        };

        let mut issuers = HashMap::new();
        let mut refresh_tasks = Vec::new();
        for (i, issuer) in config.issuers.iter().enumerate() {
            let at = format!("identity.issuers[{i}]");
            let mut algorithms = Vec::new();
            for (j, name) in issuer.algorithms.iter().enumerate() {
                algorithms.push(parse_algorithm(&format!("{at}.algorithms[{j}]"), name)?);
            }
            let mut keys = Vec::new();
            if let Some(secret) = &issuer.secret {
                keys.push(KeyEntry {
                    kid: None,
                    alg: None,
                    key: jsonwebtoken::DecodingKey::from_secret(secret.expose().as_bytes()),
                });
            }
            for (j, key) in issuer.public_keys.iter().enumerate() {
                let key_at = format!("{at}.public_keys[{j}]");
                let pem = match (&key.pem, &key.file) {
                    (Some(pem), _) => pem.as_bytes().to_vec(),
                    (None, Some(path)) => std::fs::read(path).map_err(|e| {
                        IdentityError::config(
                            format!("{key_at}.file"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?,
                    (None, None) => {
                        return Err(IdentityError::config(key_at, "set pem or file"));
                    }
                };
                keys.push(key_from_pem(&key_at, key.kid.clone(), &pem)?);
            }
            let location = match (&issuer.jwks_url, &issuer.jwks_file) {
                (Some(url), _) => Some(JwksLocation::Url(http::Uri::from_str(url).map_err(
                    |_| IdentityError::config(format!("{at}.jwks_url"), "not a valid URL"),
                )?)),
                (None, Some(path)) => Some(JwksLocation::File(path.clone())),
                (None, None) => None,
            };
            let jwks = match location {
                Some(location) => {
                    let source = JwksSource::load(
                        issuer.issuer.clone(),
                        location,
                        client.clone(),
                        issuer.jwks_min_interval,
                    )
                    .await?;
                    refresh_tasks.push(spawn_refresh(&source, issuer.jwks_refresh)?);
                    Some(source)
                }
                None => None,
            };
            let verifier = IssuerVerifier::new(
                issuer.issuer.clone(),
                &issuer.audiences,
                &algorithms,
                issuer.leeway.unwrap_or(config.leeway),
                keys,
                jwks,
                ClaimNames {
                    subject: issuer
                        .subject_claim
                        .clone()
                        .unwrap_or_else(|| config.subject_claim.clone()),
                    groups: issuer
                        .groups_claim
                        .clone()
                        .unwrap_or_else(|| config.groups_claim.clone()),
                },
            );
            issuers.insert(issuer.issuer.clone(), verifier);
        }

        let dev = match &config.dev_signer {
            Some(dev_config) => {
                let signer = DevSigner::from_config(dev_config)?;
                let verifier = IssuerVerifier::new(
                    signer.issuer().to_owned(),
                    &[signer.audience().to_owned()],
                    &[signer.algorithm()],
                    config.leeway,
                    vec![signer.verification_key()],
                    None,
                    ClaimNames {
                        subject: "sub".into(),
                        groups: "groups".into(),
                    },
                );
                issuers.insert(signer.issuer().to_owned(), verifier);
                Some(signer)
            }
            None => None,
        };

        let header = config
            .header
            .as_deref()
            .map(http::HeaderName::from_str)
            .transpose()
            .map_err(|_| {
                IdentityError::config("identity.header", "not a valid HTTP header name")
            })?;

        Ok(Self {
            inner: Arc::new(Inner {
                issuers,
                api_keys: ApiKeys::from_config(&config.api_keys)?,
                dev,
                header,
                refresh_tasks,
                verified: VerifiedCache::default(),
            }),
        })
    }

    /// Authenticates a JWT (three dot-separated parts) or an API key (`pk_<id>_<secret>`).
    ///
    /// A token whose `kid` is unknown to a JWKS issuer triggers one JWKS fetch (at most one per
    /// `jwks_min_interval` per issuer, shared by concurrent callers) and is retried once.
    /// A credential that verified is reused for up to [`crate::verified::TTL`] (never past its
    /// expiry) without verifying it again.
    pub async fn authenticate(&self, credential: &str) -> Result<Identity, IdentityError> {
        let generation = crate::keys::key_generation();
        if let Some(identity) = self.inner.verified.get(credential, generation) {
            return Ok(identity);
        }
        let identity = self.authenticate_uncached(credential).await?;
        self.inner.verified.put(credential, &identity, generation);
        Ok(identity)
    }

    async fn authenticate_uncached(&self, credential: &str) -> Result<Identity, IdentityError> {
        match self.classify(credential)? {
            Credential::ApiKey(key) => self.inner.api_keys.authenticate(key),
            Credential::Jwt(token) => {
                let header = peek(token)?;
                let issuer = self.issuer(&header.iss)?;
                if let Attempt::Verified(identity) = issuer.attempt(token, &header)? {
                    return Ok(identity);
                }
                if let Some(jwks) = &issuer.jwks {
                    jwks.refresh(Trigger::UnknownKey).await;
                    if let Attempt::Verified(identity) = issuer.attempt(token, &header)? {
                        return Ok(identity);
                    }
                }
                Err(issuer.unknown_key(&header))
            }
        }
    }

    /// Like [`Authenticator::authenticate`] but never waits: a token with an unknown `kid` fails
    /// with [`IdentityError::UnknownKey`] at once and schedules a (rate-limited) background JWKS
    /// refresh when called inside a Tokio runtime.
    pub fn authenticate_cached(&self, credential: &str) -> Result<Identity, IdentityError> {
        let generation = crate::keys::key_generation();
        if let Some(identity) = self.inner.verified.get(credential, generation) {
            return Ok(identity);
        }
        let identity = self.authenticate_cached_uncached(credential)?;
        self.inner.verified.put(credential, &identity, generation);
        Ok(identity)
    }

    fn authenticate_cached_uncached(&self, credential: &str) -> Result<Identity, IdentityError> {
        match self.classify(credential)? {
            Credential::ApiKey(key) => self.inner.api_keys.authenticate(key),
            Credential::Jwt(token) => {
                let header = peek(token)?;
                let issuer = self.issuer(&header.iss)?;
                match issuer.attempt(token, &header)? {
                    Attempt::Verified(identity) => Ok(identity),
                    Attempt::NoKey => {
                        if let (Some(jwks), Ok(runtime)) =
                            (&issuer.jwks, tokio::runtime::Handle::try_current())
                            && jwks.refresh_due()
                        {
                            let jwks = jwks.clone();
                            runtime.spawn(async move {
                                jwks.refresh(Trigger::UnknownKey).await;
                            });
                        }
                        Err(issuer.unknown_key(&header))
                    }
                }
            }
        }
    }

    /// Mints a development token with the configured `[identity.dev_signer]`.
    pub fn mint_dev_token(
        &self,
        subject: &str,
        groups: &[String],
        ttl: Duration,
    ) -> Result<Secret<String>, IdentityError> {
        self.inner
            .dev
            .as_ref()
            .ok_or(IdentityError::NoDevSigner)?
            .mint(subject, groups, ttl)
    }

    /// The extra credential header configured as `identity.header`, if any.
    pub fn credential_header(&self) -> Option<&http::HeaderName> {
        self.inner.header.as_ref()
    }

    /// Health of every JWKS-backed issuer, sorted by issuer.
    pub fn jwks_status(&self) -> Vec<JwksStatus> {
        let mut out: Vec<JwksStatus> = self
            .inner
            .issuers
            .values()
            .filter_map(|i| i.jwks.as_ref().map(|j| j.status()))
            .collect();
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        out
    }

    fn issuer(&self, iss: &str) -> Result<&IssuerVerifier, IdentityError> {
        self.inner
            .issuers
            .get(iss)
            .ok_or_else(|| IdentityError::UnknownIssuer {
                issuer: shorten(iss),
            })
    }

    fn classify<'a>(&self, credential: &'a str) -> Result<Credential<'a>, IdentityError> {
        let credential = credential.trim();
        if credential.is_empty() {
            return Err(IdentityError::MissingCredential);
        }
        if credential.len() > MAX_CREDENTIAL_LEN {
            return Err(IdentityError::Malformed("credential too long"));
        }
        if credential.starts_with(API_KEY_PREFIX) {
            return Ok(Credential::ApiKey(credential));
        }
        if credential.bytes().filter(|b| *b == b'.').count() == 2 {
            return Ok(Credential::Jwt(credential));
        }
        Err(IdentityError::Malformed(
            "expected a JWT or an API key (pk_<id>_<secret>)",
        ))
    }
}

enum Credential<'a> {
    Jwt(&'a str),
    ApiKey(&'a str),
}

fn spawn_refresh(
    source: &Arc<JwksSource>,
    every: Duration,
) -> Result<JoinHandle<()>, IdentityError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| IdentityError::Internal("JWKS refresh needs a Tokio runtime".into()))?;
    let weak = Arc::downgrade(source);
    Ok(runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(source) = weak.upgrade() else { break };
            source.refresh(Trigger::Periodic).await;
        }
    }))
}

/// Adapters (PostgreSQL, SSH) verify credentials through this trait.
impl portcullis_core::CredentialVerifier for Authenticator {
    fn verify(
        &self,
        credential: Secret<String>,
    ) -> portcullis_core::BoxFuture<'static, portcullis_core::Result<Identity>> {
        let auth = self.clone();
        Box::pin(async move {
            auth.authenticate(credential.expose())
                .await
                .map_err(|e| match e.side() {
                    portcullis_core::Side::Client => portcullis_core::Error::Client(e.to_string()),
                    portcullis_core::Side::Upstream => portcullis_core::Error::Upstream {
                        message: e.to_string(),
                        retryable: true,
                    },
                    _ => portcullis_core::Error::Internal(e.to_string()),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn is_send_sync_clone() {
        assert_send_sync::<Authenticator>();
    }
}
