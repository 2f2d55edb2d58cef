//! Shared helpers and the backend-independent store suite.
//!
//! Every `check_*` function takes an empty store as `&dyn EventStore`; a backend's
//! test file runs each of them on a fresh instance of its store (see
//! `store_suite!`), so a later backend reuses the whole suite unchanged.

#![allow(dead_code)]

use std::collections::BTreeMap;

use portcullis_core::{
    AuthMethod, Command, Completion, Decision, Event, EventKind, Identity, Protocol, SessionId,
    Side, SqlVia, Timestamp,
};
use portcullis_recording::{
    ChainHash, Checkpoint, CheckpointReason, EventStore, Head, PublicKeyRecord, RetentionPolicy,
    SessionFilter, SessionOutcome, SigningKey, StoredEvent, VerifyOptions, prune, verify_chain,
    verify_store,
};

pub fn opened(session: SessionId, at: i64, subject: &str, target: &str) -> Event {
    Event {
        session,
        at: Timestamp(at),
        kind: EventKind::SessionOpened {
            identity: Identity {
                subject: subject.into(),
                groups: vec!["dba".into()],
                method: AuthMethod::Jwt,
                issuer: Some("https://issuer.example".into()),
                expires_at: None,
            },
            target: target.into(),
            protocol: Protocol::Postgres,
            client_addr: Some("127.0.0.1:50000".into()),
            details: BTreeMap::from([("application_name".into(), "psql".into())]),
        },
    }
}

pub fn command(session: SessionId, at: i64, seq: u64, sql: &str, allow: bool) -> Event {
    Event {
        session,
        at: Timestamp(at),
        kind: EventKind::Command {
            seq,
            command: Command::Sql {
                text: sql.into(),
                via: SqlVia::Simple,
            },
            decision: if allow {
                Decision::allow("r1", "allowed")
            } else {
                Decision::deny("r2", "denied")
            },
            result: None,
        },
    }
}

pub fn result(session: SessionId, at: i64, seq: u64) -> Event {
    Event {
        session,
        at: Timestamp(at),
        kind: EventKind::CommandResult {
            seq,
            duration_us: 120,
            completion: Completion {
                rows_returned: 1,
                tag: Some("SELECT 1".into()),
                ..Default::default()
            },
        },
    }
}

pub fn closed(session: SessionId, at: i64, commands: u64) -> Event {
    Event {
        session,
        at: Timestamp(at),
        kind: EventKind::SessionClosed {
            reason: "client terminated".into(),
            commands,
        },
    }
}

pub fn refused(session: SessionId, at: i64, subject: &str) -> Event {
    Event {
        session,
        at: Timestamp(at),
        kind: EventKind::SessionRefused {
            subject: Some(subject.into()),
            target: Some("orders".into()),
            client_addr: None,
            side: Side::Client,
            reason: "bad token".into(),
        },
    }
}

