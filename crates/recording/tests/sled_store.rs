#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The store suite on the sled backend, plus sled-specific persistence and tamper tests.

#[macro_use]
mod common;

use common::*;
use portcullis_core::SessionId;
use portcullis_recording::{
    ChainProblem, EventStore, RecordingError, SledStore, sled_format, verify_chain,
};

/// Opens the raw sled database, waiting for a just-dropped store to release its lock.
fn sled_open(path: &std::path::Path) -> sled::Db {
    for _ in 0..200 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    sled::open(path).unwrap()
}

fn fresh() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

store_suite!(fresh());

mod temporary {
    use super::*;
    store_suite!(((), SledStore::temporary().unwrap()));
}

#[test]
fn reopened_store_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let s = SessionId::new();
    let head = {
        let store = SledStore::open(&path).unwrap();
        store
            .append(&[
                opened(s, 1, "alice", "orders"),
                command(s, 2, 1, "SELECT 1", true),
            ])
            .unwrap();
        store.sync().unwrap();
        store.head().unwrap()
    };
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.head().unwrap(), head);
    let a = store.append(&[closed(s, 3, 1)]).unwrap();
    assert_eq!(a.first_seq, 3);
    let records = assert_chain(&store);
    assert_eq!(records[2].prev_hash, head.hash);
    assert_eq!(records[2].session_seq, 3);
    // The session's index (inline in its summary) survived the reopen and grew.
    let seqs: Vec<u64> = session_records(&store, s).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let summary = store.session(s).unwrap().unwrap();
    assert_eq!((summary.events, summary.commands), (3, 1));
    assert!(summary.closed_at.is_some());
}

/// Rewrites one stored record's value with sled directly, as an attacker with
/// file access could.
fn tamper(path: &std::path::Path, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let db = sled_open(path);
    let tree = db.open_tree("portcullis-v1").unwrap();
    let mut value = sled_format::read_record(&tree, path, seq).unwrap().unwrap();
    edit(&mut value);
    assert!(sled_format::write_record(&tree, path, seq, Some(&value)).unwrap());
    db.flush().unwrap();
}

fn five_records(path: &std::path::Path) {
    let store = SledStore::open(path).unwrap();
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
    store.sync().unwrap();
}

/// `verify` stops at record 2 (of [`five_records`]) with a hash mismatch.
fn assert_record_2_altered(path: &std::path::Path) {
    let store = SledStore::open(path).unwrap();
    let report = verify_chain(&store).unwrap();
    let bad = report.first_bad.unwrap();
    assert_eq!(bad.seq, 2);
    assert!(
        matches!(bad.problem, ChainProblem::HashMismatch { .. }),
        "{bad:?}"
    );
    assert_eq!(report.verified, 1);
}

#[test]
fn verify_names_an_edited_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    five_records(&path);
    tamper(&path, 2, |v| {
        let pos = v.windows(6).position(|w| w == b"secret").unwrap();
        v[pos..pos + 6].copy_from_slice(b"public");
    });
    assert_record_2_altered(&path);
}

