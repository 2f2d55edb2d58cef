//! Sinks against real peers: a file, an axum HTTP server, a syslog server over
//! TCP and TLS. The receivers go down while sessions are recorded; when they come
//! back every record arrives, in order, with repeats only of re-sent batches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use portcullis_core::Secret;
use portcullis_recording::RetentionPolicy;
use portcullis_siem::{
    CursorFile, Format, HttpBody, SinkConfig, SinkKind, SinkSet, SinkState, Transport,
};
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

fn fast(mut c: SinkConfig) -> SinkConfig {
    c.poll_interval = Duration::from_millis(20);
    c.retry_max = Duration::from_millis(200);
    c.timeout = Duration::from_secs(20);
    c
}

fn http_sink(name: &str, url: String) -> SinkConfig {
    fast(SinkConfig {
        url: Some(url),
        bearer_token: Some(Secret::new(TOKEN.into())),
        headers: BTreeMap::from([("X-Tenant".to_string(), Secret::new("acme".to_string()))]),
        batch_size: 7,
        ..SinkConfig::new(name, SinkKind::Http)
    })
}

fn max_seq(got: &Mutex<Vec<SyslogMessage>>) -> u64 {
    got.lock().unwrap().iter().map(|m| m.seq).max().unwrap_or(0)
}

fn seqs_of(values: &[Value]) -> Vec<u64> {
    values.iter().map(|v| v["seq"].as_u64().unwrap()).collect()
}

