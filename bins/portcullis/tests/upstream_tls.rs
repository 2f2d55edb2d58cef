//! End-to-end: TLS towards the database (`require` and `verify-full`), and
//! LISTEN/NOTIFY passing through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use portcullis_testkit::RunAs;
use support::{Harness, Options, UPSTREAM_PASSWORD};

#[test]
fn upstream_tls_require_and_verify_full() {
    let mut h = Harness::start(Options::default());
    // A certificate for the database server, installed while it runs.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let data = h.pg.data_dir().to_path_buf();
    let (crt, key) = (data.join("server.crt"), data.join("server.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run_as = RunAs::detect().unwrap();
    run_as.own(&crt).unwrap();
    run_as.own(&key).unwrap();
    h.pg.psql("ALTER SYSTEM SET ssl = on").unwrap();
    h.pg.psql("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ca = h.dir.path().join("db-ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();

    let (up, db) = (h.pg.port(), h.pg.database().to_string());
    let mut config = std::fs::read_to_string(&h.config).unwrap();
    for (name, tls) in [
        ("tls_require", "tls = \"require\"".to_string()),
        (
            "tls_verified",
            format!(
                "tls = \"verify-full\"\nca_file = \"{}\"\nserver_name = \"localhost\"",
                ca.display()
            ),
        ),
        (
            "tls_wrong_name",
            format!(
                "tls = \"verify-full\"\nca_file = \"{}\"\nserver_name = \"db.example.com\"",
                ca.display()
            ),
        ),
    ] {
        config += &format!(
            "\n[targets.{name}]\nprotocol = \"postgres\"\nallowed_groups = [\"dba\"]\n[targets.{name}.upstream]\naddress = \"127.0.0.1:{up}\"\ndatabase = \"{db}\"\nuser = \"gw_scram\"\npassword = \"{UPSTREAM_PASSWORD}\"\n{tls}\n"
        );
    }
    std::fs::write(&h.config, config).unwrap();
    h.stop("TERM");
    h.spawn_gateway();

    let token = h.token("tess", "dba", "10m");
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(h.psql(&token, "tls_require").run(ssl).unwrap().trim(), "t");
    assert_eq!(h.psql(&token, "tls_verified").run(ssl).unwrap().trim(), "t");
    assert_eq!(h.psql(&token, "app").run(ssl).unwrap().trim(), "f");
    let err = h
        .psql(&token, "tls_wrong_name")
        .run("SELECT 1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("08001") || err.contains("upstream unreachable"),
        "{err}"
    );
    assert!(err.contains("TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_passes_through() {
    let h = tokio::task::spawn_blocking(|| Harness::start(Options::default()))
        .await
        .unwrap();
    let token = h.token("nina", "dba", "10m");
    let url = h.url(&token, "app");
    let (listener, mut conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        use futures::StreamExt;
        while let Some(Ok(msg)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let sender = h.connect(&token, "app").await;
    sender
        .batch_execute("NOTIFY jobs, 'job 42 done'")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, ("jobs".to_string(), "job 42 done".to_string()));
}
