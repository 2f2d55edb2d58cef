//! Upstream clients: connection pools over HTTP/1.1 and HTTP/2, TLS (with optional client
//! certificates), injected credentials, timeouts and retries.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portcullis_core::Secret;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::HttpError;
use crate::config::{CredentialConfig, HttpTargetConfig};

type Pool = Client<HttpsConnector<HttpConnector>, Body>;

/// The connection pools and credential of one target.
pub(crate) struct Upstream {
    /// Scheme and authority of the upstream.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the upstream URL, without trailing slash.
    pub base_path: String,
    /// HTTP/1.1 and HTTP/2 (ALPN, or prior knowledge for h2c).
    pool: Pool,
    /// HTTP/1.1 only, for upgrades.
    upgrade_pool: Pool,
    /// Injected header (name, value) with the value marked sensitive.
    pub credential: Option<(HeaderName, Secret<HeaderValue>)>,
    /// The credential's secret parts (raw and as sent), scrubbed from recordings.
    pub secrets: Vec<Secret<String>>,
    request_timeout: Duration,
    retries: u32,
}

fn read_pem(path: &std::path::Path, key: &str) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path)
        .map_err(|e| HttpError::config(key, format!("cannot read {}: {e}", path.display())))
}

fn load_certs(
    path: &std::path::Path,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let pem = read_pem(path, key)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::config(key, format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(HttpError::config(key, "no certificate in file"));
    }
    Ok(certs)
}

fn load_key(path: &std::path::Path, key: &str) -> Result<PrivateKeyDer<'static>, HttpError> {
    let pem = read_pem(path, key)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| HttpError::config(key, format!("bad PEM key: {e}")))?
        .ok_or_else(|| HttpError::config(key, "no private key in file"))
}

