#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tampering with a signed store and with an exported bundle: verification
//! catches each change and names the first bad record or checkpoint and the kind.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use portcullis_core::{Event, SessionId};
use portcullis_recording::{
    Checkpoint, CheckpointPolicy, Durability, EventStore, ExportOptions, FaultKind, PublicKey,
    Recorder, RecorderOptions, SigningKey, SledStore, StoredEvent, VerifyOptions,
    evidence::FaultAt, export, sled_format, verify_bundle, verify_store,
};

const TREE: &str = "portcullis-v1";

/// Opens the raw sled database, waiting for a just-dropped store to release its lock.
fn sled_open(path: &Path) -> sled::Db {
    for _ in 0..300 {
        if let Ok(db) = sled::open(path) {
            return db;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sled::open(path).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    key: PublicKey,
    /// Session whose records are interleaved with the others'.
    middle: SessionId,
}

/// Three sessions (A, B interleaved, C refused), checkpoints every 4 events,
/// at session close and at shutdown: 13 records.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let key = SigningKey::load_or_create(&dir.path().join("key.pem")).unwrap();
    let public = key.public_key().clone();
    let (a, b, c) = (SessionId::new(), SessionId::new(), SessionId::new());
    let events: Vec<Event> = vec![
        opened(a, 10, "alice", "orders"),
        command(a, 11, 1, "SELECT * FROM orders", true),
        opened(b, 12, "bob", "billing"),
        result(a, 13, 1),
        command(b, 14, 1, "UPDATE invoices SET paid = true", true),
        result(b, 15, 1),
        command(a, 16, 2, "DROP TABLE orders", false),
        closed(b, 17, 1),
        command(a, 18, 3, "SELECT count(*) FROM orders", true),
        result(a, 19, 3),
        refused(c, 20, "mallory"),
        closed(a, 21, 3),
        opened(SessionId::new(), 22, "carol", "orders"),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: Arc<dyn EventStore> = Arc::new(SledStore::open(&store_path).unwrap());
        let options = RecorderOptions {
            durability: Durability::Strict,
            flush_interval: Duration::from_millis(50),
            flush_events: 1000,
            queue_capacity: 64,
            writer_priority: portcullis_recording::WriterPriority::Normal,
        };
        let policy = CheckpointPolicy {
            events: 4,
            interval: Duration::from_secs(60),
        };
        let rec = Recorder::start_signed(store, options, key, policy).unwrap();
        for e in events {
            rec.record(e).await.unwrap();
        }
        let stats = rec.shutdown().await.unwrap();
        assert!(stats.checkpoints >= 4, "{stats:?}");
    });
    Fixture {
        _dir: dir,
        store: store_path,
        key: public,
        middle: b,
    }
}

fn open(path: &Path) -> SledStore {
    for _ in 0..300 {
        if let Ok(s) = SledStore::open(path) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    SledStore::open(path).unwrap()
}

fn pinned(key: &PublicKey) -> VerifyOptions {
    VerifyOptions {
        trusted_keys: vec![key.clone()],
        until_seq: None,
    }
}

/// The store's tree and directory, as an attacker with file access has them.
struct Raw<'a> {
    tree: sled::Tree,
    dir: &'a Path,
}

impl std::ops::Deref for Raw<'_> {
    type Target = sled::Tree;
    fn deref(&self) -> &sled::Tree {
        &self.tree
    }
}

fn raw_get(t: &Raw, seq: u64) -> Vec<u8> {
    sled_format::read_record(&t.tree, t.dir, seq)
        .unwrap()
        .unwrap()
}

fn raw_put(t: &Raw, seq: u64, v: &[u8]) {
    assert!(sled_format::write_record(&t.tree, t.dir, seq, Some(v)).unwrap());
}

fn raw_remove(t: &Raw, seq: u64) {
    assert!(sled_format::write_record(&t.tree, t.dir, seq, None).unwrap());
}

/// Raw access to the store as an attacker with file access has it.
fn with_tree(path: &Path, f: impl FnOnce(&Raw)) {
    let db = sled_open(path);
    let tree = db.open_tree(TREE).unwrap();
    f(&Raw { tree, dir: path });
    db.flush().unwrap();
}

