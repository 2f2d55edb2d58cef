//! Webhook notifications: a bounded queue drained by a background deliverer that
//! POSTs each notification to every configured endpoint, retrying with exponential
//! backoff. The data path only ever calls `try_send`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::config::check_url;
use crate::{
    ApprovalConfig, ApprovalError, RequestView, WebhookConfig, WebhookEvent, WebhookFormat,
};

/// Deliveries in flight at once, across endpoints.
const MAX_IN_FLIGHT: usize = 16;
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A configured webhook with its parsed URL and a loggable label (no path or query).
struct Endpoint {
    uri: http::Uri,
    label: String,
    config: WebhookConfig,
}

/// One notification about a request.
pub(crate) struct Notice {
    pub(crate) event: WebhookEvent,
    pub(crate) request: RequestView,
    pub(crate) approve_url: Option<String>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) queued: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) given_up: AtomicU64,
}

/// The sending half; dropping it stops the deliverer once the queue is drained.
pub(crate) struct Webhooks {
    tx: Option<mpsc::Sender<Notice>>,
    pub(crate) counters: Arc<Counters>,
}

impl Webhooks {
    /// Starts the deliverer when at least one webhook is configured.
    pub(crate) fn start(config: &ApprovalConfig) -> Result<Self, ApprovalError> {
        let counters = Arc::new(Counters::default());
        if config.webhooks.is_empty() {
            return Ok(Self { tx: None, counters });
        }
        let mut hooks = Vec::new();
        for hook in &config.webhooks {
            let uri = check_url(hook.url.expose()).map_err(|message| ApprovalError::Config {
                key: "approvals.webhooks.url".into(),
                message,
            })?;
            let endpoint = format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.host().unwrap_or(""),
                uri.port().map(|p| format!(":{p}")).unwrap_or_default()
            );
            hooks.push(Endpoint {
                uri,
                label: endpoint,
                config: hook.clone(),
            });
        }
        let client = http_client()?;
        let (tx, rx) = mpsc::channel(config.webhook_queue);
        tokio::spawn(deliverer(rx, Arc::new(hooks), client, counters.clone()));
        Ok(Self {
            tx: Some(tx),
            counters,
        })
    }

    /// Queues a notification without waiting; a full queue drops it (counted and logged).
    pub(crate) fn notify(&self, notice: Notice) {
        let Some(tx) = &self.tx else {
            return;
        };
        let id = notice.request.id.clone();
        match tx.try_send(notice) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(request = %id, dropped, error = %e, "approval notification dropped: queue full");
            }
        }
    }
}

fn http_client() -> Result<HttpClient, ApprovalError> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ApprovalError::Internal(format!("TLS setup failed: {e}")))
    };
    let tls = match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) => {
            tracing::warn!(error = %e, "no trusted root certificates: https webhooks will fail");
            builder()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn deliverer(
    mut rx: mpsc::Receiver<Notice>,
    hooks: Arc<Vec<Endpoint>>,
    client: HttpClient,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(notice) = rx.recv().await {
        for endpoint in hooks.iter() {
            let hook = &endpoint.config;
            if hook
                .events
                .as_ref()
                .is_some_and(|events| !events.contains(&notice.event))
            {
                continue;
            }
            let body = match hook.format {
                WebhookFormat::Json => json_body(&notice),
                WebhookFormat::Slack => slack_body(&notice),
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            let counters = counters.clone();
            let uri = endpoint.uri.clone();
            let label = endpoint.label.clone();
            let hook = hook.clone();
            let id = notice.request.id.clone();
            tokio::spawn(async move {
                deliver(&client, &uri, &label, &hook, body, &id, &counters).await;
                drop(permit);
            });
        }
    }
}

async fn deliver(
    client: &HttpClient,
    uri: &http::Uri,
    label: &str,
    hook: &WebhookConfig,
    body: Bytes,
    request: &str,
    counters: &Counters,
) {
    let mut backoff = hook.initial_backoff;
    for attempt in 1..=hook.attempts {
        match post(client, uri, body.clone(), hook.timeout).await {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    request,
                    webhook = label,
                    attempt,
                    "approval notification delivered"
                );
                return;
            }
            Err(e) => {
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(request, webhook = label, attempt, attempts = hook.attempts, error = %e, "approval notification failed");
            }
        }
        if attempt < hook.attempts {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }
    counters.given_up.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        request,
        webhook = label,
        attempts = hook.attempts,
        "approval notification given up"
    );
}

