//! The approval service: the pipeline's [`Approver`] and the decisions API.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use portcullis_core::{
    Approver, BoxFuture, Command, CommandRequest, Decision, Event, EventKind, EventSink, Identity,
    Notifier, ReviewRequirement, SessionContext, SessionId, Timestamp, Verdict,
};
use tokio::sync::{Mutex, watch};

use crate::store::{Change, Store};
use crate::webhook::{Notice, Webhooks, approve_link};
use crate::{
    ApprovalConfig, ApprovalError, GrantEnd, GrantSpec, GrantView, RequestFilter, RequestState,
    RequestView, StateFilter, Vote, WebhookEvent, fingerprint,
};

/// How often the sweeper looks for lapsed requests and grants.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Most grants returned by `list_grants(false)`.
pub const MAX_LISTED_GRANTS: usize = 1000;

/// Counters of the service, for health endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApprovalStats {
    /// Notifications queued for webhook delivery.
    pub webhooks_queued: u64,
    /// Notifications dropped because the queue was full.
    pub webhooks_dropped: u64,
    /// Deliveries that an endpoint accepted (2xx).
    pub webhooks_delivered: u64,
    /// Delivery attempts that failed (error, timeout, non-2xx).
    pub webhook_failed_attempts: u64,
    /// Deliveries given up after the last attempt.
    pub webhooks_given_up: u64,
}

/// What one sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Requests that lapsed (undecided, or approved one-time and unused).
    pub requests_expired: usize,
    /// Grants that reached their end.
    pub grants_expired: usize,
}

/// Just-in-time approval of commands under review. Cheap to clone; clones share one
/// database, one sweeper and one webhook deliverer.
#[derive(Clone)]
pub struct ApprovalService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApprovalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalService")
            .field("path", &self.inner.config.path)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    config: ApprovalConfig,
    store: Store,
    sink: Arc<dyn EventSink>,
    /// Serializes every change of requests and grants.
    lock: Mutex<()>,
    /// Bumped after every change; waiting statements re-read their request.
    changed: watch::Sender<u64>,
    webhooks: Webhooks,
}

/// The parts of a command request that approval keeps.
struct Ask {
    session: Arc<SessionContext>,
    seq: u64,
    command: Command,
    notifier: Option<Notifier>,
}

/// Outcome of the locked first step of `resolve`.
enum Step {
    Done(Decision),
    Wait(Box<RequestView>),
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp(t.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
}

fn secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A decision derived from the pending one: same rule, review and kinds.
fn derived(
    pending: &Decision,
    verdict: Verdict,
    reason: String,
    approval: Option<String>,
) -> Decision {
    let mut d = pending.clone();
    d.verdict = verdict;
    d.reason = reason;
    d.approval = approval;
    d
}

/// Runs `fut` as its own task so that a caller that goes away (a client hanging up,
/// an HTTP handler cancelled) cannot stop a change half-way between recording and storing.
async fn detached<T: Send + 'static>(
    fut: impl Future<Output = Result<T, ApprovalError>> + Send + 'static,
) -> Result<T, ApprovalError> {
    tokio::spawn(fut)
        .await
        .map_err(|e| ApprovalError::Internal(format!("approval task failed: {e}")))?
}

