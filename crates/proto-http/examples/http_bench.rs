//! Benchmark runner for `benches/http_compare.sh`: starts an upstream that answers 1 KiB JSON,
//! and a Portcullis HTTP gateway in front of it with identity (JWT), policy (HTTP rules) and
//! recording (the real recorder, batched durability) on. Prints `upstream=ADDR`,
//! `gateway=ADDR` and `token=JWT`, then serves until stdin closes.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Pipeline;
use portcullis_identity::{Authenticator, IdentityConfig};
use portcullis_proto_http::{HttpGateway, HttpGatewayConfig};
use portcullis_recording::{Durability, Recorder, RecordingConfig};
use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let body: &'static str =
        Box::leak(format!("{{\"data\":\"{}\"}}", "x".repeat(1024 - 11)).into_boxed_str());
    let app = axum::Router::new().route(
        "/data",
        axum::routing::get(move || async move { ([("content-type", "application/json")], body) }),
    );
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(async move { axum::serve(upstream, app).await });

    let identity: IdentityConfig = toml::from_str(
        r#"
        [dev_signer]
        issuer = "portcullis-bench"
        audience = "portcullis"
        secret = "a benchmark secret of at least 32 bytes"
        "#,
    )?;
    let auth = Authenticator::from_config(&identity).await?;
    let token = auth.mint_dev_token("bench", &["dev".into()], Duration::from_secs(3600))?;

    let dir = std::env::var("BENCH_STORE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::temp_dir().join(format!("portcullis-http-bench-{}", std::process::id()))
        });
    let mut rc = RecordingConfig::new(&dir);
    rc.durability = Durability::Batched;
    let recorder = Recorder::open(&rc)?;

    let config = HttpGatewayConfig::from_toml(&format!(
        r#"
        [[routes]]
        path_prefix = "/"
        target = "api"

        [targets.api]
        upstream = "http://{upstream_addr}"
        allowed_groups = ["dev"]

        [targets.api.policy]
        default = "deny"
        [[targets.api.policy.rules]]
        id = "no-admin"
        paths = ["/admin/**"]
        action = "deny"
        [[targets.api.policy.rules]]
        id = "reads"
        methods = ["GET"]
        paths = ["/data", "/items/{{id}}"]
        action = "allow"
        "#
    ))?;
    let gateway = HttpGateway::new(config, auth, Pipeline::new(Arc::new(recorder.clone())))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    println!("upstream={upstream_addr}");
    println!("gateway={gateway_addr}");
    println!("token={}", token.expose());
    println!("store={}", dir.display());

    // Serve until stdin closes.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)
    })
    .await;
    let _ = stop.send(());
    server.await??;
    let stats = recorder.shutdown().await?;
    eprintln!("recorded {} events", stats.events_written);
    Ok(())
}
