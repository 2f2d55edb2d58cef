#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The recorder over a real sled store: group commit, durability modes,
//! back-pressure, failure, shutdown, and use as the pipeline's event sink.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use portcullis_core::{
    AuthMethod, Command, Completion, Event, EventSink, Identity, Pipeline, Protocol,
    SessionContext, SessionId, SqlVia, Target, Timestamp,
};
use portcullis_recording::{
    Appended, Durability, EventStore, Head, RecordIter, Recorder, RecorderOptions, RecordingConfig,
    RecordingError, SessionFilter, SessionSummary, SledStore, StoredEvent,
};

fn options(durability: Durability) -> RecorderOptions {
    RecorderOptions {
        durability,
        flush_interval: Duration::from_millis(20),
        flush_events: 1000,
        queue_capacity: 256,
        writer_priority: portcullis_recording::WriterPriority::Normal,
    }
}

fn start(durability: Durability) -> (tempfile::TempDir, Recorder) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    let rec = Recorder::start(Arc::new(store), options(durability)).unwrap();
    (dir, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_concurrent_records_share_flushes() {
    let (_dir, rec) = start(Durability::Strict);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            let s = SessionId::new();
            for i in 1..=40u64 {
                rec.record(command(s, i as i64, i, "SELECT 1", true))
                    .await
                    .unwrap();
                // Acknowledged means written: the event is readable already.
                let summary = rec.store().session(s).unwrap().unwrap();
                assert_eq!(summary.commands, i);
            }
            s
        }));
    }
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(t.await.unwrap());
    }
    let stats = rec.stats();
    assert_eq!(stats.events_written, 640);
    assert_eq!(stats.head_seq, 640);
    assert_eq!(stats.queue_depth, 0);
    assert!(stats.flushes >= 1);
    // Group commit: concurrent callers share syncs.
    assert!(stats.flushes < 640, "{stats:?}");
    assert_eq!(stats.batches, stats.flushes);
    for s in sessions {
        let seqs: Vec<u64> = session_records(rec.store().as_ref(), s)
            .iter()
            .map(|r| match &r.event.kind {
                portcullis_core::EventKind::Command { seq, .. } => *seq,
                _ => panic!("unexpected event"),
            })
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    }
    assert_chain(rec.store().as_ref());
    let final_stats = rec.shutdown().await.unwrap();
    assert_eq!(final_stats.events_written, 640);
}

#[tokio::test]
async fn batched_record_returns_before_sync_and_syncs_within_the_interval() {
    let (_dir, rec) = start(Durability::Batched);
    let s = SessionId::new();
    for i in 1..=10u64 {
        rec.record(command(s, i as i64, i, "SELECT 1", true))
            .await
            .unwrap();
    }
    // Queued, maybe not yet written; within the interval (20 ms) it is written and synced.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = rec.stats();
        if st.events_written == 10 && st.flushes >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not synced: {st:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(session_records(rec.store().as_ref(), s).len(), 10);
    rec.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_results_fold_into_their_commands_records_and_read_back_the_same() {
    let (_dir, rec) = start(Durability::Batched);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            let s = SessionId::new();
            let mut sent = vec![opened(s, 0, "alice", "orders")];
            rec.record(sent[0].clone()).await.unwrap();
            for i in 1..=20u64 {
                let c = command(s, 2 * i as i64, i, "SELECT 1", true);
                rec.record(c.clone()).await.unwrap();
                let r = result(s, 2 * i as i64 + 1, i);
                rec.submit(r.clone()).unwrap();
                sent.extend([c, r]);
            }
            // Closed with an earlier time than the last result, whose time (kept inside
            // the command's record when folded) must still be the session's latest.
            let c = closed(s, 1, 20);
            rec.record(c.clone()).await.unwrap();
            sent.push(c);
            (s, sent)
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.unwrap());
    }
    rec.flush().await.unwrap();
    let store = rec.store().as_ref();
    let records = assert_chain(store);
    let folded = records
        .iter()
        .filter(|r| {
            matches!(
                r.event.kind,
                portcullis_core::EventKind::Command {
                    result: Some(_),
                    ..
                }
            )
        })
        .count();
    // A command and its result queued back to back almost always share a batch.
    assert!(folded > 0, "no result was folded");
    assert_eq!(records.len() + folded, 8 * 42);
    assert_eq!(rec.stats().events_written, records.len() as u64);
    for (s, want) in sent {
        let got: Vec<Event> = session_records(store, s)
            .into_iter()
            .flat_map(|r| {
                let (e, result) = r.event.split_result();
                std::iter::once(e).chain(result)
            })
            .collect();
        assert_eq!(got, want);
        let summary = store.session(s).unwrap().unwrap();
        assert_eq!(summary.commands, 20);
        assert_eq!(summary.last_event_at, Timestamp(41));
        assert_eq!(summary.events, session_records(store, s).len() as u64);
    }
    rec.shutdown().await.unwrap();
}

