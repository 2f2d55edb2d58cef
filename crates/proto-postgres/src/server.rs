//! The PostgreSQL listener.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_core::{CredentialVerifier, Pipeline, Target};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::PgError;
use crate::cancel::CancelRegistry;
use crate::config::{ListenerSettings, UpstreamConfig};
use crate::session::{self, PgTarget};
use crate::upstream::UpstreamEndpoint;

/// Shared state of a listener.
pub(crate) struct GatewayInner {
    pub targets: HashMap<String, Arc<PgTarget>>,
    pub verifier: Arc<dyn CredentialVerifier>,
    pub pipeline: Pipeline,
    pub settings: ListenerSettings,
    pub cancel: CancelRegistry,
}

/// A PostgreSQL gateway: accepts clients, authenticates them, opens their target
/// with the gateway's credential and relays statements through the pipeline.
#[derive(Clone)]
pub struct PostgresGateway {
    inner: Arc<GatewayInner>,
}

/// Builds a [`PostgresGateway`].
pub struct PostgresGatewayBuilder {
    targets: HashMap<String, Arc<PgTarget>>,
    verifier: Arc<dyn CredentialVerifier>,
    pipeline: Pipeline,
    settings: ListenerSettings,
}

impl PostgresGatewayBuilder {
    /// Adds a target; clients reach it by using its name as the database name.
    pub fn target(mut self, target: Target, upstream: UpstreamConfig) -> Result<Self, PgError> {
        let password = upstream.resolve_password()?;
        let tls = upstream.tls_connector()?;
        let name = target.name.clone();
        if self.targets.contains_key(&name) {
            return Err(PgError::Config(format!("target {name} is defined twice")));
        }
        self.targets.insert(
            name,
            Arc::new(PgTarget {
                target: Arc::new(target),
                endpoint: Arc::new(UpstreamEndpoint {
                    config: upstream,
                    password,
                    tls,
                }),
            }),
        );
        Ok(self)
    }

    /// Finishes the gateway.
    pub fn build(self) -> PostgresGateway {
        PostgresGateway {
            inner: Arc::new(GatewayInner {
                targets: self.targets,
                verifier: self.verifier,
                pipeline: self.pipeline,
                settings: self.settings,
                cancel: CancelRegistry::default(),
            }),
        }
    }
}

impl PostgresGateway {
    /// Starts building a gateway.
    pub fn builder(
        settings: ListenerSettings,
        verifier: Arc<dyn CredentialVerifier>,
        pipeline: Pipeline,
    ) -> PostgresGatewayBuilder {
        PostgresGatewayBuilder {
            targets: HashMap::new(),
            verifier,
            pipeline,
            settings,
        }
    }

    /// Number of sessions currently open.
    pub fn open_sessions(&self) -> usize {
        self.inner.cancel.len()
    }

    /// Accepts clients until `shutdown` turns true, then lets open sessions finish
    /// in-flight work (up to the grace period), tells them the gateway is shutting
    /// down, and returns once every session is closed and recorded.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), PgError> {
        let inner = self.inner.clone();
        let drain = inner.settings.shutdown_grace + std::time::Duration::from_secs(5);
        portcullis_core::serve_connections(
            "postgres",
            listener,
            shutdown,
            drain,
            |tcp, peer, rx| session::serve(inner.clone(), tcp, peer, rx),
        )
        .await;
        Ok(())
    }
}
