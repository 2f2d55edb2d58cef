//! The per-command tower pipeline every adapter drives:
//! `Record → Policy → Approval → Mask → Admit`.
//!
//! An adapter turns what its client sent into a [`CommandRequest`] and calls the
//! pipeline. The answer says whether to forward the command and carries the
//! [`OutputHooks`] that the adapter applies to the command's output as it streams
//! back. Adapters with a stateful duplex connection (PostgreSQL, SSH) forward the
//! admitted command themselves; request/response adapters (HTTP) can put their
//! upstream client in place of [`Admit`] with [`Pipeline::service`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service, ServiceBuilder};

use crate::{
    Command, Completion, Decision, Error, Event, EventKind, OutputHook, OutputHooks, Result,
    SessionContext, SessionId, Verdict,
};

/// A boxed future, as used by the pipeline's traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The assembled pipeline, boxed so its type stays readable.
pub type BoxPipeline = tower::util::BoxCloneService<CommandRequest, CommandResponse, Error>;

/// Sends a message to the client while a command waits (a PostgreSQL notice, an SSH
/// banner line). Adapters provide it; approval uses it to say where to approve.
#[derive(Clone)]
pub struct Notifier(Arc<dyn Fn(&str) + Send + Sync>);

impl Notifier {
    /// Wraps a function that delivers a message to the client.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Delivers a message (best effort; never blocks).
    pub fn notify(&self, message: &str) {
        (self.0)(message)
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

/// One command on its way through the pipeline.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    /// The session it belongs to.
    pub session: Arc<SessionContext>,
    /// Sequence within the session, from 1.
    pub seq: u64,
    /// The command.
    pub command: Command,
    /// When the gateway received it.
    pub received: Instant,
    /// The decision so far (set by the policy layer, refined by approval).
    pub decision: Option<Decision>,
    /// Where to tell the client something while the command waits.
    pub notifier: Option<Notifier>,
}

impl CommandRequest {
    /// A new request, received now.
    pub fn new(session: Arc<SessionContext>, seq: u64, command: Command) -> Self {
        Self {
            session,
            seq,
            command,
            received: Instant::now(),
            decision: None,
            notifier: None,
        }
    }

    /// Attaches a notifier.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }
}

/// What the pipeline decided, and the hooks for the output of a forwarded command.
#[derive(Debug)]
pub struct CommandResponse {
    /// The final decision. Only [`Verdict::Allow`] may be forwarded.
    pub decision: Decision,
    /// Hooks to apply to the output, innermost first.
    pub hooks: OutputHooks,
}

impl CommandResponse {
    /// A response for a command that is not forwarded.
    pub fn refused(decision: Decision) -> Self {
        Self {
            decision,
            hooks: OutputHooks::default(),
        }
    }

    /// Whether the adapter may forward the command.
    pub fn forward(&self) -> bool {
        self.decision.allows()
    }
}

/// Where events go. Implemented by the recording crate.
pub trait EventSink: Send + Sync + 'static {
    /// Records an event. Resolves once it is as durable as the sink's durability
    /// mode promises for commands: on disk in strict mode, queued in batched mode.
    /// An error means the event is not recorded; the caller must fail closed.
    fn record(&self, event: Event) -> BoxFuture<'static, Result<()>>;

    /// Queues an event without waiting (used for completions, which cannot be
    /// awaited on the output path). Fails only when the sink has failed.
    fn submit(&self, event: Event) -> Result<()>;
}

/// Decides on commands. Implemented by the policy crate.
pub trait CommandPolicy: Send + Sync + 'static {
    /// Classifies and decides. An error means the command cannot be decided and is refused.
    fn decide(&self, session: &SessionContext, command: &Command) -> Result<Decision>;
}

/// Resolves decisions under review. Implemented by the approvals crate.
pub trait Approver: Send + Sync + 'static {
    /// Waits for a decision on a command under review; must fail closed (deny) on
    /// rejection or timeout.
    fn resolve(
        &self,
        request: &CommandRequest,
        pending: Decision,
    ) -> BoxFuture<'static, Result<Decision>>;
}

/// Masks output and the recorded form of commands. Implemented by the masking crate.
pub trait Masking: Send + Sync + 'static {
    /// A hook that masks this command's output, if masking applies.
    fn output_hook(&self, request: &CommandRequest) -> Option<Box<dyn OutputHook>>;

    /// The form of a command that may be stored and shown to approvers.
    fn redact_command(&self, command: &Command) -> Command {
        command.clone()
    }
}

/// Policy that only relies on the connection-time target access check: every
/// command of an admitted session is allowed, under rule `target-access`, except
/// forwarding ([`Command::Forward`]), which is denied under rule
/// [`RULE_FORWARDING_DEFAULT`](crate::RULE_FORWARDING_DEFAULT).
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetAccessOnly;

