//! Webhook notifications to a local receiver: JSON with retry, Slack format, filters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use portcullis_approvals::{WebhookConfig, WebhookEvent, WebhookFormat};
use portcullis_core::Quorum;

fn hook(url: &str, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig {
        url: portcullis_core::Secret::new(url.to_string()),
        format,
        events: None,
        attempts: 4,
        initial_backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_webhook_is_retried_after_a_500() {
    let receiver = Receiver::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 10_000);
    c.webhooks = vec![hook(&receiver.url, WebhookFormat::Json)];
    let h = Harness::with_config(dir, c, ReviewPolicy::new(&["dba"], Quorum::Count(1))).await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "DELETE FROM orders WHERE id = 7");
    let request = h.pending(1).await.pop().unwrap();

    let body = receiver.wait_for(|b| b["event"] == "requested").await;
    assert_eq!(body["id"], request.id);
    assert_eq!(body["requester"], "alice");
    assert_eq!(body["target"], "orders");
    assert_eq!(body["command"], "DELETE FROM orders WHERE id = 7");
    assert_eq!(body["rule"], "prod-review");
    assert_eq!(body["reason"], "changes on production");
    assert_eq!(body["approvers"], serde_json::json!(["dba"]));
    assert_eq!(body["quorum"], serde_json::json!({"count": 1}));
    assert_eq!(body["state"], "pending");
    assert_eq!(body["votes"], serde_json::json!([]));
    assert_eq!(
        body["approve_url"],
        format!("http://127.0.0.1:9080/v1/approvals/{}/approve", request.id)
    );
    // The first post was answered 500 and retried.
    assert!(h.approvals.stats().webhook_failed_attempts >= 1);

    h.approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "ticket OPS-42",
            None,
        )
        .await
        .unwrap();
    assert!(waiting.await.unwrap().forward());
    let decided = receiver.wait_for(|b| b["event"] == "decided").await;
    assert_eq!(decided["votes"][0]["approver"], "bob");
    assert_eq!(decided["votes"][0]["justification"], "ticket OPS-42");
    receiver
        .wait_for(|b| b["event"] == "closed" && b["state"] == "used")
        .await;

    // requested, decided, closed (approved), closed (used): the receiver may see a
    // body just before the deliverer sees its answer, so wait for the count.
    for _ in 0..200 {
        if h.approvals.stats().webhooks_delivered >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = h.approvals.stats();
    assert_eq!(stats.webhook_failed_attempts, 1);
    assert_eq!(stats.webhooks_given_up, 0);
    assert_eq!(stats.webhooks_dropped, 0);
    assert_eq!(stats.webhooks_queued, 4);
    assert_eq!(stats.webhooks_delivered, 4);
    assert_eq!(
        receiver.posts.load(Ordering::SeqCst) as u64,
        stats.webhooks_delivered + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_webhook_with_event_filter() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 200);
    let mut slack = hook(&receiver.url, WebhookFormat::Slack);
    slack.events = Some(vec![WebhookEvent::Requested]);
    c.webhooks = vec![slack];
    let h = Harness::with_config(
        dir,
        c,
        ReviewPolicy::new(&["dba", "sre"], Quorum::EachGroup),
    )
    .await;
    let alice = session("alice");
    h.run(&alice, 1, "DELETE FROM orders WHERE note = '<b>'")
        .await;
    let request = h.pending(1).await.pop().unwrap();

    let body = receiver.wait_for(|b| b.get("text").is_some()).await;
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 1, "Slack bodies carry only text: {body}");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("*alice*"), "{text}");
    assert!(text.contains("*orders*"), "{text}");
    assert!(text.contains("&lt;b&gt;"), "markup is escaped: {text}");
    assert!(
        text.contains("one approval from each group from dba, sre"),
        "{text}"
    );
    assert!(
        text.contains(&format!("`portcullis approvals approve {}`", request.id)),
        "{text}"
    );

    // Only `requested` is subscribed: a rejection sends nothing more.
    h.approvals
        .decide(&request.id, &identity("bob", &["dba"]), false, "no", None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.bodies.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_never_blocks_the_statement() {
    // Nothing listens on this port; every attempt fails and the delivery is given up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 10_000);
    let mut dead = hook(&url, WebhookFormat::Json);
    dead.attempts = 2;
    dead.initial_backoff = Duration::from_millis(10);
    c.webhooks = vec![dead];
    let h = Harness::with_config(dir, c, ReviewPolicy::new(&["dba"], Quorum::Count(1))).await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "DELETE FROM orders");
    let request = h.pending(1).await.pop().unwrap();
    h.approvals
        .decide(&request.id, &identity("bob", &["dba"]), true, "ok", None)
        .await
        .unwrap();
    assert!(waiting.await.unwrap().forward());
    for _ in 0..200 {
        if h.approvals.stats().webhooks_given_up >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = h.approvals.stats();
    assert!(stats.webhooks_given_up >= 1, "{stats:?}");
    assert_eq!(stats.webhooks_delivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_notifications() {
    // A receiver that holds every post for a while keeps all delivery slots busy.
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::http::StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 100);
    c.webhooks = vec![hook(&url, WebhookFormat::Json)];
    c.webhook_queue = 1;
    let h = Harness::with_config(dir, c, ReviewPolicy::new(&["dba"], Quorum::Count(1))).await;
    let alice = session("alice");
    let started = std::time::Instant::now();
    let statements: Vec<_> = (0..40)
        .map(|i| h.spawn(&alice, i + 1, &format!("DELETE FROM orders WHERE id = {i}")))
        .collect();
    for s in statements {
        assert_eq!(
            s.await.unwrap().decision.verdict,
            portcullis_core::Verdict::Deny
        );
    }
    // Statements waited only for their own `wait`, never for the webhook.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let stats = h.approvals.stats();
    assert_eq!(
        stats.webhooks_queued + stats.webhooks_dropped,
        40,
        "{stats:?}"
    );
    assert!(stats.webhooks_dropped > 0, "{stats:?}");
}
