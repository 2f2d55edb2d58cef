//! Review → approve / reject / timeout through a real pipeline and recorder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use portcullis_approvals::{ApprovalError, GrantSpec, RequestFilter, RequestState};
use portcullis_core::{EventKind, Quorum, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_while_waiting() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(1)), 10_000).await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "DELETE FROM orders WHERE id = 7");
    let request = h.pending(1).await.pop().unwrap();
    assert_eq!(request.requester, "alice");
    assert_eq!(request.target, "orders");
    assert_eq!(request.kinds, ["write"]);
    assert_eq!(request.state, RequestState::Pending);

    // The client was told where to approve.
    let notice = h.first_notice().await;
    assert!(
        notice.contains("rule prod-review: changes on production"),
        "{notice}"
    );
    assert!(
        notice.contains(&format!(
            "Request {} waits for 1 approval from dba",
            request.id
        )),
        "{notice}"
    );
    assert!(
        notice.contains(&format!("portcullis approvals approve {}", request.id)),
        "{notice}"
    );
    assert!(
        notice.contains(&format!(
            "POST http://127.0.0.1:9080/v1/approvals/{}/approve",
            request.id
        )),
        "{notice}"
    );
    assert!(notice.ends_with("Waiting up to 10s."), "{notice}");

    let view = h
        .approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "ticket OPS-42",
            None,
        )
        .await
        .unwrap();
    assert_eq!(view.state, RequestState::Approved);

    let response = waiting.await.unwrap();
    assert!(response.forward());
    assert_eq!(
        response.decision.approval.as_deref(),
        Some(request.id.as_str())
    );
    assert!(response.decision.reason.contains("approved by bob"));
    assert_eq!(
        h.approvals.get(&request.id).unwrap().state,
        RequestState::Used
    );

    let events = h.events(alice.id);
    assert_eq!(
        h.event_names(alice.id),
        [
            "approval_requested",
            "approval_decided",
            "approval_closed",
            "approval_closed",
            "command"
        ]
    );
    assert_eq!(closed_outcomes(&events), ["approved", "used"]);
    match &events[1] {
        EventKind::ApprovalDecided {
            request: id,
            approver,
            approved,
            justification,
        } => {
            assert_eq!(id, &request.id);
            assert_eq!(approver, "bob");
            assert!(approved);
            assert_eq!(justification, "ticket OPS-42");
        }
        other => panic!("{other:?}"),
    }
    match &events[4] {
        EventKind::Command { decision, .. } => {
            assert_eq!(decision.verdict, Verdict::Allow);
            assert_eq!(decision.approval.as_deref(), Some(request.id.as_str()));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_denies_naming_the_approver() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(2)), 10_000).await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "DROP TABLE orders");
    let request = h.pending(1).await.pop().unwrap();
    h.approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            false,
            "not during the freeze",
            None,
        )
        .await
        .unwrap();
    let response = waiting.await.unwrap();
    assert!(!response.forward());
    assert_eq!(response.decision.verdict, Verdict::Deny);
    assert!(
        response
            .decision
            .reason
            .contains("rejected by bob: not during the freeze"),
        "{}",
        response.decision.reason
    );
    assert_eq!(
        h.approvals.get(&request.id).unwrap().state,
        RequestState::Rejected
    );
    // Closed requests cannot be decided again.
    let err = h
        .approvals
        .decide(&request.id, &identity("carol", &["dba"]), true, "ok", None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ApprovalError::AlreadyDecided {
            state: RequestState::Rejected,
            ..
        }
    ));
    assert_eq!(err.http_status(), 409);
    let events = h.events(alice.id);
    assert_eq!(closed_outcomes(&events), ["rejected"]);
    assert!(matches!(
        events.last().unwrap(),
        EventKind::Command { decision, .. } if decision.verdict == Verdict::Deny
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_leaves_the_request_open_and_a_retry_passes_once_approved() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(1)), 1000).await;
    let alice = session("alice");
    let text = "UPDATE orders SET state = 'paid' WHERE id = 9";

    let started = Instant::now();
    let first = h.run(&alice, 1, text).await;
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(first.decision.verdict, Verdict::Deny);
    assert!(
        first.decision.reason.contains("stays open"),
        "{}",
        first.decision.reason
    );
    let request = h.pending(1).await.pop().unwrap();
    assert_eq!(
        first.decision.approval.as_deref(),
        Some(request.id.as_str())
    );

    // A retry before approval joins the same request.
    let again = h.run(&alice, 2, text).await;
    assert_eq!(again.decision.verdict, Verdict::Deny);
    assert_eq!(h.pending(1).await.len(), 1);

    h.approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "approved in standup",
            None,
        )
        .await
        .unwrap();

    // The retry passes at once.
    let started = Instant::now();
    let retry = h.run(&alice, 3, text).await;
    assert!(retry.forward());
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(
        retry.decision.approval.as_deref(),
        Some(request.id.as_str())
    );

    // The approval was for one use: the next retry needs a new approval.
    let second = h.run(&alice, 4, text).await;
    assert_eq!(second.decision.verdict, Verdict::Deny);
    let open = h
        .approvals
        .list_requests(&RequestFilter::pending())
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_ne!(open[0].id, request.id);
    assert_eq!(
        h.approvals.get(&request.id).unwrap().state,
        RequestState::Used
    );

    let all = h.approvals.list_requests(&RequestFilter::all()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, open[0].id, "newest first");

    let events = h.events(alice.id);
    let requested = events
        .iter()
        .filter(|e| matches!(e, EventKind::ApprovalRequested { .. }))
        .count();
    assert_eq!(requested, 2);
    assert_eq!(closed_outcomes(&events), ["approved", "used"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separation_of_duties_and_input_checks() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(1)), 200).await;
    // Alice is a dba herself, and still cannot approve her own request.
    let mut alice = (*session("alice")).clone();
    alice.identity = identity("alice", &["dev", "dba"]);
    let alice = std::sync::Arc::new(alice);
    h.run(&alice, 1, "DELETE FROM orders").await;
    let request = h.pending(1).await.pop().unwrap();

    let err = h
        .approvals
        .decide(&request.id, &alice.identity, true, "mine", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::SelfApproval { .. }), "{err}");
    assert_eq!(err.http_status(), 403);

    let err = h
        .approvals
        .decide(
            &request.id,
            &identity("carol", &["dev"]),
            true,
            "looks fine",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::NotApprover { .. }), "{err}");
    assert_eq!(err.http_status(), 403);

    let bob = identity("bob", &["dba"]);
    let err = h
        .approvals
        .decide(&request.id, &bob, true, "   ", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::MissingJustification));
    assert_eq!(err.http_status(), 400);

    let too_long = GrantSpec {
        duration: Duration::from_secs(9 * 3600),
        kinds: vec![],
        session_only: false,
    };
    let err = h
        .approvals
        .decide(&request.id, &bob, true, "ok", Some(too_long))
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::BadGrant(_)), "{err}");
    assert_eq!(err.http_status(), 400);

    let grant = GrantSpec {
        duration: Duration::from_secs(60),
        kinds: vec![],
        session_only: false,
    };
    let err = h
        .approvals
        .decide(&request.id, &bob, false, "no", Some(grant))
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::BadGrant(_)), "{err}");

    let err = h
        .approvals
        .decide("no-such-request", &bob, true, "ok", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::NotFound(_)));
    assert_eq!(err.http_status(), 404);
    assert_eq!(
        h.approvals
            .get("no-such-request")
            .unwrap_err()
            .http_status(),
        404
    );

    // None of the refused attempts left a vote or an event.
    assert!(h.approvals.get(&request.id).unwrap().votes.is_empty());
    assert!(!h.event_names(alice.id).contains(&"approval_decided"));

    h.approvals
        .decide(&request.id, &bob, true, "ok", None)
        .await
        .unwrap();
    let err = h
        .approvals
        .decide(
            &request.id,
            &identity("dan", &["dba"]),
            true,
            "me too",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ApprovalError::AlreadyDecided {
            state: RequestState::Approved,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_of_two_distinct_approvers() {
    let h = Harness::new(ReviewPolicy::new(&["dba", "sre"], Quorum::Count(2)), 10_000).await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "TRUNCATE orders");
    let request = h.pending(1).await.pop().unwrap();

    let bob = identity("bob", &["dba"]);
    let view = h
        .approvals
        .decide(&request.id, &bob, true, "checked backup", None)
        .await
        .unwrap();
    assert_eq!(view.state, RequestState::Pending);
    assert_eq!(view.progress(), "1 of 2 approvals");
    let err = h
        .approvals
        .decide(&request.id, &bob, true, "really", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::AlreadyVoted { .. }));
    assert_eq!(err.http_status(), 409);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "one approval must not be enough");

    h.approvals
        .decide(
            &request.id,
            &identity("carol", &["sre"]),
            true,
            "confirmed",
            None,
        )
        .await
        .unwrap();
    let response = waiting.await.unwrap();
    assert!(response.forward());
    assert!(
        response.decision.reason.contains("approved by bob, carol"),
        "{}",
        response.decision.reason
    );
    let decided = h
        .events(alice.id)
        .iter()
        .filter(|e| matches!(e, EventKind::ApprovalDecided { .. }))
        .count();
    assert_eq!(decided, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_needs_one_approver_per_group() {
    let h = Harness::new(
        ReviewPolicy::new(&["dba", "security"], Quorum::EachGroup),
        10_000,
    )
    .await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "ALTER TABLE orders DROP COLUMN note");
    let request = h.pending(1).await.pop().unwrap();

    // Dave is in both groups: he counts for one of them only.
    let view = h
        .approvals
        .decide(
            &request.id,
            &identity("dave", &["dba", "security"]),
            true,
            "reviewed",
            None,
        )
        .await
        .unwrap();
    assert_eq!(view.state, RequestState::Pending);
    assert_eq!(view.progress(), "1 of 2 groups approved");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());

    // Erin covers dba, so Dave's vote counts for security.
    let view = h
        .approvals
        .decide(
            &request.id,
            &identity("erin", &["dba"]),
            true,
            "reviewed too",
            None,
        )
        .await
        .unwrap();
    assert_eq!(view.state, RequestState::Approved);
    assert!(waiting.await.unwrap().forward());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_without_requirement_is_denied() {
    let mut policy = ReviewPolicy::new(&["dba"], Quorum::Count(1));
    policy.with_requirement = false;
    let h = Harness::new(policy, 10_000).await;
    let alice = session("alice");
    let started = Instant::now();
    let response = h.run(&alice, 1, "DELETE FROM orders").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(response.decision.verdict, Verdict::Deny);
    assert!(response.decision.reason.contains("no approver groups"));
    assert!(
        h.approvals
            .list_requests(&RequestFilter::all())
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.event_names(alice.id), ["command"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_cannot_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 200);
    c.request_ttl = Duration::from_secs(1);
    let h = Harness::with_config(dir, c, ReviewPolicy::new(&["dba"], Quorum::Count(1))).await;
    let alice = session("alice");
    h.run(&alice, 1, "DELETE FROM orders").await;
    let request = h.pending(1).await.pop().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = h
        .approvals
        .decide(&request.id, &identity("bob", &["dba"]), true, "late", None)
        .await
        .unwrap_err();
    // Either the sweeper or the decision itself found it lapsed.
    assert_eq!(err.http_status(), 409, "{err}");
    assert_eq!(
        h.approvals.get(&request.id).unwrap().state,
        RequestState::Expired
    );
    assert!(
        h.approvals
            .list_requests(&RequestFilter::pending())
            .unwrap()
            .is_empty()
    );
    assert_eq!(closed_outcomes(&h.events(alice.id)), ["expired"]);
}
