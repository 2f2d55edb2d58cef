//! End-to-end: statement policy through the gateway, with psql and tokio-postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::{Harness, Options, gateway_bin};

fn denied(err: &str, rule: &str) -> bool {
    err.contains("Portcullis denied the statement") && err.contains(&format!("rule \"{rule}\""))
}

#[test]
fn denied_statements_never_reach_the_database() {
    let h = Harness::start(Options::default());
    h.pg.psql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) g; GRANT ALL ON t TO gw_scram").unwrap();
    let dev = h.token("dora", "developers", "10m");
    let psql = h.psql(&dev, "guarded");

    assert_eq!(psql.run("SELECT count(*) FROM t").unwrap().trim(), "10");
    let e = psql.run("DROP TABLE t").unwrap_err().to_string();
    assert!(denied(&e, "no-ddl-for-developers"), "{e}");
    let e = psql.run("delete from T").unwrap_err().to_string();
    assert!(denied(&e, "no-unfiltered-writes"), "{e}");
    let e = psql
        .run("/* harmless */ WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone")
        .unwrap_err()
        .to_string();
    assert!(denied(&e, "no-unfiltered-writes"), "{e}");
    let e = psql
        .run("SELECT pg_read_file('/etc/passwd')")
        .unwrap_err()
        .to_string();
    assert!(denied(&e, "no-dangerous-functions"), "{e}");
    let e = psql
        .run("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$")
        .unwrap_err()
        .to_string();
    assert!(denied(&e, "unknown-statement"), "{e}");
    let e = psql.run("SELECT 1; DROP TABLE t").unwrap_err().to_string();
    assert!(
        denied(&e, "no-ddl-for-developers") && e.contains("statement 2 of 2"),
        "{e}"
    );
    // Filtered writes are allowed.
    psql.run("DELETE FROM t WHERE id = 1").unwrap();
    // Nothing refused reached the database: the table is there with 9 rows.
    assert_eq!(h.pg.psql("SELECT count(*) FROM t").unwrap().trim(), "9");
    let log = h.pg.read_log();
    assert!(
        !log.contains("DROP TABLE t"),
        "a refused statement reached PostgreSQL"
    );
    assert!(!log.contains("pg_read_file"));

    // A DBA may run DDL.
    let dba = h.token("dan", "dba", "10m");
    h.psql(&dba, "guarded")
        .run("CREATE TABLE t2 (id int); DROP TABLE t2")
        .unwrap();

    // The record names the rule of every refusal.
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    let list: Vec<serde_json::Value> = serde_json::from_str(&h.audit(&[
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
    let denied_total: u64 = list.iter().map(|s| s["denied"].as_u64().unwrap()).sum();
    assert_eq!(denied_total, 6, "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_in_the_extended_protocol_keep_transactions_and_pipelines_correct() {
    let h = tokio::task::spawn_blocking(|| Harness::start(Options::default()))
        .await
        .unwrap();
    h.pg.psql("CREATE TABLE items (id int primary key, v text); GRANT ALL ON items TO gw_scram")
        .unwrap();
    let dev = h.token("eve", "developers", "10m");
    let mut client = h.connect(&dev, "guarded").await;

    // A refused statement as a prepared statement.
    let err = client.execute("DELETE FROM items", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("no-unfiltered-writes"),
        "{err:?}"
    );

    // Inside a transaction a refusal aborts it, like any failing statement: the
    // earlier insert is rolled back and later statements fail until ROLLBACK.
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO items VALUES ($1, 'a')", &[&1i32])
        .await
        .unwrap();
    let err = tx
        .execute("UPDATE items SET v = 'b'", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    let err = tx
        .execute("INSERT INTO items VALUES (2, 'c')", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "25P02", "{err}");
    drop(tx); // rolls back
    let n: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // Pipelined statements: the refused one fails, the ones around it run, in order.
    let insert = client
        .prepare("INSERT INTO items VALUES ($1, $2)")
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        client.execute(&insert, &[&10i32, &"ten"]),
        client.execute("DELETE FROM items", &[]),
        client.execute(&insert, &[&11i32, &"eleven"]),
    );
    assert_eq!(a.unwrap(), 1);
    assert_eq!(b.unwrap_err().code().unwrap().code(), "42501");
    assert_eq!(c.unwrap(), 1);
    let rows = client
        .query("SELECT id FROM items ORDER BY id", &[])
        .await
        .unwrap();
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![10, 11]);
}

#[test]
fn policy_explain_shows_the_deciding_rule() {
    let h = Harness::start(Options::default());
    let out = Command::new(gateway_bin())
        .args(["policy", "explain", "--config"])
        .arg(&h.config)
        .args([
            "--target",
            "guarded",
            "--groups",
            "developers",
            "--sql",
            "UPDATE payroll SET salary = 0 WHERE id = 1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("payroll-writes-need-review"), "{text}");
    assert!(text.contains("payroll-approvers"), "{text}");
    let out = Command::new(gateway_bin())
        .args(["policy", "explain", "--config"])
        .arg(&h.config)
        .args([
            "--target",
            "guarded",
            "--groups",
            "developers",
            "--sql",
            "drop table x",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no-ddl-for-developers") && text.to_lowercase().contains("deny"),
        "{text}"
    );
}
