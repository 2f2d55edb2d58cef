#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The evidence commands of `portcullis-audit` against a real store and bundle:
//! verify's exit code and message for each kind of tampering, export, search,
//! replay and report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{
    AuthMethod, Command, Completion, Decision, Event, EventKind, Identity, Protocol, SessionId,
    SqlVia, Timestamp,
};
use portcullis_recording::{
    CheckpointPolicy, Durability, EventStore, Recorder, RecorderOptions, SigningKey, SledStore,
    sled_format,
};

fn ev(session: SessionId, at: i64, kind: EventKind) -> Event {
    Event {
        session,
        at: Timestamp(at),
        kind,
    }
}

fn opened(s: SessionId, at: i64, who: &str) -> Event {
    ev(
        s,
        at,
        EventKind::SessionOpened {
            identity: Identity {
                subject: who.into(),
                groups: vec!["dba".into()],
                method: AuthMethod::Jwt,
                issuer: Some("https://issuer.example".into()),
                expires_at: Some(Timestamp(at + 3_600_000_000)),
            },
            target: "orders".into(),
            protocol: Protocol::Postgres,
            client_addr: Some("127.0.0.1:50000".into()),
            details: BTreeMap::new(),
        },
    )
}

fn cmd(s: SessionId, at: i64, seq: u64, sql: &str, allow: bool) -> Event {
    ev(
        s,
        at,
        EventKind::Command {
            seq,
            command: Command::Sql {
                text: sql.into(),
                via: SqlVia::Simple,
            },
            decision: if allow {
                Decision::allow("reads", "reads are allowed")
            } else {
                Decision::deny("no-ddl", "DDL is not allowed")
            },
            result: None,
        },
    )
}

fn res(s: SessionId, at: i64, seq: u64, rows: u64) -> Event {
    ev(
        s,
        at,
        EventKind::CommandResult {
            seq,
            duration_us: 250,
            completion: Completion {
                rows_returned: rows,
                tag: Some(format!("SELECT {rows}")),
                ..Default::default()
            },
        },
    )
}

fn closed(s: SessionId, at: i64, n: u64) -> Event {
    ev(
        s,
        at,
        EventKind::SessionClosed {
            reason: "client terminated".into(),
            commands: n,
        },
    )
}

struct Fx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    pubkey: PathBuf,
    alice: SessionId,
    bob: SessionId,
}

/// Two interleaved sessions: 10 records, checkpoints every 3 events, at session
/// close and at shutdown. Times are seconds apart from 2026-01-01.
fn fixture() -> Fx {
    fixture_with(false)
}

/// The same events; with `fold`, each result stored inside its command's record (as the
/// batched recorder writes a result that arrives in the same write): 8 records.
fn fixture_with(fold: bool) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = root.join("store");
    let key = SigningKey::load_or_create(&root.join("key.pem")).unwrap();
    let pubkey = root.join("gateway.pub.pem");
    std::fs::write(&pubkey, key.public_key().to_pem()).unwrap();
    let (alice, bob) = (SessionId::new(), SessionId::new());
    let t = 1_767_225_600_000_000i64; // 2026-01-01T00:00:00Z
    let s = 1_000_000;
    let events = vec![
        opened(alice, t, "alice"),
        cmd(alice, t + s, 1, "SELECT * FROM orders WHERE id = 1", true),
        opened(bob, t + 2 * s, "bob"),
        res(alice, t + 2 * s + 250, 1, 1),
        cmd(bob, t + 3 * s, 1, "DROP TABLE orders", false),
        cmd(alice, t + 4 * s, 2, "SELECT count(*) FROM invoices", true),
        res(alice, t + 4 * s + 250, 2, 1),
        closed(bob, t + 5 * s, 1),
        closed(alice, t + 6 * s, 2),
        opened(SessionId::new(), t + 7 * s, "carol"),
    ];
    let events = if fold { folded(events) } else { events };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let st: Arc<dyn EventStore> = Arc::new(SledStore::open(&store).unwrap());
            let rec = Recorder::start_signed(
                st,
                RecorderOptions {
                    durability: Durability::Strict,
                    flush_interval: Duration::from_millis(50),
                    flush_events: 100,
                    queue_capacity: 16,
                    writer_priority: portcullis_recording::WriterPriority::Normal,
                },
                key,
                CheckpointPolicy {
                    events: 3,
                    interval: Duration::from_secs(60),
                },
            )
            .unwrap();
            for e in events {
                rec.record(e).await.unwrap();
            }
            rec.shutdown().await.unwrap();
        });
    Fx {
        _dir: dir,
        root,
        store,
        pubkey,
        alice,
        bob,
    }
}