impl ApprovalService {
    /// Validates `config`, opens (or creates) the database at `config.path` and starts
    /// the expiry sweeper and the webhook deliverer. Must be called within a tokio runtime.
    /// Events (requests, votes, grants) are recorded through `sink`.
    pub fn open(config: &ApprovalConfig, sink: Arc<dyn EventSink>) -> Result<Self, ApprovalError> {
        config.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| {
            ApprovalError::Internal("the approval service needs a tokio runtime".into())
        })?;
        let store = Store::open(&config.path)?;
        let webhooks = Webhooks::start(config)?;
        let (changed, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            config: config.clone(),
            store,
            sink,
            lock: Mutex::new(()),
            changed,
            webhooks,
        });
        tokio::spawn(sweeper(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ApprovalConfig {
        &self.inner.config
    }

    /// Delivery counters.
    pub fn stats(&self) -> ApprovalStats {
        let c = &self.inner.webhooks.counters;
        ApprovalStats {
            webhooks_queued: c.queued.load(Ordering::Relaxed),
            webhooks_dropped: c.dropped.load(Ordering::Relaxed),
            webhooks_delivered: c.delivered.load(Ordering::Relaxed),
            webhook_failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            webhooks_given_up: c.given_up.load(Ordering::Relaxed),
        }
    }

    // ----- decisions API -------------------------------------------------------------

    /// Requests matching `filter`, newest first.
    pub fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestView>, ApprovalError> {
        let now = Timestamp::now();
        match filter.state {
            StateFilter::Pending => {
                let mut out: Vec<RequestView> = self
                    .inner
                    .store
                    .open_requests()?
                    .into_iter()
                    .filter(|r| filter.matches(r, now))
                    .collect();
                out.sort_by(|a, b| b.id.cmp(&a.id));
                out.truncate(filter.limit);
                Ok(out)
            }
            StateFilter::All => self
                .inner
                .store
                .requests_newest_first(filter.limit, |r| filter.matches(r, now)),
        }
    }

    /// One request.
    pub fn get(&self, id: &str) -> Result<RequestView, ApprovalError> {
        self.inner
            .store
            .request(id)?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))
    }

    /// One grant.
    pub fn get_grant(&self, id: &str) -> Result<GrantView, ApprovalError> {
        self.inner
            .store
            .grant(id)?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))
    }

    /// Grants newest first: only those usable now, or all (at most [`MAX_LISTED_GRANTS`]).
    pub fn list_grants(&self, active_only: bool) -> Result<Vec<GrantView>, ApprovalError> {
        let now = Timestamp::now();
        if active_only {
            let mut out: Vec<GrantView> = self
                .inner
                .store
                .active_grants()?
                .into_iter()
                .filter(|g| g.is_active(now))
                .collect();
            out.sort_by(|a, b| b.id.cmp(&a.id));
            Ok(out)
        } else {
            self.inner.store.all_grants(MAX_LISTED_GRANTS)
        }
    }

    /// Records `approver`'s vote on request `id`. The caller must have authenticated
    /// `approver`. Rules: the requester never decides their own request; the approver
    /// must be in one of the request's approver groups; one vote per approver; a
    /// justification is required; one rejection rejects; the request is approved when
    /// the approving votes meet its quorum. `grant` (approvals only) asks for a
    /// just-in-time grant instead of a one-time approval; it is issued only if every
    /// approving vote asked for one (see the crate docs).
    pub async fn decide(
        &self,
        id: &str,
        approver: &Identity,
        approve: bool,
        justification: &str,
        grant: Option<GrantSpec>,
    ) -> Result<RequestView, ApprovalError> {
        let svc = self.clone();
        let id = id.to_string();
        let approver = approver.clone();
        let justification = justification.trim().to_string();
        detached(async move {
            svc.decide_locked(&id, &approver, approve, justification, grant)
                .await
        })
        .await
    }

    /// Ends a grant before its time. `reason` is required.
    pub async fn revoke(
        &self,
        grant_id: &str,
        by: &Identity,
        reason: &str,
    ) -> Result<GrantView, ApprovalError> {
        let svc = self.clone();
        let id = grant_id.to_string();
        let by = by.subject.clone();
        let reason = reason.trim().to_string();
        detached(async move { svc.revoke_locked(&id, by, reason).await }).await
    }

    /// Ends the session-only grants bound to `session`; returns how many ended.
    /// [`crate::SessionAwareSink`] calls it when the session's `SessionClosed` event passes.
    pub async fn session_closed(&self, session: SessionId) -> Result<usize, ApprovalError> {
        let svc = self.clone();
        detached(async move { svc.session_closed_locked(session).await }).await
    }

    /// Expires lapsed requests and grants now (the background sweeper does this every
    /// [`SWEEP_INTERVAL`]; use time checks never rely on it).
    pub async fn sweep(&self) -> Result<SweepReport, ApprovalError> {
        let svc = self.clone();
        detached(async move { svc.sweep_locked().await }).await
    }

    // ----- internals -------------------------------------------------------------------

    async fn record(&self, events: Vec<(SessionId, EventKind)>) -> Result<(), ApprovalError> {
        for (session, kind) in events {
            self.inner
                .sink
                .record(Event::now(session, kind))
                .await
                .map_err(|e| ApprovalError::Audit(e.to_string()))?;
        }
        Ok(())
    }

    fn bump(&self) {
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn notify(&self, event: WebhookEvent, request: &RequestView) {
        self.inner.webhooks.notify(Notice {
            event,
            request: request.clone(),
            approve_url: self.inner.config.approve_url.clone(),
        });
    }

    /// Records, stores and announces a request's final state. Caller holds the lock.
    async fn close_locked(
        &self,
        mut r: RequestView,
        state: RequestState,
        now: Timestamp,
        mut events: Vec<(SessionId, EventKind)>,
        grant: Option<&GrantView>,
        voted: bool,
    ) -> Result<RequestView, ApprovalError> {
        r.state = state;
        if r.decided_at.is_none() {
            r.decided_at = Some(now);
        }
        if state == RequestState::Used {
            r.used_at = Some(now);
        }
        events.push((
            r.session,
            EventKind::ApprovalClosed {
                request: r.id.clone(),
                outcome: state.as_str().to_string(),
            },
        ));
        self.record(events).await?;
        let mut change = Change::default();
        change.request(&r)?;
        if let Some(g) = grant {
            change.grant(g)?;
        }
        self.inner.store.commit(change).await?;
        self.bump();
        if voted {
            self.notify(WebhookEvent::Decided, &r);
        }
        self.notify(WebhookEvent::Closed, &r);
        Ok(r)
    }

    fn approved_reason(r: &RequestView) -> String {
        format!(
            "approved by {} (request {})",
            r.approved_by().join(", "),
            r.id
        )
    }

    /// Uses a one-time approval. Caller holds the lock.
    async fn use_locked(
        &self,
        r: RequestView,
        pending: &Decision,
        now: Timestamp,
    ) -> Result<Decision, ApprovalError> {
        let reason = format!("{}, one-time", Self::approved_reason(&r));
        let r = self
            .close_locked(r, RequestState::Used, now, Vec::new(), None, false)
            .await?;
        Ok(derived(pending, Verdict::Allow, reason, Some(r.id)))
    }

    /// Step (2) and (3) of `resolve`, under the lock.
    async fn claim_or_open(
        &self,
        ask: &Ask,
        pending: &Decision,
        review: &ReviewRequirement,
        fp: &str,
    ) -> Result<Step, ApprovalError> {
        let _guard = self.inner.lock.lock().await;
        let now = Timestamp::now();
        if let Some(mut r) = self.inner.store.open_request(fp)? {
            if r.is_usable(now) {
                return self.use_locked(r, pending, now).await.map(Step::Done);
            }
            if r.is_open(now) {
                if r.last_session != ask.session.id {
                    r.last_session = ask.session.id;
                    let mut change = Change::default();
                    change.request(&r)?;
                    self.inner.store.commit(change).await?;
                }
                return Ok(Step::Wait(Box::new(r)));
            }
            self.close_locked(r, RequestState::Expired, now, Vec::new(), None, false)
                .await?;
        }
        let r = RequestView {
            id: uuid::Uuid::now_v7().to_string(),
            state: RequestState::Pending,
            requester: ask.session.identity.subject.clone(),
            session: ask.session.id,
            seq: ask.seq,
            last_session: ask.session.id,
            target: ask.session.target.name.clone(),
            command: ask.command.clone(),
            fingerprint: fp.to_string(),
            rule: pending.rule.clone(),
            reason: pending.reason.clone(),
            kinds: pending.kinds.clone(),
            approvers: review.approvers.clone(),
            quorum: review.quorum,
            votes: Vec::new(),
            created_at: now,
            expires_at: after(now, self.inner.config.request_ttl),
            decided_at: None,
            used_at: None,
            grant: None,
        };
        self.record(vec![(
            r.session,
            EventKind::ApprovalRequested {
                request: r.id.clone(),
                seq: r.seq,
                command: r.command.clone(),
                rule: r.rule.clone(),
                reason: r.reason.clone(),
                approvers: r.approvers.clone(),
                quorum: r.quorum,
                expires_at: r.expires_at,
            },
        )])
        .await?;
        let mut change = Change::default();
        change.request(&r)?;
        self.inner.store.commit(change).await?;
        self.notify(WebhookEvent::Requested, &r);
        Ok(Step::Wait(Box::new(r)))
    }

    /// What a waiting statement gets for the request's current state; `None` while pending.
    async fn outcome(
        &self,
        id: &str,
        pending: &Decision,
    ) -> Result<Option<Decision>, ApprovalError> {
        let r = self.get(id)?;
        let now = Timestamp::now();
        let deny = |reason: String| {
            Some(derived(
                pending,
                Verdict::Deny,
                reason,
                Some(id.to_string()),
            ))
        };
        Ok(match r.state {
            RequestState::Pending if r.is_open(now) => None,
            RequestState::Pending => {
                let svc = self.clone();
                let id2 = id.to_string();
                detached(async move {
                    let _guard = svc.inner.lock.lock().await;
                    if let Some(r) = svc.inner.store.request(&id2)?
                        && r.state == RequestState::Pending
                    {
                        svc.close_locked(
                            r,
                            RequestState::Expired,
                            Timestamp::now(),
                            Vec::new(),
                            None,
                            false,
                        )
                        .await?;
                    }
                    Ok(())
                })
                .await?;
                deny(format!("request {id} expired before it was approved"))
            }
            RequestState::Approved => match &r.grant {
                Some(g) => Some(derived(
                    pending,
                    Verdict::Allow,
                    format!("{}, with grant {g}", Self::approved_reason(&r)),
                    Some(r.id.clone()),
                )),
                None => {
                    let svc = self.clone();
                    let id2 = id.to_string();
                    let pending2 = pending.clone();
                    let used = detached(async move {
                        let _guard = svc.inner.lock.lock().await;
                        let now = Timestamp::now();
                        match svc.inner.store.request(&id2)? {
                            Some(r) if r.is_usable(now) => {
                                svc.use_locked(r, &pending2, now).await.map(Some)
                            }
                            _ => Ok(None),
                        }
                    })
                    .await?;
                    match used {
                        Some(d) => Some(d),
                        None => deny(format!(
                            "the one-time approval of request {id} was used by another statement or lapsed; send the statement again to ask for a new approval"
                        )),
                    }
                }
            },
            RequestState::Rejected => {
                let last = r.votes.iter().rev().find(|v| !v.approved);
                deny(format!(
                    "rejected by {}: {} (request {id})",
                    last.map(|v| v.approver.as_str()).unwrap_or("an approver"),
                    last.map(|v| v.justification.as_str()).unwrap_or(""),
                ))
            }
            RequestState::Expired => deny(format!("request {id} expired before it was approved")),
            RequestState::Used => deny(format!(
                "the one-time approval of request {id} was used by another statement; send the statement again to ask for a new approval"
            )),
        })
    }

    async fn resolve_ask(&self, ask: Ask, pending: Decision) -> Result<Decision, ApprovalError> {
        let review = match &pending.review {
            Some(r) if !r.approvers.is_empty() => r.clone(),
            _ => {
                return Ok(derived(
                    &pending,
                    Verdict::Deny,
                    "review required but the rule names no approver groups".into(),
                    None,
                ));
            }
        };
        let subject = ask.session.identity.subject.clone();
        let target = ask.session.target.name.clone();
        let fp = fingerprint(&subject, &target, &ask.command);
        let now = Timestamp::now();

        // (1) An active grant that covers the command.
        for g in self.inner.store.active_grants_for(&subject, &target)? {
            if g.is_active(now) && g.covers(ask.session.id, &fp, &pending.kinds) {
                return Ok(derived(
                    &pending,
                    Verdict::Allow,
                    format!(
                        "covered by just-in-time grant {} from request {} (approved by {}; until {})",
                        g.id,
                        g.request,
                        g.issued_by.join(", "),
                        g.expires_at
                    ),
                    Some(g.id),
                ));
            }
        }

        // (2) An unused one-time approval, or (3) the open request, reused or created.
        let svc = self.clone();
        let pending2 = pending.clone();
        let (ask, step) = detached(async move {
            let step = svc.claim_or_open(&ask, &pending2, &review, &fp).await?;
            Ok((ask, step))
        })
        .await?;
        let r = match step {
            Step::Done(d) => return Ok(d),
            Step::Wait(r) => r,
        };

        let wait = self.inner.config.wait;
        if let Some(n) = &ask.notifier {
            n.notify(&self.waiting_message(&r, wait));
        }

        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.inner.changed.subscribe();
        let mut timed_out = false;
        loop {
            rx.borrow_and_update();
            if let Some(d) = self.outcome(&r.id, &pending).await? {
                return Ok(d);
            }
            if timed_out {
                let current = self.get(&r.id)?;
                return Ok(derived(
                    &pending,
                    Verdict::Deny,
                    format!(
                        "not approved within {}: request {} stays open until {} ({} so far); send the statement again once it is approved",
                        secs(wait),
                        r.id,
                        current.expires_at,
                        current.progress()
                    ),
                    Some(r.id.clone()),
                ));
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(deadline).await;
                        timed_out = true;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => timed_out = true,
            }
        }
    }

    fn waiting_message(&self, r: &RequestView, wait: Duration) -> String {
        let mut m = format!(
            "Portcullis: this statement needs approval (rule {}: {}). Request {} waits for {} from {}",
            r.rule,
            r.reason,
            r.id,
            r.quorum_text(),
            r.approvers.join(", "),
        );
        if !r.votes.is_empty() {
            m.push_str(&format!(" ({} so far)", r.progress()));
        }
        m.push_str(&format!(
            ": approve with `portcullis approvals approve {}`",
            r.id
        ));
        if let Some(base) = &self.inner.config.approve_url {
            m.push_str(&format!(" or POST {}", approve_link(base, &r.id)));
        }
        m.push_str(&format!(". Waiting up to {}.", secs(wait)));
        m
    }

    async fn decide_locked(
        &self,
        id: &str,
        approver: &Identity,
        approve: bool,
        justification: String,
        grant: Option<GrantSpec>,
    ) -> Result<RequestView, ApprovalError> {
        let _guard = self.inner.lock.lock().await;
        let mut r = self.get(id)?;
        let now = Timestamp::now();
        if r.state != RequestState::Pending {
            return Err(ApprovalError::AlreadyDecided {
                request: r.id,
                state: r.state,
            });
        }
        if now >= r.expires_at {
            self.close_locked(r, RequestState::Expired, now, Vec::new(), None, false)
                .await?;
            return Err(ApprovalError::Expired(id.to_string()));
        }
        if approver.subject == r.requester {
            return Err(ApprovalError::SelfApproval {
                request: r.id,
                approver: approver.subject.clone(),
            });
        }
        let mut groups: Vec<String> = Vec::new();
        for g in &r.approvers {
            if approver.in_group(g) && !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        if groups.is_empty() {
            return Err(ApprovalError::NotApprover {
                request: r.id,
                approver: approver.subject.clone(),
                groups: r.approvers.join(", "),
            });
        }
        if r.votes.iter().any(|v| v.approver == approver.subject) {
            return Err(ApprovalError::AlreadyVoted {
                request: r.id,
                approver: approver.subject.clone(),
            });
        }
        if justification.is_empty() {
            return Err(ApprovalError::MissingJustification);
        }
        if let Some(spec) = &grant {
            self.check_grant(approve, spec)?;
        }
        r.votes.push(Vote {
            approver: approver.subject.clone(),
            groups,
            approved: approve,
            justification: justification.clone(),
            at: now,
            grant,
        });
        let mut events = vec![(
            r.session,
            EventKind::ApprovalDecided {
                request: r.id.clone(),
                approver: approver.subject.clone(),
                approved: approve,
                justification,
            },
        )];
        if !approve {
            return self
                .close_locked(r, RequestState::Rejected, now, events, None, true)
                .await;
        }
        if !r.quorum_met() {
            self.record(events).await?;
            let mut change = Change::default();
            change.request(&r)?;
            self.inner.store.commit(change).await?;
            self.bump();
            self.notify(WebhookEvent::Decided, &r);
            return Ok(r);
        }
        let issued = match combined_grant(&r) {
            Some(spec) => {
                let g = GrantView {
                    id: uuid::Uuid::now_v7().to_string(),
                    request: r.id.clone(),
                    subject: r.requester.clone(),
                    target: r.target.clone(),
                    kinds: spec.kinds.clone(),
                    fingerprint: r.fingerprint.clone(),
                    command: r.command.summary(),
                    session: spec.session_only.then_some(r.last_session),
                    request_session: r.session,
                    issued_by: r.approved_by().iter().map(|s| s.to_string()).collect(),
                    issued_at: now,
                    expires_at: after(now, spec.duration),
                    ended: None,
                };
                events.push((
                    r.session,
                    EventKind::GrantIssued {
                        grant: g.id.clone(),
                        request: r.id.clone(),
                        subject: g.subject.clone(),
                        target: g.target.clone(),
                        kinds: g.kinds.clone(),
                        expires_at: g.expires_at,
                        session_only: spec.session_only,
                    },
                ));
                r.grant = Some(g.id.clone());
                Some(g)
            }
            None => {
                // A one-time approval stays usable for request_ttl after it was given.
                r.expires_at = after(now, self.inner.config.request_ttl);
                None
            }
        };
        self.close_locked(
            r,
            RequestState::Approved,
            now,
            events,
            issued.as_ref(),
            true,
        )
        .await
    }

    fn check_grant(&self, approve: bool, spec: &GrantSpec) -> Result<(), ApprovalError> {
        if !approve {
            return Err(ApprovalError::BadGrant(
                "a grant can only come with an approval".into(),
            ));
        }
        if spec.duration.is_zero() {
            return Err(ApprovalError::BadGrant("duration must not be zero".into()));
        }
        if spec.duration > self.inner.config.max_grant {
            return Err(ApprovalError::BadGrant(format!(
                "duration {} is longer than max_grant {}",
                secs(spec.duration),
                secs(self.inner.config.max_grant)
            )));
        }
        if spec.kinds.iter().any(|k| k.trim().is_empty()) {
            return Err(ApprovalError::BadGrant(
                "statement kinds must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// Ends a grant. Caller holds the lock.
    async fn end_grant_locked(
        &self,
        mut g: GrantView,
        reason: &str,
        by: Option<String>,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<GrantView, ApprovalError> {
        g.ended = Some(GrantEnd {
            reason: reason.to_string(),
            by: by.clone(),
            note,
            at: now,
        });
        self.record(vec![(
            g.request_session,
            EventKind::GrantEnded {
                grant: g.id.clone(),
                reason: reason.to_string(),
                by,
            },
        )])
        .await?;
        let mut change = Change::default();
        change.grant(&g)?;
        self.inner.store.commit(change).await?;
        self.bump();
        Ok(g)
    }

    async fn revoke_locked(
        &self,
        id: &str,
        by: String,
        reason: String,
    ) -> Result<GrantView, ApprovalError> {
        let _guard = self.inner.lock.lock().await;
        let g = self.get_grant(id)?;
        if g.ended.is_some() {
            return Err(ApprovalError::GrantEnded(id.to_string()));
        }
        let now = Timestamp::now();
        if now >= g.expires_at {
            self.end_grant_locked(g, "expired", None, None, now).await?;
            return Err(ApprovalError::GrantEnded(id.to_string()));
        }
        if reason.is_empty() {
            return Err(ApprovalError::MissingJustification);
        }
        self.end_grant_locked(g, "revoked", Some(by), Some(reason), now)
            .await
    }

    async fn session_closed_locked(&self, session: SessionId) -> Result<usize, ApprovalError> {
        let _guard = self.inner.lock.lock().await;
        let mut ended = 0;
        for g in self.inner.store.active_grants()? {
            if g.ended.is_none() && g.session == Some(session) {
                let now = Timestamp::now();
                let reason = if now >= g.expires_at {
                    "expired"
                } else {
                    "session_closed"
                };
                self.end_grant_locked(g, reason, None, None, now).await?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    async fn sweep_locked(&self) -> Result<SweepReport, ApprovalError> {
        let _guard = self.inner.lock.lock().await;
        let mut report = SweepReport::default();
        let now = Timestamp::now();
        for r in self.inner.store.open_requests()? {
            if r.indexed() && now >= r.expires_at {
                self.close_locked(r, RequestState::Expired, now, Vec::new(), None, false)
                    .await?;
                report.requests_expired += 1;
            }
        }
        for g in self.inner.store.active_grants()? {
            if g.ended.is_none() && now >= g.expires_at {
                self.end_grant_locked(g, "expired", None, None, now).await?;
                report.grants_expired += 1;
            }
        }
        Ok(report)
    }
}

/// The grant that a set of approving votes agrees on: issued only if every approving
/// vote asked for one; the shortest duration, the kinds all of them named (any vote
/// without kinds narrows it to the approved command) and session-only if any asked.
fn combined_grant(r: &RequestView) -> Option<GrantSpec> {
    let mut specs = r
        .votes
        .iter()
        .filter(|v| v.approved)
        .map(|v| v.grant.as_ref());
    let first = specs.next()??.clone();
    specs.try_fold(first, |acc, spec| {
        let spec = spec?;
        Some(GrantSpec {
            duration: acc.duration.min(spec.duration),
            kinds: acc
                .kinds
                .into_iter()
                .filter(|k| spec.kinds.contains(k))
                .collect(),
            session_only: acc.session_only || spec.session_only,
        })
    })
}

async fn sweeper(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let svc = ApprovalService { inner };
        match svc.sweep_locked().await {
            Ok(report) if report != SweepReport::default() => {
                tracing::info!(
                    requests = report.requests_expired,
                    grants = report.grants_expired,
                    "approvals expired"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "approval sweep failed"),
        }
    }
}

impl Approver for ApprovalService {
    /// Resolves a command under review: an active grant covering it, an unused one-time
    /// approval of the same command, or a request that the statement waits on for up to
    /// `wait`. Denies on rejection, timeout, expiry and a review without approvers; a
    /// store or recording failure is an error (the pipeline refuses the command).
    fn resolve(
        &self,
        request: &CommandRequest,
        pending: Decision,
    ) -> BoxFuture<'static, portcullis_core::Result<Decision>> {
        let svc = self.clone();
        let ask = Ask {
            session: request.session.clone(),
            seq: request.seq,
            command: request.command.clone(),
            notifier: request.notifier.clone(),
        };
        Box::pin(async move { svc.resolve_ask(ask, pending).await.map_err(Into::into) })
    }
}
