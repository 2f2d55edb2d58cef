//! The per-request flow shared by the gateway and the embedding layer: open the request's
//! record, decide through the pipeline, and wrap the response so it is masked and recorded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use portcullis_core::{
    BoxPipeline, Command, CommandRequest, Event, EventKind, EventSink, Identity, OutputHooks,
    Pipeline, SessionId, Target, Verdict,
};
use tower::{Layer, Service, ServiceExt};

use crate::HttpError;
use crate::body::{BodyPlan, Finisher, Observed, Scrub};
use crate::config::{MaskConfig, NEVER_RECORDED};
use crate::jsonmask::{JsonMasker, JsonPaths};
use crate::policy::{HttpPolicy, HttpPolicyConfig, path_segments, with_request_headers};
use crate::session::{ConnectionSessions, HttpSession};

/// Request bodies up to this size are kept whole so that an idempotent request can be retried.
pub(crate) const REPLAY_BYTES: usize = 16 * 1024;

/// Pipeline and sink shared by all requests.
#[derive(Clone)]
pub(crate) struct Shared {
    pub sink: Arc<dyn EventSink>,
    /// The pipeline service; cloned (under a short lock, it is not `Sync`) for each request.
    pub service: Arc<std::sync::Mutex<BoxPipeline>>,
    pub record_body_bytes: usize,
}

impl Shared {
    pub fn new(pipeline: &Pipeline, record_body_bytes: usize) -> Self {
        Self {
            sink: pipeline.sink.clone(),
            service: Arc::new(std::sync::Mutex::new(pipeline.build())),
            record_body_bytes,
        }
    }

    fn service(&self) -> Result<BoxPipeline, HttpError> {
        self.service
            .lock()
            .map(|s| s.clone())
            .map_err(|_| HttpError::Internal("pipeline lock poisoned".into()))
    }
}

/// What the flow needs to know about one target.
pub(crate) struct TargetRules {
    pub target: Arc<Target>,
    pub json: Option<Arc<JsonPaths>>,
    pub mask_headers: Vec<HeaderName>,
    pub record_headers: Vec<HeaderName>,
    pub scrub: Scrub,
}

impl TargetRules {
    pub fn new(
        target: Target,
        mask: &MaskConfig,
        record_headers: &[String],
        never: &[HeaderName],
        at: &str,
    ) -> Result<Self, HttpError> {
        let json = JsonPaths::parse(&mask.json)
            .map_err(|e| HttpError::config(format!("{at}.mask.json"), e))?;
        let parse = |list: &[String], key: &str| -> Result<Vec<HeaderName>, HttpError> {
            list.iter()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| HttpError::config(format!("{at}.{key}"), "not a header name"))
                })
                .collect()
        };
        let record_headers = parse(record_headers, "record_headers")?
            .into_iter()
            .filter(|h| !NEVER_RECORDED.contains(&h.as_str()) && !never.contains(h))
            .collect();
        Ok(Self {
            target: Arc::new(target),
            json: (!json.is_empty()).then(|| Arc::new(json)),
            mask_headers: parse(&mask.headers, "mask.headers")?,
            record_headers,
            scrub: Scrub::default(),
        })
    }
}

/// A request the pipeline allowed, ready to be forwarded.
pub(crate) struct Admitted {
    pub session: Arc<HttpSession>,
    pub hooks: OutputHooks,
    /// The request body, with the part read for recording put back in front.
    pub body: Body,
    /// The whole body, when it was short enough to keep (retries need it).
    pub replay: Option<Bytes>,
}

/// The JSON error answer.
pub(crate) fn error_response(err: &HttpError) -> Response<Body> {
    json_response(err.status(), &err.body())
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|ct| {
            ct == "application/json" || ct.ends_with("+json") || ct == "application/x-ndjson"
        })
}

fn is_textual(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|ct| {
            ct.starts_with("text/")
                || ct.contains("json")
                || ct.contains("xml")
                || ct == "application/javascript"
                || ct == "application/x-www-form-urlencoded"
        })
}

/// Records that a request was refused before its session opened, and answers.
pub(crate) async fn refuse(
    shared: &Shared,
    identity: Option<&Identity>,
    target: Option<&str>,
    client_addr: Option<SocketAddr>,
    err: HttpError,
) -> Response<Body> {
    let event = Event::now(
        SessionId::new(),
        EventKind::SessionRefused {
            subject: identity.map(|i| i.subject.clone()),
            target: target.map(str::to_owned),
            client_addr: client_addr.map(|a| a.to_string()),
            side: err.side(),
            reason: err.to_string(),
        },
    );
    if let Err(e) = shared.sink.record(event).await {
        tracing::error!(error = %e, "refusal not recorded");
        return error_response(&HttpError::Audit(e.to_string()));
    }
    error_response(&err)
}

