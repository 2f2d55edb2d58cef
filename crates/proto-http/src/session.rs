//! Recorded sessions of HTTP requests: one per client connection, identity and target when
//! the connection carries [`ConnectionSessions`] (the gateway's listener adds it), one per
//! request otherwise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_core::{
    Event, EventKind, EventSink, Identity, Protocol, SessionContext, SessionId, Target, Timestamp,
};

use crate::HttpError;

/// Most sessions one connection keeps open (one per identity and target); past it the oldest
/// closes once its requests in flight end.
const MAX_PER_CONNECTION: usize = 16;

/// Whether a session spans a connection or a single request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Connection,
    Request,
}

/// One recorded session. `session_opened` is recorded (and awaited: fail closed) before the
/// first command; `session_closed` is submitted when the last holder lets go: the
/// connection and every request of the session still in flight.
pub(crate) struct HttpSession {
    pub ctx: Arc<SessionContext>,
    sink: Arc<dyn EventSink>,
    scope: Scope,
    http_version: http::Version,
    opened: tokio::sync::OnceCell<()>,
    commands: AtomicU64,
}

impl HttpSession {
    fn new(
        sink: Arc<dyn EventSink>,
        scope: Scope,
        identity: &Identity,
        target: &Arc<Target>,
        client_addr: Option<SocketAddr>,
        http_version: http::Version,
    ) -> Self {
        Self {
            ctx: Arc::new(SessionContext {
                id: SessionId::new(),
                identity: identity.clone(),
                target: target.clone(),
                client_addr,
                opened_at: Timestamp::now(),
            }),
            sink,
            scope,
            http_version,
            opened: tokio::sync::OnceCell::new(),
            commands: AtomicU64::new(0),
        }
    }

    /// A session for this request alone.
    pub fn for_request(
        sink: Arc<dyn EventSink>,
        identity: &Identity,
        target: &Arc<Target>,
        client_addr: Option<SocketAddr>,
        http_version: http::Version,
    ) -> Arc<Self> {
        Arc::new(Self::new(
            sink,
            Scope::Request,
            identity,
            target,
            client_addr,
            http_version,
        ))
    }

    /// Records `session_opened` the first time; later calls return at once. A failed
    /// attempt is not remembered, so the next request tries again.
    pub async fn open(&self) -> Result<(), HttpError> {
        let _: &() = self
            .opened
            .get_or_try_init(|| async {
                let mut details = BTreeMap::new();
                let scope = match self.scope {
                    Scope::Connection => "connection",
                    Scope::Request => "request",
                };
                details.insert("scope".to_owned(), scope.to_owned());
                details.insert(
                    "http_version".to_owned(),
                    format!("{:?}", self.http_version),
                );
                let event = Event::now(
                    self.ctx.id,
                    EventKind::SessionOpened {
                        identity: self.ctx.identity.clone(),
                        target: self.ctx.target.name.clone(),
                        protocol: Protocol::Http,
                        client_addr: self.ctx.client_addr.map(|a| a.to_string()),
                        details,
                    },
                );
                self.sink
                    .record(event)
                    .await
                    .map_err(|e| HttpError::Audit(e.to_string()))
            })
            .await?;
        Ok(())
    }

    /// The sequence number of the session's next command, from 1.
    pub fn next_seq(&self) -> u64 {
        self.commands
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// Whether a request of `identity` to `target` belongs to this session. The credential's
    /// expiry is left out: a refreshed token of the same caller stays in the session.
    fn serves(&self, identity: &Identity, target: &Target) -> bool {
        let own = &self.ctx.identity;
        self.ctx.target.name == target.name
            && own.subject == identity.subject
            && own.groups == identity.groups
            && own.method == identity.method
            && own.issuer == identity.issuer
    }
}

impl Drop for HttpSession {
    fn drop(&mut self) {
        if !self.opened.initialized() {
            return;
        }
        let reason = match self.scope {
            Scope::Connection => "connection ended",
            Scope::Request => "request ended",
        };
        let event = Event::now(
            self.ctx.id,
            EventKind::SessionClosed {
                reason: reason.to_owned(),
                commands: self.commands.load(Ordering::Relaxed),
            },
        );
        if let Err(e) = self.sink.submit(event) {
            tracing::error!(session = %self.ctx.id, error = %e, "session close not recorded");
        }
    }
}

/// The recorded sessions of one client connection, as a request extension.
///
/// [`HttpGateway::serve`](crate::HttpGateway::serve) adds one to every connection it
/// accepts, so that the requests of a connection share one recorded session per identity
/// and target (opened with the first request, closed when the connection ends): two events
/// per request instead of four. An embedding server can do the same in front of
/// [`GuardLayer`](crate::GuardLayer) by inserting one clone per connection into each
/// request's extensions. Without it, each request is a session of its own.
#[derive(Clone, Default)]
pub struct ConnectionSessions {
    open: Arc<Mutex<Vec<Arc<HttpSession>>>>,
}

impl std::fmt::Debug for ConnectionSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.open.lock().map(|o| o.len()).unwrap_or_default();
        f.debug_struct("ConnectionSessions")
            .field("open", &n)
            .finish()
    }
}

impl ConnectionSessions {
    /// The connection's session for `identity` on `target`, opened if there is none yet.
    pub(crate) fn session(
        &self,
        sink: &Arc<dyn EventSink>,
        identity: &Identity,
        target: &Arc<Target>,
        client_addr: Option<SocketAddr>,
        http_version: http::Version,
    ) -> Result<Arc<HttpSession>, HttpError> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| HttpError::Internal("connection session lock poisoned".into()))?;
        if let Some(s) = open.iter().find(|s| s.serves(identity, target)) {
            return Ok(s.clone());
        }
        if open.len() >= MAX_PER_CONNECTION {
            open.remove(0);
        }
        let session = Arc::new(HttpSession::new(
            sink.clone(),
            Scope::Connection,
            identity,
            target,
            client_addr,
            http_version,
        ));
        open.push(session.clone());
        Ok(session)
    }
}