pub fn all(store: &dyn EventStore) -> Vec<StoredEvent> {
    store
        .scan(1, usize::MAX)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn session_records(store: &dyn EventStore, id: SessionId) -> Vec<StoredEvent> {
    store
        .session_events(id)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Asserts seq is gapless from 1, every link holds and the head is the last record.
pub fn assert_chain(store: &dyn EventStore) -> Vec<StoredEvent> {
    let records = all(store);
    let mut prev = Head::GENESIS;
    for r in &records {
        assert_eq!(r.seq, prev.seq + 1);
        assert_eq!(r.prev_hash, prev.hash);
        assert_eq!(r.compute_hash(), r.hash);
        prev = r.head();
    }
    assert_eq!(store.head().unwrap(), prev);
    let report = verify_chain(store).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.verified, records.len() as u64);
    assert_eq!(report.head, prev);
    records
}

pub fn check_empty_store(store: &dyn EventStore) {
    assert_eq!(store.head().unwrap(), Head::GENESIS);
    assert!(store.get(1).unwrap().is_none());
    assert_eq!(store.scan(1, 10).unwrap().count(), 0);
    assert!(
        store
            .list_sessions(&SessionFilter::default())
            .unwrap()
            .is_empty()
    );
    assert!(store.session(SessionId::new()).unwrap().is_none());
    assert_eq!(store.session_events(SessionId::new()).unwrap().count(), 0);
    let a = store.append(&[]).unwrap();
    assert_eq!((a.first_seq, a.count, a.head), (1, 0, Head::GENESIS));
    let report = verify_chain(store).unwrap();
    assert!(report.is_intact());
    assert_eq!(report.verified, 0);
}

pub fn check_append_builds_gapless_chain(store: &dyn EventStore) {
    let (a, b) = (SessionId::new(), SessionId::new());
    let first = store
        .append(&[
            opened(a, 10, "alice", "orders"),
            opened(b, 11, "bob", "billing"),
            command(a, 12, 1, "SELECT 1", true),
        ])
        .unwrap();
    assert_eq!((first.first_seq, first.count, first.head.seq), (1, 3, 3));
    let second = store
        .append(&[command(b, 13, 1, "SELECT 2", true), result(a, 14, 1)])
        .unwrap();
    assert_eq!((second.first_seq, second.count, second.head.seq), (4, 2, 5));
    store.sync().unwrap();

    let records = assert_chain(store);
    assert_eq!(records.len(), 5);
    assert_eq!(records[0].prev_hash, ChainHash::ZERO);
    assert_eq!(records.last().unwrap().head(), second.head);
    let session_seqs: Vec<(SessionId, u64)> = records
        .iter()
        .map(|r| (r.event.session, r.session_seq))
        .collect();
    assert_eq!(session_seqs, [(a, 1), (b, 1), (a, 2), (b, 2), (a, 3)]);

    assert_eq!(store.get(4).unwrap().unwrap(), records[3]);
    assert!(store.get(6).unwrap().is_none());
    let page: Vec<u64> = store.scan(2, 2).unwrap().map(|r| r.unwrap().seq).collect();
    assert_eq!(page, [2, 3]);
    let tail: Vec<u64> = store
        .scan(4, 100)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(tail, [4, 5]);
    assert_eq!(store.scan(6, 100).unwrap().count(), 0);
    assert_eq!(store.scan(1, 0).unwrap().count(), 0);
}

pub fn check_event_round_trips_exactly(store: &dyn EventStore) {
    let s = SessionId::new();
    let events = [
        opened(s, 1, "ünïcødé \u{1F600}", "orders"),
        command(s, 2, 1, "SELECT '\"\\\n\t\u{0}\u{1f}\u{7f}' -- é 😀", true),
        refused(s, 3, "x"),
    ];
    store.append(&events).unwrap();
    let records = assert_chain(store);
    for (r, e) in records.iter().zip(&events) {
        assert_eq!(&r.event, e);
        assert_eq!(
            r.canonical,
            portcullis_recording::canonical_json(e).unwrap()
        );
    }
}

pub fn check_session_events_in_order(store: &dyn EventStore) {
    let (a, b) = (SessionId::new(), SessionId::new());
    store.append(&[opened(a, 1, "alice", "orders")]).unwrap();
    for i in 1..=30u64 {
        let t = 1 + i as i64;
        let batch: Vec<Event> = if i % 3 == 0 {
            vec![command(b, t, i, "b", true), command(a, t, i, "a", true)]
        } else {
            vec![
                command(a, t, i, "a", true),
                result(a, t, i),
                command(b, t, i, "b", false),
            ]
        };
        store.append(&batch).unwrap();
    }
    store.append(&[closed(a, 100, 30)]).unwrap();
    let ra = session_records(store, a);
    let rb = session_records(store, b);
    assert_eq!(ra.len(), 1 + 30 + 20 + 1);
    assert_eq!(rb.len(), 30);
    for rs in [&ra, &rb] {
        let ss: Vec<u64> = rs.iter().map(|r| r.session_seq).collect();
        assert_eq!(ss, (1..=rs.len() as u64).collect::<Vec<_>>());
        assert!(rs.windows(2).all(|w| w[0].seq < w[1].seq));
    }
    assert!(ra.iter().all(|r| r.event.session == a));
    assert!(rb.iter().all(|r| r.event.session == b));
    assert_eq!(rb.first().unwrap().event.kind.name(), "command");
    assert_eq!(ra.last().unwrap().event.kind.name(), "session_closed");
    assert_chain(store);
}

pub fn check_session_summaries(store: &dyn EventStore) {
    let (a, r, x) = (SessionId::new(), SessionId::new(), SessionId::new());
    store
        .append(&[
            opened(a, 1_000, "alice", "orders"),
            command(a, 1_001, 1, "SELECT 1", true),
        ])
        .unwrap();
    store
        .append(&[
            result(a, 1_002, 1),
            command(a, 1_003, 2, "DROP TABLE t", false),
            refused(r, 1_004, "mallory"),
            command(x, 1_005, 1, "orphan", true),
        ])
        .unwrap();
    store.append(&[closed(a, 1_010, 2)]).unwrap();

    let sa = store.session(a).unwrap().unwrap();
    assert_eq!(sa.subject.as_deref(), Some("alice"));
    assert_eq!(sa.target.as_deref(), Some("orders"));
    assert_eq!(sa.protocol, Some(Protocol::Postgres));
    assert_eq!(sa.client_addr.as_deref(), Some("127.0.0.1:50000"));
    assert_eq!(sa.opened_at, Timestamp(1_000));
    assert_eq!(sa.closed_at, Some(Timestamp(1_010)));
    assert_eq!(sa.last_event_at, Timestamp(1_010));
    assert_eq!((sa.commands, sa.denied, sa.events), (2, 1, 5));
    assert_eq!((sa.first_seq, sa.last_seq), (1, 7));
    assert_eq!(
        sa.outcome,
        SessionOutcome::Closed {
            reason: "client terminated".into()
        }
    );

    let sr = store.session(r).unwrap().unwrap();
    assert_eq!(sr.subject.as_deref(), Some("mallory"));
    assert_eq!(sr.protocol, None);
    assert_eq!(
        sr.outcome,
        SessionOutcome::Refused {
            side: Side::Client,
            reason: "bad token".into()
        }
    );

    let sx = store.session(x).unwrap().unwrap();
    assert_eq!(sx.subject, None);
    assert_eq!(sx.outcome, SessionOutcome::Open);
    assert_eq!(sx.commands, 1);
}

pub fn check_list_sessions_filters(store: &dyn EventStore) {
    // 12 sessions opened at t = 100, 200, ..., 1200, alternating subjects and targets.
    let mut ids = Vec::new();
    for i in 1..=12i64 {
        let id = SessionId::new();
        let subject = if i % 2 == 0 { "alice" } else { "bob" };
        let target = if i % 3 == 0 { "billing" } else { "orders" };
        store
            .append(&[opened(id, i * 100, subject, target)])
            .unwrap();
        ids.push(id);
    }
    // Later events of an old session do not move it in the time order.
    store
        .append(&[command(ids[0], 5_000, 1, "SELECT 1", true)])
        .unwrap();

    let times = |f: &SessionFilter| -> Vec<i64> {
        store
            .list_sessions(f)
            .unwrap()
            .into_iter()
            .map(|s| s.opened_at.0)
            .collect()
    };
    assert_eq!(
        times(&SessionFilter::default()),
        (1..=12).rev().map(|i| i * 100).collect::<Vec<_>>()
    );
    assert_eq!(
        times(&SessionFilter {
            limit: 3,
            ..Default::default()
        }),
        [1200, 1100, 1000]
    );
    assert_eq!(
        times(&SessionFilter {
            limit: 0,
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        times(&SessionFilter {
            subject: Some("alice".into()),
            ..Default::default()
        }),
        [1200, 1000, 800, 600, 400, 200]
    );
    assert_eq!(
        times(&SessionFilter {
            subject: Some("bob".into()),
            target: Some("billing".into()),
            ..Default::default()
        }),
        [900, 300]
    );
    assert_eq!(
        times(&SessionFilter {
            since: Some(Timestamp(300)),
            until: Some(Timestamp(700)),
            ..Default::default()
        }),
        [600, 500, 400, 300]
    );
    assert_eq!(
        times(&SessionFilter {
            since: Some(Timestamp(700)),
            until: Some(Timestamp(300)),
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        times(&SessionFilter {
            subject: Some("alice".into()),
            since: Some(Timestamp(250)),
            limit: 2,
            ..Default::default()
        }),
        [1200, 1000]
    );
    assert!(
        times(&SessionFilter {
            subject: Some("nobody".into()),
            ..Default::default()
        })
        .is_empty()
    );
    let first = store
        .list_sessions(&SessionFilter {
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first[0].id, ids[11]);
}

pub fn check_negative_and_extreme_times(store: &dyn EventStore) {
    let (a, b, c) = (SessionId::new(), SessionId::new(), SessionId::new());
    store
        .append(&[
            opened(a, -5, "a", "t"),
            opened(b, 0, "b", "t"),
            opened(c, i64::MAX, "c", "t"),
        ])
        .unwrap();
    let subjects: Vec<String> = store
        .list_sessions(&SessionFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| s.subject.unwrap())
        .collect();
    assert_eq!(subjects, ["c", "b", "a"]);
    let before_zero = store
        .list_sessions(&SessionFilter {
            until: Some(Timestamp(0)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(before_zero.len(), 1);
    assert_eq!(before_zero[0].id, a);
}

pub fn check_long_chain_verifies_in_pages(store: &dyn EventStore) {
    let s = SessionId::new();
    for chunk in 0..25u64 {
        let events: Vec<Event> = (1..=100u64)
            .map(|i| {
                command(
                    s,
                    (chunk * 100 + i) as i64,
                    chunk * 100 + i,
                    "SELECT 1",
                    true,
                )
            })
            .collect();
        store.append(&events).unwrap();
    }
    let report = verify_chain(store).unwrap();
    assert!(report.is_intact());
    assert_eq!(report.verified, 2500);
    assert_eq!(report.head, store.head().unwrap());
    assert_eq!(store.session(s).unwrap().unwrap().commands, 2500);
    assert_eq!(store.session_events(s).unwrap().count(), 2500);
}

/// Appends far larger than one storage batch, with two interleaved sessions:
/// random access, scans that start inside a batch, and session order all hold.
pub fn check_large_interleaved_appends(store: &dyn EventStore) {
    let (a, b) = (SessionId::new(), SessionId::new());
    let mut n = 0u64;
    for _ in 0..3 {
        let events: Vec<Event> = (0..700u64)
            .map(|i| {
                n += 1;
                let s = if i % 3 == 0 { b } else { a };
                command(s, n as i64, n, &format!("SELECT {n}"), true)
            })
            .collect();
        store.append(&events).unwrap();
    }
    assert_eq!(store.head().unwrap().seq, 2100);
    for seq in [1, 255, 256, 257, 700, 701, 1399, 2100] {
        let r = store.get(seq).unwrap().unwrap();
        assert_eq!(r.seq, seq);
        assert!(
            r.canonical.contains(&format!("SELECT {seq}\"")),
            "{}",
            r.canonical
        );
    }
    assert!(store.get(2101).unwrap().is_none());
    let page: Vec<u64> = store
        .scan(300, 500)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(page, (300..800).collect::<Vec<_>>());
    for (id, expected) in [(a, 1398u64), (b, 702)] {
        let seqs: Vec<(u64, u64)> = store
            .session_events(id)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                assert_eq!(r.event.session, id);
                (r.session_seq, r.seq)
            })
            .collect();
        assert_eq!(seqs.len() as u64, expected);
        assert!(
            seqs.iter()
                .enumerate()
                .all(|(i, (ss, _))| *ss == i as u64 + 1)
        );
        assert!(seqs.windows(2).all(|w| w[0].1 < w[1].1));
    }
    assert!(verify_chain(store).unwrap().is_intact());
}

/// Sessions that grow over many small appends (a short session's index lives in its
/// summary; a long one's moves to index entries part way through) read back complete
/// and in order, interleaved with sessions that open and close in between.
pub fn check_sessions_growing_across_appends(store: &dyn EventStore) {
    let (long, other) = (SessionId::new(), SessionId::new());
    let mut n = 0i64;
    let mut short = Vec::new();
    store.append(&[opened(long, 0, "alice", "orders")]).unwrap();
    // Enough rounds for a long session's index to move out of its summary value
    // several times (sled keeps the latest 128 seqs there).
    for round in 0..60u64 {
        let mut events = Vec::new();
        for i in 0..7u64 {
            n += 1;
            events.push(command(long, n, round * 7 + i + 1, "SELECT 1", true));
            if i % 2 == 0 {
                events.push(command(other, n, round * 4 + i / 2 + 1, "SELECT 2", true));
            }
        }
        let s = SessionId::new();
        events.push(opened(s, n, "bob", "orders"));
        events.push(closed(s, n, 0));
        short.push(s);
        store.append(&events).unwrap();
    }
    let read = |id: SessionId| -> Vec<u64> {
        store
            .session_events(id)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                assert_eq!(r.event.session, id);
                r.session_seq
            })
            .collect()
    };
    assert_eq!(read(long), (1..=421).collect::<Vec<_>>());
    assert_eq!(read(other), (1..=240).collect::<Vec<_>>());
    for s in short {
        assert_eq!(read(s), vec![1, 2]);
    }
    let summary = store.session(long).unwrap().unwrap();
    assert_eq!(summary.events, 421);
    assert_eq!(summary.commands, 420);
    assert!(verify_chain(store).unwrap().is_intact());
}

pub fn check_checkpoints_and_public_keys(store: &dyn EventStore) {
    let chain = store.chain_id().unwrap();
    assert!(!chain.is_empty());
    assert_eq!(store.chain_id().unwrap(), chain);
    assert!(store.base().unwrap().is_none());
    assert!(store.public_keys().unwrap().is_empty());
    assert_eq!(store.checkpoints(0).unwrap().count(), 0);

    let key = SigningKey::generate().unwrap();
    let first = PublicKeyRecord::new(key.public_key());
    store.put_public_key(&first).unwrap();
    let mut again = first.clone();
    again.added_at = Timestamp(first.added_at.0 + 1_000_000);
    store.put_public_key(&again).unwrap();
    let other = SigningKey::generate().unwrap();
    store
        .put_public_key(&PublicKeyRecord::new(other.public_key()))
        .unwrap();
    let keys = store.public_keys().unwrap();
    assert_eq!(keys.len(), 2);
    // A key already stored keeps its first record.
    assert_eq!(
        keys.iter().find(|k| k.key_id == first.key_id).unwrap(),
        &first
    );

    let s = SessionId::new();
    let mut signed = Vec::new();
    for i in 1..=5u64 {
        let a = store
            .append(&[command(s, i as i64, i, "SELECT 1", true)])
            .unwrap();
        let cp = Checkpoint::sign(&key, &chain, a.head, CheckpointReason::Events, None);
        store.put_checkpoint(&cp).unwrap();
        signed.push(cp);
    }
    // Two checkpoints of the same head (another key) are both kept; re-storing one is a no-op.
    let twin = Checkpoint::sign(
        &other,
        &chain,
        signed[2].head(),
        CheckpointReason::Export,
        None,
    );
    store.put_checkpoint(&twin).unwrap();
    store.put_checkpoint(&signed[0]).unwrap();
    store.sync().unwrap();

    let all: Vec<Checkpoint> = store
        .checkpoints(0)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].seq <= w[1].seq));
    let from3: Vec<u64> = store
        .checkpoints(3)
        .unwrap()
        .map(|c| c.unwrap().seq)
        .collect();
    assert_eq!(from3, [3, 3, 4, 5]);
    assert!(all.contains(&twin));
    assert_eq!(store.checkpoints(6).unwrap().count(), 0);
    let options = VerifyOptions {
        trusted_keys: vec![key.public_key().clone(), other.public_key().clone()],
        until_seq: None,
    };
    let report = verify_store(store, &options).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.signed_through, 5);
    assert_eq!(report.chain.as_deref(), Some(chain.as_str()));
}

pub fn check_prune_behind_a_signed_tombstone(store: &dyn EventStore) {
    let key = SigningKey::generate().unwrap();
    let chain = store.chain_id().unwrap();
    store
        .put_public_key(&PublicKeyRecord::new(key.public_key()))
        .unwrap();
    // Ten sessions of four records each; session 10 stays open.
    let mut ids = Vec::new();
    for i in 0..10i64 {
        let s = SessionId::new();
        let t = i * 10;
        let mut events = vec![
            opened(s, t, "alice", "orders"),
            command(s, t + 1, 1, "SELECT 1", true),
            result(s, t + 2, 1),
        ];
        if i < 9 {
            events.push(closed(s, t + 3, 1));
        } else {
            events.push(command(s, t + 3, 2, "SELECT 2", true));
        }
        let a = store.append(&events).unwrap();
        store
            .put_checkpoint(&Checkpoint::sign(
                &key,
                &chain,
                a.head,
                CheckpointReason::SessionClose,
                None,
            ))
            .unwrap();
        ids.push(s);
    }
    store.sync().unwrap();
    let out = prune(
        store,
        &key,
        &RetentionPolicy {
            max_age: None,
            max_records: Some(25),
        },
        Timestamp(1_000),
    )
    .unwrap();
    assert_eq!(out.through_seq, 15);
    assert_eq!(out.stats.records, 15);
    assert_eq!(out.stats.sessions, 3);
    let tombstone = out.tombstone.unwrap();
    assert_eq!(store.base().unwrap().unwrap(), tombstone);
    assert!(store.get(15).unwrap().is_none());
    assert!(store.get(16).unwrap().is_some());
    assert!(store.session(ids[0]).unwrap().is_none());
    // Session 4 (records 13..=16) lost records but keeps its summary.
    assert!(store.session(ids[3]).unwrap().is_some());
    assert_eq!(store.session_events(ids[3]).unwrap().count(), 1);
    assert_eq!(
        store
            .list_sessions(&SessionFilter::default())
            .unwrap()
            .len(),
        7
    );
    assert!(store.checkpoints(0).unwrap().all(|c| c.unwrap().seq >= 15));
    let options = VerifyOptions {
        trusted_keys: vec![key.public_key().clone()],
        until_seq: None,
    };
    let report = verify_store(store, &options).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 25);
    let chain_report = verify_chain(store).unwrap();
    assert!(chain_report.is_intact(), "{chain_report:?}");
    // Pruning the same range again does nothing; the last record is always kept.
    assert_eq!(store.prune(&tombstone).unwrap().records, 0);
    let last = Checkpoint::sign(
        &key,
        &chain,
        store.head().unwrap(),
        CheckpointReason::Tombstone,
        Some(16),
    );
    assert!(store.prune(&last).is_err());
}

/// Runs every check of the suite, each on a fresh store made by `$make`.
#[allow(unused_macros)]
macro_rules! store_suite {
    ($make:expr) => {
        store_suite!(@tests $make;
            check_empty_store,
            check_append_builds_gapless_chain,
            check_event_round_trips_exactly,
            check_session_events_in_order,
            check_session_summaries,
            check_list_sessions_filters,
            check_negative_and_extreme_times,
            check_long_chain_verifies_in_pages,
            check_large_interleaved_appends,
            check_sessions_growing_across_appends,
            check_checkpoints_and_public_keys,
            check_prune_behind_a_signed_tombstone,
        );
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (_guard, store) = $make;
                common::$check(&store);
            }
        )*
    };
}
