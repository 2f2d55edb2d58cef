//! Benchmark runner for `benches/http_compare.sh`: starts an upstream that answers 1 KiB JSON,
//! and a Portcullis HTTP gateway in front of it with identity (JWT), policy (HTTP rules) and
//! recording (the real recorder, batched durability) on. Prints `upstream=ADDR`,
//! `gateway=ADDR` and `token=JWT`, then serves until stdin closes.
//!
//! The upstream runs on its own thread (its own single-threaded runtime, like an nginx
//! worker). The gateway serves on `BENCH_WORKERS` worker threads of its own (its `workers`
//! setting, default 1: one thread, as the nginx it is compared with runs one worker; 0
//! serves on the runner's one-thread runtime instead). With `BENCH_UNRECORDED=1` a second
//! gateway with the same identity and policy but a sink that drops every event is printed
//! as `unrecorded=ADDR`: the difference is the cost of recording. `BENCH_WRITER_PRIORITY=idle`
//! runs the recorder's writer at idle priority (`writer_priority = "idle"`).
//! `BENCH_RECORD_BODY_BYTES` sets the gateway's `record_body_bytes` (default: the gateway's
//! default, 4096, so the whole 1 KiB response is recorded).

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{BoxFuture, Event, EventSink, Pipeline};
use portcullis_identity::{Authenticator, IdentityConfig};
use portcullis_proto_http::{HttpGateway, HttpGatewayConfig};
use portcullis_recording::{Durability, Recorder, RecordingConfig, WriterPriority};
use std::io::Read;

/// The allocator the `portcullis` binary uses, so the numbers are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As `portcullis serve` does: no transparent huge pages for this process.
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_thp_disable(true)?;
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run(workers))
}

/// Drops every event (the `unrecorded` comparison gateway).
struct Discard;

impl EventSink for Discard {
    fn record(&self, _event: Event) -> BoxFuture<'static, portcullis_core::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn submit(&self, _event: Event) -> portcullis_core::Result<()> {
        Ok(())
    }
}

/// Starts the 1 KiB JSON upstream on its own thread and runtime; returns its address.
fn start_upstream() -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let body: &'static str =
                Box::leak(format!("{{\"data\":\"{}\"}}", "x".repeat(1024 - 11)).into_boxed_str());
            let app = axum::Router::new().route(
                "/data",
                axum::routing::get(move || async move {
                    ([("content-type", "application/json")], body)
                }),
            );
            if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(l, app).await;
            }
        })
    });
    Ok(addr)
}

async fn run(workers: usize) -> Result<(), Box<dyn std::error::Error>> {
    let upstream_addr = start_upstream()?;

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
    rc.writer_priority = match std::env::var("BENCH_WRITER_PRIORITY").as_deref() {
        Err(_) | Ok("normal") => WriterPriority::Normal,
        Ok("idle") => WriterPriority::Idle,
        Ok(other) => {
            return Err(format!("BENCH_WRITER_PRIORITY: normal or idle, not {other}").into());
        }
    };
    let recorder = Recorder::open(&rc)?;

    let body_bytes = match std::env::var("BENCH_RECORD_BODY_BYTES") {
        Ok(v) => {
            let n: usize = v
                .parse()
                .map_err(|e| format!("BENCH_RECORD_BODY_BYTES: a byte count, not {v:?}: {e}"))?;
            format!("record_body_bytes = {n}")
        }
        Err(_) => String::new(),
    };
    let config = HttpGatewayConfig::from_toml(&format!(
        r#"
        workers = {workers}
        {body_bytes}
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
    if std::env::var("BENCH_UNRECORDED").is_ok_and(|v| v == "1") {
        let gateway = HttpGateway::new(
            config.clone(),
            auth.clone(),
            Pipeline::new(Arc::new(Discard)),
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("unrecorded={}", listener.local_addr()?);
        tokio::spawn(gateway.serve(listener, std::future::pending()));
    }
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
