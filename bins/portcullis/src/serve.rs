//! `portcullis serve`: wires the configuration into listeners and runs until a signal.

use std::sync::Arc;

use portcullis_approvals::{ApprovalService, SessionAwareSink};
use portcullis_core::{EventSink, Pipeline, Protocol, Target};
use portcullis_identity::Authenticator;
use portcullis_proto_http::HttpGateway;
use portcullis_proto_postgres::{ListenerSettings, PostgresGateway, tls};
use portcullis_proto_ssh::SshGateway;
use portcullis_recording::Recorder;
use portcullis_siem::SinkSet;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin;
use crate::config::{GatewayConfig, PostgresListenerConfig, TargetConfig, TlsMode};

/// Where the SIEM sinks keep their cursors: next to the sled store, or, with a shared
/// PostgreSQL store, next to this gateway's signing key (its local state).
fn sink_cursor_dir(recording: &portcullis_recording::RecordingConfig) -> std::path::PathBuf {
    if recording.path.as_os_str().is_empty() {
        let key_dir = recording
            .signing_key
            .as_deref()
            .and_then(std::path::Path::parent)
            .unwrap_or(std::path::Path::new("."));
        key_dir.join("sinks")
    } else {
        recording.path.join("sinks")
    }
}

/// Runs the gateway until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(config: GatewayConfig, config_path: &str) -> Result<(), String> {
    tracing::info!(store = %config.recording.describe(), "opening the record");
    let recorder = Recorder::open(&config.recording).map_err(|e| format!("recording: {e}"))?;
    // SIEM sinks tail the store; recording never waits on them.
    let sinks = SinkSet::start(
        recorder.store().clone(),
        &config.sinks,
        &sink_cursor_dir(&config.recording),
    )
    .map_err(|e| format!("sinks: {e}"))?;
    let auth = Authenticator::from_config(&config.identity)
        .await
        .map_err(|e| format!("identity: {e}"))?;
    let recorder_sink: Arc<dyn EventSink> = Arc::new(recorder.clone());
    let policies = config.policy_set()?;
    let masking = config.masking_engine()?;
    let approvals = match &config.approvals {
        Some(cfg) => Some(
            ApprovalService::open(cfg, recorder_sink.clone())
                .map_err(|e| format!("approvals: {e}"))?,
        ),
        None => None,
    };
    // Session-bound grants end when their session closes: the approvals service
    // watches the events on their way to the record.
    let sink: Arc<dyn EventSink> = match &approvals {
        Some(a) => Arc::new(SessionAwareSink::new(recorder_sink.clone(), a.clone())),
        None => recorder_sink.clone(),
    };
    let mut pipeline = Pipeline::new(sink)
        .with_policy(Arc::new(policies))
        .with_masking(Arc::new(masking));
    if let Some(a) = &approvals {
        pipeline = pipeline.with_approver(Arc::new(a.clone()));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    if let Some(pg) = &config.postgres {
        let settings = listener_settings(pg)?;
        let mut builder =
            PostgresGateway::builder(settings, Arc::new(auth.clone()), pipeline.clone());
        for (name, target) in &config.targets {
            let TargetConfig::Postgres(t) = target else {
                continue;
            };
            let core_target = Target {
                name: name.clone(),
                protocol: Protocol::Postgres,
                upstream: t.upstream.address.clone(),
                allowed_groups: t.allowed_groups.clone(),
            };
            builder = builder
                .target(core_target, t.upstream.clone())
                .map_err(|e| format!("targets.{name}: {e}"))?;
        }
        let gateway = builder.build();
        let listener = tokio::net::TcpListener::bind(pg.listen)
            .await
            .map_err(|e| format!("postgres.listen {}: {e}", pg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "PostgreSQL listener ready");
        print_banner(&config, config_path, &addr.to_string());
        let rx = stop_rx.clone();
        tasks.spawn(async move {
            if let Err(e) = gateway.serve(listener, rx).await {
                tracing::error!(error = %e, "PostgreSQL listener failed");
            }
        });
    }

    if let Some(ssh) = &config.ssh {
        let mut builder = SshGateway::builder(
            ssh.settings.clone(),
            Some(Arc::new(auth.clone())),
            pipeline.clone(),
        );
        for (name, target) in &config.targets {
            let TargetConfig::Ssh(t) = target else {
                continue;
            };
            let core_target = Target {
                name: name.clone(),
                protocol: Protocol::Ssh,
                upstream: t.upstream.address.clone(),
                allowed_groups: t.allowed_groups.clone(),
            };
            builder = builder
                .target(core_target, t.upstream.clone())
                .map_err(|e| format!("targets.{name}: {e}"))?;
        }
        let gateway = builder.build().map_err(|e| format!("ssh: {e}"))?;
        let listener = tokio::net::TcpListener::bind(ssh.listen)
            .await
            .map_err(|e| format!("ssh.listen {}: {e}", ssh.listen))?;
        tracing::info!(addr = %ssh.listen, "SSH listener ready");
        let rx = stop_rx.clone();
        tasks.spawn(async move {
            if let Err(e) = gateway.serve(listener, rx).await {
                tracing::error!(error = %e, "SSH listener failed");
            }
        });
    }

    if let Some(http) = &config.http {
        let listen = http.listen;
        let mut http = http.clone();
        // One worker thread per core unless configured: the HTTP path is CPU-bound.
        http.workers = http
            .workers
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()));
        let gateway = HttpGateway::new(http, auth.clone(), pipeline.clone())
            .map_err(|e| format!("http: {e}"))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("http.listen {listen}: {e}"))?;
        tracing::info!(addr = %listen, "HTTP gateway ready");
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = gateway.serve(listener, shutdown).await {
                tracing::error!(error = %e, "HTTP gateway failed");
            }
        });
    }

    if let Some(admin_cfg) = &config.admin {
        let router = admin::router(
            recorder.store().clone(),
            auth.clone(),
            admin_cfg.auditor_groups.clone(),
            approvals.clone(),
            sinks.monitor(),
        );
        let listener = tokio::net::TcpListener::bind(admin_cfg.listen)
            .await
            .map_err(|e| format!("admin.listen {}: {e}", admin_cfg.listen))?;
        tracing::info!(addr = %admin_cfg.listen, "admin API ready");
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "admin API failed");
            }
        });
    }

    wait_for_signal().await;
    tracing::info!("shutting down: closing sessions");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let stats = recorder
        .shutdown()
        .await
        .map_err(|e| format!("recording: final flush failed: {e}"))?;
    // The sinks deliver what the last sessions recorded, unless a sink is failing.
    for s in sinks.shutdown().await {
        tracing::info!(sink = %s.name, delivered = s.delivered_seq, lag = s.lag, "sink stopped");
    }
    tracing::info!(events = stats.events_written, "record flushed; bye");
    Ok(())
}

