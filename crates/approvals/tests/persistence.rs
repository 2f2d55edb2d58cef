//! A restart loses no pending request, vote, decision or grant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use portcullis_approvals::{ApprovalService, GrantSpec, RequestFilter, RequestState};
use portcullis_core::{CommandRequest, Quorum, Verdict};
use portcullis_recording::{Recorder, RecordingConfig};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_votes_and_grants_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let recorder =
        Arc::new(Recorder::open(&RecordingConfig::new(dir.path().join("recording"))).unwrap());
    let cfg = config(dir.path(), 300);
    let policy = || ReviewPolicy::new(&["dba"], Quorum::Count(2));
    let alice = session("alice");
    let run = |p: portcullis_core::BoxPipeline, seq: u64, text: &'static str| {
        let s = alice.clone();
        async move {
            p.oneshot(CommandRequest::new(s, seq, sql(text)))
                .await
                .unwrap()
        }
    };

    let (pending_id, grant_id) = {
        let approvals = ApprovalService::open(&cfg, recorder.clone()).unwrap();
        let p = pipeline(&recorder, &approvals, policy());

        // A request that gets a grant.
        assert_eq!(
            run(p.clone(), 1, "SELECT * FROM orders")
                .await
                .decision
                .verdict,
            Verdict::Deny
        );
        let granted = approvals
            .list_requests(&RequestFilter::pending())
            .unwrap()
            .pop()
            .unwrap();
        let spec = GrantSpec {
            duration: Duration::from_secs(3600),
            kinds: vec!["read".into()],
            session_only: false,
        };
        approvals
            .decide(
                &granted.id,
                &identity("bob", &["dba"]),
                true,
                "reads ok",
                Some(spec.clone()),
            )
            .await
            .unwrap();
        let view = approvals
            .decide(
                &granted.id,
                &identity("carol", &["dba"]),
                true,
                "reads ok",
                Some(spec),
            )
            .await
            .unwrap();
        let grant_id = view.grant.unwrap();

        // A request left pending with one vote.
        assert_eq!(
            run(p.clone(), 2, "DELETE FROM orders")
                .await
                .decision
                .verdict,
            Verdict::Deny
        );
        let pending = approvals
            .list_requests(&RequestFilter::pending())
            .unwrap()
            .pop()
            .unwrap();
        approvals
            .decide(
                &pending.id,
                &identity("bob", &["dba"]),
                true,
                "first vote",
                None,
            )
            .await
            .unwrap();
        (pending.id, grant_id)
        // The service and the pipeline drop here: the database closes.
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let approvals = ApprovalService::open(&cfg, recorder.clone()).unwrap();
    let p = pipeline(&recorder, &approvals, policy());
    let pending = approvals.list_requests(&RequestFilter::pending()).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, pending_id);
    assert_eq!(pending[0].votes.len(), 1);
    assert_eq!(pending[0].votes[0].approver, "bob");

    // The vote survived: Bob cannot vote again; Carol completes the quorum.
    assert!(
        approvals
            .decide(&pending_id, &identity("bob", &["dba"]), true, "again", None)
            .await
            .is_err()
    );
    let view = approvals
        .decide(
            &pending_id,
            &identity("carol", &["dba"]),
            true,
            "second vote",
            None,
        )
        .await
        .unwrap();
    assert_eq!(view.state, RequestState::Approved);
    let retry = run(p.clone(), 3, "DELETE FROM orders").await;
    assert!(retry.forward());
    assert_eq!(
        retry.decision.approval.as_deref(),
        Some(pending_id.as_str())
    );

    // The grant survived.
    let grants = approvals.list_grants(true).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].id, grant_id);
    let read = run(p.clone(), 4, "SELECT id FROM orders").await;
    assert!(read.forward());
    assert_eq!(read.decision.approval.as_deref(), Some(grant_id.as_str()));

    let outcomes = closed_outcomes(
        &recorder
            .store()
            .session_events(alice.id)
            .unwrap()
            .map(|r| r.unwrap().event.kind)
            .collect::<Vec<_>>(),
    );
    assert_eq!(outcomes, ["approved", "approved", "used"]);
}
