//! Configuration of the HTTP gateway, as read from TOML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::Secret;
use serde::{Deserialize, Serialize};

use crate::HttpError;
use crate::jsonmask::JsonPaths;
use crate::policy::HttpPolicyConfig;

/// Request headers never recorded, whatever `record_headers` says.
pub const NEVER_RECORDED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// The HTTP gateway's configuration.
///
/// ```toml
/// listen = "127.0.0.1:8080"
/// record_body_bytes = 4096
///
/// [[routes]]
/// host = "k8s.example.internal"
/// target = "k8s"
///
/// [[routes]]
/// path_prefix = "/billing"
/// strip_prefix = true
/// target = "billing"
///
/// [targets.billing]
/// upstream = "http://127.0.0.1:9000"
/// allowed_groups = ["finance"]
/// credential = { type = "bearer", token = { env = "BILLING_TOKEN" } }
/// mask = { json = ["$.customers[*].email"], headers = ["x-internal-id"] }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGatewayConfig {
    /// Address to listen on (used by the caller; [`crate::HttpGateway::serve`] takes a bound listener).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Routes, tried in order: the first whose `host` and `path_prefix` both match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Targets by name.
    #[serde(default)]
    pub targets: BTreeMap<String, HttpTargetConfig>,
    /// Most bytes of each request and response body kept in the recording (masked); 0 keeps none.
    #[serde(default = "default_record_body_bytes")]
    pub record_body_bytes: usize,
    /// Time a client has to send a complete request head; slower connections are closed.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head accepted (HTTP/1 read buffer, HTTP/2 header list); larger heads get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Buffer size of each direction of an upgraded (WebSocket) connection.
    #[serde(default = "default_upgrade_buffer_bytes")]
    pub upgrade_buffer_bytes: usize,
    /// Client-facing TLS; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// Threads that serve connections, each with a single-threaded runtime and its own
    /// upstream connection pools, all accepting from the one listener (as nginx workers
    /// do). Unset or 0: [`crate::HttpGateway::serve`] serves on the caller's runtime (the
    /// `portcullis` binary starts one worker per core when it is unset).
    #[serde(default)]
    pub workers: Option<usize>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_record_body_bytes() -> usize {
    4096
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_upgrade_buffer_bytes() -> usize {
    16 * 1024
}

/// Certificate and key of the client-facing TLS listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// One route: which requests go to which target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Host name the request must name (`Host` / `:authority`, port ignored, case-insensitive).
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix the request must start with, on a segment boundary (`/api` matches `/api/x`, not `/apix`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Removes `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Target name.
    pub target: String,
}

/// Where a secret value comes from: exactly one of `value`, `env`, `file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The value itself (discouraged outside tests).
    #[serde(default)]
    pub value: Option<Secret<String>>,
    /// An environment variable holding the value.
    #[serde(default)]
    pub env: Option<String>,
    /// A file holding the value (trailing newline removed).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl SecretSource {
    /// An inline value.
    pub fn inline(value: impl Into<String>) -> Self {
        Self {
            value: Some(Secret::new(value.into())),
            ..Self::default()
        }
    }

    /// Reads the secret; errors name `key`.
    pub fn resolve(&self, key: &str) -> Result<Secret<String>, HttpError> {
        match (&self.value, &self.env, &self.file) {
            (Some(v), None, None) => Ok(v.clone()),
            (None, Some(var), None) => std::env::var(var).map(Secret::new).map_err(|_| {
                HttpError::config(key, format!("environment variable {var} is not set"))
            }),
            (None, None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| {
                    HttpError::config(key, format!("cannot read {}: {e}", path.display()))
                }),
            _ => Err(HttpError::config(
                key,
                "set exactly one of value, env, file",
            )),
        }
    }
}

/// The credential the gateway presents to a target (the caller's own never goes upstream).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: SecretSource,
    },
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretSource,
    },
    /// A named header (`X-Api-Key: ...`).
    Header {
        /// Header name.
        name: String,
        /// Header value.
        value: SecretSource,
    },
    /// A TLS client certificate (the upstream must be `https://`).
    Mtls {
        /// PEM certificate chain.
        cert_file: PathBuf,
        /// PEM private key.
        key_file: PathBuf,
    },
}

/// Masking of a target's responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// JSON paths whose values become `"[masked]"` in JSON responses.
    #[serde(default)]
    pub json: Vec<String>,
    /// Response headers whose values become `[masked]`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Masking by content (the masking crate's detectors and strategies) of textual bodies
    /// (`text/*`, JSON, XML, form data). It is applied by the pipeline's masking layer
    /// through the output hooks: the gateway binary adds a masker for this target to its
    /// engine; code that embeds [`crate::HttpGateway`] builds its own engine.
    #[serde(default, skip_serializing)]
    pub content: Option<portcullis_masking::MaskingConfig>,
}