/// The rustls provider used everywhere in this crate.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_config(t: &HttpTargetConfig, at: &str) -> Result<rustls::ClientConfig, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(path) => {
            for cert in load_certs(path, &format!("{at}.ca_file"))? {
                roots
                    .add(cert)
                    .map_err(|e| HttpError::config(format!("{at}.ca_file"), e.to_string()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // Unparsable system certificates are skipped, as every TLS client does.
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Internal(e.to_string()))?
        .with_root_certificates(roots);
    match &t.credential {
        Some(CredentialConfig::Mtls {
            cert_file,
            key_file,
        }) => {
            let certs = load_certs(cert_file, &format!("{at}.credential.cert_file"))?;
            let key = load_key(key_file, &format!("{at}.credential.key_file"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| HttpError::config(format!("{at}.credential"), e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn pool(t: &HttpTargetConfig, tls: rustls::ClientConfig, upgrade: bool) -> Pool {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(t.connect_timeout));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = if upgrade {
        builder.enable_http1().wrap_connector(http)
    } else {
        builder.enable_http1().enable_http2().wrap_connector(http)
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64);
    if t.http2_prior_knowledge && !upgrade {
        client.http2_only(true);
    }
    client.build(connector)
}

impl Upstream {
    /// Builds the pools and reads the credential; errors name the key under `at`.
    pub fn new(t: &HttpTargetConfig, at: &str) -> Result<Self, HttpError> {
        let uri: http::Uri = t
            .upstream
            .parse()
            .map_err(|_| HttpError::config(format!("{at}.upstream"), "not a valid URL"))?;
        let (scheme, authority) = match (uri.scheme(), uri.authority()) {
            (Some(s), Some(a)) => (s.clone(), a.clone()),
            _ => {
                return Err(HttpError::config(
                    format!("{at}.upstream"),
                    "needs scheme and host",
                ));
            }
        };
        let mut secrets = Vec::new();
        let credential = match &t.credential {
            Some(CredentialConfig::Bearer { token }) => {
                let token = token.resolve(&format!("{at}.credential.token"))?;
                secrets.push(token.clone());
                Some((
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", token.expose()),
                ))
            }
            Some(CredentialConfig::Basic { username, password }) => {
                let password = password.resolve(&format!("{at}.credential.password"))?;
                secrets.push(password.clone());
                let raw = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                Some((http::header::AUTHORIZATION, format!("Basic {encoded}")))
            }
            Some(CredentialConfig::Header { name, value }) => {
                let value = value.resolve(&format!("{at}.credential.value"))?;
                secrets.push(value.clone());
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    HttpError::config(format!("{at}.credential.name"), "not a header name")
                })?;
                Some((name, value.expose().clone()))
            }
            Some(CredentialConfig::Mtls { .. }) | None => None,
        };
        let credential = match credential {
            Some((name, value)) => {
                secrets.push(Secret::new(value.clone()));
                let mut v = HeaderValue::from_str(&value).map_err(|_| {
                    HttpError::config(
                        format!("{at}.credential"),
                        "value is not a valid header value",
                    )
                })?;
                v.set_sensitive(true);
                Some((name, Secret::new(v)))
            }
            None => None,
        };
        let tls = tls_config(t, at)?;
        Ok(Self {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            pool: pool(t, tls.clone(), false),
            upgrade_pool: pool(t, tls, true),
            credential,
            secrets,
            request_timeout: t.request_timeout,
            retries: t.retries,
        })
    }

    /// The URI of `path` (already stripped of the route prefix) and `query` on the upstream.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<http::Uri, HttpError> {
        let mut pq = String::with_capacity(self.base_path.len() + path.len() + 1);
        pq.push_str(&self.base_path);
        if !path.starts_with('/') {
            pq.push('/');
        }
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| HttpError::BadRequest(format!("cannot build upstream URI: {e}")))
    }

    /// Sends a request. Connect errors are retried for idempotent methods whose whole body is
    /// in `replay`; nothing is retried once a request may have reached the upstream.
    pub async fn send(
        &self,
        request: Request<Body>,
        replay: Option<Bytes>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, HttpError> {
        let pool = if upgrade {
            &self.upgrade_pool
        } else {
            &self.pool
        };
        let idempotent = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let retries = match (&replay, idempotent && !upgrade) {
            (Some(_), true) => self.retries,
            _ => 0,
        };
        let (parts, body) = request.into_parts();
        let mut parts = Some(parts);
        let mut body = Some(body);
        let mut attempt = 0u32;
        loop {
            let this_body = match (body.take(), &replay) {
                (_, Some(bytes)) if attempt > 0 => Body::from(bytes.clone()),
                (Some(b), _) => b,
                (None, _) => Body::empty(),
            };
            // The head is copied only while a retry may still need it.
            let head = if attempt < retries {
                parts.clone()
            } else {
                parts.take()
            }
            .ok_or_else(|| HttpError::Internal("request head already sent".into()))?;
            let req = Request::from_parts(head, this_body);
            let result = tokio::time::timeout(self.request_timeout, pool.request(req)).await;
            let err = match result {
                Ok(Ok(response)) => return Ok(response),
                Err(_) => {
                    return Err(HttpError::UpstreamTimeout(format!(
                        "no response from {} within {:?}",
                        self.authority, self.request_timeout
                    )));
                }
                Ok(Err(e)) => e,
            };
            let text = describe(&err);
            if err.is_connect() {
                if attempt < retries {
                    attempt += 1;
                    tracing::debug!(upstream = %self.authority, attempt, error = %text, "retrying after connect error");
                    tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
                    continue;
                }
                if timed_out(&err) {
                    return Err(HttpError::UpstreamTimeout(format!(
                        "connecting to {}: {text}",
                        self.authority
                    )));
                }
                return Err(HttpError::UpstreamConnect(format!(
                    "{}: {text}",
                    self.authority
                )));
            }
            return Err(HttpError::UpstreamReset(format!(
                "{}: {text}",
                self.authority
            )));
        }
    }
}

fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn timed_out(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source = err.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if s.to_string().contains("timed out") || s.to_string().contains("timeout") {
            return true;
        }
        source = s.source();
    }
    false
}
