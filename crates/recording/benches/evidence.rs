//! Costs of the evidence layer: signing and verifying one checkpoint, verifying a
//! signed store, exporting and verifying a bundle, and the batched recorder's
//! throughput with and without checkpoint signing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use portcullis_core::{Command, Decision, Event, EventKind, SessionId, SqlVia, Timestamp};
use portcullis_recording::{
    ChainHash, Checkpoint, CheckpointPolicy, CheckpointReason, Durability, EventStore,
    ExportOptions, Head, Recorder, RecorderOptions, SigningKey, SledStore, VerifyOptions, export,
    verify_bundle, verify_store,
};

const RECORDS: u64 = 20_000;

fn event(session: SessionId, seq: u64) -> Event {
    Event {
        session,
        at: Timestamp::now(),
        kind: EventKind::Command {
            seq,
            command: Command::Sql {
                text: format!("SELECT * FROM orders WHERE id = {seq:08} AND owner = 'someone'"),
                via: SqlVia::Simple,
            },
            decision: Decision::allow("reads", "reads are allowed"),
            result: None,
        },
    }
}

fn options() -> RecorderOptions {
    RecorderOptions {
        durability: Durability::Batched,
        flush_interval: Duration::from_millis(50),
        flush_events: 1000,
        queue_capacity: 4096,
        writer_priority: portcullis_recording::WriterPriority::Normal,
    }
}

/// Records `n` events through a batched recorder; returns events/s.
fn record(store: Arc<dyn EventStore>, key: Option<SigningKey>, n: u64) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let rec = match key {
            Some(k) => Recorder::start_signed(
                store,
                options(),
                k,
                CheckpointPolicy {
                    events: 1000,
                    interval: Duration::from_secs(10),
                },
            )
            .unwrap(),
            None => Recorder::start(store, options()).unwrap(),
        };
        let s = SessionId::new();
        let start = Instant::now();
        for i in 1..=n {
            rec.record(event(s, i)).await.unwrap();
        }
        rec.shutdown().await.unwrap();
        n as f64 / start.elapsed().as_secs_f64()
    })
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate().unwrap();
    let head = Head {
        seq: 42,
        hash: ChainHash([9; 32]),
    };
    let cp = Checkpoint::sign(&key, "chain", head, CheckpointReason::Events, None);
    // The per-record work of every append: canonical JSON of the event and the chained
    // SHA-256 (what the recorder adds to each event before any I/O).
    let sample = event(SessionId::new(), 42);
    c.bench_function("record_canonical_json", |b| {
        b.iter(|| portcullis_recording::canonical_json(&sample).unwrap())
    });
    c.bench_function("record_chain", |b| {
        b.iter(|| {
            portcullis_recording::StoredEvent::chain(Head::GENESIS, 1, sample.clone()).unwrap()
        })
    });
    c.bench_function("checkpoint_sign", |b| {
        b.iter(|| Checkpoint::sign(&key, "chain", head, CheckpointReason::Events, None))
    });
    c.bench_function("checkpoint_verify", |b| {
        b.iter(|| assert!(cp.verify_with(key.public_key())))
    });

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SledStore::open(dir.path().join("s")).unwrap());
    let signed = record(
        store.clone(),
        Some(SigningKey::generate().unwrap()),
        RECORDS,
    );
    let unsigned_dir = tempfile::tempdir().unwrap();
    let unsigned = record(
        Arc::new(SledStore::open(unsigned_dir.path().join("s")).unwrap()),
        None,
        RECORDS,
    );
    println!(
        "recorder batched, 1 producer, {RECORDS} events: signed every 1000 events {signed:.0}/s, unsigned {unsigned:.0}/s"
    );

    let mut g = c.benchmark_group("evidence");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS));
    g.bench_function("verify_store", |b| {
        b.iter(|| {
            let r = verify_store(store.as_ref(), &VerifyOptions::default()).unwrap();
            assert!(r.is_intact());
        })
    });
    let out = tempfile::tempdir().unwrap();
    g.bench_function("export", |b| {
        b.iter(|| export(store.as_ref(), None, &ExportOptions::default(), out.path()).unwrap())
    });
    g.bench_function("verify_bundle", |b| {
        b.iter(|| {
            let r = verify_bundle(out.path(), &VerifyOptions::default()).unwrap();
            assert!(r.is_intact());
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    bench(&mut c);
    c.final_summary();
}