/// One upstream API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTargetConfig {
    /// Base URL: `http://host:port` or `https://host:port`, optionally with a path prefix.
    pub upstream: String,
    /// Groups allowed to use the target at all; empty means nobody.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Credential injected into every forwarded request.
    #[serde(default)]
    pub credential: Option<CredentialConfig>,
    /// PEM CA bundle to verify an `https` upstream (system roots when absent).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Speak HTTP/2 without negotiation to an `http://` upstream (h2c); `https` upstreams negotiate by ALPN.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// Time to establish a connection (TCP and TLS).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time from sending the request to the response head.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Extra attempts after a connect error, for idempotent methods with a replayable body.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Forwards the client's `Host` instead of the upstream's authority.
    #[serde(default)]
    pub preserve_host: bool,
    /// Request headers kept in the recording (credential headers never are).
    #[serde(default = "default_record_headers")]
    pub record_headers: Vec<String>,
    /// Request headers removed before forwarding (in addition to the caller's credential).
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Method, path, query and header rules; absent means the pipeline's policy decides.
    #[serde(default)]
    pub policy: Option<HttpPolicyConfig>,
    /// Response masking.
    #[serde(default)]
    pub mask: MaskConfig,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    2
}
fn default_record_headers() -> Vec<String> {
    [
        "host",
        "user-agent",
        "content-type",
        "content-length",
        "accept",
    ]
    .map(String::from)
    .to_vec()
}

impl HttpGatewayConfig {
    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, HttpError> {
        toml::from_str(text).map_err(|e| HttpError::config("(toml)", e.to_string()))
    }

    /// Checks every value that can be checked without I/O; errors name the key.
    pub fn validate(&self) -> Result<(), HttpError> {
        if self.max_header_bytes < 8192 {
            return Err(HttpError::config(
                "max_header_bytes",
                "must be at least 8192",
            ));
        }
        if self.workers.is_some_and(|w| w > 256) {
            return Err(HttpError::config("workers", "must be at most 256"));
        }
        if self.header_read_timeout.is_zero() {
            return Err(HttpError::config("header_read_timeout", "must be positive"));
        }
        if !(1024..=1 << 20).contains(&self.upgrade_buffer_bytes) {
            return Err(HttpError::config(
                "upgrade_buffer_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        if self.record_body_bytes > 1 << 20 {
            return Err(HttpError::config(
                "record_body_bytes",
                "must be at most 1048576",
            ));
        }
        if self.routes.is_empty() {
            return Err(HttpError::config("routes", "at least one route is needed"));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if r.host.is_none() && r.path_prefix.is_none() {
                return Err(HttpError::config(at, "set host, path_prefix or both"));
            }
            if let Some(p) = &r.path_prefix
                && !p.starts_with('/')
            {
                return Err(HttpError::config(
                    format!("{at}.path_prefix"),
                    "must start with `/`",
                ));
            }
            if r.strip_prefix && r.path_prefix.is_none() {
                return Err(HttpError::config(
                    format!("{at}.strip_prefix"),
                    "needs path_prefix",
                ));
            }
            if !self.targets.contains_key(&r.target) {
                return Err(HttpError::config(
                    format!("{at}.target"),
                    format!("no target named `{}`", r.target),
                ));
            }
        }
        for (name, t) in &self.targets {
            t.validate(&format!("targets.{name}"))?;
        }
        Ok(())
    }
}

impl HttpTargetConfig {
    /// A target forwarding to `upstream`, open to `groups`, with every other setting at its default.
    pub fn new(upstream: impl Into<String>, groups: &[&str]) -> Self {
        Self {
            upstream: upstream.into(),
            allowed_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            credential: None,
            ca_file: None,
            http2_prior_knowledge: false,
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            retries: default_retries(),
            preserve_host: false,
            record_headers: default_record_headers(),
            strip_headers: Vec::new(),
            policy: None,
            mask: MaskConfig::default(),
        }
    }

    fn validate(&self, at: &str) -> Result<(), HttpError> {
        let uri: http::Uri = self
            .upstream
            .parse()
            .map_err(|_| HttpError::config(format!("{at}.upstream"), "not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(HttpError::config(
                    format!("{at}.upstream"),
                    "must start with http:// or https://",
                ));
            }
        }
        if uri.authority().is_none() {
            return Err(HttpError::config(format!("{at}.upstream"), "needs a host"));
        }
        if uri.query().is_some() {
            return Err(HttpError::config(
                format!("{at}.upstream"),
                "must not have a query",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(HttpError::config(
                format!("{at}.connect_timeout"),
                "must be positive",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(HttpError::config(
                format!("{at}.request_timeout"),
                "must be positive",
            ));
        }
        if self.retries > 5 {
            return Err(HttpError::config(format!("{at}.retries"), "at most 5"));
        }
        for (i, h) in self
            .record_headers
            .iter()
            .chain(&self.strip_headers)
            .enumerate()
        {
            http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                HttpError::config(
                    format!("{at}.record_headers/strip_headers[{i}]"),
                    "not a header name",
                )
            })?;
        }
        match &self.credential {
            Some(CredentialConfig::Header { name, .. }) => {
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    HttpError::config(format!("{at}.credential.name"), "not a header name")
                })?;
            }
            Some(CredentialConfig::Mtls { .. }) if uri.scheme_str() != Some("https") => {
                return Err(HttpError::config(
                    format!("{at}.credential"),
                    "mtls needs an https:// upstream",
                ));
            }
            _ => {}
        }
        JsonPaths::parse(&self.mask.json)
            .map_err(|e| HttpError::config(format!("{at}.mask.json"), e))?;
        for (i, h) in self.mask.headers.iter().enumerate() {
            http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                HttpError::config(format!("{at}.mask.headers[{i}]"), "not a header name")
            })?;
        }
        if let Some(p) = &self.policy {
            p.compile(&format!("{at}.policy"))?;
        }
        Ok(())
    }
}
