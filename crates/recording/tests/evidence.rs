#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Checkpointing by the recorder, key rotation, retention with tombstones,
//! OCSF export, the NIST report and search.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use portcullis_core::{Event, EventKind, Quorum, SessionId, Timestamp, Verdict};
use portcullis_recording::evidence::{AnchorKind, EvidenceSource};
use portcullis_recording::search::{SearchQuery, search};
use portcullis_recording::{
    Bundle, CheckpointPolicy, CheckpointReason, Durability, EventStore, ExportFormat,
    ExportOptions, FaultKind, Recorder, RecorderOptions, RecordingConfig, RecordingError,
    RetentionPolicy, SigningKey, SledStore, VerifyOptions, export, prune, public_key_info, report,
    sled_format, verify_bundle, verify_chain, verify_store,
};

fn options() -> RecorderOptions {
    RecorderOptions {
        durability: Durability::Strict,
        flush_interval: Duration::from_millis(50),
        flush_events: 1000,
        queue_capacity: 64,
        writer_priority: portcullis_recording::WriterPriority::Normal,
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

fn reasons_by_name(store: &dyn EventStore) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for cp in store.checkpoints(0).unwrap() {
        *m.entry(cp.unwrap().reason.as_str()).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn recorder_signs_by_count_interval_session_close_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SledStore::open(dir.path().join("s")).unwrap());
    let key = SigningKey::generate().unwrap();
    let public = key.public_key().clone();
    let policy = CheckpointPolicy {
        events: 5,
        interval: Duration::from_millis(200),
    };
    let rec = Recorder::start_signed(store.clone(), options(), key, policy).unwrap();
    let s = SessionId::new();
    rec.record(opened(s, 1, "alice", "orders")).await.unwrap();
    for i in 1..=6u64 {
        rec.record(command(s, 1 + i as i64, i, "SELECT 1", true))
            .await
            .unwrap();
    }
    // 7 events: one count checkpoint at 5.
    assert_eq!(reasons_by_name(store.as_ref()).get("events"), Some(&1));
    // The interval signs the remaining two.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reasons_by_name(store.as_ref()).get("interval"), Some(&1));
    assert_eq!(rec.stats().checkpoint_seq, 7);
    rec.record(closed(s, 20, 6)).await.unwrap();
    assert_eq!(
        reasons_by_name(store.as_ref()).get("session_close"),
        Some(&1)
    );
    rec.record(opened(SessionId::new(), 21, "bob", "orders"))
        .await
        .unwrap();
    let stats = rec.shutdown().await.unwrap();
    assert_eq!(stats.checkpoint_seq, 9);
    assert_eq!(reasons_by_name(store.as_ref()).get("shutdown"), Some(&1));
    let r = verify_store(
        store.as_ref(),
        &VerifyOptions {
            trusted_keys: vec![public],
            until_seq: None,
        },
    )
    .unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.signed_through, 9);
    assert_eq!(r.checkpoints, 4);
    assert!(
        r.warnings
            .iter()
            .all(|w| !w.contains("after the last checkpoint"))
    );
}

#[tokio::test]
async fn open_creates_the_key_and_public_key_info_matches_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RecordingConfig::new(dir.path().join("rec"));
    config.signing_key = Some(dir.path().join("keys/gateway.pem"));
    let (id, pem) = public_key_info(&config).unwrap();
    let rec = Recorder::open(&config).unwrap();
    assert_eq!(rec.public_key().unwrap().key_id(), id);
    rec.record(closed(SessionId::new(), 1, 0)).await.unwrap();
    rec.shutdown().await.unwrap();
    drop(rec);
    let store = open(&dir.path().join("rec"));
    let key = portcullis_recording::PublicKey::from_pem(&pem).unwrap();
    let r = verify_store(
        &store,
        &VerifyOptions {
            trusted_keys: vec![key],
            until_seq: None,
        },
    )
    .unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.signed_through, 1);
    // Default key location: inside the store directory, mode 0600.
    let config = RecordingConfig::new(dir.path().join("rec2"));
    let (id2, _) = public_key_info(&config).unwrap();
    assert_ne!(id, id2);
    assert!(dir.path().join("rec2/signing-key.pem").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn open_refuses_a_world_readable_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = RecordingConfig::new(dir.path().join("rec"));
    let key = dir.path().join("k.pem");
    config.signing_key = Some(key.clone());
    public_key_info(&config).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Recorder::open(&config).unwrap_err();
    assert!(matches!(err, RecordingError::Key(_)), "{err}");
}

