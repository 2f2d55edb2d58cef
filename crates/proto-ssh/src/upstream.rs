//! The gateway as an SSH client of the target: pinned host keys, injected credential.

use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::PublicKeyOrCertificate;

use crate::SshError;
use crate::config::{HostKeyPin, SshUpstreamConfig, UpstreamCredential, fingerprint};

/// A target's upstream endpoint, ready to connect.
pub(crate) struct UpstreamEndpoint {
    pub target: String,
    pub config: SshUpstreamConfig,
    pub credential: UpstreamCredential,
    pub pins: Vec<HostKeyPin>,
}

/// Checks the host key against the pins; remembers what was presented.
pub(crate) struct PinnedHost {
    pins: Vec<HostKeyPin>,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                russh::keys::PublicKey::from(cert.public_key().clone())
            }
        };
        let fp = fingerprint(&key);
        let ok = self.pins.iter().any(|p| p.fingerprint == fp);
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(fp);
        }
        Ok(ok)
    }
}

/// A logged-in upstream connection.
pub(crate) type UpstreamHandle = client::Handle<PinnedHost>;

impl UpstreamEndpoint {
    /// Connects, checks the host key, and logs in with the gateway's credential.
    pub async fn connect(&self) -> Result<UpstreamHandle, SshError> {
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(SshError::UpstreamConnect(format!(
                "{} did not answer within {timeout:?}",
                self.config.address
            ))),
        }
    }

    async fn connect_inner(&self) -> Result<UpstreamHandle, SshError> {
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(std::time::Duration::from_secs(30)),
            nodelay: true,
            preferred: crate::preferred(),
            ..Default::default()
        });
        let presented = Arc::new(Mutex::new(None));
        let handler = PinnedHost {
            pins: self.pins.clone(),
            presented: presented.clone(),
        };
        let tcp = tokio::net::TcpStream::connect(&self.config.address)
            .await
            .map_err(|e| SshError::UpstreamConnect(format!("{}: {e}", self.config.address)))?;
        let _ = tcp.set_nodelay(true);
        let mut handle = match client::connect_stream(config, tcp, handler).await {
            Ok(h) => h,
            Err(russh::Error::UnknownKey) => {
                let got = presented
                    .lock()
                    .ok()
                    .and_then(|g| g.clone())
                    .unwrap_or_else(|| "an unknown key".into());
                return Err(SshError::HostKeyMismatch {
                    target: self.target.clone(),
                    presented: got,
                    expected: self
                        .pins
                        .iter()
                        .map(|p| p.fingerprint.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Err(e) => {
                return Err(SshError::UpstreamConnect(format!(
                    "{}: {e}",
                    self.config.address
                )));
            }
        };
        let user = self.config.user.clone();
        let result = match &self.credential {
            UpstreamCredential::Key(key) => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| SshError::Upstream(e.to_string()))?
                    .flatten();
                handle
                    .authenticate_publickey(
                        user.clone(),
                        PrivateKeyWithHashAlg::new(key.clone(), hash),
                    )
                    .await
            }
            UpstreamCredential::Password(password) => {
                handle
                    .authenticate_password(user.clone(), password.expose().clone())
                    .await
            }
        }
        .map_err(|e| SshError::Upstream(format!("login: {e}")))?;
        if !result.success() {
            return Err(SshError::UpstreamAuth {
                target: self.target.clone(),
                user,
            });
        }
        Ok(handle)
    }
}
