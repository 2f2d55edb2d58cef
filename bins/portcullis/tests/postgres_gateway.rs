//! End-to-end: real clients (psql, pgbench, tokio-postgres) through the real gateway
//! binary to a private PostgreSQL cluster with SCRAM authentication.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Harness, Options, UPSTREAM_PASSWORD, contains, files_under};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn session_id_of(psql_out: &str) -> String {
    psql_out.trim().to_string()
}

#[test]
fn psql_session_with_copy_is_recorded_and_queryable() {
    let h = Harness::start(Options::default());
    // The gateway runs without transparent huge pages (see `no_huge_pages` in main.rs).
    if cfg!(target_os = "linux") {
        let pid = h.gateway.as_ref().and_then(|g| g.pid()).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        // Shown by every kernel since 5.0.
        let line = status
            .lines()
            .find(|l| l.starts_with("THP_enabled:"))
            .unwrap_or_else(|| panic!("no THP_enabled line in /proc/{pid}/status"));
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    let token = h.token("alice", "dba", "10m");
    let psql = h.psql(&token, "app");

    let sid = session_id_of(
        psql.run(
            "CREATE TABLE people (id int primary key, email text);\n\
                 INSERT INTO people VALUES (1, 'a@example.com'), (2, 'b@example.com');\n\
                 SELECT current_setting('portcullis.session_id');",
        )
        .unwrap()
        .lines()
        .last()
        .unwrap(),
    );
    assert_eq!(sid.len(), 36, "session id: {sid}");

    // The database sees who is behind the gateway.
    let who = psql
        .run("SELECT current_setting('portcullis.subject') || '|' || application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        .unwrap();
    assert!(who.starts_with("alice|portcullis "), "{who}");

    // \copy both ways.
    let csv = h.dir.path().join("people.csv");
    let csv_s = csv.display().to_string();
    psql.run(&format!("\\copy people TO '{csv_s}' CSV"))
        .unwrap();
    let exported = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(exported, "1,a@example.com\n2,b@example.com\n");
    std::fs::write(&csv, "3,c@example.com\n4,d@example.com\n").unwrap();
    psql.run(&format!("\\copy people FROM '{csv_s}' CSV"))
        .unwrap();
    assert_eq!(psql.run("SELECT count(*) FROM people").unwrap().trim(), "4");

    // Errors and notices pass through.
    let err = psql.run("SELECT 1/0").unwrap_err().to_string();
    assert!(err.contains("division by zero"), "{err}");
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(h.pg_port.to_string())
        .args(["-U", "alice", "-d", "app", "-c"])
        .arg("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
        .env("PGPASSWORD", &token)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hello from plpgsql"));

    // The query API: sessions of alice, and the statements of the first one in order.
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    let list = h.audit(&[
        "--gateway",
        &gw,
        "--token",
        &auditor,
        "sessions",
        "--subject",
        "alice",
        "--json",
    ]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert!(list.len() >= 5, "{list:?}");
    assert!(
        list.iter()
            .all(|s| s["subject"] == "alice" && s["target"] == "app")
    );
    let shown = h.audit(&["--gateway", &gw, "--token", &auditor, "show", &sid]);
    let create = shown.find("CREATE TABLE people").unwrap();
    let insert = shown.find("INSERT INTO people").unwrap();
    assert!(create < insert, "{shown}");
    assert!(shown.contains("alice (via Jwt, groups: dba)"), "{shown}");
    assert!(shown.contains("allow (default)"), "{shown}");
    let table = h.audit(&["--gateway", &gw, "--token", &auditor, "sessions"]);
    assert!(table.contains(&sid), "{table}");

    // Not an auditor: refused, nothing shown.
    let out = h.audit_raw(&["--gateway", &gw, "--token", &token, "sessions"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    let out = h.audit_raw(&["--gateway", &gw, "--token", "not-a-token", "sessions"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn pgbench_in_every_protocol_mode() {
    let h = Harness::start(Options::default());
    let token = h.token("bench", "dba", "10m");
    // Initialise directly, as the app role, then run through the gateway.
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p"])
        .arg(h.pg.port().to_string())
        .args(["-U", "gw_scram", h.pg.database()])
        .env("PGPASSWORD", UPSTREAM_PASSWORD)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for (mode, select_only) in [
        ("simple", true),
        ("extended", true),
        ("prepared", true),
        ("simple", false),
        ("prepared", false),
    ] {
        let mut cmd = Command::new("pgbench");
        cmd.args([
            "-n",
            "-M",
            mode,
            "-t",
            "100",
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
        .env("PGPASSWORD", &token);
        if select_only {
            cmd.arg("-S");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pgbench -M {mode}: {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            h.logs()
        );
        assert!(
            stdout.contains("number of transactions actually processed: 400/400"),
            "{stdout}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0"),
            "{stdout}"
        );
    }
    // Every statement was recorded: 3 x 400 select-only + 2 x 400 x 7 TPC-B statements
    // (BEGIN, 3 UPDATEs, SELECT, INSERT, END), plus pgbench's own setup queries.
    std::thread::sleep(Duration::from_millis(300));
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    let list = h.audit(&[
        "--gateway",
        &gw,
        "--token",
        &auditor,
        "sessions",
        "--subject",
        "bench",
        "--json",
        "--limit",
        "1000",
    ]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let commands: u64 = list.iter().map(|s| s["commands"].as_u64().unwrap()).sum();
    assert!(
        commands >= 3 * 400 + 2 * 400 * 7,
        "only {commands} commands recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_prepared_binary_transactions_and_cancel() {
    let h = tokio::task::spawn_blocking(|| Harness::start(Options::default()))
        .await
        .unwrap();
    let token = h.token("dave", "developers", "10m");
    let client = h.connect(&token, "app").await;

    client
        .batch_execute("CREATE TABLE accounts (id int8 primary key, balance numeric, note text, seen timestamptz)")
        .await
        .unwrap();
    // Prepared statements with binary parameters and results.
    let insert = client
        .prepare("INSERT INTO accounts VALUES ($1, ($2::text)::numeric, $3, now()) RETURNING id")
        .await
        .unwrap();
    for i in 1..=50i64 {
        let row = client
            .query_one(&insert, &[&i, &format!("{i}.50"), &"x"])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), i);
    }
    let rows = client
        .query(
            "SELECT id, note FROM accounts WHERE id <= $1 ORDER BY id",
            &[&10i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[9].get::<_, i64>(0), 10);

    // Transactions: rollback leaves nothing, commit keeps.
    let mut client = client;
    {
        let tx = client.transaction().await.unwrap();
        tx.execute("DELETE FROM accounts", &[]).await.unwrap();
        tx.rollback().await.unwrap();
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 50);
    {
        let tx = client.transaction().await.unwrap();
        tx.execute("DELETE FROM accounts WHERE id > 40", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40);

    // An error inside a pipeline does not desynchronise the session.
    let bad = client
        .query("SELECT * FROM no_such_table", &[])
        .await
        .unwrap_err();
    assert_eq!(bad.code().unwrap().code(), "42P01");
    let ok: i32 = client.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(ok, 7);

    // Cancel a long statement with the gateway-issued cancel key.
    let cancel = client.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = client.query("SELECT pg_sleep(10)", &[]).await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, client) = sleeper.await.unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The session goes on after the cancel.
    let ok: i32 = client.query_one("SELECT 8", &[]).await.unwrap().get(0);
    assert_eq!(ok, 8);
}

#[test]
fn md5_and_cleartext_upstreams() {
    let h = Harness::start(Options::default());
    let token = h.token("erin", "dba", "10m");
    for target in ["legacy_md5", "legacy_plain"] {
        let out = h.psql(&token, target).run("SELECT current_user").unwrap();
        assert_eq!(
            out.trim(),
            if target == "legacy_md5" {
                "gw_md5"
            } else {
                "gw_plain"
            }
        );
    }
}

/// Connects with a raw socket and sends a startup packet; returns the stream.
async fn raw_startup(port: u16, database: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for (k, v) in [("user", "mallory"), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    s.write_all(&packet).await.unwrap();
    s
}

async fn read_all(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_others_keep_working() {
    let h = tokio::task::spawn_blocking(|| {
        Harness::start(Options {
            leeway: "0s",
            ..Options::default()
        })
    })
    .await
    .unwrap();
    let good = h.token("frank", "dba", "10m");
    let survivor = h.connect(&good, "app").await;

    async fn login_error(h: &Harness, password: &str, target: &str) -> (String, String) {
        let url = h
            .url(password, target)
            .replace("sslmode=disable", "sslmode=disable connect_timeout=10");
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok(_) => panic!("login to {target} should fail"),
            Err(e) => {
                let db = e
                    .as_db_error()
                    .map(|d| (d.code().code().to_string(), d.message().to_string()));
                db.unwrap_or_else(|| ("none".into(), e.to_string()))
            }
        }
    }

    let (code, msg) = login_error(&h, "garbage-token", "app").await;
    assert_eq!(code, "28P01", "{msg}");
    let expired = h.token("frank", "dba", "1s");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, msg) = login_error(&h, &expired, "app").await;
    assert_eq!(code, "28P01");
    assert!(msg.contains("expired"), "{msg}");
    let (code, msg) = login_error(&h, &good, "nowhere").await;
    assert_eq!(code, "3D000", "{msg}");
    let (code, msg) = login_error(&h, &good, "restricted").await;
    assert_eq!(code, "28000", "{msg}");
    let (code, msg) = login_error(&h, &good, "down").await;
    assert_eq!(code, "08001", "{msg}");
    let (code, msg) = login_error(&h, &good, "badcred").await;
    assert_eq!(code, "08004", "{msg}");
    assert!(!msg.contains("not-the-password") && !msg.contains(UPSTREAM_PASSWORD));

    // Garbage instead of a startup packet.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", h.pg_port))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut s).await;
    assert!(answer.is_empty() || answer[0] == b'E', "{answer:?}");

    // A logged-in client that sends a malformed message gets a protocol error.
    let mut s = raw_startup(h.pg_port, "app").await;
    let mut buf = vec![0u8; 9];
    s.read_exact(&mut buf).await.unwrap(); // AuthenticationCleartextPassword
    assert_eq!(buf[0], b'R');
    let mut pw = vec![b'p'];
    pw.extend_from_slice(&((good.len() + 5) as u32).to_be_bytes());
    pw.extend_from_slice(good.as_bytes());
    pw.push(0);
    s.write_all(&pw).await.unwrap();
    // A Bind whose parameter count runs past its length, then a bogus message type.
    s.write_all(&[b'B', 0, 0, 0, 10, 0, 0, 0, 5, 0xff, 0xff])
        .await
        .unwrap();
    let answer = read_all(&mut s).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("08P01") && text.contains("protocol violation"),
        "{text}"
    );

    // A client that disconnects in the middle of a message.
    let mut s = raw_startup(h.pg_port, "app").await;
    s.read_exact(&mut buf).await.unwrap();
    s.write_all(&pw).await.unwrap();
    s.write_all(&[b'Q', 0, 0, 1, 0, b'S', b'E', b'L'])
        .await
        .unwrap();
    drop(s);

    // Everyone else is still served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n: i32 = survivor.query_one("SELECT 42", &[]).await.unwrap().get(0);
    assert_eq!(n, 42);
    let fresh = h.connect(&good, "app").await;
    let n: i32 = fresh.query_one("SELECT 43", &[]).await.unwrap().get(0);
    assert_eq!(n, 43);

    // Refusals are recorded with the side that failed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    let list = h.audit(&[
        "--gateway",
        &gw,
        "--token",
        &auditor,
        "sessions",
        "--json",
        "--limit",
        "100",
    ]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let refused: Vec<_> = list
        .iter()
        .filter(|s| s["outcome"]["state"] == "refused")
        .collect();
    let sides: Vec<&str> = refused
        .iter()
        .map(|s| s["outcome"]["side"].as_str().unwrap())
        .collect();
    assert!(
        sides.contains(&"client") && sides.contains(&"upstream") && sides.contains(&"policy"),
        "{refused:?}"
    );
    let closed: Vec<String> = list
        .iter()
        .filter_map(|s| s["outcome"]["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        closed.iter().any(|r| r.contains("protocol violation")),
        "{closed:?}"
    );
    assert!(
        closed.iter().any(|r| r.contains("mid-message")),
        "{closed:?}"
    );
}

#[test]
fn upstream_password_never_leaves_the_gateway() {
    let mut h = Harness::start(Options::default());
    let token = h.token("grace", "dba", "10m");
    let mut client_visible = String::new();
    let psql = h.psql(&token, "app");
    client_visible += &psql.run("SELECT 1; SHOW ALL").unwrap();
    client_visible += &psql.run("SELECT 1/0").unwrap_err().to_string();
    client_visible += &h
        .psql(&token, "badcred")
        .run("SELECT 1")
        .unwrap_err()
        .to_string();
    client_visible += &h
        .psql(&token, "down")
        .run("SELECT 1")
        .unwrap_err()
        .to_string();
    client_visible += &h
        .psql("wrong", "app")
        .run("SELECT 1")
        .unwrap_err()
        .to_string();
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    for s in serde_json::from_str::<Vec<serde_json::Value>>(&h.audit(&[
        "--gateway",
        &gw,
        "--token",
        &auditor,
        "sessions",
        "--json",
    ]))
    .unwrap()
    {
        client_visible += &h.audit(&[
            "--gateway",
            &gw,
            "--token",
            &auditor,
            "show",
            s["id"].as_str().unwrap(),
            "--json",
        ]);
    }
    h.stop("TERM");
    for secret in [UPSTREAM_PASSWORD, "not-the-password"] {
        assert!(!client_visible.contains(secret), "client saw {secret}");
        assert!(!h.logs().contains(secret), "gateway log contains {secret}");
        for (path, bytes) in files_under(&h.store) {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} contains {secret}",
                path.display()
            );
        }
    }
    // The log and the record are not empty: the check above looked at real content.
    assert!(h.logs().contains("session opened"));
    assert!(client_visible.contains("session_opened"));
}

fn insert_loop_session(
    h: &Harness,
    token: &str,
    table: &str,
    rows: usize,
) -> (String, std::process::Child) {
    h.psql(token, "app")
        .run(&format!("CREATE TABLE {table} (id int)"))
        .unwrap();
    // One psql session runs the inserts one statement at a time.
    let script: String = (1..=rows)
        .map(|i| format!("INSERT INTO {table} VALUES ({i});\n"))
        .collect();
    let path = h.dir.path().join(format!("{table}.sql"));
    std::fs::write(
        &path,
        format!("SELECT current_setting('portcullis.session_id');\n{script}"),
    )
    .unwrap();
    let child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(h.pg_port.to_string())
        .args(["-U", "alice", "-d", "app", "-f"])
        .arg(&path)
        .env("PGPASSWORD", token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (table.to_string(), child)
}

fn recorded_inserts(h: &Harness, session: &str, table: &str) -> usize {
    h.records_from_store(session)
        .iter()
        .filter(|r| {
            r["event"]["type"] == "command"
                && r["event"]["command"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("INSERT INTO {table}")))
        })
        .count()
}

#[test]
fn strict_durability_records_every_forwarded_statement_across_kill_9() {
    let mut h = Harness::start(Options {
        durability: "strict",
        ..Options::default()
    });
    let token = h.token("henry", "dba", "10m");
    let (table, mut child) = insert_loop_session(&h, &token, "strict_rows", 100_000);
    // Read the session id, let inserts run, then kill the gateway hard.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 37];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    let sid = String::from_utf8_lossy(&first[..36]).to_string();
    std::thread::sleep(Duration::from_millis(1500));
    h.kill9();
    let _ = child.wait();
    let in_db: usize =
        h.pg.psql(&format!("SELECT count(*) FROM {table}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert!(in_db > 10, "too few inserts ran ({in_db}) to test anything");
    let recorded = recorded_inserts(&h, &sid, &table);
    // Every statement that reached PostgreSQL has its record (the one in flight may
    // have been recorded and not executed, never the other way round).
    assert!(
        recorded >= in_db,
        "{in_db} rows in the database, {recorded} recorded"
    );
    assert!(recorded <= in_db + 1, "{in_db} rows, {recorded} recorded");
    // The store is intact and a restarted gateway serves again.
    h.spawn_gateway();
    let out = h.psql(&token, "app").run("SELECT 5").unwrap();
    assert_eq!(out.trim(), "5");
}

#[test]
fn batched_durability_keeps_everything_older_than_the_flush_interval_across_kill_9() {
    let mut h = Harness::start(Options::default());
    let token = h.token("ivy", "dba", "10m");
    let (table, mut child) = insert_loop_session(&h, &token, "batched_rows", 300);
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    let sid = out.lines().next().unwrap().to_string();
    // Everything was acknowledged; wait past the 50 ms flush interval, then kill -9.
    std::thread::sleep(Duration::from_millis(400));
    h.kill9();
    assert_eq!(recorded_inserts(&h, &sid, &table), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_tells_clients_and_records_the_close() {
    let mut h = tokio::task::spawn_blocking(|| Harness::start(Options::default()))
        .await
        .unwrap();
    let token = h.token("judy", "dba", "10m");
    let client = h.connect(&token, "app").await;
    let sid: String = client
        .query_one("SELECT current_setting('portcullis.session_id')", &[])
        .await
        .unwrap()
        .get(0);
    let status = tokio::task::spawn_blocking(move || {
        let s = h.stop("TERM");
        (s, h)
    })
    .await
    .unwrap();
    let (status, h) = status;
    assert!(status.unwrap().success(), "{}", h.logs());
    assert!(client.is_closed() || client.simple_query("SELECT 1").await.is_err());
    let records = h.records_from_store(&sid);
    let last = records.last().unwrap();
    assert_eq!(last["event"]["type"], "session_closed", "{records:?}");
    assert_eq!(last["event"]["reason"], "gateway shutdown");
}

#[test]
fn tls_listener_and_required_tls() {
    let h = Harness::start(Options {
        tls: "self-signed",
        require_tls: true,
        ..Options::default()
    });
    let token = h.token("kim", "dba", "10m");
    let out = Command::new("psql")
        .args(["-X", "-t", "-A", "-c", "SELECT 'over tls'"])
        .arg(format!(
            "host=127.0.0.1 port={} dbname=app user=kim sslmode=require",
            h.pg_port
        ))
        .env("PGPASSWORD", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over tls");
    let out = Command::new("psql")
        .args(["-X", "-c", "SELECT 1"])
        .arg(format!(
            "host=127.0.0.1 port={} dbname=app user=kim sslmode=disable",
            h.pg_port
        ))
        .env("PGPASSWORD", &token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires TLS"), "{err}");
}