#[tokio::test]
async fn rotated_keys_keep_old_checkpoints_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let policy = CheckpointPolicy {
        events: 2,
        interval: Duration::from_secs(60),
    };
    let k1 = SigningKey::generate().unwrap();
    let k2 = SigningKey::generate().unwrap();
    let (p1, p2) = (k1.public_key().clone(), k2.public_key().clone());
    for (key, base) in [(k1, 0i64), (k2, 100)] {
        let store: Arc<dyn EventStore> = Arc::new(open(&path));
        let rec = Recorder::start_signed(store, options(), key, policy).unwrap();
        let s = SessionId::new();
        rec.record(opened(s, base + 1, "alice", "orders"))
            .await
            .unwrap();
        rec.record(command(s, base + 2, 1, "SELECT 1", true))
            .await
            .unwrap();
        rec.record(closed(s, base + 3, 1)).await.unwrap();
        rec.shutdown().await.unwrap();
    }
    let store = open(&path);
    assert_eq!(store.public_keys().unwrap().len(), 2);
    let pinned = |keys: Vec<portcullis_recording::PublicKey>| VerifyOptions {
        trusted_keys: keys,
        until_seq: None,
    };
    let both = verify_store(&store, &pinned(vec![p1.clone(), p2.clone()])).unwrap();
    assert!(both.is_intact(), "{both:?}");
    assert_eq!(both.keys_used.len(), 2);
    let embedded = verify_store(&store, &VerifyOptions::default()).unwrap();
    assert!(embedded.is_intact());
    let only_new = verify_store(&store, &pinned(vec![p2])).unwrap();
    assert_eq!(only_new.fault.unwrap().kind, FaultKind::BadSignature);
}

#[tokio::test]
async fn startup_signs_an_unsigned_tail_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let key_path = dir.path().join("k.pem");
    {
        // Records written without a signing recorder (as after a crash).
        let store = open(&path);
        let s = SessionId::new();
        store
            .append(&[opened(s, 1, "a", "t"), command(s, 2, 1, "SELECT 1", true)])
            .unwrap();
        store.sync().unwrap();
    }
    let policy = CheckpointPolicy {
        events: 100,
        interval: Duration::from_secs(60),
    };
    {
        let store: Arc<dyn EventStore> = Arc::new(open(&path));
        let key = SigningKey::load_or_create(&key_path).unwrap();
        let rec = Recorder::start_signed(store.clone(), options(), key, policy).unwrap();
        assert_eq!(reasons_by_name(store.as_ref()).get("startup"), Some(&1));
        rec.shutdown().await.unwrap();
    }
    {
        let store = open(&path);
        store
            .append(&[command(SessionId::new(), 3, 1, "SELECT 2", true)])
            .unwrap();
        store.sync().unwrap();
    }
    // Tamper with the unsigned record 3 while the gateway is down.
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("portcullis-v1").unwrap();
        let mut v = sled_format::read_record(&tree, &path, 3).unwrap().unwrap();
        let pos = v.windows(8).position(|w| w == b"SELECT 2").unwrap();
        v[pos + 7] = b'3';
        assert!(sled_format::write_record(&tree, &path, 3, Some(&v)).unwrap());
        db.flush().unwrap();
    }
    let store: Arc<dyn EventStore> = Arc::new(open(&path));
    let key = SigningKey::load_or_create(&key_path).unwrap();
    let err = Recorder::start_signed(store, options(), key, policy).unwrap_err();
    assert!(matches!(err, RecordingError::Unverified(_)), "{err}");
}

