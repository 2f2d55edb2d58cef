//! Verification keys: static PEM keys and secrets, and JWKS documents fetched from a file or URL.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use portcullis_core::Timestamp;

use crate::error::IdentityError;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Time limit for one JWKS fetch (connect, TLS, headers and body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One verification key.
pub(crate) struct KeyEntry {
    /// Key id; `None` for static keys configured without one.
    pub(crate) kid: Option<String>,
    /// The only algorithm the key may verify, when known (JWK `alg`, or the EC curve).
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl KeyEntry {
    /// Whether the key may verify a token signed with `alg`.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// Builds a key from PEM text of an RSA, EC (P-256/P-384) or Ed25519 public key.
pub(crate) fn key_from_pem(
    at: &str,
    kid: Option<String>,
    pem: &[u8],
) -> Result<KeyEntry, IdentityError> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(KeyEntry {
            kid,
            alg: None,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The key is the uncompressed point: 1 + 2 * coordinate size.
        let alg = match key.as_bytes().len() {
            65 => Algorithm::ES256,
            97 => Algorithm::ES384,
            _ => {
                return Err(IdentityError::config(
                    at,
                    "EC keys must be on P-256 or P-384",
                ));
            }
        };
        return Ok(KeyEntry {
            kid,
            alg: Some(alg),
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(KeyEntry {
            kid,
            alg: Some(Algorithm::EdDSA),
            key,
        });
    }
    Err(IdentityError::config(
        at,
        "not a PEM RSA, EC (P-256/P-384) or Ed25519 public key",
    ))
}

/// Parses a JWKS document, keeping the signature keys it can use and skipping the others.
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<Vec<KeyEntry>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a JWKS document ({})", e.classify_name()))?;
    let mut out = Vec::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            Some(declared) => match Algorithm::from_str(&declared.to_string()) {
                Ok(alg) => Some(alg),
                // An encryption algorithm or one we do not implement.
                Err(_) => continue,
            },
            None => None,
        };
        let alg = match &jwk.algorithm {
            // Symmetric keys are never taken from a JWKS: a published document holds public keys.
            AlgorithmParameters::OctetKey(_) => continue,
            AlgorithmParameters::EllipticCurve(ec) => {
                let curve_alg = match ec.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => continue,
                };
                if alg.is_some_and(|a| a != curve_alg) {
                    continue;
                }
                Some(curve_alg)
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                if okp.curve != EllipticCurve::Ed25519 {
                    continue;
                }
                Some(Algorithm::EdDSA)
            }
            AlgorithmParameters::RSA(_) => {
                if alg.is_some_and(|a| a.family() != AlgorithmFamily::Rsa) {
                    continue;
                }
                alg
            }
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(KeyEntry {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if out.is_empty() {
        return Err("the JWKS holds no usable signature key".into());
    }
    Ok(out)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "missing or mistyped `keys`",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// HTTP(S) client used for JWKS URLs.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Builds the JWKS client: rustls with aws-lc-rs, the system's root certificates, HTTP/1.1.
/// When the system has no root certificates, only `http://` URLs can be used.
pub(crate) fn http_client(need_https: bool) -> Result<HttpClient, IdentityError> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| IdentityError::Internal(format!("TLS setup failed: {e}")))
    };
    let tls = match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) if need_https => {
            return Err(IdentityError::config(
                "identity.issuers.jwks_url",
                format!("no trusted root certificates for https JWKS URLs: {e}"),
            ));
        }
        Err(_) => builder()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn fetch_url(client: &HttpClient, uri: &http::Uri) -> Result<Vec<u8>, String> {
    let request = http::Request::get(uri.clone())
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "portcullis")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let work = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| format!("timed out after {FETCH_TIMEOUT:?}"))?
}

/// Where a JWKS document comes from.
pub(crate) enum JwksLocation {
    /// An http(s) URL.
    Url(http::Uri),
    /// A file on disk.
    File(PathBuf),
}

/// Health of one issuer's JWKS, as reported by [`crate::Authenticator::jwks_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksStatus {
    /// The issuer.
    pub issuer: String,
    /// Usable keys currently held.
    pub keys: usize,
    /// Fetch attempts so far (initial, periodic and on unknown `kid`).
    pub fetches: u64,
    /// When the keys were last replaced by a successful fetch.
    pub last_success: Option<Timestamp>,
    /// Why the most recent fetch failed, if it did (cleared by a success).
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Health {
    last_success: Option<Timestamp>,
    last_error: Option<String>,
}

/// A JWKS with its current keys and refresh bookkeeping.
/// Counts key sets installed from any JWKS in this process: a credential verified under
/// an earlier count is verified again (a key removed from a JWKS stops working at once).
static KEY_SETS_INSTALLED: AtomicU64 = AtomicU64::new(0);

/// The current count of installed JWKS key sets.
pub(crate) fn key_generation() -> u64 {
    KEY_SETS_INSTALLED.load(std::sync::atomic::Ordering::Acquire)
}

pub(crate) struct JwksSource {
    issuer: String,
    location: JwksLocation,
    client: Option<HttpClient>,
    keys: RwLock<Arc<Vec<KeyEntry>>>,
    min_interval: Duration,
    /// Serialises fetches; holds the time of the last attempt.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
    health: Mutex<Health>,
}

/// Why a refresh is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The periodic timer: always fetches.
    Periodic,
    /// A token named an unknown key: fetches only if the last attempt is older than the minimum interval.
    UnknownKey,
}

