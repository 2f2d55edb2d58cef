//! End-to-end: two gateway processes record into one shared PostgreSQL store
//! (a fresh database on 127.0.0.1:5432), each on its own chain; the audit tool
//! lists, shows, searches, exports and verifies both, names a tampered chain, and
//! a third process cannot take over a chain that is being written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;

use portcullis_testkit::ScratchDb;
use support::{Harness, Options, gateway_bin};

/// With trust authentication the server ignores the password; it is in the URL
/// only so the test can check that it is never shown.
const STORE_PASSWORD: &str = "store-Pw-5e1d77c0";

fn store_url(db: &ScratchDb) -> String {
    format!(
        "postgres://postgres:{STORE_PASSWORD}@127.0.0.1:5432/{}",
        db.name()
    )
}

fn gateway(url: &str, chain: &str, keys: &Path) -> Harness {
    Harness::start(Options {
        recording: Some(format!(
            "store = \"{url}\"\nchain = \"{chain}\"\nsigning_key = \"{}\"\ndurability = \"strict\"",
            keys.join(format!("{chain}.pem")).display()
        )),
        ..Options::default()
    })
}

fn audit_raw(url: &str, args: &[&str]) -> std::process::Output {
    // The URL goes through the environment, as an operator keeps a password off
    // the command line.
    Command::new(support::audit_bin())
        .env("PORTCULLIS_STORE", url)
        .args(args)
        .output()
        .unwrap()
}

fn audit(url: &str, args: &[&str]) -> String {
    let out = audit_raw(url, args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "portcullis-audit {args:?}: {stdout}{stderr}"
    );
    assert!(!stdout.contains(STORE_PASSWORD) && !stderr.contains(STORE_PASSWORD));
    stdout
}

fn key_pem(h: &Harness, out: &Path) {
    let o = Command::new(gateway_bin())
        .args(["key", "show", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let start = text.find("-----BEGIN PUBLIC KEY-----").unwrap();
    std::fs::write(out, &text[start..]).unwrap();
}

#[test]
fn two_gateways_share_one_postgres_store_each_on_its_own_chain() {
    let db = ScratchDb::create("shared_store").unwrap();
    let url = store_url(&db);
    let keys = tempfile::tempdir().unwrap();
    let mut a = gateway(&url, "gw-a", keys.path());
    let mut b = gateway(&url, "gw-b", keys.path());

    let ta = a.token("alice", "dba", "10m");
    let tb = b.token("bob", "dba", "10m");
    for i in 0..3 {
        a.psql(&ta, "app")
            .run(&format!("SELECT {i} AS through_gateway_a"))
            .unwrap();
    }
    b.psql(&tb, "app")
        .run("SELECT 42 AS through_gateway_b")
        .unwrap();
    b.psql(&tb, "app")
        .run("SELECT 43 AS through_gateway_b")
        .unwrap();

    // While both run, the auditor sees every gateway's sessions.
    let sessions: Vec<serde_json::Value> =
        serde_json::from_str(&audit(&url, &["sessions", "--json"])).unwrap();
    let by = |chain: &str| -> Vec<&serde_json::Value> {
        sessions.iter().filter(|s| s["chain"] == chain).collect()
    };
    assert_eq!(by("gw-a").len(), 3, "{sessions:?}");
    assert_eq!(by("gw-b").len(), 2, "{sessions:?}");
    assert!(by("gw-a").iter().all(|s| s["subject"] == "alice"));
    assert!(by("gw-b").iter().all(|s| s["subject"] == "bob"));
    let table = audit(&url, &["sessions"]);
    assert!(table.contains("GATEWAY") && table.contains("gw-a") && table.contains("gw-b"));
    let only_b: Vec<serde_json::Value> =
        serde_json::from_str(&audit(&url, &["--chain", "gw-b", "sessions", "--json"])).unwrap();
    assert_eq!(only_b.len(), 2);

    // A third process cannot write gw-a while gateway A does (it would fork the chain).
    let o = Command::new(gateway_bin())
        .args(["serve", "--config"])
        .arg(&a.config)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(
        err.contains("chain \"gw-a\" is already being written by another process"),
        "{err}"
    );
    assert!(!err.contains(STORE_PASSWORD), "{err}");

    a.stop("TERM");
    b.stop("TERM");
    for h in [&a, &b] {
        let logs = h.logs();
        assert!(!logs.contains(STORE_PASSWORD), "{logs}");
        assert!(
            logs.contains("postgres://postgres@127.0.0.1:5432/"),
            "{logs}"
        );
    }

    // Show and replay find a session whatever gateway recorded it.
    let session_b = by("gw-b")[0]["id"].as_str().unwrap().to_owned();
    let shown = audit(&url, &["show", &session_b]);
    assert!(shown.contains("through_gateway_b"), "{shown}");
    let replay = audit(&url, &["replay", &session_b]);
    assert!(replay.contains("through_gateway_b"), "{replay}");
    let found = audit(&url, &["search", "--text", "through_gateway", "--json"]);
    let hits: Vec<serde_json::Value> = found
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.iter().filter(|h| h["chain"] == "gw-a").count(), 3);
    assert_eq!(hits.iter().filter(|h| h["chain"] == "gw-b").count(), 2);

    // Both chains verify, with both gateways' keys pinned.
    let (pa, pb) = (keys.path().join("a.pub"), keys.path().join("b.pub"));
    key_pem(&a, &pa);
    key_pem(&b, &pb);
    let pinned = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--key".to_string(),
            pa.display().to_string(),
            "--key".to_string(),
            pb.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = pinned(&["verify"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok = audit(&url, &args);
    assert!(
        ok.contains("== chain gw-a") && ok.contains("== chain gw-b"),
        "{ok}"
    );
    assert!(ok.contains("OK: all 2 chains verified"), "{ok}");

    // Export writes one bundle per chain, each verifiable offline.
    let bundles = keys.path().join("bundles");
    audit(&url, &["export", "--out", &bundles.display().to_string()]);
    for chain in ["gw-a", "gw-b"] {
        let dir = bundles.join(chain).display().to_string();
        let o = a.audit_raw(&["--bundle", &dir, "verify"]);
        assert!(
            o.status.success(),
            "{chain}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let report = audit(&url, &["report"]);
    assert!(report.contains("# Chain gw-a") && report.contains("# Chain gw-b"));

    // A record of gateway B changed in the database: verify names chain and record.
    db.psql()
        .run(
            "UPDATE portcullis_records SET event = replace(event, 'SELECT 43', 'SELECT 44') \
             WHERE chain = (SELECT id FROM portcullis_chains WHERE name = 'gw-b') \
             AND event LIKE '%SELECT 43%'",
        )
        .unwrap();
    let o = audit_raw(&url, &args);
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("FAULT in 1 of 2 chains: gw-b"), "{text}");
    let (part_a, part_b) = text.split_once("== chain gw-b").unwrap();
    assert!(part_a.contains("OK:"), "{text}");
    assert!(part_b.contains("FAULT: record"), "{text}");
    assert!(part_b.contains("altered"), "{text}");
    assert!(!text.contains(STORE_PASSWORD));
}
