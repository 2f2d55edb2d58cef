//! How fast a sink catches up on a backlog: 20 000 records (SQL commands and their
//! results) already in a sled store, delivered from an empty cursor to a file
//! (Portcullis lines and OCSF) and to an HTTP receiver on loopback (axum).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use portcullis_core::{
    Command, Completion, Decision, Event, EventKind, SessionId, SqlVia, Timestamp,
};
use portcullis_recording::{EventStore, SledStore};
use portcullis_siem::{Format, SinkConfig, SinkKind, SinkSet};

const RECORDS: u64 = 20_000;

/// Builds the sink of one run from its output directory and run number.
type MakeSink = dyn Fn(&std::path::Path, u64) -> SinkConfig;

fn backlog(store: &SledStore) {
    let session = SessionId::new();
    let mut events = Vec::with_capacity(1000);
    for i in 1..=RECORDS / 2 {
        events.push(Event {
            session,
            at: Timestamp::now(),
            kind: EventKind::Command {
                seq: i,
                command: Command::Sql {
                    text: format!("UPDATE accounts SET balance = balance - 10 WHERE id = {i}"),
                    via: SqlVia::Simple,
                },
                decision: Decision::allow("writes", "writes are allowed"),
                result: None,
            },
        });
        events.push(Event {
            session,
            at: Timestamp::now(),
            kind: EventKind::CommandResult {
                seq: i,
                duration_us: 200,
                completion: Completion {
                    rows_affected: Some(1),
                    tag: Some("UPDATE 1".into()),
                    ..Default::default()
                },
            },
        });
        if events.len() == 1000 {
            store.append(&events).unwrap();
            events.clear();
        }
    }
    store.append(&events).unwrap();
    store.sync().unwrap();
}

fn catch_up(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn EventStore>,
    config: SinkConfig,
    dir: &std::path::Path,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let sinks = SinkSet::start(store.clone(), &[config], dir).unwrap();
        while sinks.status()[0].delivered_seq < RECORDS {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = start.elapsed();
        sinks.shutdown().await;
        elapsed
    })
}

fn main() {
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path().join("record")).unwrap();
    backlog(&sled);
    let store: Arc<dyn EventStore> = Arc::new(sled);

    // An HTTP receiver that counts lines.
    let lines = Arc::new(AtomicU64::new(0));
    let counted = lines.clone();
    let addr = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/ingest",
            axum::routing::post(move |body: axum::body::Bytes| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(
                        body.iter().filter(|b| **b == b'\n').count() as u64,
                        Ordering::Relaxed,
                    );
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });

    let mut group = c.benchmark_group("catch_up_20k");
    group.throughput(Throughput::Elements(RECORDS));
    let run = AtomicU64::new(0);
    let cases: Vec<(&str, Box<MakeSink>)> = vec![
        (
            "file_portcullis",
            Box::new(|d: &std::path::Path, n: u64| SinkConfig {
                path: Some(d.join(format!("out-{n}.jsonl"))),
                ..SinkConfig::new(format!("f{n}"), SinkKind::File)
            }),
        ),
        (
            "file_ocsf",
            Box::new(|d: &std::path::Path, n: u64| SinkConfig {
                path: Some(d.join(format!("ocsf-{n}.jsonl"))),
                format: Format::Ocsf,
                ..SinkConfig::new(format!("o{n}"), SinkKind::File)
            }),
        ),
        (
            "http_lines",
            Box::new(move |_: &std::path::Path, n: u64| SinkConfig {
                url: Some(format!("http://{addr}/ingest")),
                ..SinkConfig::new(format!("h{n}"), SinkKind::Http)
            }),
        ),
    ];
    for (name, make) in &cases {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let n = run.fetch_add(1, Ordering::Relaxed);
                    let out = dir.path().join(format!("run-{n}"));
                    total += catch_up(&rt, &store, make(&out, n), &out);
                    let _ = std::fs::remove_dir_all(&out);
                }
                total
            })
        });
    }
    group.finish();
    assert!(lines.load(Ordering::Relaxed) >= RECORDS);
    c.final_summary();
}