async fn busy_store(path: &Path, key: SigningKey, sessions: u64) {
    let store: Arc<dyn EventStore> = Arc::new(open(path));
    let policy = CheckpointPolicy {
        events: 7,
        interval: Duration::from_secs(60),
    };
    let rec = Recorder::start_signed(store, options(), key, policy).unwrap();
    for i in 0..sessions {
        let s = SessionId::new();
        let t = (i * 10) as i64;
        rec.record(opened(s, t, "alice", "orders")).await.unwrap();
        rec.record(command(s, t + 1, 1, "SELECT * FROM orders", i % 3 != 0))
            .await
            .unwrap();
        rec.record(result(s, t + 2, 1)).await.unwrap();
        rec.record(closed(s, t + 3, 1)).await.unwrap();
    }
    rec.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_prunes_behind_a_signed_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let key_path = dir.path().join("k.pem");
    let key = SigningKey::load_or_create(&key_path).unwrap();
    let public = key.public_key().clone();
    busy_store(&path, SigningKey::load_or_create(&key_path).unwrap(), 10).await; // 40 records
    let store = open(&path);
    let pinned = VerifyOptions {
        trusted_keys: vec![public.clone()],
        until_seq: None,
    };
    assert!(verify_store(&store, &pinned).unwrap().is_intact());
    let sessions_before = store
        .list_sessions(&portcullis_recording::SessionFilter::default())
        .unwrap()
        .len();
    assert_eq!(sessions_before, 10);

    // By count: keep the newest 25.
    let out = prune(
        &store,
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
    assert_eq!(out.stats.sessions, 3); // sessions 1-3 (records 1..=12) are gone entirely
    let t = out.tombstone.clone().unwrap();
    assert_eq!(
        (t.pruned_from, t.seq, t.reason),
        (Some(1), 15, CheckpointReason::Tombstone)
    );
    assert!(store.get(15).unwrap().is_none());
    assert!(store.get(16).unwrap().is_some());
    assert_eq!(store.base().unwrap().unwrap(), t);
    let r = verify_store(&store, &pinned).unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.anchor_kind, AnchorKind::Tombstone);
    assert_eq!((r.anchor.seq, r.records), (15, 25));
    assert!(verify_chain(&store).unwrap().is_intact());
    assert_eq!(
        store
            .list_sessions(&portcullis_recording::SessionFilter::default())
            .unwrap()
            .len(),
        7
    );

    // By age: everything before t=60 (sessions 0..=5 start at 0,10,..,50).
    let out = prune(
        &store,
        &key,
        &RetentionPolicy {
            max_age: Some(Duration::from_micros(40)),
            max_records: None,
        },
        Timestamp(100),
    )
    .unwrap();
    assert_eq!(out.tombstone.unwrap().pruned_from, Some(16));
    assert_eq!(out.through_seq, 24); // last record with at < 60
    let r = verify_store(&store, &pinned).unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.anchor.seq, 24);

    // Nothing more to prune is not an error.
    let again = prune(
        &store,
        &key,
        &RetentionPolicy {
            max_age: Some(Duration::from_micros(40)),
            max_records: None,
        },
        Timestamp(100),
    )
    .unwrap();
    assert_eq!(again.through_seq, 0);

    // Bundles of a pruned store verify from their anchor.
    let out_dir = tempfile::tempdir().unwrap();
    export(&store, None, &ExportOptions::default(), out_dir.path()).unwrap();
    assert!(verify_bundle(out_dir.path(), &pinned).unwrap().is_intact());
    drop(store);

    // A forged tombstone (bad signature) is caught.
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("portcullis-v1").unwrap();
        let mut base: serde_json::Value =
            serde_json::from_slice(&tree.get(b"mbase").unwrap().unwrap()).unwrap();
        base["pruned_from"] = serde_json::json!(2);
        tree.insert(b"mbase", serde_json::to_vec(&base).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let store = open(&path);
    let r = verify_store(&store, &pinned).unwrap();
    assert_eq!(r.fault.unwrap().kind, FaultKind::BadSignature);
}

#[tokio::test]
async fn prune_refuses_to_drop_tampered_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let key_path = dir.path().join("k.pem");
    busy_store(&path, SigningKey::load_or_create(&key_path).unwrap(), 5).await;
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("portcullis-v1").unwrap();
        assert!(sled_format::write_record(&tree, &path, 2, None).unwrap());
        db.flush().unwrap();
    }
    let store = open(&path);
    let key = SigningKey::load_or_create(&key_path).unwrap();
    let err = prune(
        &store,
        &key,
        &RetentionPolicy {
            max_age: None,
            max_records: Some(5),
        },
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(
        matches!(err, RecordingError::Unverified(ref m) if m.contains("missing")),
        "{err}"
    );
    assert!(store.base().unwrap().is_none());
    assert_eq!(store.scan(3, 100).unwrap().count(), 18);
}

