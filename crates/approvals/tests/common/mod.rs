//! Shared test fixtures: a real recorder, a real pipeline with a reviewing policy,
//! sessions, and a local webhook receiver.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_approvals::{ApprovalConfig, ApprovalService, RequestFilter, RequestView};
use portcullis_core::{
    AuthMethod, BoxPipeline, Command, CommandPolicy, CommandRequest, CommandResponse, Decision,
    EventKind, Identity, Notifier, Pipeline, Protocol, Quorum, ReviewRequirement, SessionContext,
    SessionId, SqlVia, Target, Timestamp, Verdict,
};
use portcullis_recording::{Recorder, RecordingConfig};
use tower::ServiceExt;

/// Reviews every statement: kinds from the first keyword, approvers and quorum as configured.
pub struct ReviewPolicy {
    pub approvers: Vec<String>,
    pub quorum: Quorum,
    /// When false, the review decision carries no requirement (a policy bug).
    pub with_requirement: bool,
}

impl ReviewPolicy {
    pub fn new(approvers: &[&str], quorum: Quorum) -> Self {
        Self {
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            quorum,
            with_requirement: true,
        }
    }
}

pub fn kind_of(sql: &str) -> &'static str {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "SELECT" => "read",
        "INSERT" | "UPDATE" | "DELETE" => "write",
        _ => "ddl",
    }
}

impl CommandPolicy for ReviewPolicy {
    fn decide(
        &self,
        _session: &SessionContext,
        command: &Command,
    ) -> portcullis_core::Result<Decision> {
        let mut d = Decision::new(Verdict::Review, "prod-review", "changes on production");
        if self.with_requirement {
            d.review = Some(ReviewRequirement {
                approvers: self.approvers.clone(),
                quorum: self.quorum,
            });
        }
        if let Command::Sql { text, .. } = command {
            d.kinds = vec![kind_of(text).to_string()];
        }
        Ok(d)
    }
}

pub fn identity(subject: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: subject.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        method: AuthMethod::Jwt,
        issuer: None,
        expires_at: None,
    }
}

pub fn session(subject: &str) -> Arc<SessionContext> {
    Arc::new(SessionContext {
        id: SessionId::new(),
        identity: identity(subject, &["dev"]),
        target: Arc::new(Target {
            name: "orders".into(),
            protocol: Protocol::Postgres,
            upstream: "127.0.0.1:5432".into(),
            allowed_groups: vec!["dev".into()],
        }),
        client_addr: None,
        opened_at: Timestamp::now(),
    })
}

pub fn sql(text: &str) -> Command {
    Command::Sql {
        text: text.into(),
        via: SqlVia::Simple,
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub recorder: Arc<Recorder>,
    pub approvals: ApprovalService,
    pub pipeline: BoxPipeline,
    /// Messages sent to clients through their notifiers.
    pub notices: Arc<Mutex<Vec<String>>>,
}

pub fn config(dir: &std::path::Path, wait_ms: u64) -> ApprovalConfig {
    let mut c = ApprovalConfig::new(dir.join("approvals"));
    c.wait = Duration::from_millis(wait_ms);
    c.approve_url = Some("http://127.0.0.1:9080".into());
    c
}

impl Harness {
    pub async fn new(policy: ReviewPolicy, wait_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), wait_ms);
        Self::with_config(dir, c, policy).await
    }

    pub async fn with_config(
        dir: tempfile::TempDir,
        config: ApprovalConfig,
        policy: ReviewPolicy,
    ) -> Self {
        let recorder =
            Arc::new(Recorder::open(&RecordingConfig::new(dir.path().join("recording"))).unwrap());
        let approvals = ApprovalService::open(&config, recorder.clone()).unwrap();
        let pipeline = pipeline(&recorder, &approvals, policy);
        Self {
            dir,
            recorder,
            approvals,
            pipeline,
            notices: Arc::default(),
        }
    }

    /// Sends one statement through the pipeline, as an adapter would.
    pub async fn run(
        &self,
        session: &Arc<SessionContext>,
        seq: u64,
        text: &str,
    ) -> CommandResponse {
        let notices = self.notices.clone();
        let req = CommandRequest::new(session.clone(), seq, sql(text)).with_notifier(
            Notifier::new(move |m| notices.lock().unwrap().push(m.to_string())),
        );
        self.pipeline.clone().oneshot(req).await.unwrap()
    }

    /// Sends one statement in the background.
    pub fn spawn(
        &self,
        session: &Arc<SessionContext>,
        seq: u64,
        text: &str,
    ) -> tokio::task::JoinHandle<CommandResponse> {
        let notices = self.notices.clone();
        let req = CommandRequest::new(session.clone(), seq, sql(text)).with_notifier(
            Notifier::new(move |m| notices.lock().unwrap().push(m.to_string())),
        );
        let p = self.pipeline.clone();
        tokio::spawn(async move { p.oneshot(req).await.unwrap() })
    }

    /// Waits until `n` requests are pending and returns them, newest first.
    pub async fn pending(&self, n: usize) -> Vec<RequestView> {
        for _ in 0..500 {
            let list = self
                .approvals
                .list_requests(&RequestFilter::pending())
                .unwrap();
            if list.len() >= n {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} pending requests never appeared");
    }

    /// Waits for the first notice sent to a client: the request becomes
    /// visible to approvers a moment before its notice reaches the client.
    pub async fn first_notice(&self) -> String {
        for _ in 0..500 {
            if let Some(n) = self.notices.lock().unwrap().first().cloned() {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no notice ever reached the client");
    }

    /// The recorded events of a session, in order.
    pub fn events(&self, session: SessionId) -> Vec<EventKind> {
        self.recorder
            .store()
            .session_events(session)
            .unwrap()
            .map(|r| r.unwrap().event.kind)
            .collect()
    }

    pub fn event_names(&self, session: SessionId) -> Vec<&'static str> {
        self.events(session).iter().map(|e| e.name()).collect()
    }

    /// Waits until the session's record holds an event matching `pred`.
    pub async fn wait_event(
        &self,
        session: SessionId,
        pred: impl Fn(&EventKind) -> bool,
    ) -> EventKind {
        for _ in 0..500 {
            if let Some(e) = self.events(session).into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("event never recorded");
    }
}

pub fn pipeline(
    recorder: &Arc<Recorder>,
    approvals: &ApprovalService,
    policy: ReviewPolicy,
) -> BoxPipeline {
    Pipeline::new(recorder.clone())
        .with_policy(Arc::new(policy))
        .with_approver(Arc::new(approvals.clone()))
        .build()
}

/// Outcomes of closed approvals recorded in a session, in order.
pub fn closed_outcomes(events: &[EventKind]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::ApprovalClosed { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

/// A webhook receiver on 127.0.0.1: answers 500 to the first `fail_first` posts, then 200.
pub struct Receiver {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    pub posts: Arc<AtomicU32>,
}

impl Receiver {
    pub async fn start(fail_first: u32) -> Self {
        use axum::http::StatusCode;
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let posts = Arc::new(AtomicU32::new(0));
        let (b, p) = (bodies.clone(), posts.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (b, p) = (b.clone(), p.clone());
                async move {
                    let n = p.fetch_add(1, Ordering::SeqCst);
                    if n < fail_first {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/hook"),
            bodies,
            posts,
        }
    }

    /// Waits until a body matches `pred`.
    pub async fn wait_for(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        for _ in 0..500 {
            if let Some(b) = self.bodies.lock().unwrap().iter().find(|b| pred(b)) {
                return b.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "webhook body never arrived; got {:?}",
            self.bodies.lock().unwrap()
        );
    }
}