impl CommandPolicy for TargetAccessOnly {
    fn decide(&self, session: &SessionContext, command: &Command) -> Result<Decision> {
        if let Command::Forward { .. } = command {
            // Forwarding opens paths the target's own access rules do not describe:
            // only a policy rule can allow it.
            return Ok(Decision::deny(
                crate::RULE_FORWARDING_DEFAULT,
                "forwarding is denied unless a policy rule allows it",
            ));
        }
        if session.target.admits(&session.identity) {
            Ok(Decision::allow(
                "target-access",
                "identity is in a group allowed on the target",
            ))
        } else {
            Ok(Decision::deny(
                "target-access",
                "identity is not in a group allowed on the target",
            ))
        }
    }
}

/// Approver used when no approval service is configured: reviews are denied.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoApprovals;

impl Approver for NoApprovals {
    fn resolve(
        &self,
        _request: &CommandRequest,
        pending: Decision,
    ) -> BoxFuture<'static, Result<Decision>> {
        Box::pin(async move {
            Ok(Decision::deny(
                pending.rule,
                "review required but no approval service is configured",
            ))
        })
    }
}

/// Masking used when none is configured: output passes unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMasking;

impl Masking for NoMasking {
    fn output_hook(&self, _request: &CommandRequest) -> Option<Box<dyn OutputHook>> {
        None
    }
}

/// The parts a pipeline is assembled from.
#[derive(Clone)]
pub struct Pipeline {
    /// Event destination.
    pub sink: Arc<dyn EventSink>,
    /// Command policy.
    pub policy: Arc<dyn CommandPolicy>,
    /// Approval service.
    pub approver: Arc<dyn Approver>,
    /// Masking engine.
    pub masking: Arc<dyn Masking>,
}

impl Pipeline {
    /// A pipeline that records to `sink`, checks target access only, denies reviews and does not mask.
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self {
            sink,
            policy: Arc::new(TargetAccessOnly),
            approver: Arc::new(NoApprovals),
            masking: Arc::new(NoMasking),
        }
    }

    /// Replaces the policy.
    pub fn with_policy(mut self, policy: Arc<dyn CommandPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the approver.
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = approver;
        self
    }

    /// Replaces the masking engine.
    pub fn with_masking(mut self, masking: Arc<dyn Masking>) -> Self {
        self.masking = masking;
        self
    }

    /// The pipeline ending in [`Admit`], for adapters that forward admitted commands themselves.
    pub fn build(&self) -> BoxPipeline {
        self.service(Admit)
    }

    /// The pipeline ending in `inner`, which receives only allowed commands.
    pub fn service<S>(&self, inner: S) -> BoxPipeline
    where
        S: Service<CommandRequest, Response = CommandResponse, Error = Error>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let svc = ServiceBuilder::new()
            .layer(RecordLayer {
                sink: self.sink.clone(),
                masking: self.masking.clone(),
            })
            .layer(PolicyLayer {
                policy: self.policy.clone(),
            })
            .layer(ApprovalLayer {
                approver: self.approver.clone(),
                masking: self.masking.clone(),
            })
            .layer(MaskLayer {
                masking: self.masking.clone(),
            })
            .service(inner);
        tower::util::BoxCloneService::new(svc)
    }
}

/// Takes the ready inner service out of `slot`, leaving a clone (the usual tower pattern).
fn take_ready<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}

/// Terminal service for adapters that forward admitted commands themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Admit;

impl Service<CommandRequest> for Admit {
    type Response = CommandResponse;
    type Error = Error;
    type Future = std::future::Ready<Result<CommandResponse>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CommandRequest) -> Self::Future {
        // Fail closed: a request that no policy decided is refused.
        let decision = req
            .decision
            .unwrap_or_else(|| Decision::deny("no-policy", "no policy decided this command"));
        std::future::ready(Ok(CommandResponse {
            decision,
            hooks: OutputHooks::default(),
        }))
    }
}

/// Layer that records each command with its decision, and its completion.
#[derive(Clone)]
pub struct RecordLayer {
    sink: Arc<dyn EventSink>,
    masking: Arc<dyn Masking>,
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            sink: self.sink.clone(),
            masking: self.masking.clone(),
        }
    }
}

/// See [`RecordLayer`]. A command whose record cannot be written is not forwarded.
#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    sink: Arc<dyn EventSink>,
    masking: Arc<dyn Masking>,
}