fn session_seqs(path: &Path, id: SessionId) -> Vec<u64> {
    let store = open(path);
    store
        .session_events(id)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect()
}

fn assert_fault(report: &portcullis_recording::EvidenceReport, kind: FaultKind, seq: u64) {
    let f = report
        .fault
        .as_ref()
        .unwrap_or_else(|| panic!("no fault: {report:?}"));
    assert_eq!((f.kind, f.seq), (kind, seq), "{f}");
}

#[test]
fn untouched_store_verifies_with_pinned_and_embedded_keys() {
    let fx = fixture();
    let store = open(&fx.store);
    let r = verify_store(&store, &pinned(&fx.key)).unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.records, 13);
    assert_eq!(r.signed_through, 13);
    assert!(r.checkpoints >= 4);
    assert_eq!(r.keys_used, vec![fx.key.key_id()]);
    let embedded = verify_store(&store, &VerifyOptions::default()).unwrap();
    assert!(embedded.is_intact());
    assert!(embedded.warnings.iter().any(|w| w.contains("--key")));
    // Another key is not trusted.
    let other = SigningKey::generate().unwrap();
    let r = verify_store(&store, &pinned(other.public_key())).unwrap();
    assert_eq!(r.fault.unwrap().kind, FaultKind::BadSignature);
}

#[test]
fn store_one_changed_byte_is_altered() {
    let fx = fixture();
    with_tree(&fx.store, |t| {
        let mut v = raw_get(t, 7);
        let pos = v.windows(4).position(|w| w == b"DROP").unwrap();
        v[pos] = b'd';
        raw_put(t, 7, &v);
    });
    let r = verify_store(&open(&fx.store), &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Altered, 7);
    assert_eq!(r.fault.unwrap().at, FaultAt::Record);
    assert_eq!(r.records, 6);
}

#[test]
fn store_rewritten_chain_with_recomputed_hashes_is_caught_by_the_checkpoint() {
    let fx = fixture();
    // Re-chain every record from 2 on with an edited statement, as an attacker
    // who knows the hash rules (but not the signing key) would.
    let records: Vec<StoredEvent> = {
        let store = open(&fx.store);
        store.scan(1, 100).unwrap().map(|r| r.unwrap()).collect()
    };
    with_tree(&fx.store, |t| {
        let mut prev = records[0].head();
        for r in &records[1..] {
            let mut event = r.event.clone();
            if let portcullis_core::EventKind::Command { command, .. } = &mut event.kind {
                *command = portcullis_core::Command::Sql {
                    text: "SELECT 1".into(),
                    via: portcullis_core::SqlVia::Simple,
                };
            }
            let new = StoredEvent::chain(prev, r.session_seq, event).unwrap();
            let mut v = vec![1u8];
            v.extend_from_slice(&new.session_seq.to_be_bytes());
            v.extend_from_slice(&new.prev_hash.0);
            v.extend_from_slice(&new.hash.0);
            v.extend_from_slice(new.canonical.as_bytes());
            raw_put(t, new.seq, &v);
            prev = new.head();
        }
        let mut head = prev.seq.to_be_bytes().to_vec();
        head.extend_from_slice(&prev.hash.0);
        t.insert(b"mhead", head).unwrap();
    });
    let r = verify_store(&open(&fx.store), &pinned(&fx.key)).unwrap();
    let f = r.fault.unwrap();
    assert_eq!(
        (f.kind, f.at),
        (FaultKind::Altered, FaultAt::Checkpoint),
        "{f}"
    );
    assert!(f.detail.contains("rewritten"), "{f}");
}

#[test]
fn store_deleted_record_is_missing() {
    let fx = fixture();
    with_tree(&fx.store, |t| {
        raw_remove(t, 5);
    });
    let r = verify_store(&open(&fx.store), &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Missing, 5);
}