fn approval_events(s: SessionId) -> Vec<Event> {
    let at = |t| Timestamp(t);
    vec![
        opened(s, 100, "alice", "orders"),
        Event {
            session: s,
            at: at(101),
            kind: EventKind::ApprovalRequested {
                request: "req-1".into(),
                seq: 1,
                command: portcullis_core::Command::Sql {
                    text: "DELETE FROM orders".into(),
                    via: portcullis_core::SqlVia::Simple,
                },
                rule: "deletes".into(),
                reason: "needs review".into(),
                approvers: vec!["leads".into()],
                quorum: Quorum::Count(1),
                expires_at: at(1_000_000),
            },
        },
        Event {
            session: s,
            at: at(102),
            kind: EventKind::ApprovalDecided {
                request: "req-1".into(),
                approver: "alice".into(),
                approved: true,
                justification: "mine".into(),
            },
        },
        Event {
            session: s,
            at: at(103),
            kind: EventKind::ApprovalClosed {
                request: "req-1".into(),
                outcome: "approved".into(),
            },
        },
        Event {
            session: s,
            at: at(104),
            kind: EventKind::GrantIssued {
                grant: "g-1".into(),
                request: "req-1".into(),
                subject: "alice".into(),
                target: "orders".into(),
                kinds: vec!["write".into()],
                expires_at: at(2_000_000),
                session_only: true,
            },
        },
        command(s, 105, 1, "DELETE FROM orders", true),
        result(s, 106, 1),
        command(s, 107, 2, "DROP TABLE orders", false),
        Event {
            session: s,
            at: at(108),
            kind: EventKind::GrantEnded {
                grant: "g-1".into(),
                reason: "session_closed".into(),
                by: None,
            },
        },
        closed(s, 109, 2),
    ]
}

async fn approval_store(path: &Path) {
    let store: Arc<dyn EventStore> = Arc::new(open(path));
    let policy = CheckpointPolicy {
        events: 100,
        interval: Duration::from_secs(60),
    };
    let rec =
        Recorder::start_signed(store, options(), SigningKey::generate().unwrap(), policy).unwrap();
    let r = SessionId::new();
    rec.record(refused(r, 99, "mallory")).await.unwrap();
    for e in approval_events(SessionId::new()) {
        rec.record(e).await.unwrap();
    }
    rec.shutdown().await.unwrap();
}