/// Reads up to `limit` bytes of the body; returns them, whether the body ended, and the rest.
async fn read_prefix(mut body: Body, limit: usize) -> Result<(Bytes, bool, Body), HttpError> {
    let mut buf = BytesMut::new();
    while buf.len() < limit {
        match body.frame().await {
            None => return Ok((buf.freeze(), true, Body::empty())),
            Some(Err(e)) => {
                return Err(HttpError::BadRequest(format!("request body failed: {e}")));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    Ok((buf.freeze(), false, body))
}

/// Opens the request's session, records it, and asks the pipeline. `Err` is the answer to
/// send when the request is not forwarded (refused, pending approval, audit failure).
pub(crate) async fn admit(
    shared: &Shared,
    rules: &TargetRules,
    identity: Identity,
    client_addr: Option<SocketAddr>,
    parts: &http::request::Parts,
    target_path: &str,
    body: Body,
) -> Result<Admitted, Response<Body>> {
    let path = target_path.to_owned();
    if path_segments(&path).is_none() {
        let err = HttpError::BadRequest("dot segments (`.` or `..`) in the path".into());
        return Err(refuse(
            shared,
            Some(&identity),
            Some(&rules.target.name),
            client_addr,
            err,
        )
        .await);
    }
    if !rules.target.admits(&identity) {
        let err = HttpError::AccessDenied {
            subject: identity.subject.clone(),
            target: rules.target.name.clone(),
        };
        return Err(refuse(
            shared,
            Some(&identity),
            Some(&rules.target.name),
            client_addr,
            err,
        )
        .await);
    }

    let limit = shared.record_body_bytes.max(REPLAY_BYTES);
    let (prefix, ended, rest) = if body.is_end_stream() {
        (Bytes::new(), true, Body::empty())
    } else {
        match read_prefix(body, limit).await {
            Ok(x) => x,
            Err(e) => {
                return Err(refuse(
                    shared,
                    Some(&identity),
                    Some(&rules.target.name),
                    client_addr,
                    e,
                )
                .await);
            }
        }
    };

    let mut details = BTreeMap::new();
    if path != parts.uri.path() {
        details.insert("client_path".to_owned(), parts.uri.path().to_owned());
    }
    for name in &rules.record_headers {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| portcullis_core::text::lossy_str(v.as_bytes()))
            .collect();
        if !values.is_empty() {
            details.insert(format!("header.{name}"), values.join(", "));
        }
    }
    if shared.record_body_bytes > 0 && !prefix.is_empty() {
        let shown = prefix
            .get(..shared.record_body_bytes.min(prefix.len()))
            .unwrap_or_default();
        let masked = match (&rules.json, is_json(&parts.headers)) {
            (Some(paths), true) => {
                let mut m = JsonMasker::new(paths.clone());
                let mut out = Vec::new();
                match m.feed(shown, &mut out) {
                    Ok(()) => portcullis_core::text::lossy_string(out),
                    Err(_) => "[withheld: not valid JSON]".to_owned(),
                }
            }
            _ => portcullis_core::text::lossy_str(shown),
        };
        details.insert("request_body".to_owned(), rules.scrub.apply(masked));
        details.insert(
            "request_body_truncated".to_owned(),
            (!ended || prefix.len() > shared.record_body_bytes).to_string(),
        );
    }

    let session = match parts.extensions.get::<ConnectionSessions>() {
        Some(connection) => match connection.session(
            &shared.sink,
            &identity,
            &rules.target,
            client_addr,
            parts.version,
        ) {
            Ok(s) => s,
            Err(e) => return Err(error_response(&e)),
        },
        None => HttpSession::for_request(
            shared.sink.clone(),
            &identity,
            &rules.target,
            client_addr,
            parts.version,
        ),
    };
    // Fail closed: a request whose session cannot be recorded is not forwarded.
    if let Err(e) = session.open().await {
        return Err(error_response(&e));
    }

    let command = Command::Http {
        method: parts.method.to_string(),
        path,
        query: parts.uri.query().map(str::to_owned),
        details,
    };
    let request = CommandRequest::new(session.ctx.clone(), session.next_seq(), command);
    let decided = match shared.service() {
        Ok(mut service) => {
            with_request_headers(Arc::new(parts.headers.clone()), async move {
                service.ready().await?.call(request).await
            })
            .await
        }
        Err(e) => Err(portcullis_core::Error::Internal(e.to_string())),
    };
    let response = match decided {
        Ok(r) => r,
        Err(e) => {
            let err = match e {
                portcullis_core::Error::Audit(m) => HttpError::Audit(m),
                other => HttpError::Internal(other.to_string()),
            };
            return Err(error_response(&err));
        }
    };
    let decision = response.decision.clone();
    if decision.verdict == Verdict::Allow {
        let replay = ended.then(|| prefix.clone());
        let body = if ended {
            Body::from(prefix)
        } else {
            let first = futures::stream::once(async move { Ok::<_, axum::Error>(prefix) });
            Body::from_stream(futures::StreamExt::chain(first, rest.into_data_stream()))
        };
        return Ok(Admitted {
            session,
            hooks: response.hooks,
            body,
            replay,
        });
    }
    let answer = match (&decision.verdict, &decision.approval) {
        (Verdict::Review, Some(approval)) => json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({
                "status": "pending_approval",
                "approval": approval,
                "rule": decision.rule,
                "reason": decision.reason,
                "side": "policy",
            }),
        ),
        _ => error_response(&HttpError::Denied {
            rule: decision.rule.clone(),
            reason: decision.reason.clone(),
        }),
    };
    Err(answer)
}

/// Wraps the forwarded request's response: masks headers, and streams the body through the
/// JSON masker and the pipeline's hooks into the recording.
pub(crate) fn respond(
    shared: &Shared,
    rules: &TargetRules,
    session: Arc<HttpSession>,
    hooks: OutputHooks,
    mut response: Response<Body>,
) -> Response<Body> {
    for name in &rules.mask_headers {
        if response.headers().contains_key(name) {
            response
                .headers_mut()
                .insert(name.clone(), HeaderValue::from_static("[masked]"));
        }
    }
    let plan = BodyPlan {
        json: match (&rules.json, is_json(response.headers())) {
            (Some(paths), true) => Some(JsonMasker::new(paths.clone())),
            _ => None,
        },
        chunk_hooks: is_textual(response.headers()) && hooks.rewrites_chunks(),
        capture: shared.record_body_bytes,
    };
    let finisher = Finisher {
        hooks,
        status: response.status().as_u16(),
        scrub: rules.scrub.clone(),
        _session: session,
    };
    let (mut parts, body) = response.into_parts();
    let observed = Observed::new(body, plan, finisher);
    if observed.transforms() {
        parts.headers.remove(CONTENT_LENGTH);
    }
    Response::from_parts(parts, Body::new(observed))
}

/// Finishes a request that was admitted but failed before a response came back.
pub(crate) fn fail(
    session: Arc<HttpSession>,
    hooks: OutputHooks,
    err: &HttpError,
) -> Response<Body> {
    let mut finisher = Finisher {
        hooks,
        status: err.status().as_u16(),
        scrub: Scrub::default(),
        _session: session,
    };
    let completion = portcullis_core::Completion {
        error: Some(format!("{} side: {err}", err.side())),
        ..Default::default()
    };
    finisher.finish(completion, None);
    error_response(err)
}

/// Settings of a [`GuardLayer`].
#[derive(Debug, Clone, Default)]
pub struct GuardSettings {
    /// Method/path/query/header rules; `None` leaves the decision to the pipeline's policy.
    pub policy: Option<HttpPolicyConfig>,
    /// JSON paths and headers masked in responses.
    pub mask: MaskConfig,
    /// Request headers kept in the recording (credential headers never are).
    pub record_headers: Vec<String>,
    /// Most bytes of each request and response body kept in the recording.
    pub record_body_bytes: usize,
}

/// A tower layer that protects an in-process HTTP service (an axum `Router`, for example)
/// the way the gateway protects an upstream: each request (already authenticated by
/// [`portcullis_identity::AuthLayer`], which must wrap this layer) is recorded, decided by the
/// pipeline (with the [`HttpPolicy`] rules of the settings), and its response is masked and
/// recorded as it streams.
#[derive(Clone)]
pub struct GuardLayer {
    shared: Shared,
    rules: Arc<TargetRules>,
}

impl std::fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardLayer")
            .field("target", &self.rules.target.name)
            .finish()
    }
}

