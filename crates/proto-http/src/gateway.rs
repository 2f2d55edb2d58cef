//! [`HttpGateway`]: routing, forwarding, upgrades and the listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use http::header::{
    CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use portcullis_core::{
    Completion, Event, EventKind, Identity, OutputHooks, Pipeline, Protocol, SessionId, Target,
};
use portcullis_identity::{AuthLayer, Authenticator, IdentityError};
use tokio::net::TcpListener;

use crate::HttpError;
use crate::body::{Finisher, Scrub};
use crate::config::HttpGatewayConfig;
use crate::guard::{Shared, TargetRules, admit, error_response, fail, refuse, respond};
use crate::policy::HttpPolicy;
use crate::session::{ConnectionSessions, HttpSession};
use crate::upstream::{Upstream, provider};

/// Headers that belong to one connection and are never forwarded.
/// Parsed once: removing by `&str` would parse each name on every request.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

struct Route {
    host: Option<String>,
    prefix: Option<String>,
    strip: bool,
    target: Arc<TargetRuntime>,
}

struct TargetRuntime {
    rules: TargetRules,
    upstream: Upstream,
    preserve_host: bool,
    strip_headers: Vec<HeaderName>,
}

struct Inner {
    config: HttpGatewayConfig,
    shared: Shared,
    routes: Vec<Route>,
    auth: Authenticator,
    /// The pipeline as given to [`HttpGateway::new`], to build each worker's gateway.
    given: Pipeline,
}

/// The HTTP API gateway: authenticates each request, routes it to a target, decides it
/// through the pipeline, injects the target's credential, forwards it, and masks and
/// records the response as it streams back.
#[derive(Clone)]
pub struct HttpGateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGateway")
            .field("routes", &self.inner.routes.len())
            .field("listen", &self.inner.config.listen)
            .finish()
    }
}

