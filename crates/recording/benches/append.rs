//! Durable, chained appends through the recorder compared, in the same run, with
//! raw group commit of the same serialized records to a plain file with one
//! `fdatasync` per batch: in a loop with the recorder's batch sizes
//! (`raw_append`, `raw_prealloc`), and through a committer thread fed by the same
//! number of producer tasks (`raw_group`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use portcullis_core::{Command, Decision, Event, EventKind, SessionId, SqlVia, Timestamp};
use portcullis_recording::{Durability, Head, Recorder, RecorderOptions, SledStore, StoredEvent};

/// Events and time measured per benchmark, for the closing summary.
static TOTALS: Mutex<BTreeMap<String, (u64, Duration, u64)>> = Mutex::new(BTreeMap::new());

fn add_total(name: &str, events: u64, elapsed: Duration, batches: u64) {
    let mut t = TOTALS.lock().unwrap();
    let e = t.entry(name.to_string()).or_default();
    e.0 += events;
    e.1 += elapsed;
    e.2 += batches;
}

fn event(session: SessionId, seq: u64) -> Event {
    Event {
        session,
        at: Timestamp::now(),
        kind: EventKind::Command {
            seq,
            command: Command::Sql {
                // ~100 bytes of SQL.
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

/// `n` records of one session chained after `head` (which advances), as export
/// lines ending in a newline: what the raw baselines write.
fn export_lines(head: &mut Head, session: SessionId, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let r = StoredEvent::chain(*head, i + 1, event(session, i + 1)).unwrap();
            *head = r.head();
            let mut line = r.to_json_line().into_bytes();
            line.push(b'\n');
            line
        })
        .collect()
}

fn recorder_run(
    rt: &tokio::runtime::Runtime,
    rec: &Recorder,
    producers: u64,
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..producers {
            let n = iters / producers + u64::from(p < iters % producers);
            let rec = rec.clone();
            tasks.push(tokio::spawn(async move {
                let s = SessionId::new();
                for i in 1..=n {
                    rec.record(event(s, i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sample = StoredEvent::chain(Head::GENESIS, 1, event(SessionId::new(), 1)).unwrap();
    let line = sample.to_json_line();
    eprintln!(
        "event: {} bytes of SQL, {} bytes canonical JSON, {} bytes per exported record",
        100,
        sample.canonical.len(),
        line.len() + 1
    );

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));

    let mut batch_sizes = BTreeMap::new();
    for (mode, durability) in [
        ("strict", Durability::Strict),
        ("batched", Durability::Batched),
    ] {
        for producers in [1u64, 16] {
            let name = format!("recorder_{mode}/{producers}");
            let store = SledStore::open(dir.path().join(format!("{mode}-{producers}"))).unwrap();
            let rec = rt
                .block_on(async {
                    Recorder::start(
                        Arc::new(store),
                        RecorderOptions {
                            durability,
                            flush_interval: Duration::from_millis(50),
                            flush_events: 1000,
                            queue_capacity: 4096,
                            writer_priority: portcullis_recording::WriterPriority::Normal,
                        },
                    )
                })
                .unwrap();
            group.bench_function(
                BenchmarkId::new(format!("recorder_{mode}"), producers),
                |b| {
                    b.iter_custom(|iters| {
                        let before = rec.stats();
                        let mut elapsed = recorder_run(&rt, &rec, producers, iters);
                        if durability == Durability::Batched {
                            // Count the time until everything is on disk.
                            let t = Instant::now();
                            rt.block_on(rec.flush()).unwrap();
                            elapsed += t.elapsed();
                        }
                        let after = rec.stats();
                        add_total(&name, iters, elapsed, after.flushes - before.flushes);
                        elapsed
                    })
                },
            );
            let stats = rt.block_on(rec.shutdown()).unwrap();
            let per_sync = stats.events_written as f64 / stats.flushes.max(1) as f64;
            eprintln!("{name}: {stats:?}, {per_sync:.1} events per sync");
            batch_sizes.insert(name, per_sync.round().max(1.0) as u64);
        }
    }

    // The raw baselines: the same serialized records, group-committed with the
    // batch sizes the strict recorder reached, to a plain file with one fdatasync
    // per batch. `raw_append` grows the file (every sync also commits the new file
    // size to the journal); `raw_prealloc` overwrites a zero-filled, already synced
    // file in place, as sled's log segments and database WALs do.
    for preallocate in [false, true] {
        for producers in [1u64, 16] {
            let batch = batch_sizes[&format!("recorder_strict/{producers}")];
            let kind = if preallocate {
                "raw_prealloc"
            } else {
                "raw_append"
            };
            let name = format!("{kind}/{producers}");
            let path = dir.path().join(format!("{kind}-{producers}"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            const PREALLOCATED: u64 = 128 << 20;
            if preallocate {
                let zeros = vec![0u8; 1 << 20];
                for i in 0..(PREALLOCATED >> 20) {
                    file.write_all_at(&zeros, i << 20).unwrap();
                }
                file.sync_all().unwrap();
            }
            let mut offset = 0u64;
            let mut head = Head::GENESIS;
            let session = SessionId::new();
            group.bench_function(
                BenchmarkId::new(format!("{kind}_batch{batch}"), producers),
                |b| {
                    b.iter_custom(|iters| {
                        // Records are built outside the timed part: the recorder's chaining
                        // and encoding cost is part of what the comparison shows.
                        let records = export_lines(&mut head, session, iters);
                        let start = Instant::now();
                        let mut syncs = 0;
                        for chunk in records.chunks(batch as usize) {
                            let mut buf = Vec::with_capacity(chunk.iter().map(Vec::len).sum());
                            for r in chunk {
                                buf.extend_from_slice(r);
                            }
                            if preallocate && offset + buf.len() as u64 > PREALLOCATED {
                                offset = 0;
                            }
                            file.write_all_at(&buf, offset).unwrap();
                            offset += buf.len() as u64;
                            file.sync_data().unwrap();
                            syncs += 1;
                        }
                        let elapsed = start.elapsed();
                        add_total(&name, iters, elapsed, syncs);
                        elapsed
                    })
                },
            );
        }
    }

    // Group commit as a service would run it: producer tasks hand records that are
    // already chained and serialized to one committer thread, which writes what is
    // queued to a plain (growing) file, syncs once and acknowledges each producer.
    // Against the recorder this leaves out only the recorder's own work (chaining,
    // encoding, the store's journal and index); the thread hand-offs are in both.
    for producers in [1u64, 16] {
        let name = format!("raw_group/{producers}");
        let path = dir.path().join(format!("raw-group-{producers}"));
        let committer = Committer::start(&path);
        group.bench_function(BenchmarkId::new("raw_group", producers), |b| {
            b.iter_custom(|iters| {
                let mut head = Head::GENESIS;
                let lines = export_lines(&mut head, SessionId::new(), iters);
                let syncs_before = committer.syncs();
                let elapsed = rt.block_on(async {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    let mut lines = lines.into_iter();
                    for p in 0..producers {
                        let n = iters / producers + u64::from(p < iters % producers);
                        let mine: Vec<Vec<u8>> = lines.by_ref().take(n as usize).collect();
                        let tx = committer.sender();
                        tasks.push(tokio::spawn(async move {
                            for line in mine {
                                let (ack, done) = tokio::sync::oneshot::channel();
                                tx.send((line, ack)).unwrap();
                                done.await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                });
                add_total(&name, iters, elapsed, committer.syncs() - syncs_before);
                elapsed
            })
        });
    }
    group.finish();
}

type Pending = (Vec<u8>, tokio::sync::oneshot::Sender<()>);

/// A minimal group committer: one thread, one file, one `fdatasync` per batch.
struct Committer {
    tx: std::sync::mpsc::Sender<Pending>,
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

impl Committer {
    fn start(path: &std::path::Path) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Pending>();
        let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = syncs.clone();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut buf = Vec::new();
            let mut acks = Vec::new();
            while let Ok(first) = rx.recv() {
                let mut next = Some(first);
                while let Some((line, ack)) = next {
                    buf.extend_from_slice(&line);
                    acks.push(ack);
                    next = rx.try_recv().ok();
                }
                file.write_all(&buf).unwrap();
                file.sync_data().unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                buf.clear();
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
            }
        });
        Self { tx, syncs }
    }

    fn sender(&self) -> std::sync::mpsc::Sender<Pending> {
        self.tx.clone()
    }

    fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn summary() {
    let t = TOTALS.lock().unwrap();
    let rate = |k: &str| t.get(k).map(|(n, d, _)| *n as f64 / d.as_secs_f64());
    eprintln!(
        "\n{:<24} {:>12} {:>12}",
        "benchmark", "events/s", "events/sync"
    );
    for (k, (n, d, syncs)) in t.iter() {
        eprintln!(
            "{k:<24} {:>12.0} {:>12.1}",
            *n as f64 / d.as_secs_f64(),
            *n as f64 / (*syncs).max(1) as f64
        );
    }
    for p in [1, 16] {
        for raw in ["raw_append", "raw_prealloc", "raw_group"] {
            if let (Some(r), Some(base)) = (
                rate(&format!("recorder_strict/{p}")),
                rate(&format!("{raw}/{p}")),
            ) {
                eprintln!(
                    "strict recorder / {raw:<12}, {p:>2} producers: {:.2}",
                    r / base
                );
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
