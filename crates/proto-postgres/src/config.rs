//! Configuration of PostgreSQL targets and listeners.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Secret;
use serde::Deserialize;

use crate::PgError;

/// How the gateway protects its connection to an upstream database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    /// Plain TCP (loopback or a trusted network only).
    #[default]
    Disable,
    /// TLS, without verifying the server certificate (like libpq `sslmode=require`).
    Require,
    /// TLS with the server certificate verified against `ca_file` and `server_name`.
    VerifyFull,
}

/// Where a PostgreSQL target lives and the credential the gateway uses there.
/// Clients never see any of this.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `host:port` of the database server.
    pub address: String,
    /// Database name on the server.
    pub database: String,
    /// Role the gateway logs in as.
    pub user: String,
    /// The role's password, inline (prefer `password_env` or `password_file`).
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS towards the server.
    #[serde(default)]
    pub tls: UpstreamTlsMode,
    /// PEM CA bundle for `verify-full`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name to verify in the server certificate (defaults to the host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Time allowed to connect and log in.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl UpstreamConfig {
    /// Resolves the password from exactly one of its sources.
    pub fn resolve_password(&self) -> Result<Secret<String>, PgError> {
        let sources = usize::from(self.password.is_some())
            + usize::from(self.password_env.is_some())
            + usize::from(self.password_file.is_some());
        if sources > 1 {
            return Err(PgError::Config(
                "set only one of password, password_env, password_file".into(),
            ));
        }
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var).map(Secret::new).map_err(|_| {
                PgError::Config(format!(
                    "password_env: environment variable {var} is not set"
                ))
            });
        }
        if let Some(path) = &self.password_file {
            return std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| {
                    PgError::Config(format!(
                        "password_file: cannot read {}: {e}",
                        path.display()
                    ))
                });
        }
        // Trust or peer authentication upstream needs no password.
        Ok(Secret::new(String::new()))
    }

    /// Builds the TLS client configuration for this upstream, if TLS is on.
    pub fn tls_connector(&self) -> Result<Option<tokio_rustls::TlsConnector>, PgError> {
        match self.tls {
            UpstreamTlsMode::Disable => Ok(None),
            UpstreamTlsMode::Require => {
                let provider = rustls::crypto::aws_lc_rs::default_provider();
                let config =
                    rustls::ClientConfig::builder_with_provider(Arc::new(provider.clone()))
                        .with_safe_default_protocol_versions()
                        .map_err(|e| PgError::Config(format!("tls: {e}")))?
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(crate::tls::NoVerify(provider)))
                        .with_no_client_auth();
                Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(config))))
            }
            UpstreamTlsMode::VerifyFull => {
                let path = self
                    .ca_file
                    .as_ref()
                    .ok_or_else(|| PgError::Config("tls = \"verify-full\" needs ca_file".into()))?;
                let roots = crate::tls::load_roots(path)?;
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| PgError::Config(format!("tls: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(config))))
            }
        }
    }

    /// The host part of `address`, used as the default TLS server name.
    pub fn host(&self) -> &str {
        match self.address.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => &self.address,
        }
    }
}

/// Settings of a PostgreSQL listener.
#[derive(Clone)]
pub struct ListenerSettings {
    /// TLS towards clients (answers `SSLRequest` with `S`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse clients that do not use TLS (their password carries a token).
    pub require_tls: bool,
    /// Largest client message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Time a client has to finish startup and authentication.
    pub login_timeout: Duration,
    /// Time sessions get to finish in-flight work on shutdown.
    pub shutdown_grace: Duration,
    /// Largest number of commands in flight (pipelined) per session.
    pub max_pipeline: usize,
}

impl std::fmt::Debug for ListenerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSettings")
            .field("tls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("login_timeout", &self.login_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_pipeline", &self.max_pipeline)
            .finish()
    }
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            tls: None,
            require_tls: false,
            max_message_bytes: 64 << 20,
            login_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_pipeline: 4096,
        }
    }
}
