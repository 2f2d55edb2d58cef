//! End-to-end: the gateway streams its record to an HTTP SIEM endpoint that is
//! down while psql sessions are recorded; when the endpoint comes up every record
//! arrives in order, and after a restart the sink resumes from its cursor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use portcullis_recording::{EventStore, SledStore};
use portcullis_testkit::free_port;
use serde_json::Value;
use support::{Harness, Options};

/// An HTTP receiver that keeps the `seq` of every JSON line it is sent.
struct Receiver {
    seqs: Arc<Mutex<Vec<u64>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    fn start(rt: &tokio::runtime::Runtime, port: u16, seqs: Arc<Mutex<Vec<u64>>>) -> Receiver {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        let kept = seqs.clone();
        let app = axum::Router::new().route(
            "/ingest",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                    if auth != Some("Bearer siem-token-5d1e") {
                        return StatusCode::UNAUTHORIZED;
                    }
                    let mut kept = kept.lock().unwrap();
                    for line in body.lines() {
                        let v: Value = serde_json::from_str(line).unwrap();
                        kept.push(v["seq"].as_u64().unwrap());
                    }
                    StatusCode::OK
                }
            }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            seqs,
            stop: Some(tx),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn sinks(h: &Harness, token: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{}/v1/sinks", h.admin_port))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    v["sinks"][0].clone()
}

fn wait_sink(h: &Harness, token: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = sinks(h, token);
        if check(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}: {s}\n{}",
            h.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn store_head(h: &Harness) -> u64 {
    SledStore::open(&h.store).unwrap().head().unwrap().seq
}

/// Every seq from 1 to `head` arrived, in order, none twice.
fn assert_exactly(seqs: &[u64], head: u64) {
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
}

#[test]
fn the_record_reaches_the_siem_after_an_outage_and_across_a_restart() {
    let port = free_port().unwrap();
    let mut h = Harness::start(Options {
        extra: format!(
            r#"
[[sinks]]
name = "collector"
kind = "http"
url = "http://127.0.0.1:{port}/ingest"
bearer_token = "siem-token-5d1e"
batch_size = 5
poll_interval = "50ms"
retry_max = "300ms"
timeout = "10s"
"#
        ),
        ..Options::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seqs = Arc::new(Mutex::new(Vec::new()));
    let user = h.token("alice", "dba", "10m");
    let auditor = h.token("carol", "auditors", "10m");

    // The SIEM is down: sessions are served and recorded all the same.
    for i in 0..4 {
        let out = h
            .psql(&user, "app")
            .run(&format!("SELECT {i}; SELECT {i} + 1;"))
            .unwrap_or_else(|e| panic!("{e}\n{}", h.logs()));
        assert!(out.contains(&(i + 1).to_string()), "{out}");
    }
    let down = wait_sink(&h, &auditor, "retries", |s| {
        s["state"] == "retrying" && s["failures"].as_u64().unwrap() >= 2
    });
    assert_eq!(down["delivered_seq"], 0, "{down}");
    assert!(down["lag"].as_u64().unwrap() > 0, "{down}");
    assert!(
        down["last_error"].as_str().unwrap().contains("http"),
        "{down}"
    );

    // It comes up: everything arrives.
    let receiver = Receiver::start(&rt, port, seqs.clone());
    wait_sink(&h, &auditor, "catching up", |s| {
        s["lag"] == 0 && s["consecutive_failures"] == 0 && s["delivered_seq"].as_u64() > Some(0)
    });
    h.stop("TERM");
    let head = store_head(&h);
    assert_exactly(&seqs.lock().unwrap(), head);

    // Stopped gateway, then restarted: the cursor resumes without loss or repeat.
    h.spawn_gateway();
    h.psql(&user, "app").run("SELECT 42;").unwrap();
    wait_sink(&h, &auditor, "delivery after the restart", |s| {
        s["lag"] == 0 && s["delivered_seq"].as_u64() > Some(head)
    });
    h.stop("TERM");
    let head = store_head(&h);
    assert_exactly(&receiver.seqs.lock().unwrap(), head);
    let logs = h.logs();
    assert!(
        !logs.contains("siem-token-5d1e"),
        "the token never reaches the log"
    );
}