#[tokio::test]
async fn batched_syncs_after_flush_events_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    let rec = Recorder::start(
        Arc::new(store),
        RecorderOptions {
            durability: Durability::Batched,
            flush_interval: Duration::from_secs(10),
            flush_events: 10,
            queue_capacity: 256,
            writer_priority: portcullis_recording::WriterPriority::Normal,
        },
    )
    .unwrap();
    let s = SessionId::new();
    for i in 1..=25u64 {
        rec.record(command(s, i as i64, i, "x", true))
            .await
            .unwrap();
        // One event at a time, so every batch holds one event.
        while rec.stats().events_written < i {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let st = rec.stats();
    assert_eq!(st.events_written, 25);
    assert_eq!(st.flushes, 2, "{st:?}");
    rec.flush().await.unwrap();
    assert_eq!(rec.stats().flushes, 3);
    rec.shutdown().await.unwrap();
}

#[tokio::test]
async fn submitted_completions_follow_their_command() {
    let (_dir, rec) = start(Durability::Strict);
    let s = SessionId::new();
    rec.record(opened(s, 1, "alice", "orders")).await.unwrap();
    for i in 1..=5u64 {
        rec.record(command(s, 1 + i as i64, i, "SELECT 1", true))
            .await
            .unwrap();
        rec.submit(result(s, 1 + i as i64, i)).unwrap();
    }
    rec.record(closed(s, 100, 5)).await.unwrap();
    let names: Vec<&str> = session_records(rec.store().as_ref(), s)
        .iter()
        .map(|r| r.event.kind.name())
        .collect();
    let mut want = vec!["session_opened"];
    for _ in 0..5 {
        want.extend(["command", "command_result"]);
    }
    want.push("session_closed");
    assert_eq!(names, want);
    rec.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_capacity_of_one_still_admits_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    let mut opts = options(Durability::Strict);
    opts.queue_capacity = 1;
    let rec = Recorder::start(Arc::new(store), opts).unwrap();
    let s = SessionId::new();
    let mut tasks = Vec::new();
    for i in 1..=50u64 {
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            rec.record(command(s, i as i64, i, "x", true)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Completions never wait, even beyond the capacity.
    for i in 1..=50u64 {
        rec.submit(result(s, i as i64, i)).unwrap();
    }
    let st = rec.shutdown().await.unwrap();
    assert_eq!(st.events_written, 100);
    assert_eq!(st.queue_depth, 0);
    assert!(st.submit_overflow >= 1, "{st:?}");
    assert_chain(rec.store().as_ref());
}

#[tokio::test]
async fn shutdown_drains_everything_and_refuses_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let mut config = RecordingConfig::new(&path);
        config.durability = Durability::Batched;
        config.flush_interval = Duration::from_secs(10);
        config.flush_events = 100_000;
        let rec = Recorder::open(&config).unwrap();
        let s = SessionId::new();
        for i in 1..=300u64 {
            if i % 2 == 0 {
                rec.record(command(s, i as i64, i, "x", true))
                    .await
                    .unwrap();
            } else {
                rec.submit(result(s, i as i64, i)).unwrap();
            }
        }
        let st = rec.shutdown().await.unwrap();
        assert_eq!(st.events_written, 300);
        assert!(st.flushes >= 1);
        let err = rec.record(closed(s, 1000, 0)).await.unwrap_err();
        assert!(matches!(err, RecordingError::Closed), "{err}");
        assert!(matches!(
            rec.submit(closed(s, 1000, 0)),
            Err(RecordingError::Closed)
        ));
        let core_err = EventSink::record(&rec, closed(s, 1000, 0))
            .await
            .unwrap_err();
        assert!(matches!(core_err, portcullis_core::Error::Audit(_)));
        // A second shutdown is harmless.
        rec.shutdown().await.unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.head().unwrap().seq, 300);
    assert_chain(&store);
}

#[tokio::test]
async fn open_validates_and_needs_no_runtime_surprises() {
    let mut config = RecordingConfig::new("");
    assert!(matches!(
        Recorder::open(&config),
        Err(RecordingError::Config(_))
    ));
    config.path = "x".into();
    config.queue_capacity = 0;
    assert!(matches!(
        Recorder::open(&config),
        Err(RecordingError::Config(_))
    ));
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let err = Recorder::start(
        Arc::new(SledStore::temporary().unwrap()),
        options(Durability::Strict),
    )
    .unwrap_err();
    assert!(matches!(err, RecordingError::Config(_)));
}

/// A real sled store whose sync can be made to fail, as a full or failing disk would.
struct FailingSync {
    inner: SledStore,
    fail: AtomicBool,
}

impl EventStore for FailingSync {
    fn append(&self, events: &[Event]) -> portcullis_recording::Result<Appended> {
        self.inner.append(events)
    }
    fn sync(&self) -> portcullis_recording::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(RecordingError::Storage("No space left on device".into()));
        }
        self.inner.sync()
    }
    fn head(&self) -> portcullis_recording::Result<Head> {
        self.inner.head()
    }
    fn get(&self, seq: u64) -> portcullis_recording::Result<Option<StoredEvent>> {
        self.inner.get(seq)
    }
    fn scan(&self, from: u64, limit: usize) -> portcullis_recording::Result<RecordIter<'_>> {
        self.inner.scan(from, limit)
    }
    fn session(&self, id: SessionId) -> portcullis_recording::Result<Option<SessionSummary>> {
        self.inner.session(id)
    }
    fn list_sessions(
        &self,
        f: &SessionFilter,
    ) -> portcullis_recording::Result<Vec<SessionSummary>> {
        self.inner.list_sessions(f)
    }
    fn session_events(&self, id: SessionId) -> portcullis_recording::Result<RecordIter<'_>> {
        self.inner.session_events(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_fails_the_waiting_and_all_later_records() {
    for durability in [Durability::Strict, Durability::Batched] {
        let store = Arc::new(FailingSync {
            inner: SledStore::temporary().unwrap(),
            fail: AtomicBool::new(false),
        });
        let rec = Recorder::start(store.clone(), options(durability)).unwrap();
        let s = SessionId::new();
        rec.record(command(s, 1, 1, "ok", true)).await.unwrap();
        rec.flush().await.unwrap();
        store.fail.store(true, Ordering::SeqCst);

        let sink: Arc<dyn EventSink> = Arc::new(rec.clone());
        let first = sink.record(command(s, 2, 2, "lost", true)).await;
        if durability == Durability::Strict {
            assert!(
                matches!(first, Err(portcullis_core::Error::Audit(_))),
                "{first:?}"
            );
        } else {
            // Batched: acknowledged on queueing; the failure surfaces on the next sync.
            first.unwrap();
            assert!(rec.flush().await.is_err());
        }
        let later = sink
            .record(command(s, 3, 3, "refused", true))
            .await
            .unwrap_err();
        assert!(
            matches!(later, portcullis_core::Error::Audit(ref m) if m.contains("No space left")),
            "{later}"
        );
        assert!(sink.submit(result(s, 3, 3)).is_err());
        assert!(rec.stats().failed.unwrap().contains("No space left"));
        assert!(rec.shutdown().await.is_err());
    }
}

#[tokio::test]
async fn pipeline_records_commands_and_completions_through_the_recorder() {
    let (_dir, rec) = start(Durability::Strict);
    let sink: Arc<dyn EventSink> = Arc::new(rec.clone());
    let mut pipeline = Pipeline::new(sink).build();
    let session = Arc::new(SessionContext {
        id: SessionId::new(),
        identity: Identity {
            subject: "alice".into(),
            groups: vec!["dba".into()],
            method: AuthMethod::Jwt,
            issuer: None,
            expires_at: None,
        },
        target: Arc::new(Target {
            name: "orders".into(),
            protocol: Protocol::Postgres,
            upstream: "127.0.0.1:5432".into(),
            allowed_groups: vec!["dba".into()],
        }),
        client_addr: None,
        opened_at: Timestamp::now(),
    });
    use tower::{Service, ServiceExt};
    let request = portcullis_core::CommandRequest::new(
        session.clone(),
        1,
        Command::Sql {
            text: "SELECT 1".into(),
            via: SqlVia::Simple,
        },
    );
    let mut response = pipeline.ready().await.unwrap().call(request).await.unwrap();
    assert!(response.forward());
    // The command record is on disk before the command may be forwarded.
    let recorded = session_records(rec.store().as_ref(), session.id);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].event.kind.name(), "command");
    response.hooks.finish(&mut Completion {
        rows_returned: 1,
        ..Default::default()
    });
    rec.shutdown().await.unwrap();
    let names: Vec<&str> = session_records(rec.store().as_ref(), session.id)
        .iter()
        .map(|r| r.event.kind.name())
        .collect();
    assert_eq!(names, ["command", "command_result"]);
}
