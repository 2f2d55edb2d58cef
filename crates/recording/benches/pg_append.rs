//! Appends to the PostgreSQL store (a fresh database on 127.0.0.1:5432) in
//! batches of 1000, 100 and 1 events, next to the sled store doing the same
//! (append + sync per batch), and the batched recorder over PostgreSQL.
//! Prints events/s per case; skips when the server is not there.
//!
//! `cargo bench -p portcullis-recording --bench pg_append`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::{Command, Decision, Event, EventKind, SessionId, SqlVia, Timestamp};
use portcullis_recording::{Durability, EventStore, PgStore, Recorder, RecorderOptions, SledStore};
use portcullis_testkit::ScratchDb;

fn event(session: SessionId, seq: u64) -> Event {
    Event {
        session,
        at: Timestamp::now(),
        kind: EventKind::Command {
            seq,
            command: Command::Sql {
                // ~100 bytes of SQL, as in the append bench.
                text: format!(
                    "UPDATE accounts SET balance = balance - 10, updated_at = now() WHERE id = {:08} AND owner = 'x'",
                    seq % 100_000_000
                ),
                via: SqlVia::Simple,
            },
            decision: Decision::allow("r1", "allowed"),
            result: None,
        },
    }
}

/// Appends `total` events in batches of `batch` (each followed by `sync`);
/// returns events/s. Every batch spreads over 10 sessions.
fn run(store: &dyn EventStore, batch: usize, total: usize) -> f64 {
    let sessions: Vec<SessionId> = (0..10).map(|_| SessionId::new()).collect();
    let mut n = 0u64;
    let start = Instant::now();
    while (n as usize) < total {
        let events: Vec<Event> = (0..batch)
            .map(|i| {
                n += 1;
                event(sessions[i % sessions.len()], n)
            })
            .collect();
        store.append(&events).unwrap();
        store.sync().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let db = match ScratchDb::create("bench") {
        Ok(db) => db,
        Err(e) => {
            eprintln!("pg_append: no PostgreSQL at 127.0.0.1:5432 ({e}); skipped");
            return;
        }
    };
    let pg = PgStore::open(&db.url(), "bench").unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sled = SledStore::open(dir.path().join("sled")).unwrap();
    // Warm up both (connections, prepared statements, caches).
    run(&pg, 1000, 2000);
    run(&sled, 1000, 2000);
    for (batch, total) in [(1000usize, 50_000usize), (100, 20_000), (1, 1_000)] {
        let mut p = Vec::new();
        let mut s = Vec::new();
        for _ in 0..3 {
            p.push(run(&pg, batch, total));
            s.push(run(&sled, batch, total));
        }
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "append batch {batch:>4}, {total} events: postgres {} events/s; sled {} events/s",
            fmt(&p),
            fmt(&s)
        );
    }
    drop(pg);

    // The recorder in batched mode over PostgreSQL: 4 producers, 40 000 events.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn EventStore> = Arc::new(PgStore::open(&db.url(), "bench-recorder").unwrap());
    let rate = rt.block_on(async {
        let rec = Recorder::start(
            store,
            RecorderOptions {
                durability: Durability::Batched,
                flush_interval: Duration::from_millis(50),
                flush_events: 1000,
                queue_capacity: 4096,
                writer_priority: portcullis_recording::WriterPriority::Normal,
            },
        )
        .unwrap();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let rec = rec.clone();
            tasks.push(tokio::spawn(async move {
                let s = SessionId::new();
                for i in 1..=10_000u64 {
                    rec.record(event(s, i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = rec.shutdown().await.unwrap();
        let rate = stats.events_written as f64 / start.elapsed().as_secs_f64();
        println!(
            "recorder batched over postgres, 4 producers: {rate:.0} events/s ({} events in {} batches)",
            stats.events_written, stats.batches
        );
        rate
    });
    assert!(rate > 0.0);
}
