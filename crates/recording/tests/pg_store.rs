#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The store suite on the PostgreSQL backend (a fresh database per test on the
//! shared server at 127.0.0.1:5432), plus what only a shared store has: several
//! chains in one database, the writer lock, the head check and the all-chains reader.

#[macro_use]
mod common;

use std::sync::Arc;

use common::*;
use portcullis_core::SessionId;
use portcullis_recording::{
    ChainProblem, EventStore, PgStore, RecordingError, SessionFilter, verify_chain,
};
use portcullis_testkit::ScratchDb;

fn fresh() -> (ScratchDb, PgStore) {
    let db = ScratchDb::create("pgstore").unwrap();
    let store = PgStore::open(&db.url(), "gw-test").unwrap();
    (db, store)
}

store_suite!(fresh());

fn five_records(store: &PgStore) -> SessionId {
    let s = SessionId::new();
    store
        .append(&[
            opened(s, 1, "alice", "orders"),
            command(s, 2, 1, "SELECT secret FROM t", true),
            result(s, 3, 1),
            command(s, 4, 2, "SELECT 2", true),
            closed(s, 5, 2),
        ])
        .unwrap();
    s
}

#[test]
fn reopened_chain_continues_with_the_same_id() {
    let db = ScratchDb::create("pgstore").unwrap();
    let s = SessionId::new();
    let (head, chain) = {
        let store = PgStore::open(&db.url(), "gw-a").unwrap();
        store
            .append(&[
                opened(s, 1, "alice", "orders"),
                command(s, 2, 1, "SELECT 1", true),
            ])
            .unwrap();
        (store.head().unwrap(), store.chain_id().unwrap())
    };
    let store = PgStore::open(&db.url(), "gw-a").unwrap();
    assert_eq!(store.head().unwrap(), head);
    assert_eq!(store.chain_id().unwrap(), chain);
    let a = store.append(&[closed(s, 3, 1)]).unwrap();
    assert_eq!(a.first_seq, 3);
    let records = assert_chain(&store);
    assert_eq!(records[2].prev_hash, head.hash);
    assert_eq!(records[2].session_seq, 3);
    let summary = store.session(s).unwrap().unwrap();
    assert_eq!((summary.events, summary.commands), (3, 1));
}

#[test]
fn a_second_writer_of_a_chain_is_refused_until_the_first_is_gone() {
    let db = ScratchDb::create("pgstore").unwrap();
    let first = PgStore::open(&db.url(), "gw-a").unwrap();
    five_records(&first);
    let err = PgStore::open(&db.url(), "gw-a").unwrap_err();
    match &err {
        RecordingError::ChainInUse { chain, holder } => {
            assert_eq!(chain, "gw-a");
            assert!(holder.contains("portcullis recorder gw-a"), "{holder}");
        }
        other => panic!("expected ChainInUse, got {other}"),
    }
    // Another chain in the same database is independent.
    let other = PgStore::open(&db.url(), "gw-b").unwrap();
    assert_ne!(other.chain_id().unwrap(), first.chain_id().unwrap());
    assert_eq!(other.head().unwrap().seq, 0);
    drop(first);
    let again = PgStore::open(&db.url(), "gw-a").unwrap();
    assert_eq!(again.head().unwrap().seq, 5);
}

#[test]
fn an_append_refuses_a_head_moved_behind_the_writers_back() {
    let db = ScratchDb::create("pgstore").unwrap();
    let store = PgStore::open(&db.url(), "gw-a").unwrap();
    let s = five_records(&store);
    // As if another process had appended to the chain.
    db.psql()
        .run("UPDATE portcullis_chains SET head_seq = 6 WHERE name = 'gw-a'")
        .unwrap();
    let err = store.append(&[closed(s, 6, 2)]).unwrap_err();
    assert!(err.to_string().contains("refusing to fork"), "{err}");
    // Nothing was written: the batch was rolled back.
    let reader = PgStore::open_chain(&db.url(), "gw-a").unwrap();
    assert_eq!(reader.scan(1, 100).unwrap().count(), 5);
}

