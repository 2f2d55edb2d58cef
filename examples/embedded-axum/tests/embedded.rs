#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Runs the embedded service on a real socket and checks identity, policy, masking and recording.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis_core::EventKind;

async fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut b = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .request(b.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protects_its_own_routes() {
    let dir = tempfile::tempdir().unwrap();
    let service = portcullis_example_embedded_axum::build(&dir.path().join("rec"))
        .await
        .unwrap();
    let token = service.token_for("alice", &["staff"]).unwrap();
    let outsider = service.token_for("mallory", &["guests"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = service.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let (status, body) = call(addr, "GET", "/orders/7", Some(&token)).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["viewer"], "alice");
    assert_eq!(v["customer"]["email"], "[masked]");
    assert_eq!(v["payment"]["card"], "[masked]");
    assert_eq!(v["payment"]["amount"], 42);

    assert_eq!(call(addr, "GET", "/orders/7", None).await.0, 401);
    assert_eq!(
        call(addr, "GET", "/orders/7", Some("not.a.jwt")).await.0,
        401
    );
    let (status, body) = call(addr, "GET", "/admin/stats", Some(&token)).await;
    assert_eq!(status, 403);
    assert!(body.contains("no-admin"), "{body}");
    let (status, body) = call(addr, "DELETE", "/orders/7", Some(&token)).await;
    assert_eq!(status, 403);
    assert!(body.contains("deletes-need-review"), "{body}");
    let (status, body) = call(addr, "GET", "/orders/7", Some(&outsider)).await;
    assert_eq!(status, 403);
    assert!(body.contains("target-access"), "{body}");

    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    service.recorder.flush().await.unwrap();
    let events: Vec<_> = service
        .recorder
        .store()
        .scan(1, 1000)
        .unwrap()
        .flat_map(|r| {
            // A command recorded with its result reads as the command, then the result.
            let (event, result) = r.unwrap().event.split_result();
            std::iter::once(event.kind).chain(result.map(|r| r.kind))
        })
        .collect();
    let forwarded = events
        .iter()
        .filter(|k| matches!(k, EventKind::CommandResult { .. }))
        .count();
    assert_eq!(forwarded, 1);
    let recorded_body = events.iter().find_map(|k| match k {
        EventKind::CommandResult { completion, .. } => completion.details.get("response_body"),
        _ => None,
    });
    let recorded_body = recorded_body.unwrap();
    assert!(recorded_body.contains("[masked]") && !recorded_body.contains("ann@example.com"));
    assert!(
        events
            .iter()
            .any(|k| matches!(k, EventKind::SessionRefused { .. }))
    );
}