fn listener_settings(pg: &PostgresListenerConfig) -> Result<ListenerSettings, String> {
    let tls_config = match pg.tls.mode {
        TlsMode::Off => None,
        TlsMode::Files => {
            let (Some(cert), Some(key)) = (&pg.tls.cert, &pg.tls.key) else {
                return Err("postgres.tls: mode = \"files\" needs cert and key".into());
            };
            Some(tls::server_config(cert, key).map_err(|e| format!("postgres.tls: {e}"))?)
        }
        TlsMode::SelfSigned => {
            let names = vec!["localhost".to_string(), pg.listen.ip().to_string()];
            let generated = rcgen::generate_simple_self_signed(names)
                .map_err(|e| format!("postgres.tls: cannot generate a certificate: {e}"))?;
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
                generated.signing_key.serialize_der().into(),
            );
            Some(
                tls::server_config_from(vec![generated.cert.der().clone()], key)
                    .map_err(|e| format!("postgres.tls: {e}"))?,
            )
        }
    };
    Ok(ListenerSettings {
        tls: tls_config,
        require_tls: pg.require_tls,
        max_message_bytes: pg.max_message_bytes,
        login_timeout: pg.login_timeout,
        shutdown_grace: pg.shutdown_grace,
        ..ListenerSettings::default()
    })
}

fn print_banner(config: &GatewayConfig, config_path: &str, addr: &str) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "6432"));
    let target = config
        .targets
        .keys()
        .next()
        .map(String::as_str)
        .unwrap_or("TARGET");
    let group = config
        .targets
        .values()
        .find(|t| matches!(t, TargetConfig::Postgres(_)))
        .and_then(|t| t.allowed_groups().first())
        .map(String::as_str)
        .unwrap_or("GROUP");
    println!(
        "Portcullis is listening for PostgreSQL on {addr} (record: {})\n\
         Connect with a token as the password, for example:\n  \
         export PGPASSWORD=$(portcullis token --config {config_path} --subject $USER --groups {group} --ttl 1h)\n  \
         psql \"host={host} port={port} dbname={target} user=$USER\"",
        config.recording.describe()
    );
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