impl HttpGateway {
    /// Validates `config`, reads credentials and certificates, builds one connection pool per
    /// target, and installs an [`HttpPolicy`] for the targets that have `policy` rules in front
    /// of the pipeline's own policy (which still decides for the others).
    pub fn new(
        config: HttpGatewayConfig,
        authenticator: Authenticator,
        pipeline: Pipeline,
    ) -> Result<Self, HttpError> {
        config.validate()?;
        let given = pipeline.clone();
        let mut policy = HttpPolicy::new(Some(pipeline.policy.clone()));
        let mut targets = HashMap::new();
        for (name, t) in &config.targets {
            let at = format!("targets.{name}");
            if let Some(p) = &t.policy {
                policy.insert(name.clone(), p.compile(&format!("{at}.policy"))?);
            }
            let upstream = Upstream::new(t, &at)?;
            let never: Vec<HeaderName> =
                upstream.credential.iter().map(|(n, _)| n.clone()).collect();
            let target = Target {
                name: name.clone(),
                protocol: Protocol::Http,
                upstream: upstream.authority.to_string(),
                allowed_groups: t.allowed_groups.clone(),
            };
            let mut rules = TargetRules::new(target, &t.mask, &t.record_headers, &never, &at)?;
            rules.scrub = Scrub(Arc::new(upstream.secrets.clone()));
            let mut strip_headers: Vec<HeaderName> = never;
            for h in &t.strip_headers {
                strip_headers.push(HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    HttpError::config(format!("{at}.strip_headers"), "not a header name")
                })?);
            }
            targets.insert(
                name.clone(),
                Arc::new(TargetRuntime {
                    rules,
                    upstream,
                    preserve_host: t.preserve_host,
                    strip_headers,
                }),
            );
        }
        let routes = config
            .routes
            .iter()
            .filter_map(|r| {
                Some(Route {
                    host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    prefix: r
                        .path_prefix
                        .as_ref()
                        .map(|p| p.trim_end_matches('/').to_owned()),
                    strip: r.strip_prefix,
                    target: targets.get(&r.target)?.clone(),
                })
            })
            .collect();
        let pipeline = if policy.is_empty() {
            pipeline
        } else {
            pipeline.with_policy(Arc::new(policy))
        };
        let shared = Shared::new(&pipeline, config.record_body_bytes);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                shared,
                routes,
                auth: authenticator,
                given,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HttpGatewayConfig {
        &self.inner.config
    }

    /// The gateway as an axum router (authentication included). Serve it with
    /// [`HttpGateway::serve`] for the header limits, slow-client timeout and upgrades, or with
    /// any hyper server that supports upgrades; the client address is taken from
    /// `ConnectInfo<SocketAddr>` when present.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(handle)
            .with_state(self.inner.clone())
            .layer(self.auth_layer())
    }

    /// The identity layer, recording every refusal.
    fn auth_layer(&self) -> AuthLayer {
        let sink = self.inner.shared.sink.clone();
        // Failed authentications are audit events too (AU-2): recorded without waiting, so a
        // flood of bad credentials cannot hold requests up behind the recorder.
        let record_refusal = move |error: &IdentityError, ext: &http::Extensions| {
            let event = Event::now(
                SessionId::new(),
                EventKind::SessionRefused {
                    subject: None,
                    target: None,
                    client_addr: ext
                        .get::<ConnectInfo<SocketAddr>>()
                        .map(|c| c.0.to_string()),
                    side: error.side(),
                    reason: error.to_string(),
                },
            );
            if let Err(e) = sink.submit(event) {
                tracing::error!(error = %e, "authentication refusal not recorded");
            }
        };
        AuthLayer::new(self.inner.auth.clone()).on_refusal(record_refusal)
    }

    /// Accepts connections on `listener` until `shutdown` resolves, then stops accepting and
    /// lets requests in flight finish (at most 30 s). HTTP/1.1 and HTTP/2 (h2c, or ALPN with
    /// `tls`); request heads larger than `max_header_bytes` get 431; a client that does not
    /// send a complete head within `header_read_timeout` is disconnected.
    ///
    /// Without `workers` connections are served on the caller's runtime; with `workers = N`
    /// on N threads of their own, each running a single-threaded runtime with its own upstream
    /// connection pools and accepting from `listener`: a request and its upstream connection
    /// stay on one thread, with no hand-over between threads (what nginx workers do). A worker
    /// that stops with an error stops the others; the first error is returned.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), HttpError> {
        match self.inner.config.workers {
            None | Some(0) => self.serve_here(listener, shutdown).await,
            Some(n) => self.serve_on_workers(n, listener, shutdown).await,
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a timer due within [`TIMER_TICK`] on the serving runtime, forever.
///
/// tokio wakes its I/O driver (an `eventfd` write, then one more `epoll_wait` round)
/// whenever a new timer is due before every timer it knew of when it last parked. Each
/// request head arms one (`header_read_timeout`); with no earlier timer pending, every
/// request paid that wake-up. With this tick pending, request timers (seconds away) come
/// after it and are inserted without waking anything.
async fn keep_timer_due() {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Period of [`keep_timer_due`]: shorter than any request timeout worth having.
const TIMER_TICK: Duration = Duration::from_millis(250);

impl HttpGateway {
    /// [`HttpGateway::serve`] on `n` dedicated threads.
    async fn serve_on_workers(
        self,
        n: usize,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), HttpError> {
        use futures::StreamExt;
        let listener = listener.into_std().map_err(HttpError::Listen)?;
        // Dropping `stop` (an early return below) stops the workers already started too.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut running = futures::stream::FuturesUnordered::new();
        for i in 0..n {
            // One gateway (and so one set of upstream pools) per worker: a pool spawns its
            // connections on the runtime that uses it, and the caller's gateway may still be
            // serving elsewhere (it is `Clone`; `router()`).
            let gateway = Self::new(
                self.inner.config.clone(),
                self.inner.auth.clone(),
                self.inner.given.clone(),
            )?;
            let listener = listener.try_clone().map_err(HttpError::Listen)?;
            let mut stopped = stopped.clone();
            let (done, finished) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name(format!("portcullis-http-{i}"))
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| HttpError::Internal(format!("worker runtime: {e}")))
                        .and_then(|rt| {
                            rt.block_on(async move {
                                let listener =
                                    TcpListener::from_std(listener).map_err(HttpError::Listen)?;
                                let stop = async move {
                                    let _ = stopped.wait_for(|s| *s).await;
                                };
                                gateway.serve_here(listener, stop).await
                            })
                        });
                    let _ = done.send(result);
                })
                .map_err(|e| HttpError::Internal(format!("cannot start worker thread: {e}")))?;
            running.push(finished);
        }
        drop(listener);
        let worker_result = |r: Result<Result<(), HttpError>, _>| {
            r.unwrap_or_else(|_| Err(HttpError::Internal("worker thread ended abruptly".into())))
        };
        let mut result = Ok(());
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            Some(early) = running.next() => {
                result = worker_result(early);
                if result.is_ok() {
                    result = Err(HttpError::Internal("a worker stopped serving".into()));
                }
            }
        }
        let _ = stop.send(true);
        while let Some(r) = running.next().await {
            if let (Ok(()), Err(e)) = (&result, worker_result(r)) {
                result = Err(e);
            }
        }
        result
    }

    /// [`HttpGateway::serve`] on the caller's runtime.
    async fn serve_here(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), HttpError> {
        let cfg = &self.inner.config;
        let tls = match &cfg.tls {
            Some(t) => Some(tls_acceptor(t)?),
            None => None,
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .max_buf_size(cfg.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        // The router's flow without axum's routing: every request goes to `handle`.
        let inner = self.inner.clone();
        let app = tower::Layer::layer(
            &self.auth_layer(),
            tower::service_fn(move |req: Request<Body>| {
                let gw = inner.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(State(gw), req).await) }
            }),
        );
        let _ticker = AbortOnDrop(tokio::spawn(keep_timer_due()));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let handshake_timeout = cfg.header_read_timeout;
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Running out of file descriptors and similar: wait a little, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            // The connection's recorded sessions close when the connection (and with it
            // this service) and their last request in flight are gone.
            let sessions = ConnectionSessions::default();
            let svc = tower::ServiceBuilder::new()
                .map_request(move |mut r: Request<hyper::body::Incoming>| {
                    r.extensions_mut().insert(ConnectInfo(peer));
                    r.extensions_mut().insert(sessions.clone());
                    r.map(Body::new)
                })
                .service(app.clone());
            let svc = TowerToHyperService::new(svc);
            let builder = builder.clone();
            match &tls {
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                            .into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after 30 s; closing them");
        }
        Ok(())
    }
}

