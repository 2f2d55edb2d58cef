#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A real private cluster: each auth method, psql, the log, startup errors and cleanup.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use portcullis_core::Side;
use portcullis_testkit::{PgAuth, PgCluster, PgOptions, TestkitError, pid_alive};
use tokio_postgres::NoTls;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Sends a startup message and returns the authentication request code the server
/// answers with (0 ok, 3 cleartext, 5 md5, 10 SASL).
fn auth_request(port: u16, user: &str, database: &str) -> i32 {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    for s in ["user", user, "database", database] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(&msg).unwrap();
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], b'R', "expected an authentication request");
    i32::from_be_bytes(head[5..9].try_into().unwrap())
}

#[tokio::test]
async fn every_auth_method_works_and_wrong_passwords_fail() {
    let pg = PgCluster::start(
        PgOptions::default()
            .user("md5_user", "md5-pw", PgAuth::Md5)
            .user("plain_user", "plain-pw", PgAuth::Password)
            .user("trusted", "unused", PgAuth::Trust),
    )
    .unwrap();

    // The server asks each user for what its method says.
    let db = pg.database();
    assert_eq!(auth_request(pg.port(), "portcullis_app", db), 10);
    assert_eq!(auth_request(pg.port(), "portcullis_admin", db), 10);
    assert_eq!(auth_request(pg.port(), "md5_user", db), 5);
    assert_eq!(auth_request(pg.port(), "plain_user", db), 3);
    assert_eq!(auth_request(pg.port(), "trusted", db), 0);

    // Each user logs in with its password.
    for user in ["portcullis_app", "md5_user", "plain_user", "trusted"] {
        let client = connect(&pg.url(user).unwrap()).await.unwrap();
        let row = client
            .query_one("SELECT current_user::text, current_database()::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user);
        assert_eq!(row.get::<_, String>(1), "portcullis_test");
    }
    let admin = connect(&pg.admin_url()).await.unwrap();
    let stored: Vec<(String, String)> = admin
        .query(
            "SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname IN ('portcullis_app', 'md5_user')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, hash) in stored {
        let want = if name == "md5_user" {
            "md5"
        } else {
            "SCRAM-SHA-256$"
        };
        assert!(hash.starts_with(want), "{name}: {hash}");
    }

    // The user can create tables in the test database.
    let app = connect(&pg.url("portcullis_app").unwrap()).await.unwrap();
    app.batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    // Wrong passwords are refused with invalid_password.
    for user in [
        "portcullis_app",
        "md5_user",
        "plain_user",
        "portcullis_admin",
    ] {
        let err = connect(&pg.url_for(user, "wrong"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in with a wrong password"));
        let code = err.as_db_error().map(|e| e.code().code().to_owned());
        assert_eq!(code.as_deref(), Some("28P01"), "{user}: {err}");
    }
}

#[test]
fn psql_helper_and_log_carry_application_name() {
    let pg = PgCluster::start(PgOptions::default()).unwrap();
    assert_eq!(pg.psql("SELECT 1").unwrap(), "1\n");
    assert_eq!(
        pg.psql("SELECT current_user").unwrap(),
        "portcullis_admin\n"
    );
    let err = pg.psql("SELECT * FROM no_such_table").unwrap_err();
    assert!(
        err.to_string().contains("no_such_table"),
        "error carries psql's stderr: {err}"
    );
    assert_eq!(err.side(), Side::Upstream);

    let offset = pg.log_len();
    let out = pg
        .psql_client()
        .user("portcullis_app")
        .password("portcullis-app-pw")
        .application_name("gw-session-7f3a")
        .run("SELECT 'marker-' || 41 + 1")
        .unwrap();
    assert_eq!(out, "marker-42\n");
    let log = pg
        .wait_for_log(offset, "marker-", Duration::from_secs(5))
        .unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("statement: SELECT 'marker-'"))
        .unwrap();
    assert!(line.contains("app=gw-session-7f3a"), "{line}");
    assert!(line.contains("user=portcullis_app"), "{line}");
    assert!(line.contains("db=portcullis_test"), "{line}");
    assert!(pg.read_log().contains("database system is ready"));
    assert!(pg.log_path().starts_with(pg.data_dir().parent().unwrap()));
}

#[test]
fn drop_and_stop_leave_nothing_behind() {
    let pg = PgCluster::start(PgOptions::default()).unwrap();
    let pid = pg.postmaster_pid().unwrap();
    let dir = pg.data_dir().parent().unwrap().to_path_buf();
    let port = pg.port();
    assert!(pid_alive(pid));
    // A backend exists while a session is open.
    let mut backend = TcpStream::connect(("127.0.0.1", port)).unwrap();
    backend.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap(); // SSLRequest
    // Wait for the answer: until then the connection may still sit in the listen queue,
    // and a postmaster that accepts it after the shutdown request starts a backend its
    // shutdown signal never reached (PostgreSQL 15 then waited for it until the harness's
    // 10 s timeouts ran out).
    let mut answer = [0u8; 1];
    backend.read_exact(&mut answer).unwrap();
    assert!(matches!(&answer, b"N" | b"S"), "{answer:?}");
    let started = Instant::now();
    drop(pg);
    assert!(!pid_alive(pid), "postmaster {pid} survived drop");
    assert!(!dir.exists(), "{} not removed", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
    // No process of the cluster is left: none has the removed directory in its command line.
    let needle = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(!cmdline.contains(&needle), "left behind: {cmdline}");
        }
    }

    let pg = PgCluster::start(PgOptions::default()).unwrap();
    let pid = pg.postmaster_pid().unwrap();
    pg.stop().unwrap();
    assert!(!pid_alive(pid));
}

#[test]
fn startup_failure_reports_the_server_log() {
    let opts = PgOptions::default().setting("shared_buffers", "'lots'");
    let err = PgCluster::start(opts).unwrap_err();
    match &err {
        TestkitError::Exited { service, log, .. } => {
            assert_eq!(service, "postgres");
            assert!(log.contains("shared_buffers"), "{log}");
        }
        other => panic!("unexpected error: {other}"),
    }
    let err = PgCluster::start(PgOptions {
        database: String::new(),
        ..PgOptions::default()
    })
    .unwrap_err();
    assert_eq!(err.side(), Side::Client);
}