#[test]
fn store_deleted_session_is_missing() {
    let fx = fixture();
    let seqs = session_seqs(&fx.store, fx.middle);
    assert_eq!(seqs, [3, 5, 6, 8]);
    with_tree(&fx.store, |t| {
        for s in &seqs {
            raw_remove(t, *s);
        }
    });
    let r = verify_store(&open(&fx.store), &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Missing, 3);
}

#[test]
fn store_swapped_records_are_reordered() {
    let fx = fixture();
    with_tree(&fx.store, |t| {
        let a = raw_get(t, 4);
        let b = raw_get(t, 6);
        raw_put(t, 4, &b);
        raw_put(t, 6, &a);
    });
    let r = verify_store(&open(&fx.store), &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Reordered, 4);
    assert!(r.fault.unwrap().detail.contains("belongs at seq 6"));
}

#[test]
fn store_truncated_tail_is_truncated() {
    let fx = fixture();
    let records: Vec<StoredEvent> = {
        let store = open(&fx.store);
        store.scan(1, 100).unwrap().map(|r| r.unwrap()).collect()
    };
    with_tree(&fx.store, |t| {
        for s in 11..=13 {
            raw_remove(t, s);
        }
        // A careful attacker also moves the head back, so the store opens.
        let last = records[9].head();
        let mut head = last.seq.to_be_bytes().to_vec();
        head.extend_from_slice(&last.hash.0);
        t.insert(b"mhead", head).unwrap();
    });
    let r = verify_store(&open(&fx.store), &pinned(&fx.key)).unwrap();
    let f = r.fault.unwrap();
    assert_eq!(f.kind, FaultKind::Truncated, "{f}");
    assert!(f.seq > 10);
}

fn checkpoint_entries(t: &sled::Tree) -> Vec<(sled::IVec, Checkpoint)> {
    t.scan_prefix(b"c")
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k, serde_json::from_slice(&v).unwrap())
        })
        .collect()
}

#[test]
fn store_swapped_checkpoint_signatures_are_bad_signatures() {
    let fx = fixture();
    let mut first_seq = 0;
    with_tree(&fx.store, |t| {
        let cps = checkpoint_entries(t);
        assert!(cps.len() >= 3);
        let (k0, mut c0) = cps[0].clone();
        let (k1, mut c1) = cps[1].clone();
        std::mem::swap(&mut c0.signature, &mut c1.signature);
        first_seq = c0.seq;
        t.insert(k0, serde_json::to_vec(&c0).unwrap()).unwrap();
        t.insert(k1, serde_json::to_vec(&c1).unwrap()).unwrap();
    });
    let r = verify_store(&open(&fx.store), &pinned(&fx.key)).unwrap();
    let f = r.fault.unwrap();
    assert_eq!(
        (f.kind, f.at, f.seq),
        (FaultKind::BadSignature, FaultAt::Checkpoint, first_seq),
        "{f}"
    );
}

#[test]
fn store_forged_checkpoint_with_an_added_key_fails_when_the_key_is_pinned() {
    let fx = fixture();
    let forger = SigningKey::generate().unwrap();
    {
        let store = open(&fx.store);
        let head = store.head().unwrap();
        store
            .put_public_key(&portcullis_recording::PublicKeyRecord::new(
                forger.public_key(),
            ))
            .unwrap();
        let cp = Checkpoint::sign(
            &forger,
            &store.chain_id().unwrap(),
            head,
            portcullis_recording::CheckpointReason::Export,
            None,
        );
        store.put_checkpoint(&cp).unwrap();
        store.sync().unwrap();
        // Trusting the keys in the store accepts the forgery...
        assert!(
            verify_store(&store, &VerifyOptions::default())
                .unwrap()
                .is_intact()
        );
        // ...pinning the gateway's key does not.
        let r = verify_store(&store, &pinned(&fx.key)).unwrap();
        assert_fault(&r, FaultKind::BadSignature, head.seq);
    }
}

// ---- bundles ----

fn exported(fx: &Fixture) -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("bundle");
    let store = open(&fx.store);
    let m = export(&store, None, &ExportOptions::default(), &dir).unwrap();
    assert_eq!((m.first_seq, m.last_seq, m.counts.events), (1, 13, 13));
    assert_eq!(m.signed_through, 13);
    (out, dir)
}