impl GuardLayer {
    /// A layer recording to the pipeline's sink, treating the wrapped service as `target`.
    pub fn new(
        pipeline: Pipeline,
        target: Target,
        settings: GuardSettings,
    ) -> Result<Self, HttpError> {
        let mut pipeline = pipeline;
        if let Some(p) = &settings.policy {
            let mut policy = HttpPolicy::new(Some(pipeline.policy.clone()));
            policy.insert(target.name.clone(), p.compile("policy")?);
            pipeline = pipeline.with_policy(Arc::new(policy));
        }
        if settings.record_body_bytes > 1 << 20 {
            return Err(HttpError::config(
                "record_body_bytes",
                "must be at most 1048576",
            ));
        }
        let rules = TargetRules::new(
            target,
            &settings.mask,
            &settings.record_headers,
            &[],
            "guard",
        )?;
        Ok(Self {
            shared: Shared::new(&pipeline, settings.record_body_bytes),
            rules: Arc::new(rules),
        })
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`GuardLayer`].
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    layer: GuardLayer,
}

impl<S: std::fmt::Debug> std::fmt::Debug for GuardService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardService")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S> Service<Request<Body>> for GuardService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let client_addr = request
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let Some(identity) = request.extensions().get::<Identity>().cloned() else {
                return Ok(error_response(&HttpError::Internal(
                    "GuardLayer needs AuthLayer in front of it".into(),
                )));
            };
            let (parts, body) = request.into_parts();
            let admitted = match admit(
                &layer.shared,
                &layer.rules,
                identity,
                client_addr,
                &parts,
                parts.uri.path(),
                body,
            )
            .await
            {
                Ok(a) => a,
                Err(answer) => return Ok(answer),
            };
            let mut request = Request::from_parts(parts, admitted.body);
            request
                .extensions_mut()
                .insert(admitted.session.ctx.identity.clone());
            let response = inner.call(request).await?;
            Ok(respond(
                &layer.shared,
                &layer.rules,
                admitted.session,
                admitted.hooks,
                response,
            ))
        })
    }
}