fn read_lines(path: &std::path::Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_rotates_and_follows_external_renames() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let path = dir.path().join("out/audit.jsonl");
    let config = fast(SinkConfig {
        path: Some(path.clone()),
        max_bytes: Some(8 * 1024),
        keep: Some(1000),
        batch_size: 20,
        ..SinkConfig::new("file", SinkKind::File)
    });
    let sinks =
        SinkSet::start(recorder.store().clone(), &[config], &cursor_dir(dir.path())).unwrap();
    for i in 0..10 {
        record_session(&recorder, &format!("user{i}"), 3).await;
    }
    wait_delivered(&sinks, head(&recorder)).await;
    // An external rotation (logrotate's rename): the sink reopens the path.
    let moved = dir.path().join("out/moved.jsonl");
    std::fs::rename(&path, &moved).unwrap();
    for i in 10..20 {
        record_session(&recorder, &format!("user{i}"), 3).await;
    }
    let last = head(&recorder);
    let status = wait_delivered(&sinks, last).await;
    assert_eq!(status.lag, 0);
    assert_eq!(status.failures, 0, "{status:?}");
    sinks.shutdown().await;

    // Oldest first: the numbered files from the highest, then the moved file's
    // own rotations, then the current file.
    let mut files: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let n = name.strip_prefix("audit.jsonl.")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    assert!(files.len() >= 3, "expected rotations, got {files:?}");
    files.sort();
    let mut all: Vec<Value> = Vec::new();
    // Rotations before the rename were renamed on with later rotations, so the
    // ordering by number is oldest-highest; check the union instead of the order
    // across files, and the order within each file.
    for (_, p) in files.iter().rev() {
        all.extend(read_lines(p));
    }
    all.extend(read_lines(&moved));
    all.extend(read_lines(&path));
    for f in files
        .iter()
        .map(|(_, p)| p.clone())
        .chain([moved.clone(), path.clone()])
    {
        let s = seqs_of(&read_lines(&f));
        assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "{f:?} not in order");
        assert!(std::fs::metadata(&f).unwrap().len() <= 8 * 1024 || s.len() <= 20);
    }
    let mut seqs = seqs_of(&all);
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    // Lines are the record's export form with its hashes.
    let store = recorder.store();
    let r7 = store.get(7).unwrap().unwrap();
    let line = all.iter().find(|v| v["seq"] == 7).unwrap();
    assert_eq!(line["hash"], r7.hash.to_hex());
    assert_eq!(line["event"]["type"], r7.event.kind.name());
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_catches_up_after_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver = HttpReceiver::start("127.0.0.1:0".parse().unwrap(), TOKEN, got.clone()).await;
    let addr = receiver.addr;
    let sinks = SinkSet::start(
        recorder.store().clone(),
        &[http_sink("http", receiver.url())],
        &cursor_dir(dir.path()),
    )
    .unwrap();
    for i in 0..5 {
        record_session(&recorder, &format!("user{i}"), 2).await;
    }
    wait_delivered(&sinks, head(&recorder)).await;

    // A lost acknowledgement: the receiver keeps a batch but answers 500; the
    // batch is sent again.
    let lost_request = receiver.requests.lock().unwrap().len();
    receiver.mode.store(LOSE_ACK_ONCE, Ordering::SeqCst);
    record_session(&recorder, "lost-ack", 2).await;
    wait_delivered(&sinks, head(&recorder)).await;
    let repeated_batch = receiver.requests.lock().unwrap()[lost_request];

    // The receiver rejects (503), then goes away entirely; sessions keep being recorded.
    receiver.mode.store(REJECT, Ordering::SeqCst);
    record_session(&recorder, "during-503", 2).await;
    wait_for("a failed attempt", || sinks.status()[0].failures > 1).await;
    receiver.stop().await;
    let before = head(&recorder);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let r = recorder.clone();
        tasks.push(tokio::spawn(async move {
            record_session(&r, &format!("outage{i}"), 3).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let recorded_during_outage = started.elapsed();
    assert!(head(&recorder) > before);
    wait_for("the sink to retry", || {
        let s = &sinks.status()[0];
        s.state == SinkState::Retrying && s.consecutive_failures >= 2 && s.lag > 0
    })
    .await;
    let down = sinks.status().remove(0);
    assert!(
        down.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("http"),
        "{down:?}"
    );
    assert!(down.delivered_seq < head(&recorder));

    // Back on the same port: everything arrives.
    let receiver = HttpReceiver::start(addr, TOKEN, got.clone()).await;
    let last = head(&recorder);
    let status = wait_delivered(&sinks, last).await;
    assert_eq!(status.lag, 0);
    assert_eq!(status.consecutive_failures, 0);
    let seqs = seqs_of(&got.lock().unwrap());
    let repeats = assert_in_order(&seqs, 1, last);
    assert_eq!(
        repeats, repeated_batch,
        "only the batch whose acknowledgement was lost repeats"
    );
    println!(
        "recorded {} events in {recorded_during_outage:?} while the receiver was down; {repeats} repeated",
        last - before
    );
    sinks.shutdown().await;
    receiver.stop().await;
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_sink_catches_up_after_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver = SyslogReceiver::start("127.0.0.1:0".parse().unwrap(), None, got.clone()).await;
    let addr = receiver.addr;
    let config = fast(SinkConfig {
        address: Some(addr.to_string()),
        hostname: Some("gw01".into()),
        facility: Some(13),
        batch_size: 5,
        ..SinkConfig::new("syslog", SinkKind::Syslog)
    });
    let sinks =
        SinkSet::start(recorder.store().clone(), &[config], &cursor_dir(dir.path())).unwrap();
    for i in 0..4 {
        record_session(&recorder, &format!("user{i}"), 2).await;
    }
    let first = head(&recorder);
    wait_delivered(&sinks, first).await;
    // Written is not yet read: let the receiver read everything before it stops.
    wait_for("the receiver to read", || max_seq(&got) == first).await;
    // The receiver shuts down while the sink is idle; sessions are recorded meanwhile.
    let errors = receiver.errors.clone();
    receiver.stop().await;
    for i in 0..6 {
        record_session(&recorder, &format!("outage{i}"), 2).await;
    }
    wait_for("the sink to retry", || {
        let s = &sinks.status()[0];
        s.state == SinkState::Retrying && s.consecutive_failures >= 2
    })
    .await;
    let receiver = SyslogReceiver::start(addr, None, got.clone()).await;
    let last = head(&recorder);
    wait_delivered(&sinks, last).await;
    wait_for("the receiver to read", || max_seq(&got) == last).await;
    sinks.shutdown().await;
    receiver.stop().await;
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );

    let messages = got.lock().unwrap().clone();
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_in_order(&seqs, 1, last);
    let store = recorder.store();
    for m in &messages {
        let r = store.get(m.seq).unwrap().unwrap();
        assert_eq!(m.json["seq"], m.seq, "SD seq and MSG seq agree");
        assert_eq!(m.json["hash"], r.hash.to_hex());
        assert_eq!(m.msgid, r.event.kind.name());
        assert_eq!(m.session, r.event.session.to_string());
        assert_eq!(m.hostname, "gw01");
        assert_eq!(m.app_name, "portcullis");
        let denied = m.json["event"]["decision"]["verdict"] == "deny";
        assert_eq!(m.pri, 13 * 8 + if denied { 4 } else { 6 }, "{m:?}");
    }
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_sink_delivers_ocsf() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["logs.test".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    let recorder = recorder(dir.path());
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver =
        SyslogReceiver::start("127.0.0.1:0".parse().unwrap(), Some(acceptor), got.clone()).await;
    let config = fast(SinkConfig {
        address: Some(receiver.addr.to_string()),
        transport: Some(Transport::Tls),
        ca: Some(ca_path.clone()),
        server_name: Some("logs.test".into()),
        format: Format::Ocsf,
        batch_size: 4,
        ..SinkConfig::new("tls", SinkKind::Syslog)
    });
    let sinks =
        SinkSet::start(recorder.store().clone(), &[config], &cursor_dir(dir.path())).unwrap();
    let mut sessions = Vec::new();
    for i in 0..5 {
        sessions.push(record_session(&recorder, &format!("user{i}"), 3).await);
    }
    wait_delivered(&sinks, head(&recorder)).await;
    wait_for("the receiver to read", || {
        got.lock().unwrap().len() >= sessions.len() * 6
    })
    .await;
    sinks.shutdown().await;
    receiver.stop().await;

    let messages = got.lock().unwrap().clone();
    // Per session: logon, 3 commands with their results, the denied command, logoff.
    assert_eq!(messages.len(), sessions.len() * 6, "{messages:#?}");
    for s in &sessions {
        let of: Vec<&SyslogMessage> = messages
            .iter()
            .filter(|m| m.session == s.to_string())
            .collect();
        let classes: Vec<u64> = of
            .iter()
            .map(|m| m.json["class_uid"].as_u64().unwrap())
            .collect();
        assert_eq!(classes, vec![3002, 6005, 6005, 6005, 6005, 3002]);
        let results = of
            .iter()
            .filter(|m| m.json["class_uid"] == 6005 && m.json["action"] == "Allowed")
            .count();
        assert_eq!(results, 3);
        for m in &of {
            assert_eq!(m.msgid, format!("ocsf-{}", m.json["class_uid"]));
            assert!(
                m.json["actor"]["user"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("user")
            );
            assert_eq!(m.json["metadata"]["product"]["name"], "Portcullis");
        }
    }
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in chain order: {seqs:?}"
    );
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_refuses_an_unknown_server() {
    use rcgen::{CertificateParams, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["logs.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    // The sink trusts another CA.
    let other_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = params.self_signed(&other_key).unwrap();
    let ca_path = dir.path().join("other-ca.pem");
    std::fs::write(&ca_path, other_ca.pem()).unwrap();

    let recorder = recorder(dir.path());
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver =
        SyslogReceiver::start("127.0.0.1:0".parse().unwrap(), Some(acceptor), got.clone()).await;
    let config = fast(SinkConfig {
        address: Some(receiver.addr.to_string()),
        transport: Some(Transport::Tls),
        ca: Some(ca_path),
        server_name: Some("logs.test".into()),
        ..SinkConfig::new("tls", SinkKind::Syslog)
    });
    let sinks =
        SinkSet::start(recorder.store().clone(), &[config], &cursor_dir(dir.path())).unwrap();
    record_session(&recorder, "user", 1).await;
    wait_for("a refused handshake", || sinks.status()[0].failures >= 2).await;
    let status = sinks.shutdown().await.remove(0);
    assert_eq!(status.delivered_seq, 0);
    assert!(status.last_error.unwrap().contains("TLS"));
    receiver.stop().await;
    assert!(got.lock().unwrap().is_empty());
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver = HttpReceiver::start("127.0.0.1:0".parse().unwrap(), TOKEN, got.clone()).await;
    let mut config = http_sink("restart", receiver.url());
    config.body = Some(HttpBody::Array);
    let start = || {
        SinkSet::start(
            recorder.store().clone(),
            std::slice::from_ref(&config),
            &cursor_dir(dir.path()),
        )
        .unwrap()
    };
    let sinks = start();
    for i in 0..3 {
        record_session(&recorder, &format!("user{i}"), 2).await;
    }
    let first = head(&recorder);
    wait_delivered(&sinks, first).await;
    let stopped = sinks.shutdown().await.remove(0);
    assert_eq!(stopped.state, SinkState::Stopped);
    let cursor = CursorFile::new(&cursor_dir(dir.path()), "restart")
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(cursor.delivered, first);
    assert_eq!(
        cursor.chain.as_deref(),
        Some(recorder.store().chain_id().unwrap().as_str())
    );

    // Recorded while no sink runs.
    for i in 3..6 {
        record_session(&recorder, &format!("user{i}"), 2).await;
    }
    let sinks = start();
    let last = head(&recorder);
    wait_delivered(&sinks, last).await;
    sinks.shutdown().await;
    receiver.stop().await;
    let seqs = seqs_of(&got.lock().unwrap());
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "resumed without loss or repeat"
    );
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_command_waiting_for_its_result_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let path = dir.path().join("ocsf.jsonl");
    let config = fast(SinkConfig {
        path: Some(path.clone()),
        format: Format::Ocsf,
        ..SinkConfig::new("ocsf", SinkKind::File)
    });
    let start = || {
        SinkSet::start(
            recorder.store().clone(),
            std::slice::from_ref(&config),
            &cursor_dir(dir.path()),
        )
        .unwrap()
    };
    let sinks = start();
    let s = record_session(&recorder, "alice", 1).await;
    // A second session whose command's result comes after the restart.
    let t = portcullis_core::SessionId::new();
    recorder
        .record(portcullis_core::Event {
            session: t,
            at: portcullis_core::Timestamp::now(),
            kind: portcullis_core::EventKind::SessionOpened {
                identity: portcullis_core::Identity {
                    subject: "bob".into(),
                    groups: vec![],
                    method: portcullis_core::AuthMethod::Jwt,
                    issuer: None,
                    expires_at: None,
                },
                target: "orders".into(),
                protocol: portcullis_core::Protocol::Postgres,
                client_addr: None,
                details: BTreeMap::new(),
            },
        })
        .await
        .unwrap();
    record_command(&recorder, t, 1).await;
    let command_seq = head(&recorder);
    wait_delivered(&sinks, command_seq).await;
    sinks.shutdown().await;
    let cursor = CursorFile::new(&cursor_dir(dir.path()), "ocsf")
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(cursor.delivered, command_seq);
    assert_eq!(
        cursor.replay_from, command_seq,
        "replays from the waiting command"
    );

    record_result(&recorder, t, 1).await;
    let sinks = start();
    let last = head(&recorder);
    wait_delivered(&sinks, last).await;
    sinks.shutdown().await;
    let lines = read_lines(&path);
    let of_t: Vec<&Value> = lines
        .iter()
        .filter(|v| v["actor"]["session"]["uid"] == t.to_string())
        .collect();
    assert_eq!(of_t.len(), 2, "logon and the command: {of_t:#?}");
    assert_eq!(of_t[1]["class_uid"], 6005);
    assert_eq!(of_t[1]["metadata"]["sequence"], command_seq);
    assert_eq!(of_t[1]["unmapped"]["result"]["rows_returned"], 1);
    assert_eq!(
        of_t[1]["actor"]["user"]["name"], "bob",
        "session context rebuilt"
    );
    let of_s = lines
        .iter()
        .filter(|v| v["actor"]["session"]["uid"] == s.to_string())
        .count();
    assert_eq!(of_s, 4, "nothing of the first session repeats");
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_pruned_before_delivery_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let path = dir.path().join("audit.jsonl");
    let config = fast(SinkConfig {
        path: Some(path.clone()),
        ..SinkConfig::new("late", SinkKind::File)
    });
    for i in 0..6 {
        record_session(&recorder, &format!("user{i}"), 1).await;
    }
    let outcome = recorder
        .prune(RetentionPolicy {
            max_age: None,
            max_records: Some(8),
        })
        .await
        .unwrap();
    let pruned = outcome.through_seq;
    assert!(pruned > 0);
    let sinks =
        SinkSet::start(recorder.store().clone(), &[config], &cursor_dir(dir.path())).unwrap();
    let last = head(&recorder);
    let status = wait_delivered(&sinks, last).await;
    assert_eq!(status.missed_pruned, pruned);
    assert!(status.last_error.unwrap().contains("pruned by retention"));
    sinks.shutdown().await;
    let seqs = seqs_of(&read_lines(&path));
    assert_eq!(seqs, (pruned + 1..=last).collect::<Vec<_>>());
    recorder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_of_another_chain_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let path = dir.path().join("audit.jsonl");
    let config = fast(SinkConfig {
        path: Some(path.clone()),
        ..SinkConfig::new("other", SinkKind::File)
    });
    CursorFile::new(&cursor_dir(dir.path()), "other")
        .store(&portcullis_siem::Cursor {
            delivered: 1000,
            replay_from: 1001,
            chain: Some("some-other-chain".into()),
        })
        .unwrap();
    record_session(&recorder, "user", 1).await;
    let sinks =
        SinkSet::start(recorder.store().clone(), &[config], &cursor_dir(dir.path())).unwrap();
    let last = head(&recorder);
    wait_delivered(&sinks, last).await;
    sinks.shutdown().await;
    assert_eq!(seqs_of(&read_lines(&path)), (1..=last).collect::<Vec<_>>());
    recorder.shutdown().await.unwrap();
}