#[test]
fn verify_names_an_event_edited_in_the_record_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    five_records(&path);
    // The tree holds a pointer; the event's bytes are in the record files.
    {
        let db = sled_open(&path);
        let tree = db.open_tree("portcullis-v1").unwrap();
        let (_, value) = sled_format::batch_holding(&tree, 2).unwrap().unwrap();
        assert_eq!(value.len(), 32, "a pointer, not the records");
        assert!(!value.windows(6).any(|w| w == b"secret"));
    }
    let files: Vec<_> = std::fs::read_dir(path.join(sled_format::RECORDS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let pos = bytes.windows(6).position(|w| w == b"secret").unwrap();
    bytes[pos..pos + 6].copy_from_slice(b"public");
    std::fs::write(&files[0], &bytes).unwrap();
    assert_record_2_altered(&path);
    // A deleted record file leaves every record it held unreadable, named as corrupt.
    std::fs::remove_file(&files[0]).unwrap();
    let err = SledStore::open(&path).unwrap_err();
    assert!(matches!(err, RecordingError::Corrupt { .. }), "{err:?}");
}

#[test]
fn verify_names_a_rehashed_record_by_its_broken_successor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    five_records(&path);
    // Edit record 3 and fix its own hash: the link from record 4 breaks.
    {
        let store = SledStore::open(&path).unwrap();
        let mut r = store.get(3).unwrap().unwrap();
        r.canonical = r.canonical.replace("SELECT 1", "SELECT 9");
        r.hash = r.compute_hash();
        drop(store);
        let new_hash = r.hash;
        tamper(&path, 3, |v| {
            v.truncate(1 + 8 + 32);
            v.extend_from_slice(&new_hash.0);
            v.extend_from_slice(r.canonical.as_bytes());
        });
    }
    let store = SledStore::open(&path).unwrap();
    let bad = verify_chain(&store).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 4);
    assert!(
        matches!(bad.problem, ChainProblem::BrokenLink { .. }),
        "{bad:?}"
    );
}

#[test]
fn verify_names_undecodable_and_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    five_records(&path);
    tamper(&path, 4, |v| v.truncate(10));
    let store = SledStore::open(&path).unwrap();
    let bad = verify_chain(&store).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 4);
    assert!(
        matches!(bad.problem, ChainProblem::Undecodable(_)),
        "{bad:?}"
    );
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    five_records(&path);
    {
        let db = sled_open(&path);
        let tree = db.open_tree("portcullis-v1").unwrap();
        assert!(sled_format::write_record(&tree, &path, 2u64, None).unwrap());
        db.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    let bad = verify_chain(&store).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 3);
    assert_eq!(
        bad.problem,
        ChainProblem::Gap {
            expected: 2,
            found: 3
        }
    );
}

#[test]
fn open_refuses_a_head_that_disagrees_with_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    five_records(&path);
    {
        let db = sled_open(&path);
        let tree = db.open_tree("portcullis-v1").unwrap();
        assert!(sled_format::write_record(&tree, &path, 5u64, None).unwrap());
        db.flush().unwrap();
    }
    let err = SledStore::open(&path).unwrap_err();
    assert!(
        matches!(err, RecordingError::Corrupt { seq: Some(4), .. }),
        "{err}"
    );
}

#[test]
fn pruning_through_the_middle_of_a_packed_batch_keeps_the_rest() {
    use portcullis_recording::{RetentionPolicy, SigningKey, prune};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    let (a, b) = (SessionId::new(), SessionId::new());
    let events: Vec<_> = (1..=600u64)
        .map(|i| {
            common::command(
                if i % 2 == 0 { a } else { b },
                i as i64,
                i,
                "SELECT 1",
                true,
            )
        })
        .collect();
    store.append(&events).unwrap();
    store.sync().unwrap();
    let key = SigningKey::generate().unwrap();
    let out = prune(
        &store,
        &key,
        &RetentionPolicy {
            max_age: None,
            max_records: Some(450),
        },
        portcullis_core::Timestamp(0),
    )
    .unwrap();
    // Records 1..=150 went; 150 sits inside the first packed batch (1..=256).
    assert_eq!((out.through_seq, out.stats.records), (150, 150));
    assert!(store.get(150).unwrap().is_none());
    assert_eq!(store.get(151).unwrap().unwrap().seq, 151);
    let seqs: Vec<u64> = store
        .scan(1, 1000)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(seqs, (151..=600).collect::<Vec<_>>());
    let a_seqs: Vec<u64> = store
        .session_events(a)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(a_seqs, (152..=600).step_by(2).collect::<Vec<_>>());
    assert!(verify_chain(&store).unwrap().is_intact());
    // Reopening finds the head where it was.
    drop(store);
    let store = SledStore::open(dir.path().join("store")).unwrap();
    assert_eq!(store.head().unwrap().seq, 600);
}