/// Folds every result into its command's record where nothing of the session came
/// between them.
fn folded(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        let e = match out.iter_mut().rev().find(|o| o.session == e.session) {
            Some(last) => match last.fold_result(e) {
                None => continue,
                Some(e) => e,
            },
            None => e,
        };
        out.push(e);
    }
    out
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn audit(args: &[&str]) -> Out {
    let o = Process::new(env!("CARGO_BIN_EXE_portcullis-audit"))
        .args(args)
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn verify_store(fx: &Fx) -> Out {
    audit(&["verify", "--store", p(&fx.store), "--key", p(&fx.pubkey)])
}

fn export_bundle(fx: &Fx, name: &str) -> PathBuf {
    let out = fx.root.join(name);
    let o = audit(&["export", "--store", p(&fx.store), "--out", p(&out)]);
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert!(o.stdout.contains("exported 10 records"), "{}", o.stdout);
    out
}

fn verify_bundle(fx: &Fx, dir: &Path) -> Out {
    audit(&["verify", "--bundle", p(dir), "--key", p(&fx.pubkey)])
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

fn with_tree(path: &Path, f: impl FnOnce(&Raw)) {
    let db = sled::open(path).unwrap();
    let tree = db.open_tree("portcullis-v1").unwrap();
    f(&Raw { tree, dir: path });
    db.flush().unwrap();
}

fn raw_get(t: &Raw, seq: u64) -> Vec<u8> {
    sled_format::read_record(&t.tree, t.dir, seq)
        .unwrap()
        .unwrap()
}

fn raw_put(t: &Raw, seq: u64, v: Option<&[u8]>) {
    assert!(sled_format::write_record(&t.tree, t.dir, seq, v).unwrap());
}

fn edit_lines(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    f(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn assert_fault(o: &Out, needle: &str) {
    assert_eq!(o.code, 1, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains(needle),
        "wanted {needle:?} in {}",
        o.stdout
    );
    assert!(o.stderr.contains("verification failed"));
}

#[test]
fn intact_store_and_bundle_verify_with_exit_code_0() {
    let fx = fixture();
    let o = verify_store(&fx);
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert!(
        o.stdout.starts_with("OK: 10 records verified"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("signed through seq 10"));
    let dir = export_bundle(&fx, "b");
    let o = verify_bundle(&fx, &dir);
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let o = audit(&["verify", "--bundle", p(&dir), "--json"]);
    assert_eq!(o.code, 0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["records"], 10);
    assert_eq!(v["key_source"], "embedded");
}

#[test]
fn store_tampering_is_named_with_exit_code_1() {
    // One changed byte.
    let fx = fixture();
    with_tree(&fx.store, |t| {
        let mut v = raw_get(t, 5);
        let i = v.windows(4).position(|w| w == b"DROP").unwrap();
        v[i + 1] = b'O';
        raw_put(t, 5, Some(&v));
    });
    assert_fault(&verify_store(&fx), "FAULT: record 5: altered");

    // A deleted record.
    let fx = fixture();
    with_tree(&fx.store, |t| {
        raw_put(t, 4, None);
    });
    assert_fault(&verify_store(&fx), "FAULT: record 4: missing");

    // A deleted session (bob: seq 3, 5, 8).
    let fx = fixture();
    with_tree(&fx.store, |t| {
        for s in [3, 5, 8] {
            raw_put(t, s, None);
        }
    });
    let _ = fx.bob;
    assert_fault(&verify_store(&fx), "FAULT: record 3: missing");

    // Two records swapped.
    let fx = fixture();
    with_tree(&fx.store, |t| {
        let a = raw_get(t, 2);
        let b = raw_get(t, 3);
        raw_put(t, 2, Some(&b));
        raw_put(t, 3, Some(&a));
    });
    assert_fault(&verify_store(&fx), "FAULT: record 2: reordered");

    // The tail cut off (and the head moved back so the store opens).
    let fx = fixture();
    with_tree(&fx.store, |t| {
        let last = raw_get(t, 8);
        for s in 9..=10 {
            raw_put(t, s, None);
        }
        let mut head = 8u64.to_be_bytes().to_vec();
        head.extend_from_slice(&last[41..73]);
        t.insert(b"mhead", head).unwrap();
    });
    assert_fault(&verify_store(&fx), "truncated");

    // Two checkpoint signatures swapped.
    let fx = fixture();
    with_tree(&fx.store, |t| {
        let cps: Vec<(sled::IVec, serde_json::Value)> = t
            .scan_prefix(b"c")
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k, serde_json::from_slice(&v).unwrap())
            })
            .collect();
        let (mut a, mut b) = (cps[0].1.clone(), cps[1].1.clone());
        let sa = a["signature"].clone();
        a["signature"] = b["signature"].clone();
        b["signature"] = sa;
        t.insert(cps[0].0.clone(), serde_json::to_vec(&a).unwrap())
            .unwrap();
        t.insert(cps[1].0.clone(), serde_json::to_vec(&b).unwrap())
            .unwrap();
    });
    assert_fault(&verify_store(&fx), "bad signature");
}

#[test]
fn bundle_tampering_is_named_with_exit_code_1() {
    let fx = fixture();
    let clean = export_bundle(&fx, "clean");
    let copy = |name: &str| {
        let dir = fx.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&clean).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
        dir
    };
    let events = |d: &Path| d.join("events.jsonl");

    let d = copy("byte");
    edit_lines(&events(&d), |l| l[4] = l[4].replace("DROP", "DROp"));
    assert_fault(&verify_bundle(&fx, &d), "FAULT: record 5: altered");

    let d = copy("deleted");
    edit_lines(&events(&d), |l| {
        l.remove(3);
    });
    assert_fault(&verify_bundle(&fx, &d), "FAULT: record 4: missing");

    let d = copy("session");
    let bob = fx.bob.to_string();
    edit_lines(&events(&d), |l| l.retain(|x| !x.contains(&bob)));
    assert_fault(&verify_bundle(&fx, &d), "FAULT: record 3: missing");

    let d = copy("reordered");
    edit_lines(&events(&d), |l| l.swap(1, 2));
    assert_fault(&verify_bundle(&fx, &d), "FAULT: record 2: reordered");

    let d = copy("truncated");
    edit_lines(&events(&d), |l| l.truncate(7));
    assert_fault(&verify_bundle(&fx, &d), "truncated");

    let d = copy("signature");
    edit_lines(&d.join("checkpoints.jsonl"), |l| {
        let mut a: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
        let mut b: serde_json::Value = serde_json::from_str(&l[1]).unwrap();
        let sa = a["signature"].clone();
        a["signature"] = b["signature"].clone();
        b["signature"] = sa;
        l[0] = a.to_string();
        l[1] = b.to_string();
    });
    assert_fault(&verify_bundle(&fx, &d), "bad signature");

    assert_eq!(verify_bundle(&fx, &clean).code, 0);
}

#[test]
fn search_replay_report_and_ocsf_export() {
    let fx = fixture();
    let store = p(&fx.store);
    let o = audit(&["search", "--store", store, "--table", "orders"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.lines().count(), 3, "{}", o.stdout); // header + 2 hits
    assert!(o.stdout.contains("DENY (no-ddl)"));
    let o = audit(&["search", "--store", store, "--decision", "deny", "--json"]);
    let hit: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(hit["subject"], "bob");
    let o = audit(&[
        "search",
        "--store",
        store,
        "--subject",
        "alice",
        "--text",
        "invoices",
        "--since",
        "2026-01-01T00:00:03Z",
    ]);
    assert!(
        o.stdout.contains("SELECT count(*) FROM invoices") && o.stdout.contains("[SELECT 1]"),
        "{}",
        o.stdout
    );

    let o = audit(&["replay", "--store", store, &fx.alice.to_string()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("alice -> orders"), "{}", o.stdout);
    assert!(
        o.stdout.contains("+1.000000s  #1    [allow (reads)]"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("#1    -> SELECT 1, 1 rows, 250µs"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("+6.000000s  session closed"),
        "{}",
        o.stdout
    );

    let o = audit(&[
        "report",
        "--store",
        store,
        "--framework",
        "nist-800-53",
        "--key",
        p(&fx.pubkey),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for c in ["## AU-2", "## AU-9", "## AU-10", "## AC-5", "## IA-5"] {
        assert!(o.stdout.contains(c), "{c} missing from {}", o.stdout);
    }
    assert!(o.stdout.contains("verification: intact (10 records"));
    let o = audit(&["report", "--store", store, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["stats"]["commands_by_decision"]["deny"], 1);

    let out = fx.root.join("ocsf");
    let o = audit(&[
        "export",
        "--store",
        store,
        "--out",
        p(&out),
        "--format",
        "ocsf",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2027-01-01T00:00:00Z",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let ocsf = std::fs::read_to_string(out.join("events.ocsf.jsonl")).unwrap();
    assert!(
        ocsf.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
    assert!(ocsf.contains("\"class_uid\":6005"));
    let o = audit(&["report", "--bundle", p(&out)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("source: bundle"));
    let o = audit(&["replay", "--bundle", p(&out), &fx.bob.to_string()]);
    assert!(
        o.stdout.contains("DENY: DDL is not allowed"),
        "{}",
        o.stdout
    );

    // Not over --gateway yet, and the store or bundle must be named.
    let o = audit(&["verify", "--gateway", "http://127.0.0.1:9", "--token", "x"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("not available over --gateway"));
    let o = audit(&["verify"]);
    assert_eq!(o.code, 2);
}

#[test]
fn results_folded_into_command_records_read_like_separate_records() {
    let (plain, fold) = (fixture_with(false), fixture_with(true));
    let records = |fx: &Fx| {
        let o = audit(&["verify", "--store", p(&fx.store), "--key", p(&fx.pubkey)]);
        assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
        o.stdout
    };
    let (a, b) = (records(&plain), records(&fold));
    assert!(a.starts_with("OK: 10 records verified"), "{a}");
    assert!(b.starts_with("OK: 8 records verified"), "{b}");
    let run = |fx: &Fx, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--store", p(&fx.store)]);
        let o = audit(&all);
        assert_eq!(o.code, 0, "{:?}: {}", args, o.stderr);
        o.stdout
    };
    // Record numbers differ between the two stores; everything else reads the same.
    let without_seq = |text: String| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seq");
                v
            })
            .collect()
    };
    for session in [plain.alice, plain.bob] {
        let id = session.to_string();
        let with_fold_ids = |text: String| {
            text.replace(&fold.alice.to_string(), &plain.alice.to_string())
                .replace(&fold.bob.to_string(), &plain.bob.to_string())
        };
        let other = if session == plain.alice {
            fold.alice
        } else {
            fold.bob
        };
        for cmd in ["show", "replay"] {
            let a = run(&plain, &[cmd, &id]);
            let b = with_fold_ids(run(&fold, &[cmd, &other.to_string()]));
            assert_eq!(a, b, "{cmd}");
        }
        if session == plain.alice {
            // The results are there, not "(no result recorded)".
            let shown = run(&fold, &["show", &other.to_string()]);
            assert_eq!(shown.matches("250µs").count(), 2, "{shown}");
        }
    }
    let a = without_seq(run(&plain, &["search", "--json"]));
    let b = without_seq(run(&fold, &["search", "--json"]));
    assert_eq!(a.len(), 3);
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a["statement"], b["statement"]);
        assert_eq!(a["result"], b["result"]);
        assert_eq!(a["verdict"], b["verdict"]);
        assert_eq!(a["at"], b["at"]);
    }
    assert_eq!(a[0]["result"]["duration_us"], 250);
    let stats = |fx: &Fx| {
        let v: serde_json::Value =
            serde_json::from_str(&run(fx, &["report", "--format", "json"])).unwrap();
        v["stats"].clone()
    };
    let (a, b) = (stats(&plain), stats(&fold));
    for k in [
        "results",
        "failed_results",
        "commands_by_decision",
        "masked",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_eq!(a["results"], 2);
    let ocsf = |fx: &Fx| {
        let out = fx.root.join("ocsf");
        run(fx, &["export", "--out", p(&out), "--format", "ocsf"]);
        std::fs::read_to_string(out.join("events.ocsf.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["class_uid"] == 6005)
            .collect::<Vec<_>>()
    };
    let (a, b) = (ocsf(&plain), ocsf(&fold));
    assert_eq!(a.len(), 3);
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        for k in ["time", "duration", "end_time", "status_id", "activity_id"] {
            assert_eq!(a[k], b[k], "{k}");
        }
        assert_eq!(a["unmapped"]["result"], b["unmapped"]["result"]);
    }
    assert!(a.iter().any(|v| v["end_time"].is_number()));
}

#[test]
fn show_renders_file_operations_of_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let s = SessionId::new();
    let t = 1_767_225_600_000_000i64;
    {
        let store = SledStore::open(&store_path).unwrap();
        store
            .append(&[
                opened(s, t, "alice"),
                ev(
                    s,
                    t + 1,
                    EventKind::Command {
                        seq: 1,
                        command: Command::FileTransfer {
                            protocol: "sftp".into(),
                            direction: None,
                            command: "subsystem sftp".into(),
                        },
                        decision: Decision::allow("transfers", "allowed"),
                        result: None,
                    },
                ),
                ev(
                    s,
                    t + 2,
                    EventKind::FileOperation {
                        seq: 1,
                        protocol: "sftp".into(),
                        op: "write".into(),
                        path: "/srv/upload/report.csv".into(),
                        to: None,
                        direction: Some("upload".into()),
                        bytes: 4096,
                        size: None,
                        error: Some("transfer cut off".into()),
                    },
                ),
                closed(s, t + 3, 1),
            ])
            .unwrap();
        store.sync().unwrap();
    }
    let o = audit(&["show", "--store", p(&store_path), &s.to_string()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("#1 ")
            && o.stdout.contains(
                "sftp write /srv/upload/report.csv (4096 bytes, upload) error: transfer cut off"
            ),
        "{}",
        o.stdout
    );
}

#[test]
fn show_renders_http_requests_with_status_and_details() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let s = SessionId::new();
    let t = 1_767_225_600_000_000i64;
    let mut open = opened(s, t, "agent");
    if let EventKind::SessionOpened { protocol, .. } = &mut open.kind {
        *protocol = Protocol::Http;
    }
    {
        let store = SledStore::open(&store_path).unwrap();
        store
            .append(&[
                open,
                ev(
                    s,
                    t + 1,
                    EventKind::Command {
                        seq: 1,
                        command: Command::Http {
                            method: "POST".into(),
                            path: "/v1/orders".into(),
                            query: None,
                            details: [("request_body".to_owned(), r#"{"qty":2}"#.to_owned())]
                                .into(),
                        },
                        decision: Decision::allow("writes", "allowed"),
                        result: None,
                    },
                ),
                ev(
                    s,
                    t + 2,
                    EventKind::CommandResult {
                        seq: 1,
                        duration_us: 900,
                        completion: Completion {
                            tag: Some("201".into()),
                            bytes: 12,
                            details: [("response_body".to_owned(), r#"{"id":7}"#.to_owned())]
                                .into(),
                            ..Default::default()
                        },
                    },
                ),
                closed(s, t + 3, 1),
            ])
            .unwrap();
        store.sync().unwrap();
    }
    let o = audit(&["show", "--store", p(&store_path), &s.to_string()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let row = o
        .stdout
        .lines()
        .find(|l| l.contains("POST /v1/orders"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(row.contains("900µs") && row.contains(" 201 "), "{row}");
    assert!(!o.stdout.contains("request_body"), "{}", o.stdout);
    let o = audit(&["show", "--full", "--store", p(&store_path), &s.to_string()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains(r#"request_body: {"qty":2}"#)
            && o.stdout.contains(r#"response_body: {"id":7}"#),
        "{}",
        o.stdout
    );
}