async fn post(
    client: &HttpClient,
    uri: &http::Uri,
    body: Bytes,
    timeout: Duration,
) -> Result<(), String> {
    let request = http::Request::post(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "portcullis")
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let work = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP status {}", response.status()))
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("timed out after {}", humantime::format_duration(timeout)))?
}

/// Where an approver can approve this request over HTTP.
pub(crate) fn approve_link(base: &str, id: &str) -> String {
    format!("{}/v1/approvals/{id}/approve", base.trim_end_matches('/'))
}

/// The JSON notification body.
pub(crate) fn json_body(notice: &Notice) -> Bytes {
    let r = &notice.request;
    let votes: Vec<_> = r
        .votes
        .iter()
        .map(|v| {
            json!({
                "approver": v.approver,
                "approved": v.approved,
                "justification": v.justification,
                "at": v.at.to_string(),
            })
        })
        .collect();
    let body = json!({
        "event": notice.event.as_str(),
        "id": r.id,
        "state": r.state,
        "requester": r.requester,
        "target": r.target,
        "command": r.command.summary(),
        "rule": r.rule,
        "reason": r.reason,
        "kinds": r.kinds,
        "approvers": r.approvers,
        "quorum": r.quorum,
        "progress": r.progress(),
        "votes": votes,
        "created_at": r.created_at.to_string(),
        "expires_at": r.expires_at.to_string(),
        "grant": r.grant,
        "approve_url": notice.approve_url.as_deref().map(|b| approve_link(b, &r.id)),
    });
    Bytes::from(body.to_string())
}

/// Escapes the characters Slack treats as markup.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Slack-compatible notification body.
pub(crate) fn slack_body(notice: &Notice) -> Bytes {
    let r = &notice.request;
    let e = slack_escape;
    let command = e(&r.command.summary()).replace('`', "'");
    let text = match notice.event {
        WebhookEvent::Requested => {
            let mut t = format!(
                "Portcullis: *{}* asks to run `{}` on *{}* (rule {}: {}). Request {} needs {} from {}. Approve with `portcullis approvals approve {}`",
                e(&r.requester),
                command,
                e(&r.target),
                e(&r.rule),
                e(&r.reason),
                r.id,
                r.quorum_text(),
                e(&r.approvers.join(", ")),
                r.id,
            );
            if let Some(base) = &notice.approve_url {
                t.push_str(&format!(" or POST {}", approve_link(base, &r.id)));
            }
            t.push('.');
            t
        }
        WebhookEvent::Decided => {
            let last = r.votes.last();
            format!(
                "Portcullis: *{}* {} request {} (*{}* on *{}*: `{}`): {}. {}.",
                e(last.map(|v| v.approver.as_str()).unwrap_or("?")),
                if last.is_some_and(|v| v.approved) {
                    "approved"
                } else {
                    "rejected"
                },
                r.id,
                e(&r.requester),
                e(&r.target),
                command,
                e(last.map(|v| v.justification.as_str()).unwrap_or("")),
                r.progress(),
            )
        }
        WebhookEvent::Closed => format!(
            "Portcullis: request {} (*{}* on *{}*: `{}`) is {}.",
            r.id,
            e(&r.requester),
            e(&r.target),
            command,
            r.state,
        ),
    };
    Bytes::from(json!({ "text": text }).to_string())
}