#[test]
fn every_chain_is_its_own_gapless_chain_and_readers_see_all_sessions() {
    let db = ScratchDb::create("pgstore").unwrap();
    let a = PgStore::open(&db.url(), "gw-a").unwrap();
    let b = PgStore::open(&db.url(), "gw-b").unwrap();
    let (sa, sb) = (SessionId::new(), SessionId::new());
    for i in 0..3i64 {
        a.append(&[command(sa, 10 + i, i as u64 + 1, "SELECT a", true)])
            .unwrap();
        b.append(&[command(sb, 20 + i, i as u64 + 1, "SELECT b", true)])
            .unwrap();
    }
    a.append(&[opened(SessionId::new(), 100, "alice", "orders")])
        .unwrap();
    b.append(&[opened(SessionId::new(), 200, "bob", "billing")])
        .unwrap();
    assert_eq!(assert_chain(&a).len(), 4);
    assert_eq!(assert_chain(&b).len(), 4);

    let all = PgStore::open_all(&db.url()).unwrap();
    let chains = all.chains().unwrap();
    let names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["gw-a", "gw-b"]);
    assert_eq!(chains[0].head, a.head().unwrap());
    let listed = all
        .list_sessions_with_chain(&SessionFilter::default())
        .unwrap();
    let order: Vec<(&str, i64)> = listed
        .iter()
        .map(|(c, s)| (c.as_str(), s.opened_at.0))
        .collect();
    assert_eq!(
        order,
        [("gw-b", 200), ("gw-a", 100), ("gw-b", 20), ("gw-a", 10)]
    );
    assert_eq!(
        all.list_sessions(&SessionFilter {
            subject: Some("bob".into()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    assert_eq!(all.session(sb).unwrap().unwrap().commands, 3);
    let records: Vec<_> = all
        .session_events(sb)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.canonical.contains("SELECT b")));
    assert_eq!(all.session_events(SessionId::new()).unwrap().count(), 0);
    // Chain-level calls need one chain.
    assert!(matches!(all.head(), Err(RecordingError::Unsupported(_))));
    assert!(matches!(
        all.scan(1, 1),
        Err(RecordingError::Unsupported(_))
    ));
    let b_reader = all.chain("gw-b").unwrap();
    assert_eq!(b_reader.head().unwrap(), b.head().unwrap());
    assert!(verify_chain(&b_reader).unwrap().is_intact());
    assert!(matches!(
        b_reader.append(&[closed(sb, 30, 3)]),
        Err(RecordingError::Unsupported(_))
    ));
    assert!(PgStore::open_chain(&db.url(), "gw-nope").is_err());
}

#[test]
fn verify_names_a_record_edited_in_the_database() {
    let db = ScratchDb::create("pgstore").unwrap();
    let store = PgStore::open(&db.url(), "gw-a").unwrap();
    five_records(&store);
    let other = PgStore::open(&db.url(), "gw-b").unwrap();
    five_records(&other);
    db.psql()
        .run(
            "UPDATE portcullis_records SET event = replace(event, 'secret', 'public') \
             WHERE chain = (SELECT id FROM portcullis_chains WHERE name = 'gw-a') AND seq = 2",
        )
        .unwrap();
    let bad = verify_chain(&store).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 2);
    assert!(
        matches!(bad.problem, ChainProblem::HashMismatch { .. }),
        "{bad:?}"
    );
    assert!(verify_chain(&other).unwrap().is_intact());

    // A deleted record is a gap; an undecodable one is named.
    db.psql()
        .run(
            "DELETE FROM portcullis_records WHERE seq = 3 \
             AND chain = (SELECT id FROM portcullis_chains WHERE name = 'gw-b')",
        )
        .unwrap();
    let bad = verify_chain(&other).unwrap().first_bad.unwrap();
    assert_eq!(
        (bad.seq, bad.problem),
        (
            4,
            ChainProblem::Gap {
                expected: 3,
                found: 4
            }
        )
    );
    db.psql()
        .run(
            "UPDATE portcullis_records SET event = '{not json' WHERE seq = 1 \
             AND chain = (SELECT id FROM portcullis_chains WHERE name = 'gw-b')",
        )
        .unwrap();
    let bad = verify_chain(&other).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 1);
    assert!(
        matches!(bad.problem, ChainProblem::Undecodable(_)),
        "{bad:?}"
    );
}

