//! # portcullis-approvals
//!
//! Just-in-time human approval of commands that Portcullis policy marks for review.
//!
//! - [`ApprovalService`]: the pipeline's [`portcullis_core::Approver`]. A command under
//!   review passes when an active just-in-time grant covers it, or when an unused
//!   one-time approval of the same command exists; otherwise the statement opens (or
//!   joins) an approval request, the client is told where to approve, and the
//!   statement waits up to `wait` for approvers. Rejection, timeout and expiry deny.
//! - The decisions API for the gateway's admin endpoints: [`ApprovalService::list_requests`],
//!   [`ApprovalService::get`], [`ApprovalService::decide`], [`ApprovalService::revoke`],
//!   [`ApprovalService::list_grants`]. Separation of duties, approver groups, one vote per
//!   approver, justifications and quorum ([`portcullis_core::Quorum`]) are enforced here.
//! - Everything is kept in its own sled database (requests, votes, grants), so a restart
//!   loses nothing; every request, vote, final state and grant is recorded as an event
//!   in the requester's session through the gateway's [`portcullis_core::EventSink`].
//! - [`SessionAwareSink`] ends session-only grants when their session closes.
//! - Webhooks ([`WebhookConfig`]) notify approvers in JSON or Slack format, from a
//!   background task with retries; the data path never waits for them.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_approvals::{ApprovalConfig, ApprovalService, RequestFilter};
//! use portcullis_core::*;
//! use portcullis_recording::{Recorder, RecordingConfig};
//! use tower::{Service, ServiceExt};
//!
//! /// Every command needs one approval from `dba`.
//! struct ReviewAll;
//! impl CommandPolicy for ReviewAll {
//!     fn decide(&self, _: &SessionContext, _: &Command) -> Result<Decision> {
//!         let mut d = Decision::new(Verdict::Review, "prod-writes", "writes on production");
//!         d.review = Some(ReviewRequirement { approvers: vec!["dba".into()], quorum: Quorum::Count(1) });
//!         Ok(d)
//!     }
//! }
//!
//! fn identity(subject: &str, group: &str) -> Identity {
//!     Identity { subject: subject.into(), groups: vec![group.into()], method: AuthMethod::Jwt, issuer: None, expires_at: None }
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let recorder = Arc::new(Recorder::open(&RecordingConfig::new(dir.path().join("rec"))).unwrap());
//! let approvals = ApprovalService::open(&ApprovalConfig::new(dir.path().join("approvals")), recorder.clone())?;
//! let mut pipeline = Pipeline::new(recorder.clone())
//!     .with_policy(Arc::new(ReviewAll))
//!     .with_approver(Arc::new(approvals.clone()))
//!     .build();
//!
//! let session = Arc::new(SessionContext {
//!     id: SessionId::new(),
//!     identity: identity("alice", "dev"),
//!     target: Arc::new(Target { name: "orders".into(), protocol: Protocol::Postgres,
//!         upstream: "127.0.0.1:5432".into(), allowed_groups: vec!["dev".into()] }),
//!     client_addr: None,
//!     opened_at: Timestamp::now(),
//! });
//! let command = Command::Sql { text: "DELETE FROM orders WHERE id = 7".into(), via: SqlVia::Simple };
//! let waiting = tokio::spawn(pipeline.ready().await.unwrap().call(CommandRequest::new(session, 1, command)));
//!
//! // An approver (authenticated by the admin API) finds the request and approves it.
//! let request = loop {
//!     if let Some(r) = approvals.list_requests(&RequestFilter::pending())?.pop() { break r; }
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! };
//! approvals.decide(&request.id, &identity("bob", "dba"), true, "ticket OPS-42", None).await?;
//!
//! let response = waiting.await.unwrap().unwrap();
//! assert!(response.forward());
//! assert_eq!(response.decision.approval.as_deref(), Some(request.id.as_str()));
//! # Ok::<(), portcullis_approvals::ApprovalError>(()) }).unwrap();
//! ```

mod config;
mod error;
mod model;
mod service;
mod sink;
mod store;
mod webhook;

pub use config::{
    ApprovalConfig, MAX_GRANT_LIMIT, MAX_REQUEST_TTL, MAX_WAIT, MAX_WEBHOOK_ATTEMPTS,
    WebhookConfig, WebhookEvent, WebhookFormat,
};
pub use error::ApprovalError;
pub use model::{
    GrantEnd, GrantSpec, GrantView, RequestFilter, RequestState, RequestView, StateFilter, Vote,
    fingerprint,
};
pub use service::{ApprovalService, ApprovalStats, MAX_LISTED_GRANTS, SWEEP_INTERVAL, SweepReport};
pub use sink::SessionAwareSink;
