//! End-to-end: the record survives kill -9 in strict mode with every statement that
//! reached PostgreSQL, and verifies (hash chain and signed checkpoints) afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Harness, Options, UPSTREAM_PASSWORD, gateway_bin};

fn recorded_selects(h: &Harness) -> usize {
    let store = h.store.display().to_string();
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&h.audit(&[
        "--store",
        &store,
        "sessions",
        "--subject",
        "bench",
        "--json",
        "--limit",
        "1000",
    ]))
    .unwrap();
    let mut n = 0;
    for s in sessions {
        for line in h
            .audit(&[
                "--store",
                &store,
                "show",
                s["id"].as_str().unwrap(),
                "--json",
            ])
            .lines()
        {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            if r["event"]["type"] == "command"
                && r["event"]["command"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("SELECT abalance FROM pgbench_accounts"))
            {
                n += 1;
            }
        }
    }
    n
}

fn verify(h: &Harness) -> std::process::Output {
    let store = h.store.display().to_string();
    h.audit_raw(&["--store", &store, "verify"])
}

#[test]
fn kill_9_during_pgbench_in_strict_mode_loses_no_forwarded_statement() {
    let mut h = Harness::start(Options {
        durability: "strict",
        ..Options::default()
    });
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p"])
        .arg(h.pg.port().to_string())
        .args(["-U", "gw_scram", h.pg.database()])
        .env("PGPASSWORD", UPSTREAM_PASSWORD)
        .output()
        .unwrap();
    assert!(init.status.success());
    let token = h.token("bench", "dba", "10m");
    let offset = h.pg.log_len();
    let bench = Command::new("pgbench")
        .args([
            "-n",
            "-S",
            "-T",
            "30",
            "-c",
            "4",
            "-j",
            "2",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(h.pg_port.to_string())
        .args(["-U", "bench", "app"])
        .env("PGPASSWORD", &token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    h.kill9();
    let _ = bench.wait_with_output();
    std::thread::sleep(Duration::from_millis(300));

    // What PostgreSQL itself logged for gateway sessions.
    let log = h.pg.read_log_from(offset);
    let reached = log
        .lines()
        .filter(|l| {
            l.contains("app=portcullis ")
                && l.contains("statement: SELECT abalance FROM pgbench_accounts")
        })
        .count();
    assert!(
        reached > 50,
        "too few statements ran ({reached}) to test anything"
    );
    let recorded = recorded_selects(&h);
    assert!(
        recorded >= reached,
        "PostgreSQL ran {reached} statements through the gateway, the record has {recorded}"
    );
    // The in-flight statements (at most one per client) may be recorded and not run.
    assert!(
        recorded <= reached + 4,
        "{recorded} recorded, {reached} ran"
    );

    let out = verify(&h);
    assert!(
        out.status.success(),
        "verify after kill -9: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A restarted gateway continues the same chain, and it still verifies.
    h.spawn_gateway();
    h.psql(&token, "app").run("SELECT 1").unwrap();
    h.stop("TERM");
    let out = verify(&h);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn key_show_prints_the_key_that_verifies_the_store() {
    let mut h = Harness::start(Options::default());
    let token = h.token("kate", "dba", "10m");
    h.psql(&token, "app").run("SELECT 1").unwrap();
    h.stop("TERM");
    let out = Command::new(gateway_bin())
        .args(["key", "show", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let pem_start = text.find("-----BEGIN PUBLIC KEY-----").unwrap();
    let key = h.dir.path().join("gateway.pub");
    std::fs::write(&key, &text[pem_start..]).unwrap();
    let store = h.store.display().to_string();
    let key_arg = key.display().to_string();
    let out = h.audit_raw(&["--store", &store, "--key", &key_arg, "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An export verifies offline with the same key.
    let bundle = h.dir.path().join("bundle");
    h.audit(&[
        "--store",
        &store,
        "export",
        "--out",
        &bundle.display().to_string(),
    ]);
    let out = h.audit_raw(&[
        "--bundle",
        &bundle.display().to_string(),
        "--key",
        &key_arg,
        "verify",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