fn tls_acceptor(
    t: &crate::config::ListenerTlsConfig,
) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
    let pem = std::fs::read(&t.cert_file)
        .map_err(|e| HttpError::config("tls.cert_file", e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::config("tls.cert_file", e.to_string()))?;
    let pem =
        std::fs::read(&t.key_file).map_err(|e| HttpError::config("tls.key_file", e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| HttpError::config("tls.key_file", e.to_string()))?
        .ok_or_else(|| HttpError::config("tls.key_file", "no private key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Internal(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| HttpError::config("tls", e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The request's host name, without port, lowercased.
fn request_host(req: &Request<Body>) -> String {
    let raw = req
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    h.rsplit_once(':')
                        .map_or(h, |(host, port)| {
                            if port.chars().all(|c| c.is_ascii_digit()) {
                                host
                            } else {
                                h
                            }
                        })
                        .to_owned()
                })
        })
        .unwrap_or_default();
    raw.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// The matching route and the path to forward.
fn route<'a>(routes: &'a [Route], host: &str, path: &str) -> Option<(&'a Route, String)> {
    routes.iter().find_map(|r| {
        if let Some(h) = &r.host
            && h != host
        {
            return None;
        }
        let forward = match &r.prefix {
            None => path.to_owned(),
            Some(p) if p.is_empty() => path.to_owned(),
            Some(p) => {
                let rest = path.strip_prefix(p.as_str())?;
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return None;
                }
                if r.strip {
                    if rest.is_empty() {
                        "/".to_owned()
                    } else {
                        rest.to_owned()
                    }
                } else {
                    path.to_owned()
                }
            }
        };
        Some((r, forward))
    })
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (and those named in `Connection`); keeps the upgrade pair if asked.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == UPGRADE) {
            headers.remove(name);
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
}