#[tokio::test]
async fn ocsf_export_maps_every_event_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    approval_store(&path).await;
    let store = open(&path);
    let out = dir.path().join("bundle");
    let m = export(
        &store,
        None,
        &ExportOptions {
            format: ExportFormat::Ocsf,
            ..Default::default()
        },
        &out,
    )
    .unwrap();
    assert!(m.files.contains_key("events.ocsf.jsonl"));
    assert!(
        verify_bundle(&out, &VerifyOptions::default())
            .unwrap()
            .is_intact()
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("events.ocsf.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let classes: Vec<(u64, u64)> = lines
        .iter()
        .map(|v| {
            (
                v["class_uid"].as_u64().unwrap(),
                v["activity_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            (3002, 1),  // refused logon
            (3002, 1),  // logon
            (3005, 99), // approval requested
            (3005, 99), // approval decided
            (3005, 99), // approval closed
            (3005, 1),  // grant issued
            (6005, 7),  // DELETE with its result
            (6005, 7),  // DROP denied
            (3005, 2),  // grant ended
            (3002, 2),  // logoff
        ]
    );
    assert_eq!(lines[0]["status_id"], 2);
    assert_eq!(lines[0]["unmapped"]["side"], "client");
    assert_eq!(lines[1]["user"]["name"], "alice");
    assert_eq!(lines[1]["src_endpoint"]["ip"], "127.0.0.1");
    let delete = &lines[6];
    assert_eq!(delete["type_uid"], 600507);
    assert_eq!(delete["action_id"], 1);
    assert_eq!(delete["query_info"]["query_string"], "DELETE FROM orders");
    assert_eq!(delete["unmapped"]["result"]["tag"], "SELECT 1");
    assert_eq!(delete["actor"]["user"]["name"], "alice");
    let drop = &lines[7];
    assert_eq!(
        (drop["action_id"].as_u64(), drop["disposition"].as_str()),
        (Some(2), Some("Blocked"))
    );
    assert_eq!(drop["authorizations"][0]["policy"]["name"], "r2");
    assert_eq!(lines[3]["actor"]["user"]["name"], "alice");
}

#[tokio::test]
async fn nist_report_lists_evidence_per_control_for_store_and_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    approval_store(&path).await;
    let store = open(&path);
    let r = report(
        EvidenceSource::Store(&store),
        None,
        None,
        &VerifyOptions::default(),
    )
    .unwrap();
    let ids: Vec<&str> = r.controls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "AU-2", "AU-3", "AU-6", "AU-9", "AU-10", "AU-12", "AC-2", "AC-3", "AC-5", "AC-6",
            "IA-2", "IA-5"
        ]
    );
    assert!(r.verification.is_intact());
    assert_eq!(r.stats.sessions_opened, 1);
    assert_eq!(r.stats.refused_by_side.get("client"), Some(&1));
    assert_eq!(r.stats.commands_by_decision.get("deny"), Some(&1));
    assert_eq!(r.stats.denied_by_rule.get("r2"), Some(&1));
    assert_eq!(r.stats.auth_methods.get("jwt"), Some(&1));
    assert_eq!(r.stats.approvals.len(), 1);
    assert!(r.stats.approvals[0].self_decided);
    let ac5 = r.controls.iter().find(|c| c.id == "AC-5").unwrap();
    assert!(ac5.attention);
    let md = r.to_markdown();
    assert!(md.contains("## AU-10 Non-repudiation"));
    assert!(md.contains("decided by its own requester alice"));
    assert!(md.contains("DROP TABLE orders"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["framework"], "nist-800-53");

    let out = dir.path().join("b");
    export(&store, None, &ExportOptions::default(), &out).unwrap();
    let bundle = Bundle::open(&out).unwrap();
    let rb = report(
        EvidenceSource::Bundle(&bundle),
        None,
        None,
        &VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(rb.stats, r.stats);
    assert_eq!(rb.source, "bundle");
    // A time range narrows the counts.
    let narrow = report(
        EvidenceSource::Store(&store),
        Some(Timestamp(105)),
        Some(Timestamp(107)),
        &VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(narrow.stats.records, 2);
    assert_eq!(narrow.stats.sessions_opened, 0);
}

#[tokio::test]
async fn search_filters_by_subject_decision_text_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    approval_store(&path).await;
    let store = open(&path);
    let src = EvidenceSource::Store(&store);
    let all = search(src, &SearchQuery::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0].result.as_ref().unwrap().tag.as_deref(),
        Some("SELECT 1")
    );
    let denied = search(
        src,
        &SearchQuery {
            decision: Some(Verdict::Deny),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].statement, "DROP TABLE orders");
    assert_eq!(denied[0].subject.as_deref(), Some("alice"));
    let q = |f: fn(&mut SearchQuery)| {
        let mut q = SearchQuery::default();
        f(&mut q);
        search(src, &q).unwrap().len()
    };
    assert_eq!(q(|q| q.table = Some("ORDERS".into())), 2);
    assert_eq!(q(|q| q.table = Some("order".into())), 0);
    assert_eq!(q(|q| q.text = Some("DELETE".into())), 1);
    assert_eq!(q(|q| q.subject = Some("bob".into())), 0);
    assert_eq!(q(|q| q.target = Some("orders".into())), 2);
    assert_eq!(q(|q| q.since = Some(Timestamp(106))), 1);
    assert_eq!(q(|q| q.limit = 1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_timer_prunes_a_running_recorder() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RecordingConfig::new(dir.path().join("store"));
    config.retention = Some(portcullis_recording::RetentionConfig {
        max_age: None,
        max_records: Some(10),
        interval: Duration::from_secs(1),
    });
    let rec = Recorder::open(&config).unwrap();
    for i in 0..10u64 {
        let s = SessionId::new();
        let t = (i * 10) as i64;
        rec.record(opened(s, t, "alice", "orders")).await.unwrap();
        rec.record(command(s, t + 1, 1, "SELECT 1", true))
            .await
            .unwrap();
        rec.record(closed(s, t + 2, 1)).await.unwrap();
    }
    // The timer runs without being asked: within a few intervals the store holds a
    // signed tombstone and only the newest records.
    let store = rec.store().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // (The tombstone is stored before the records behind it are deleted.)
    let base = loop {
        if let Some(b) = store.base().unwrap()
            && store.get(b.seq).unwrap().is_none()
        {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pruning within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(base.reason, CheckpointReason::Tombstone);
    assert_eq!(base.seq, 20);
    assert!(store.get(20).unwrap().is_none());
    assert!(store.get(21).unwrap().is_some());
    // Recording goes on after pruning, and the whole store still verifies.
    let s = SessionId::new();
    rec.record(opened(s, 500, "bob", "orders")).await.unwrap();
    drop(store);
    rec.shutdown().await.unwrap();
    drop(rec);
    let store = open(&dir.path().join("store"));
    let r = verify_store(&store, &VerifyOptions::default()).unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.anchor_kind, AnchorKind::Tombstone);
}