fn edit_lines(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    f(&mut lines);
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(path, out).unwrap();
}

fn line_seq(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn bundle_verifies_untouched() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!((r.records, r.signed_through), (13, 13));
}

#[test]
fn bundle_one_changed_byte_is_altered() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    edit_lines(&dir.join("events.jsonl"), |l| {
        l[6] = l[6].replace("DROP", "dROP");
    });
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Altered, 7);
}

#[test]
fn bundle_deleted_line_is_missing() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    edit_lines(&dir.join("events.jsonl"), |l| {
        l.remove(4);
    });
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Missing, 5);
}

#[test]
fn bundle_deleted_session_is_missing() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    let id = fx.middle.to_string();
    edit_lines(&dir.join("events.jsonl"), |l| {
        l.retain(|line| !line.contains(&id));
    });
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Missing, 3);
}

#[test]
fn bundle_swapped_lines_are_reordered() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    edit_lines(&dir.join("events.jsonl"), |l| l.swap(3, 5));
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::Reordered, 4);
}

#[test]
fn bundle_truncated_tail_is_truncated() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    edit_lines(&dir.join("events.jsonl"), |l| l.truncate(10));
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    let f = r.fault.unwrap();
    assert_eq!(f.kind, FaultKind::Truncated, "{f}");
    // Even with the checkpoints beyond the cut removed, the manifest's head betrays it.
    edit_lines(&dir.join("checkpoints.jsonl"), |l| {
        l.retain(|c| line_seq(c) <= 10);
    });
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    assert_eq!(r.fault.unwrap().kind, FaultKind::Truncated);
}

#[test]
fn bundle_swapped_checkpoint_signatures_are_bad_signatures() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    let mut first = 0;
    edit_lines(&dir.join("checkpoints.jsonl"), |l| {
        let mut a: Checkpoint = serde_json::from_str(&l[0]).unwrap();
        let mut b: Checkpoint = serde_json::from_str(&l[1]).unwrap();
        std::mem::swap(&mut a.signature, &mut b.signature);
        first = a.seq;
        l[0] = serde_json::to_string(&a).unwrap();
        l[1] = serde_json::to_string(&b).unwrap();
    });
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    assert_fault(&r, FaultKind::BadSignature, first);
}

#[test]
fn bundle_file_digest_mismatch_is_altered() {
    let fx = fixture();
    let (_out, dir) = exported(&fx);
    let keys = dir.join("public-keys.json");
    let text = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(&keys, format!(" {text}")).unwrap();
    let r = verify_bundle(&dir, &pinned(&fx.key)).unwrap();
    let f = r.fault.unwrap();
    assert_eq!((f.kind, f.at), (FaultKind::Altered, FaultAt::Bundle), "{f}");
    assert!(f.detail.contains("public-keys.json"));
}

#[test]
fn bundle_of_a_mid_chain_range_verifies_from_its_anchor() {
    let fx = fixture();
    let out = tempfile::tempdir().unwrap();
    let store = open(&fx.store);
    let m = export(
        &store,
        None,
        &ExportOptions {
            since: Some(portcullis_core::Timestamp(16)),
            until: Some(portcullis_core::Timestamp(19)),
            ..Default::default()
        },
        out.path(),
    )
    .unwrap();
    // Widened to whole checkpoints on both ends.
    assert!(m.first_seq > 1 && m.first_seq <= 7, "{m:?}");
    assert!(m.last_seq >= 9, "{m:?}");
    assert_eq!(m.signed_through, m.last_seq);
    let r = verify_bundle(out.path(), &pinned(&fx.key)).unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert!(r.anchor_signed, "{r:?}");
    assert_eq!(r.anchor.seq, m.first_seq - 1);
    // Changing the anchor (the first record's prev_hash) is caught.
    edit_lines(&out.path().join("events.jsonl"), |l| {
        let mut v: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
        v["prev_hash"] = serde_json::Value::String("11".repeat(32));
        l[0] = v.to_string();
    });
    let r = verify_bundle(out.path(), &pinned(&fx.key)).unwrap();
    assert!(!r.is_intact());
}
