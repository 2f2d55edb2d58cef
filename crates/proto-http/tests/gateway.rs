#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end tests of the HTTP gateway against a real axum upstream, nginx, curl, a
//! WebSocket client and the real recorder.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Approver, BoxFuture, Command, CommandRequest, Decision, EventKind, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_inject_credentials_and_record_without_secrets() {
    let h = start().await;

    // curl, path prefix route, bearer injection: the upstream sees the gateway's token only.
    let (head, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {}", h.token),
        "-H",
        "Cookie: session=client-cookie-value",
        "-H",
        "X-Trace: t-1",
        "-A",
        "curl-test",
        &h.url("/app/echo/a%20b?x=1&y=two"),
    ]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["authorization"], format!("Bearer {UPSTREAM_TOKEN}"));
    assert_eq!(v["uri"], "/echo/a%20b?x=1&y=two");
    assert_eq!(v["host"], h.upstream.to_string());
    assert_eq!(v["password"], "[masked]", "JSON masking of **.password");
    assert!(!body.contains(&h.token));
    assert!(
        head.to_ascii_lowercase().contains("x-internal: [masked]"),
        "{head}"
    );

    // API key, named-header credential: no Authorization reaches the upstream at all.
    let a = h
        .request(
            "POST",
            "/hdr/echo",
            Some(&format!("Bearer {}", h.api_key)),
            &[("content-type", "application/json")],
            r#"{"q":1}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["authorization"], serde_json::Value::Null);
    assert_eq!(v["x_service_key"], HEADER_KEY);
    assert_eq!(v["body"], r#"{"q":1}"#);

    // Host route to nginx with basic auth injected.
    let req = http::Request::builder()
        .uri(h.url("/nginx/hello?z=9"))
        .header("host", "nginx.test:8080")
        .header("authorization", format!("Bearer {}", h.token))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["from"], "nginx");
    assert_eq!(v["uri"], "/nginx/hello?z=9");
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("gateway:{NGINX_PASSWORD}"));
    assert_eq!(v["authorization"], format!("Basic {basic}"));

    // The same path without the nginx host does not route anywhere.
    let a = h.get("/nginx/hello").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["side"], "client");

    // What was recorded for the curl request: one session for curl's connection.
    let session = h.closed_session_for("/app/echo/a%20b").await;
    let names: Vec<_> = session.iter().map(|k| k.name()).collect();
    assert_eq!(
        names,
        [
            "session_opened",
            "command",
            "command_result",
            "session_closed"
        ]
    );
    let EventKind::SessionOpened {
        details,
        identity,
        target,
        ..
    } = &session[0]
    else {
        panic!()
    };
    assert_eq!(
        (identity.subject.as_str(), target.as_str()),
        ("alice", "app")
    );
    assert_eq!(details["scope"], "connection");
    assert_eq!(details["http_version"], "HTTP/1.1");
    let EventKind::Command {
        command, decision, ..
    } = &session[1]
    else {
        panic!()
    };
    assert_eq!(decision.rule, "app-access");
    assert_eq!(command.summary(), "GET /echo/a%20b?x=1&y=two");
    let Command::Http { details, .. } = command else {
        panic!("{command:?}")
    };
    assert_eq!(details["client_path"], "/app/echo/a%20b");
    assert_eq!(details["header.user-agent"], "curl-test");
    assert_eq!(details["header.x-trace"], "t-1");
    assert!(
        !details
            .keys()
            .any(|k| k.contains("authorization") || k.contains("cookie"))
    );
    let EventKind::CommandResult { completion, .. } = &session[2] else {
        panic!()
    };
    assert_eq!(completion.tag.as_deref(), Some("200"));
    assert!(completion.bytes > 0 && completion.error.is_none());
    assert_eq!(completion.masked.get("json:**.password"), Some(&1));
    assert!(completion.details["response_body"].contains(r#""password":"[masked]""#));
    let EventKind::SessionClosed { reason, commands } = &session[3] else {
        panic!()
    };
    assert_eq!((reason.as_str(), *commands), ("connection ended", 1));

    // The recorded request body of the POST.
    let session = h.session_for("/hdr/echo").await;
    let EventKind::SessionOpened { identity, .. } = &session[0] else {
        panic!()
    };
    assert_eq!(identity.subject, "ci-bot");
    let EventKind::Command {
        command: Command::Http { details, .. },
        ..
    } = &session[1]
    else {
        panic!()
    };
    assert_eq!(details["request_body"], r#"{"q":1}"#);

    // No credential of any side reached the store.
    let store = h.store_bytes();
    assert!(!store.is_empty());
    for secret in [
        h.token.as_str(),
        h.api_key.as_str(),
        UPSTREAM_TOKEN,
        NGINX_PASSWORD,
        HEADER_KEY,
        &basic,
        "client-cookie-value",
        "upstream-password-in-body",
    ] {
        assert!(
            !contains(&store, secret),
            "secret {secret:.6}... found in the recording"
        );
    }
    assert!(
        contains(&store, "curl-test"),
        "the grep does see the store's content"
    );
}

struct Parks;

impl Approver for Parks {
    fn resolve(
        &self,
        _request: &CommandRequest,
        pending: Decision,
    ) -> BoxFuture<'static, portcullis_core::Result<Decision>> {
        Box::pin(async move {
            let mut d = pending;
            d.approval = Some("apr-123".into());
            Ok(d)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_denies_and_reviews() {
    let h = start().await;
    let a = h.get("/app/admin/users").await;
    assert_eq!(a.status, 403);
    let v = a.json();
    assert_eq!(
        (v["rule"].as_str(), v["side"].as_str()),
        (Some("no-admin"), Some("policy"))
    );
    assert_eq!(v["error"], "denied");

    // Templates: /items/{id} allows one segment only.
    assert_eq!(
        h.get("/app/items/42").await.status,
        404,
        "allowed, and the upstream has no such route"
    );
    assert_eq!(h.get("/app/items/42/x").await.json()["rule"], "default");

    // Query rule.
    let a = h
        .request("POST", "/app/echo?dryRun=All", None, &[], "")
        .await;
    assert_eq!(a.json()["rule"], "no-dry-run-posts");

    // Encoded dot segments are refused before policy.
    let a = h.get("/app/echo/%2e%2e/admin/x").await;
    assert_eq!((a.status, a.json()["side"].as_str()), (400, Some("client")));

    // A review with the default approver (none configured) is denied, naming the rule.
    let a = h.request("DELETE", "/app/echo", None, &[], "").await;
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["rule"], "deletes-need-review");

    let events = h.events().await;
    let decisions: Vec<(Verdict, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Command { decision, .. } => Some((decision.verdict, decision.rule.clone())),
            _ => None,
        })
        .collect();
    assert!(decisions.contains(&(Verdict::Deny, "no-admin".into())));
    assert!(decisions.contains(&(Verdict::Deny, "deletes-need-review".into())));
    // Denied requests have a command (with the decision) and no command_result.
    let results = events
        .iter()
        .filter(|e| e.kind.name() == "command_result")
        .count();
    assert_eq!(results, 1, "only /items/42 was forwarded");

    // An approver that parks the request: 202 with the approval request id.
    let h = start_with(|p| p.with_approver(Arc::new(Parks))).await;
    let a = h.request("DELETE", "/app/echo", None, &[], "").await;
    assert_eq!(a.status, 202, "{}", a.body);
    let v = a.json();
    assert_eq!(
        (v["approval"].as_str(), v["rule"].as_str()),
        (Some("apr-123"), Some("deletes-need-review"))
    );
}

/// Sends one request over `conn` (one HTTP/1.1 connection) and returns the status.
async fn on_connection(
    conn: &mut hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>,
    path: &str,
    credential: &str,
) -> u16 {
    let req = http::Request::builder()
        .uri(path)
        .header("host", "gw")
        .header("authorization", format!("Bearer {credential}"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    conn.ready().await.unwrap();
    let resp = conn.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_is_one_session_per_identity() {
    let h = start().await;
    let stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    assert_eq!(on_connection(&mut s, "/app/echo/1", &h.token).await, 200);
    assert_eq!(on_connection(&mut s, "/app/admin/x", &h.token).await, 403);
    assert_eq!(on_connection(&mut s, "/app/echo/2", &h.token).await, 200);
    // Another identity on the same connection gets a session of its own.
    assert_eq!(on_connection(&mut s, "/app/echo/3", &h.api_key).await, 200);
    let alice = h.session_for("/app/echo/2").await;
    let other = h.session_for("/app/echo/3").await;
    let (
        EventKind::SessionOpened { identity: a, .. },
        EventKind::SessionOpened { identity: b, .. },
    ) = (&alice[0], &other[0])
    else {
        panic!("{alice:?} {other:?}")
    };
    assert_ne!(a.subject, b.subject);
    let EventKind::Command { seq, .. } = &alice[1] else {
        panic!()
    };
    assert_eq!(*seq, 3, "third request of alice's session");
    // Nothing is closed while the connection is open; both close with it.
    assert_eq!(alice.len(), 3, "{alice:?}");
    drop(s);
    conn.await.unwrap().unwrap();
    let alice = h.closed_session_for("/app/echo/2").await;
    let other = h.closed_session_for("/app/echo/3").await;
    assert!(matches!(
        alice.last(),
        Some(EventKind::SessionClosed { commands: 3, reason }) if reason == "connection ended"
    ));
    assert!(matches!(
        other.last(),
        Some(EventKind::SessionClosed { commands: 1, .. })
    ));
    // Each forwarded request has its result; the denied one has none.
    let events = h.events().await;
    let session_of_alice = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::SessionOpened { identity, .. } if identity.subject == a.subject))
        .unwrap()
        .session;
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| e.session == session_of_alice)
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        kinds,
        [
            "session_opened",
            "command",
            "command_result",
            "command",
            "command",
            "command_result",
            "session_closed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn masks_json_bodies_and_chunks() {
    let h = start().await;
    let a = h.get("/app/users").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        r#"{"users":[{"name":"Ann","email":"[masked]","phones":[{"n":"1","secret":"s1"}]},{"name":"Bob","email":"[masked]","auth":{"password":"[masked]"}}],"groups":[[{"email":"[masked]"}]],"total":2}"#
    );
    assert!(
        a.headers.get("content-length").is_none(),
        "length changes, so it is not forwarded"
    );

    // The value is split across chunks (one split inside an escape).
    let a = h.get("/app/chunked").await;
    assert_eq!(
        a.body,
        r#"{"users":[{"name":"Ann","email":"[masked]"},{"email":"[masked]"}],"note":"kept"}"#
    );
    let session = h.session_for("/app/chunked").await;
    let EventKind::CommandResult { completion, .. } = &session[2] else {
        panic!()
    };
    assert_eq!(completion.masked.get("json:$.users[*].email"), Some(&2));
    assert_eq!(completion.bytes, a.body.len() as u64);

    // Text passes unchanged (no text masking configured in the pipeline).
    assert_eq!(h.get("/app/text").await.body, "plain text body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_passes_through_and_is_recorded() {
    let h = start().await;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/app/ws", h.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", h.token).parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(
        first,
        Message::Text(format!("auth:Bearer {UPSTREAM_TOKEN}").into())
    );
    for i in 0..20 {
        ws.send(Message::Text(format!("m{i}").into()))
            .await
            .unwrap();
        let got = ws.next().await.unwrap().unwrap();
        assert_eq!(got, Message::Text(format!("echo:m{i}").into()));
    }
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let session = h.closed_session_for("/app/ws").await;
    let names: Vec<_> = session.iter().map(|k| k.name()).collect();
    assert_eq!(
        names,
        [
            "session_opened",
            "command",
            "command_result",
            "session_closed"
        ]
    );
    let EventKind::CommandResult { completion, .. } = &session[2] else {
        panic!()
    };
    assert_eq!(completion.tag.as_deref(), Some("101"));
    assert!(completion.bytes > 20 * 6, "{completion:?}");
    let streamed = |k: &str| completion.details[k].parse::<u64>().unwrap();
    assert!(streamed("client_to_upstream") > 0 && streamed("upstream_to_client") > 0);
    assert_eq!(completion.details["upgraded"], "true");

    // Without a credential the upgrade is refused.
    let req = format!("ws://{}/app/ws", h.addr)
        .into_client_request()
        .unwrap();
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_download_streams_with_flat_memory() {
    let h = start().await;
    // Warm up pools and allocator.
    assert_eq!(h.get("/app/text").await.status, 200);
    let before = rss_kib();
    let req = http::Request::builder()
        .uri(h.url("/app/big"))
        .header("authorization", format!("Bearer {}", h.token))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut total = 0u64;
    let mut peak = before;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            total += data.len() as u64;
            if total % (16 << 20) < data.len() as u64 {
                peak = peak.max(rss_kib());
            }
        }
    }
    let after = rss_kib();
    peak = peak.max(after);
    assert_eq!(total, 200 << 20);
    let growth = peak.saturating_sub(before);
    eprintln!("VmRSS before {before} KiB, peak {peak} KiB, growth {growth} KiB for 200 MiB");
    assert!(growth < 40 * 1024, "memory grew by {growth} KiB");
    let session = h.session_for("/app/big").await;
    let EventKind::CommandResult { completion, .. } = &session[2] else {
        panic!()
    };
    assert_eq!(completion.bytes, 200 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_and_upstream_failures_stay_isolated() {
    let h = start().await;

    // Malformed JWT.
    let a = h
        .request(
            "GET",
            "/app/echo",
            Some("Bearer eyJhbGciOi.not-a-jwt"),
            &[],
            "",
        )
        .await;
    assert_eq!(a.status, 401);
    assert!(a.headers.contains_key("www-authenticate"));
    assert_eq!(
        h.request("GET", "/app/echo", Some(""), &[], "")
            .await
            .status,
        401
    );
    // Both refusals are in the record, with the client address and the reason, and
    // nothing of the presented credential.
    let refused: Vec<String> = h
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::SessionRefused {
                side,
                reason,
                client_addr,
                ..
            } => {
                assert_eq!(side, portcullis_core::Side::Client);
                assert!(client_addr.is_some_and(|a| a.starts_with("127.0.0.1:")));
                Some(reason)
            }
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().all(|r| !r.contains("not-a-jwt")),
        "{refused:?}"
    );

    // Oversized headers: 431.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let big = "a".repeat(20 * 1024);
    s.write_all(format!("GET /app/echo HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // A slow client (slowloris) is disconnected after header_read_timeout (1 s), while
    // another request is served normally meanwhile.
    let slow_addr = h.addr;
    let slow = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(slow_addr).await.unwrap();
        let started = Instant::now();
        let head = b"GET /app/echo HTTP/1.1\r\nhost: x\r\nx-slow: ";
        for b in head {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        let text = match n {
            Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Ok(Err(_)) => Some(String::new()),
            Err(_) => None,
        };
        (started.elapsed(), text)
    });

    // Upstream timeout (request_timeout 500 ms) → 504, upstream reset → 502, dead upstream → 502.
    let t = Instant::now();
    let timeout = tokio::spawn({
        let url_token = (h.url("/app/slow"), h.token.clone());
        async move {
            let req = http::Request::builder()
                .uri(url_token.0)
                .header("authorization", format!("Bearer {}", url_token.1))
                .body(Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = client().request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    });
    let a = h.get("/reset/x").await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(a.json()["side"], "upstream");
    assert_eq!(a.json()["error"], "upstream_failed");
    let a = h.get("/dead/x").await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(a.json()["error"], "upstream_unreachable");

    // Meanwhile other requests are served.
    for _ in 0..5 {
        let a = h.get("/app/echo").await;
        assert_eq!(a.status, 200);
    }
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "normal requests were not held up"
    );

    let (status, body) = timeout.await.unwrap();
    assert_eq!(status, 504);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["side"].as_str(), v["error"].as_str()),
        (Some("upstream"), Some("upstream_timeout"))
    );

    let (elapsed, read) = slow.await.unwrap();
    let text = read.expect("the gateway closed the slow connection");
    assert!(elapsed < Duration::from_secs(3), "closed after {elapsed:?}");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(h.get("/app/echo").await.status, 200);

    // Failures are recorded with the side that failed.
    let session = h.session_for("/reset/x").await;
    let EventKind::CommandResult { completion, .. } = &session[2] else {
        panic!()
    };
    assert_eq!(completion.tag.as_deref(), Some("502"));
    assert!(
        completion
            .error
            .as_deref()
            .unwrap()
            .starts_with("upstream side")
    );
    let session = h.session_for("/app/slow").await;
    let EventKind::CommandResult { completion, .. } = &session[2] else {
        panic!()
    };
    assert_eq!(completion.tag.as_deref(), Some("504"));
}

/// The harness serves on two worker threads: every connection is served whichever worker
/// accepts it, and shutting down stops both and closes the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_serve_every_connection_and_stop_together() {
    let h = start().await;
    let mut served = Vec::new();
    for i in 0..16 {
        // A fresh client each time: a new connection, accepted by either worker.
        let answer = client()
            .request(
                hyper::Request::get(h.url(&format!("/app/echo/{i}")))
                    .header("authorization", format!("Bearer {}", h.token))
                    .body(Full::new(bytes::Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        served.push(answer.status().as_u16());
    }
    assert_eq!(served, [200; 16]);
    let addr = h.addr;
    h.shut_down().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open after shutdown"
    );
}