impl<S> Service<CommandRequest> for Record<S>
where
    S: Service<CommandRequest, Response = CommandResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = CommandResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<CommandResponse>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: CommandRequest) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let sink = self.sink.clone();
        let masking = self.masking.clone();
        Box::pin(async move {
            let session = req.session.id;
            let seq = req.seq;
            let received = req.received;
            let recorded_command = masking.redact_command(&req.command);
            let mut response = inner.call(req).await?;
            sink.record(Event::now(
                session,
                EventKind::Command {
                    seq,
                    command: recorded_command,
                    decision: response.decision.clone(),
                    result: None,
                },
            ))
            .await
            .map_err(|e| Error::Audit(e.to_string()))?;
            if response.forward() {
                response.hooks.push(Box::new(ResultRecorder {
                    sink,
                    session,
                    seq,
                    received,
                }));
            }
            Ok(response)
        })
    }
}

/// Output hook that records a forwarded command's completion.
struct ResultRecorder {
    sink: Arc<dyn EventSink>,
    session: SessionId,
    seq: u64,
    received: Instant,
}

impl OutputHook for ResultRecorder {
    fn finish(&mut self, completion: &mut Completion) {
        let duration_us = u64::try_from(self.received.elapsed().as_micros()).unwrap_or(u64::MAX);
        let event = Event::now(
            self.session,
            EventKind::CommandResult {
                seq: self.seq,
                duration_us,
                completion: completion.clone(),
            },
        );
        if let Err(e) = self.sink.submit(event) {
            // The sink is failed; it refuses further commands, so the data path closes.
            tracing::error!(session = %self.session, seq = self.seq, error = %e, "completion not recorded");
        }
    }
}

/// Layer that asks the command policy for a decision.
#[derive(Clone)]
pub struct PolicyLayer {
    policy: Arc<dyn CommandPolicy>,
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Policy<S>;

    fn layer(&self, inner: S) -> Policy<S> {
        Policy {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// See [`PolicyLayer`]. Denied commands stop here; allowed and reviewed ones go on.
#[derive(Clone)]
pub struct Policy<S> {
    inner: S,
    policy: Arc<dyn CommandPolicy>,
}

impl<S> Service<CommandRequest> for Policy<S>
where
    S: Service<CommandRequest, Response = CommandResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = CommandResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<CommandResponse>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: CommandRequest) -> Self::Future {
        let decision = match self.policy.decide(&req.session, &req.command) {
            Ok(d) => d,
            // A command that cannot be decided is refused, with the reason recorded.
            Err(e) => Decision::deny("policy-error", e.to_string()),
        };
        if decision.verdict == Verdict::Deny {
            return Box::pin(std::future::ready(Ok(CommandResponse::refused(decision))));
        }
        req.decision = Some(decision);
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move { inner.call(req).await })
    }
}

/// Layer that resolves decisions under review through the approver. Approvers see
/// (and store) the masked form of the command.
#[derive(Clone)]
pub struct ApprovalLayer {
    approver: Arc<dyn Approver>,
    masking: Arc<dyn Masking>,
}

impl<S> Layer<S> for ApprovalLayer {
    type Service = Approval<S>;

    fn layer(&self, inner: S) -> Approval<S> {
        Approval {
            inner,
            approver: self.approver.clone(),
            masking: self.masking.clone(),
        }
    }
}

/// See [`ApprovalLayer`].
#[derive(Clone)]
pub struct Approval<S> {
    inner: S,
    approver: Arc<dyn Approver>,
    masking: Arc<dyn Masking>,
}

impl<S> Service<CommandRequest> for Approval<S>
where
    S: Service<CommandRequest, Response = CommandResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = CommandResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<CommandResponse>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: CommandRequest) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let approver = self.approver.clone();
        let masking = self.masking.clone();
        Box::pin(async move {
            if let Some(pending) = req.decision.clone()
                && pending.verdict == Verdict::Review
            {
                let mut shown = req.clone();
                shown.command = masking.redact_command(&req.command);
                let resolved = approver.resolve(&shown, pending).await?;
                if !resolved.allows() {
                    return Ok(CommandResponse::refused(resolved));
                }
                req.decision = Some(resolved);
            }
            inner.call(req).await
        })
    }
}

/// Layer that attaches the masking hook to a forwarded command's output.
#[derive(Clone)]
pub struct MaskLayer {
    masking: Arc<dyn Masking>,
}

impl<S> Layer<S> for MaskLayer {
    type Service = Mask<S>;

    fn layer(&self, inner: S) -> Mask<S> {
        Mask {
            inner,
            masking: self.masking.clone(),
        }
    }
}

/// See [`MaskLayer`].
#[derive(Clone)]
pub struct Mask<S> {
    inner: S,
    masking: Arc<dyn Masking>,
}

impl<S> Service<CommandRequest> for Mask<S>
where
    S: Service<CommandRequest, Response = CommandResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = CommandResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<CommandResponse>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: CommandRequest) -> Self::Future {
        let hook = self.masking.output_hook(&req);
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            if response.forward()
                && let Some(hook) = hook
            {
                response.hooks.push(hook);
            }
            Ok(response)
        })
    }
}
