#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PgBouncer in front of a private cluster.

use std::net::TcpStream;

use portcullis_testkit::{
    BouncerAuth, PgAuth, PgBouncer, PgBouncerOptions, PgCluster, PgOptions, PoolMode, pid_alive,
};
use tokio_postgres::{NoTls, SimpleQueryMessage};

async fn one_value(url: &str, sql: &str) -> Result<String, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let rows = client.simple_query(sql).await?;
    let value = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    Ok(value)
}

fn bouncer_url(pg: &PgCluster, bouncer: &PgBouncer, user: &str, password: &str) -> String {
    format!(
        "postgres://{user}:{password}@127.0.0.1:{}/{}",
        bouncer.port(),
        pg.database()
    )
}

#[tokio::test]
async fn queries_pass_through_pgbouncer_with_scram_and_plain() {
    let pg =
        PgCluster::start(PgOptions::default().user("md5_user", "md5-pw", PgAuth::Md5)).unwrap();

    let scram = PgBouncer::start(&pg, PgBouncerOptions::default()).unwrap();
    let url = bouncer_url(&pg, &scram, "portcullis_app", "portcullis-app-pw");
    let offset = pg.log_len();
    let backend_port = one_value(&url, "SELECT inet_server_port()").await.unwrap();
    assert_eq!(backend_port, pg.port().to_string(), "served by the cluster");
    assert_eq!(
        one_value(&url, "SELECT current_user").await.unwrap(),
        "portcullis_app"
    );
    assert!(pg.read_log_from(offset).contains("inet_server_port"));
    // PgBouncer refuses a wrong password itself.
    let bad = bouncer_url(&pg, &scram, "portcullis_app", "wrong");
    assert!(one_value(&bad, "SELECT 1").await.is_err());
    // Upstream md5 works through PgBouncer too.
    let md5 = bouncer_url(&pg, &scram, "md5_user", "md5-pw");
    assert_eq!(one_value(&md5, "SELECT 7").await.unwrap(), "7");
    assert!(scram.read_log().contains("listening on"));

    let plain = PgBouncer::start(
        &pg,
        PgBouncerOptions {
            auth: BouncerAuth::Plain,
            pool_mode: PoolMode::Session,
            ..PgBouncerOptions::default()
        },
    )
    .unwrap();
    assert_ne!(plain.port(), scram.port());
    let url = bouncer_url(&pg, &plain, "portcullis_admin", "portcullis-admin-pw");
    assert_eq!(one_value(&url, "SELECT 40 + 2").await.unwrap(), "42");
    // The real psql client through PgBouncer.
    let out = pg
        .psql_client()
        .port(plain.port())
        .run_async("SELECT 'via bouncer'")
        .await
        .unwrap();
    assert_eq!(out, "via bouncer\n");

    let pid = scram.pid().unwrap();
    let port = scram.port();
    let dir = scram.config_dir().to_path_buf();
    drop(scram);
    assert!(!pid_alive(pid), "pgbouncer {pid} survived drop");
    assert!(!dir.exists());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let pid = plain.pid().unwrap();
    plain.stop().unwrap();
    assert!(!pid_alive(pid));
}
