//! [`SessionAwareSink`]: ends session-only grants when their session closes.

use std::sync::Arc;

use portcullis_core::{BoxFuture, Event, EventKind, EventSink, Result};

use crate::ApprovalService;

/// An [`EventSink`] that forwards every event to an inner sink (the gateway's
/// recorder) and, once a `SessionClosed` event is recorded, ends the session-only
/// grants bound to that session.
///
/// Give the approval service the inner sink, and the pipeline this wrapper.
#[derive(Clone)]
pub struct SessionAwareSink {
    inner: Arc<dyn EventSink>,
    approvals: ApprovalService,
}

impl SessionAwareSink {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventSink>, approvals: ApprovalService) -> Self {
        Self { inner, approvals }
    }
}

impl std::fmt::Debug for SessionAwareSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAwareSink").finish_non_exhaustive()
    }
}

async fn end_grants(approvals: ApprovalService, session: portcullis_core::SessionId) {
    match approvals.session_closed(session).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(%session, grants = n, "session-only grants ended"),
        // The grants cannot be used anyway (their session sends no more commands);
        // they end as expired at their end time.
        Err(e) => tracing::error!(%session, error = %e, "ending session-only grants failed"),
    }
}

impl EventSink for SessionAwareSink {
    fn record(&self, event: Event) -> BoxFuture<'static, Result<()>> {
        let closed = matches!(event.kind, EventKind::SessionClosed { .. }).then_some(event.session);
        let recorded = self.inner.record(event);
        let approvals = self.approvals.clone();
        Box::pin(async move {
            recorded.await?;
            if let Some(session) = closed {
                end_grants(approvals, session).await;
            }
            Ok(())
        })
    }

    fn submit(&self, event: Event) -> Result<()> {
        let closed = matches!(event.kind, EventKind::SessionClosed { .. }).then_some(event.session);
        self.inner.submit(event)?;
        if let Some(session) = closed {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(end_grants(self.approvals.clone(), session));
                }
                Err(_) => tracing::error!(%session, "no runtime to end session-only grants"),
            }
        }
        Ok(())
    }
}