async fn handle(State(gw): State<Arc<Inner>>, req: Request<Body>) -> Response<Body> {
    let client_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let Some(identity) = req.extensions().get::<Identity>().cloned() else {
        return error_response(&HttpError::Internal(
            "request reached the gateway unauthenticated".into(),
        ));
    };
    let host = request_host(&req);
    let path = req.uri().path().to_owned();
    let Some((route, forward_path)) = route(&gw.routes, &host, &path) else {
        let err = HttpError::NoRoute { host, path };
        return refuse(&gw.shared, Some(&identity), None, client_addr, err).await;
    };
    let target = route.target.clone();
    let mut req = req;
    let upgrade = wants_upgrade(req.headers()) && req.version() == Version::HTTP_11;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let admitted = match admit(
        &gw.shared,
        &target.rules,
        identity,
        client_addr,
        &parts,
        &forward_path,
        body,
    )
    .await
    {
        Ok(a) => a,
        Err(answer) => return answer,
    };

    let uri = match target.upstream.uri(&forward_path, parts.uri.query()) {
        Ok(u) => u,
        Err(e) => return fail(admitted.session, admitted.hooks, &e),
    };
    // The request's headers are not needed after admission: moved, not copied.
    let mut headers = std::mem::take(&mut parts.headers);
    let upgrade_value = if upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(&mut headers, upgrade);
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = upgrade_value {
            headers.insert(UPGRADE, u);
        }
    }
    for h in &target.strip_headers {
        headers.remove(h);
    }
    if !target.preserve_host {
        headers.remove(HOST);
    } else if parts.version == Version::HTTP_2
        && !headers.contains_key(HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        headers.insert(HOST, v);
    }
    if let Some(addr) = client_addr
        && let Ok(v) = HeaderValue::from_str(&addr.ip().to_string())
    {
        headers.append(HeaderName::from_static("x-forwarded-for"), v);
    }
    if let Some((name, value)) = &target.upstream.credential {
        headers.insert(name.clone(), value.expose().clone());
    }
    let mut upstream_req = Request::new(admitted.body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    *upstream_req.version_mut() = Version::HTTP_11;

    let response = match target
        .upstream
        .send(upstream_req, admitted.replay, upgrade)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(session = %admitted.session.ctx.id, error = %e, "upstream request failed");
            return fail(admitted.session, admitted.hooks, &e);
        }
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        return switch(
            &gw.config,
            admitted.session,
            admitted.hooks,
            client_upgrade,
            response,
        );
    }
    let (mut rparts, rbody) = response.into_parts();
    strip_hop_by_hop(&mut rparts.headers, false);
    let response = Response::from_parts(rparts, Body::new(rbody));
    respond(
        &gw.shared,
        &target.rules,
        admitted.session,
        admitted.hooks,
        response,
    )
}

/// Completes an upgrade: answers 101 to the client and copies both directions with bounded
/// buffers until either side closes; the byte counts go into the recording.
fn switch(
    config: &HttpGatewayConfig,
    session: Arc<HttpSession>,
    hooks: OutputHooks,
    client_upgrade: hyper::upgrade::OnUpgrade,
    mut upstream: Response<hyper::body::Incoming>,
) -> Response<Body> {
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let mut finisher = Finisher {
        hooks,
        status: 101,
        scrub: Scrub::default(),
        _session: session,
    };
    let buffer = config.upgrade_buffer_bytes;
    tokio::spawn(async move {
        let mut completion = Completion::default();
        match futures::future::try_join(client_upgrade, upstream_upgrade).await {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    buffer,
                    buffer,
                )
                .await
                {
                    Ok((up, down)) => {
                        completion.bytes = up.saturating_add(down);
                        completion
                            .details
                            .insert("client_to_upstream".into(), up.to_string());
                        completion
                            .details
                            .insert("upstream_to_client".into(), down.to_string());
                    }
                    Err(e) => completion.error = Some(format!("upgraded stream failed: {e}")),
                }
            }
            Err(e) => completion.error = Some(format!("upgrade failed: {e}")),
        }
        completion.details.insert("upgraded".into(), "true".into());
        finisher.finish(completion, None);
    });
    let (parts, _) = upstream.into_parts();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = parts.headers;
    response
}
