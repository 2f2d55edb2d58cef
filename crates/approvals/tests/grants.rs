//! Just-in-time grants: by kinds, expiry, revocation, session-only grants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use portcullis_approvals::{ApprovalError, GrantSpec, RequestState, SessionAwareSink};
use portcullis_core::{Event, EventKind, EventSink, Quorum, Verdict};

fn spec(ms: u64, kinds: &[&str], session_only: bool) -> GrantSpec {
    GrantSpec {
        duration: Duration::from_millis(ms),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        session_only,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_by_kinds_is_used_then_expires() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(1)), 1000).await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "UPDATE orders SET state = 'x' WHERE id = 1");
    let request = h.pending(1).await.pop().unwrap();
    let view = h
        .approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "incident 17",
            Some(spec(3000, &["read", "write"], false)),
        )
        .await
        .unwrap();
    let grant_id = view.grant.clone().unwrap();
    assert_eq!(view.state, RequestState::Approved);
    let first = waiting.await.unwrap();
    assert!(first.forward());
    assert_eq!(
        first.decision.approval.as_deref(),
        Some(request.id.as_str())
    );

    // Other writes and reads, from another session of Alice, pass at once under the grant.
    let later = session("alice");
    let started = Instant::now();
    let write = h.run(&later, 1, "DELETE FROM orders WHERE id = 2").await;
    let read = h.run(&later, 2, "SELECT * FROM orders").await;
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(write.forward() && read.forward());
    assert_eq!(write.decision.approval.as_deref(), Some(grant_id.as_str()));
    assert!(write.decision.reason.contains("just-in-time grant"));

    // DDL is not covered; nor is another subject.
    let ddl = h.run(&later, 3, "DROP TABLE orders").await;
    assert_eq!(ddl.decision.verdict, Verdict::Deny);
    let mallory = session("mallory");
    assert_eq!(
        h.run(&mallory, 1, "DELETE FROM orders WHERE id = 2")
            .await
            .decision
            .verdict,
        Verdict::Deny
    );

    let active = h.approvals.list_grants(true).unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].kinds, ["read", "write"]);
    assert_eq!(active[0].issued_by, ["bob"]);

    // After its end it covers nothing, whether or not the sweeper has run yet.
    let remaining = Duration::from_micros(
        (active[0].expires_at.0 - portcullis_core::Timestamp::now().0).max(0) as u64,
    );
    tokio::time::sleep(remaining + Duration::from_millis(20)).await;
    let expired = h.run(&later, 4, "DELETE FROM orders WHERE id = 3").await;
    assert_eq!(expired.decision.verdict, Verdict::Deny);
    assert_ne!(
        expired.decision.approval.as_deref(),
        Some(grant_id.as_str())
    );

    // The sweeper records the end in the session that asked.
    let ended = h
        .wait_event(alice.id, |e| matches!(e, EventKind::GrantEnded { .. }))
        .await;
    assert!(
        matches!(ended, EventKind::GrantEnded { ref grant, ref reason, by: None } if *grant == grant_id && reason == "expired")
    );
    assert!(h.approvals.list_grants(true).unwrap().is_empty());
    assert!(h.approvals.get_grant(&grant_id).unwrap().ended.is_some());
    let issued = h.events(alice.id).into_iter().find_map(|e| match e {
        EventKind::GrantIssued {
            grant,
            request: r,
            subject,
            target,
            kinds,
            session_only,
            ..
        } => Some((grant, r, subject, target, kinds, session_only)),
        _ => None,
    });
    assert_eq!(
        issued,
        Some((
            grant_id,
            request.id,
            "alice".into(),
            "orders".into(),
            vec!["read".into(), "write".into()],
            false
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_without_kinds_covers_the_approved_command_only() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(1)), 300).await;
    let alice = session("alice");
    let text = "DELETE FROM orders WHERE created < now() - interval '1 year'";
    h.run(&alice, 1, text).await;
    let request = h.pending(1).await.pop().unwrap();
    let view = h
        .approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "cleanup job",
            Some(spec(60_000, &[], false)),
        )
        .await
        .unwrap();
    let grant = view.grant.unwrap();
    for seq in 2..4 {
        let r = h.run(&alice, seq, text).await;
        assert!(r.forward());
        assert_eq!(r.decision.approval.as_deref(), Some(grant.as_str()));
    }
    assert_eq!(
        h.run(&alice, 5, "DELETE FROM orders")
            .await
            .decision
            .verdict,
        Verdict::Deny
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_grant_stops_covering() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(1)), 300).await;
    let alice = session("alice");
    h.run(&alice, 1, "INSERT INTO orders VALUES (1)").await;
    let request = h.pending(1).await.pop().unwrap();
    let grant = h
        .approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "migration",
            Some(spec(3_600_000, &["write"], false)),
        )
        .await
        .unwrap()
        .grant
        .unwrap();
    assert!(
        h.run(&alice, 2, "INSERT INTO orders VALUES (2)")
            .await
            .forward()
    );

    let admin = identity("root", &["admins"]);
    let err = h.approvals.revoke(&grant, &admin, "").await.unwrap_err();
    assert!(matches!(err, ApprovalError::MissingJustification));
    let view = h
        .approvals
        .revoke(&grant, &admin, "migration finished")
        .await
        .unwrap();
    let end = view.ended.unwrap();
    assert_eq!(end.reason, "revoked");
    assert_eq!(end.by.as_deref(), Some("root"));
    assert_eq!(end.note.as_deref(), Some("migration finished"));

    assert_eq!(
        h.run(&alice, 3, "INSERT INTO orders VALUES (3)")
            .await
            .decision
            .verdict,
        Verdict::Deny
    );
    let err = h
        .approvals
        .revoke(&grant, &admin, "again")
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::GrantEnded(_)));
    assert_eq!(err.http_status(), 409);
    assert_eq!(
        h.approvals
            .revoke("nope", &admin, "x")
            .await
            .unwrap_err()
            .http_status(),
        404
    );

    let ended: Vec<_> = h
        .events(alice.id)
        .into_iter()
        .filter_map(|e| match e {
            EventKind::GrantEnded { grant, reason, by } => Some((grant, reason, by)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        [(grant, "revoked".to_string(), Some("root".to_string()))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_only_grant_ends_with_its_session() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(1)), 300).await;
    let sink = SessionAwareSink::new(h.recorder.clone(), h.approvals.clone());
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "UPDATE orders SET state = 'x'");
    let request = h.pending(1).await.pop().unwrap();
    let grant = h
        .approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "pairing with alice",
            Some(spec(3_600_000, &["write"], true)),
        )
        .await
        .unwrap()
        .grant
        .unwrap();
    assert!(waiting.await.unwrap().forward());
    assert_eq!(
        h.approvals.get_grant(&grant).unwrap().session,
        Some(alice.id)
    );

    // Covers Alice's session, and not another session of hers.
    let same = h.run(&alice, 2, "DELETE FROM orders WHERE id = 1").await;
    assert_eq!(same.decision.approval.as_deref(), Some(grant.as_str()));
    let other = session("alice");
    assert_eq!(
        h.run(&other, 1, "DELETE FROM orders WHERE id = 1")
            .await
            .decision
            .verdict,
        Verdict::Deny
    );

    // Other events pass through the wrapper untouched.
    sink.record(Event::now(
        other.id,
        EventKind::SessionClosed {
            reason: "client terminated".into(),
            commands: 1,
        },
    ))
    .await
    .unwrap();
    assert_eq!(h.approvals.list_grants(true).unwrap().len(), 1);

    sink.record(Event::now(
        alice.id,
        EventKind::SessionClosed {
            reason: "client terminated".into(),
            commands: 2,
        },
    ))
    .await
    .unwrap();
    assert!(h.approvals.list_grants(true).unwrap().is_empty());
    let end = h.approvals.get_grant(&grant).unwrap().ended.unwrap();
    assert_eq!(end.reason, "session_closed");
    let names = h.event_names(alice.id);
    assert_eq!(&names[names.len() - 2..], ["session_closed", "grant_ended"]);
    assert!(matches!(
        h.events(alice.id).last().unwrap(),
        EventKind::GrantEnded { reason, .. } if reason == "session_closed"
    ));
    // A grant ends once.
    assert_eq!(h.approvals.session_closed(alice.id).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_needs_every_approver_to_agree() {
    let h = Harness::new(ReviewPolicy::new(&["dba"], Quorum::Count(2)), 10_000).await;
    let alice = session("alice");
    let waiting = h.spawn(&alice, 1, "UPDATE orders SET x = 1");
    let request = h.pending(1).await.pop().unwrap();
    h.approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "ok",
            Some(spec(3_600_000, &["read", "write"], false)),
        )
        .await
        .unwrap();
    let view = h
        .approvals
        .decide(
            &request.id,
            &identity("carol", &["dba"]),
            true,
            "ok",
            Some(spec(600_000, &["write", "ddl"], false)),
        )
        .await
        .unwrap();
    assert!(waiting.await.unwrap().forward());
    let g = h
        .approvals
        .get_grant(view.grant.as_deref().unwrap())
        .unwrap();
    assert_eq!(g.kinds, ["write"], "only kinds both approvers named");
    let lasts = g.expires_at.0 - g.issued_at.0;
    assert_eq!(lasts, 600_000_000, "the shorter duration");
    assert_eq!(g.issued_by, ["bob", "carol"]);

    // When one approver gives a plain approval, the result is a one-time approval.
    let waiting = h.spawn(&alice, 2, "DROP TABLE orders");
    let request = h.pending(1).await.pop().unwrap();
    h.approvals
        .decide(
            &request.id,
            &identity("bob", &["dba"]),
            true,
            "ok",
            Some(spec(3_600_000, &["ddl"], false)),
        )
        .await
        .unwrap();
    let view = h
        .approvals
        .decide(
            &request.id,
            &identity("carol", &["dba"]),
            true,
            "once",
            None,
        )
        .await
        .unwrap();
    assert!(view.grant.is_none());
    assert!(waiting.await.unwrap().forward());
    assert_eq!(
        h.approvals.get(&request.id).unwrap().state,
        RequestState::Used
    );
}