impl JwksSource {
    /// Creates the source and performs the initial fetch; fails if it fails.
    pub(crate) async fn load(
        issuer: String,
        location: JwksLocation,
        client: Option<HttpClient>,
        min_interval: Duration,
    ) -> Result<Arc<Self>, IdentityError> {
        let source = Arc::new(Self {
            issuer,
            location,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            min_interval,
            last_attempt: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
        });
        let keys = {
            let mut last = source.last_attempt.lock().await;
            *last = Some(Instant::now());
            source.fetch().await
        };
        let keys = keys.map_err(|reason| IdentityError::JwksFetch {
            issuer: source.issuer.clone(),
            reason,
        })?;
        source.install(keys);
        Ok(source)
    }

    /// The current keys; never blocks on a fetch.
    pub(crate) fn keys(&self) -> Arc<Vec<KeyEntry>> {
        match self.keys.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn install(&self, keys: Vec<KeyEntry>) {
        KEY_SETS_INSTALLED.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut guard) => *guard = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.last_success = Some(Timestamp::now());
        health.last_error = None;
    }

    /// Whether an unknown-`kid` refresh would fetch now (none running, none within the minimum
    /// interval). Cheap and never waits.
    pub(crate) fn refresh_due(&self) -> bool {
        match self.last_attempt.try_lock() {
            Ok(last) => last.is_none_or(|t| t.elapsed() >= self.min_interval),
            Err(_) => false,
        }
    }

    /// Fetches the JWKS again and installs it; on failure the previous keys stay in use.
    /// Returns whether new keys were installed.
    pub(crate) async fn refresh(&self, trigger: Trigger) -> bool {
        let mut last = self.last_attempt.lock().await;
        if trigger == Trigger::UnknownKey && last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(issuer = %self.issuer, keys = keys.len(), ?trigger, "JWKS refreshed");
                self.install(keys);
                true
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.issuer, %reason, ?trigger, "JWKS refresh failed; keeping the previous keys");
                let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
                health.last_error = Some(reason);
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<KeyEntry>, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let bytes = match &self.location {
            JwksLocation::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            JwksLocation::Url(uri) => {
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| "no HTTP client".to_owned())?;
                fetch_url(client, uri).await?
            }
        };
        parse_jwks(&bytes)
    }

    pub(crate) fn status(&self) -> JwksStatus {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        JwksStatus {
            issuer: self.issuer.clone(),
            keys: self.keys().len(),
            fetches: self.fetches.load(Ordering::Relaxed),
            last_success: health.last_success,
            last_error: health.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
            {"kty": "weird", "kid": "w"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"}
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert_eq!(keys[0].alg, Some(Algorithm::EdDSA));
        assert!(keys[0].fits(Algorithm::EdDSA));
        assert!(!keys[0].fits(Algorithm::RS256));

        assert!(parse_jwks(b"{\"keys\": []}").is_err());
        assert!(matches!(parse_jwks(b"nope"), Err(e) if e.contains("invalid JSON")));
    }
}
