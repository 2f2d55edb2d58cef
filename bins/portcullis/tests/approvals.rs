//! End-to-end: statements under review wait for approvers; grants; restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{Harness, Options, gateway_bin};

fn approvals(h: &Harness, token: &str, args: &[&str]) -> Output {
    Command::new(gateway_bin())
        .args([
            "approvals",
            "--gateway",
            &format!("http://127.0.0.1:{}", h.admin_port),
            "--token",
            token,
        ])
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits for a pending request whose command contains `needle`; returns its id.
fn wait_for_request(h: &Harness, approver: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = ok_json(approvals(h, approver, &["list"]));
        if let Some(r) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["command"].to_string().contains(needle))
        {
            return r["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no request for {needle}: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup(h: &Harness) {
    h.pg.psql(
        "CREATE TABLE payroll (id int primary key, salary int); INSERT INTO payroll VALUES (1, 100), (2, 200); GRANT ALL ON payroll TO gw_scram",
    )
    .unwrap();
}

fn spawn_psql(h: &Harness, token: &str, sql: &str) -> std::process::Child {
    Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(h.pg_port.to_string())
        .args(["-U", "dora", "-d", "guarded", "-c", sql])
        .env("PGPASSWORD", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn review_then_approve_runs_the_waiting_statement() {
    let h = Harness::start(Options::default());
    setup(&h);
    let dora = h.token("dora", "developers", "10m");
    let pam = h.token("pam", "payroll-approvers", "10m");
    let child = spawn_psql(&h, &dora, "UPDATE payroll SET salary = 150 WHERE id = 1");
    let id = wait_for_request(&h, &pam, "UPDATE payroll");
    // Not yet: the statement is parked, the database unchanged.
    assert_eq!(
        h.pg.psql("SELECT salary FROM payroll WHERE id = 1")
            .unwrap()
            .trim(),
        "100"
    );
    // The requester cannot approve; someone outside the approver groups cannot either.
    let out = approvals(&h, &dora, &["approve", &id, "-j", "mine"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
    let outsider = h.token("olly", "developers", "10m");
    let out = approvals(&h, &outsider, &["approve", &id, "-j", "why not"]);
    assert!(!out.status.success());
    let out = approvals(&h, "garbage", &["list"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    // The approver approves; the waiting statement runs.
    let view = ok_json(approvals(
        &h,
        &pam,
        &["approve", &id, "-j", "ticket PAY-42"],
    ));
    assert_eq!(view["state"], "approved");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notice = String::from_utf8_lossy(&out.stderr);
    assert!(
        notice.contains(&id),
        "the client was told which request it waits for: {notice}"
    );
    assert_eq!(
        h.pg.psql("SELECT salary FROM payroll WHERE id = 1")
            .unwrap()
            .trim(),
        "150"
    );

    // The record holds the request, the vote and the approval.
    std::thread::sleep(Duration::from_millis(300));
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&h.audit(&[
        "--gateway",
        &gw,
        "--token",
        &auditor,
        "sessions",
        "--subject",
        "dora",
        "--json",
    ]))
    .unwrap();
    let sid = sessions[0]["id"].as_str().unwrap();
    let lines = h.audit(&["--gateway", &gw, "--token", &auditor, "show", sid, "--json"]);
    for kind in ["approval_requested", "approval_decided", "approval_closed"] {
        assert!(lines.contains(kind), "{kind} missing:\n{lines}");
    }
    assert!(lines.contains("ticket PAY-42") && lines.contains("\"approver\":\"pam\""));
}

#[test]
fn rejection_and_timeout_fail_closed_and_a_retry_runs_once_approved() {
    let h = Harness::start(Options {
        wait: "2s",
        ..Options::default()
    });
    setup(&h);
    let dora = h.token("dora", "developers", "10m");
    let pam = h.token("pam", "payroll-approvers", "10m");

    let child = spawn_psql(&h, &dora, "UPDATE payroll SET salary = 0 WHERE id = 2");
    let id = wait_for_request(&h, &pam, "salary = 0");
    ok_json(approvals(&h, &pam, &["reject", &id, "-j", "no way"]));
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("42501") || err.contains("rejected"), "{err}");
    assert_eq!(
        h.pg.psql("SELECT salary FROM payroll WHERE id = 2")
            .unwrap()
            .trim(),
        "200"
    );

    // Nobody answers within the wait: refused, the request stays open.
    let sql = "UPDATE payroll SET salary = 210 WHERE id = 2";
    let out = spawn_psql(&h, &dora, sql).wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stays open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = wait_for_request(&h, &pam, "salary = 210");
    ok_json(approvals(
        &h,
        &pam,
        &["approve", &id, "-j", "approved late"],
    ));
    // The retry runs at once, and only once.
    let out = spawn_psql(&h, &dora, sql).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        h.pg.psql("SELECT salary FROM payroll WHERE id = 2")
            .unwrap()
            .trim(),
        "210"
    );
    let out = spawn_psql(&h, &dora, sql).wait_with_output().unwrap();
    assert!(!out.status.success(), "a one-time approval was used twice");
}

#[test]
fn a_jit_grant_covers_writes_until_it_expires() {
    let h = Harness::start(Options {
        wait: "2s",
        ..Options::default()
    });
    setup(&h);
    let dora = h.token("dora", "developers", "10m");
    let pam = h.token("pam", "payroll-approvers", "10m");
    let child = spawn_psql(&h, &dora, "UPDATE payroll SET salary = 1 WHERE id = 1");
    let id = wait_for_request(&h, &pam, "salary = 1 ");
    let view = ok_json(approvals(
        &h,
        &pam,
        &[
            "approve",
            &id,
            "-j",
            "incident 7",
            "--grant",
            "4s",
            "--kinds",
            "write",
        ],
    ));
    assert!(view["grant"].is_string(), "{view}");
    assert!(child.wait_with_output().unwrap().status.success());
    // Other writes to payroll pass without a new request while the grant lasts.
    let started = Instant::now();
    let out = spawn_psql(&h, &dora, "UPDATE payroll SET salary = 2 WHERE id = 2")
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let grants = ok_json(approvals(&h, &pam, &["grants"]));
    assert_eq!(grants.as_array().unwrap().len(), 1, "{grants}");
    // After it expires, writes need approval again.
    std::thread::sleep(Duration::from_secs(5));
    let out = spawn_psql(&h, &dora, "UPDATE payroll SET salary = 3 WHERE id = 2")
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success(), "the grant outlived its duration");
    assert_eq!(
        h.pg.psql("SELECT salary FROM payroll WHERE id = 2")
            .unwrap()
            .trim(),
        "2"
    );
}

#[test]
fn a_pending_request_survives_a_restart() {
    let mut h = Harness::start(Options {
        wait: "1s",
        ..Options::default()
    });
    setup(&h);
    let dora = h.token("dora", "developers", "10m");
    let pam = h.token("pam", "payroll-approvers", "10m");
    let sql = "UPDATE payroll SET salary = 999 WHERE id = 1";
    assert!(
        !spawn_psql(&h, &dora, sql)
            .wait_with_output()
            .unwrap()
            .status
            .success()
    );
    let id = wait_for_request(&h, &pam, "salary = 999");
    assert!(h.stop("TERM").unwrap().success());
    h.spawn_gateway();
    let view = ok_json(approvals(&h, &pam, &["show", &id]));
    assert_eq!(view["state"], "pending");
    ok_json(approvals(
        &h,
        &pam,
        &["approve", &id, "-j", "after restart"],
    ));
    let out = spawn_psql(&h, &dora, sql).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        h.pg.psql("SELECT salary FROM payroll WHERE id = 1")
            .unwrap()
            .trim(),
        "999"
    );
}