#[test]
fn open_refuses_a_head_that_disagrees_with_the_records_and_a_newer_schema() {
    let db = ScratchDb::create("pgstore").unwrap();
    drop({
        let store = PgStore::open(&db.url(), "gw-a").unwrap();
        five_records(&store);
        store
    });
    db.psql()
        .run("DELETE FROM portcullis_records WHERE seq = 5")
        .unwrap();
    let err = PgStore::open(&db.url(), "gw-a").unwrap_err();
    assert!(
        matches!(err, RecordingError::Corrupt { seq: Some(4), .. }),
        "{err}"
    );
    // A reader still opens it, so that verification can name the problem.
    let reader = PgStore::open_chain(&db.url(), "gw-a").unwrap();
    let bad = verify_chain(&reader).unwrap().first_bad.unwrap();
    assert!(
        matches!(bad.problem, ChainProblem::HeadMismatch { .. }),
        "{bad:?}"
    );

    db.psql()
        .run("UPDATE portcullis_schema SET version = 99")
        .unwrap();
    let err = PgStore::open(&db.url(), "gw-a").unwrap_err();
    assert!(err.to_string().contains("schema version is 99"), "{err}");
    let empty = ScratchDb::create("pgstore").unwrap();
    let err = PgStore::open_all(&empty.url()).unwrap_err();
    assert!(err.to_string().contains("no Portcullis store"), "{err}");
}

#[test]
fn credentials_never_appear_in_errors_or_debug_output() {
    let err = PgStore::open("postgres://gw:hunter2-secret@127.0.0.1:1/db", "gw-a").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = PgStore::open("postgres://gw:hunter2-secret@127.0.0.1:x/db", "gw-a").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let (_db, store) = fresh();
    let shown = format!("{store:?} {}", store.location());
    assert!(
        shown.contains("postgres://postgres@127.0.0.1:5432/"),
        "{shown}"
    );
    assert_eq!(
        portcullis_recording::pg_store::redacted_url("postgres://u:pw@h:7/d"),
        "postgres://u@h:7/d"
    );
}

/// The store is synchronous; it must work from every kind of thread the
/// gateway calls it from: async tasks of a multi-thread and a current-thread
/// runtime (startup), `spawn_blocking` threads (the recorder's writer, the admin
/// API) and plain threads.
#[test]
fn works_from_async_tasks_blocking_threads_and_plain_threads() {
    let (_db, store) = fresh();
    let store: Arc<dyn EventStore> = Arc::new(store);
    let s = SessionId::new();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(async {
        store.append(&[opened(s, 1, "alice", "orders")]).unwrap();
        let st = store.clone();
        tokio::task::spawn_blocking(move || {
            st.append(&[command(s, 2, 1, "SELECT 1", true)]).unwrap()
        })
        .await
        .unwrap();
        let st = store.clone();
        tokio::spawn(async move { st.head().unwrap() })
            .await
            .unwrap();
    });
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(async {
        store.append(&[result(s, 3, 1)]).unwrap();
        let st = store.clone();
        tokio::task::spawn_blocking(move || st.append(&[closed(s, 4, 1)]).unwrap())
            .await
            .unwrap();
    });
    let st = store.clone();
    std::thread::spawn(move || assert_eq!(st.session_events(s).unwrap().count(), 4))
        .join()
        .unwrap();
    assert_eq!(assert_chain(store.as_ref()).len(), 4);
}

/// The recorder over a PostgreSQL store: strict appends, checkpoints, shutdown,
/// and a restart that continues the chain.
#[test]
fn the_recorder_signs_and_continues_a_postgres_chain() {
    use portcullis_recording::{
        Durability, Recorder, RecordingConfig, VerifyOptions, verify_store,
    };
    let db = ScratchDb::create("pgstore").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = RecordingConfig::new("");
    config.store = Some(portcullis_core::Secret::new(db.url()));
    config.chain = Some("gw-rec".into());
    config.signing_key = Some(dir.path().join("key.pem"));
    config.durability = Durability::Strict;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = SessionId::new();
    let key = rt.block_on(async {
        let recorder = Recorder::open(&config).unwrap();
        recorder
            .record(opened(s, 1, "alice", "orders"))
            .await
            .unwrap();
        recorder
            .record(command(s, 2, 1, "SELECT 1", true))
            .await
            .unwrap();
        recorder.record(closed(s, 3, 1)).await.unwrap();
        let key = recorder.public_key().unwrap().clone();
        recorder.shutdown().await.unwrap();
        key
    });
    rt.block_on(async {
        let recorder = Recorder::open(&config).unwrap();
        recorder
            .record(opened(SessionId::new(), 4, "bob", "orders"))
            .await
            .unwrap();
        recorder.shutdown().await.unwrap();
    });
    let reader = PgStore::open_chain(&db.url(), "gw-rec").unwrap();
    let report = verify_store(
        &reader,
        &VerifyOptions {
            trusted_keys: vec![key],
            until_seq: None,
        },
    )
    .unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.signed_through), (4, 4));
}
