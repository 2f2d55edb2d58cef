//! The SSH listener.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_core::{CredentialVerifier, Pipeline, Target};
use russh::keys::PublicKey;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::SshError;
use crate::config::{
    KeyIdentityConfig, SshSettings, SshUpstreamConfig, UserCaConfig, fingerprint, parse_public_key,
};
use crate::conn;
use crate::upstream::UpstreamEndpoint;

/// A target as the gateway serves it.
pub(crate) struct SshTarget {
    pub target: Arc<Target>,
    pub endpoint: Arc<UpstreamEndpoint>,
}

/// Shared state of a listener.
pub(crate) struct GatewayInner {
    pub targets: HashMap<String, Arc<SshTarget>>,
    pub keys: Vec<(PublicKey, KeyIdentityConfig)>,
    pub cas: Vec<(String, UserCaConfig)>,
    pub verifier: Option<Arc<dyn CredentialVerifier>>,
    pub pipeline: Pipeline,
    pub settings: SshSettings,
    pub russh: Arc<russh::server::Config>,
    pub open: std::sync::atomic::AtomicUsize,
}

/// An SSH gateway: authenticates clients (keys, certificates, tokens), opens their
/// target with the gateway's own credential and pinned host keys, and relays exec,
/// shell and (if allowed) file transfer channels through the pipeline.
#[derive(Clone)]
pub struct SshGateway {
    inner: Arc<GatewayInner>,
}

/// Builds an [`SshGateway`].
pub struct SshGatewayBuilder {
    targets: HashMap<String, Arc<SshTarget>>,
    verifier: Option<Arc<dyn CredentialVerifier>>,
    pipeline: Pipeline,
    settings: SshSettings,
}

impl SshGatewayBuilder {
    /// Adds a target; clients reach it with its name as the login name (`ssh NAME@gateway`).
    pub fn target(mut self, target: Target, upstream: SshUpstreamConfig) -> Result<Self, SshError> {
        let name = target.name.clone();
        if name.is_empty() || name.contains('+') {
            return Err(SshError::Config(format!(
                "target name {name:?} cannot be used as an SSH login name"
            )));
        }
        if self.targets.contains_key(&name) {
            return Err(SshError::Config(format!("target {name} is defined twice")));
        }
        let credential = upstream.credential()?;
        let pins = upstream.pins()?;
        self.targets.insert(
            name.clone(),
            Arc::new(SshTarget {
                target: Arc::new(target),
                endpoint: Arc::new(UpstreamEndpoint {
                    target: name,
                    config: upstream,
                    credential,
                    pins,
                }),
            }),
        );
        Ok(self)
    }

    /// Finishes the gateway: loads the host key and parses the client keys.
    pub fn build(self) -> Result<SshGateway, SshError> {
        let host_key =
            russh::keys::load_secret_key(&self.settings.host_key_file, None).map_err(|e| {
                SshError::Config(format!(
                    "host_key_file {}: {e}",
                    self.settings.host_key_file.display()
                ))
            })?;
        let mut keys = Vec::new();
        for k in &self.settings.keys {
            keys.push((parse_public_key(&k.public_key)?, k.clone()));
        }
        let mut cas = Vec::new();
        for ca in &self.settings.user_cas {
            cas.push((fingerprint(&parse_public_key(&ca.public_key)?), ca.clone()));
        }
        let mut methods = russh::MethodSet::empty();
        methods.push(russh::MethodKind::PublicKey);
        if self.settings.token_auth && self.verifier.is_some() {
            methods.push(russh::MethodKind::KeyboardInteractive);
            methods.push(russh::MethodKind::Password);
        }
        let russh = russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-Portcullis".into()),
            methods,
            auth_rejection_time: std::time::Duration::from_millis(300),
            auth_rejection_time_initial: Some(std::time::Duration::from_millis(0)),
            keys: vec![host_key],
            inactivity_timeout: Some(self.settings.inactivity_timeout),
            keepalive_interval: Some(std::time::Duration::from_secs(30)),
            nodelay: true,
            max_auth_attempts: 6,
            preferred: crate::preferred(),
            ..Default::default()
        };
        Ok(SshGateway {
            inner: Arc::new(GatewayInner {
                targets: self.targets,
                keys,
                cas,
                verifier: self.verifier,
                pipeline: self.pipeline,
                settings: self.settings,
                russh: Arc::new(russh),
                open: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }
}

impl SshGateway {
    /// Starts building a gateway. `verifier` checks JWTs and API keys sent as the
    /// password (none: public keys and certificates only).
    pub fn builder(
        settings: SshSettings,
        verifier: Option<Arc<dyn CredentialVerifier>>,
        pipeline: Pipeline,
    ) -> SshGatewayBuilder {
        SshGatewayBuilder {
            targets: HashMap::new(),
            verifier,
            pipeline,
            settings,
        }
    }

    /// Number of client connections currently open.
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Accepts clients until `shutdown` turns true, then gives open sessions the grace
    /// period, disconnects the rest, and returns once every session is recorded closed.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), SshError> {
        let inner = self.inner.clone();
        let drain = inner.settings.shutdown_grace + std::time::Duration::from_secs(5);
        portcullis_core::serve_connections("ssh", listener, shutdown, drain, |tcp, peer, rx| {
            conn::serve(inner.clone(), tcp, peer, rx)
        })
        .await;
        Ok(())
    }
}
