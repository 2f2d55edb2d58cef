//! The admin and query API: authenticated by the identity layer, read-only access to
//! the record for members of the auditor groups.
//!
//! - `GET /v1/health`: liveness and the chain head (no authentication).
//! - `GET /v1/sessions?subject=&target=&since=&until=&limit=`: session summaries, newest first.
//! - `GET /v1/sessions/{id}`: one session's summary.
//! - `GET /v1/sessions/{id}/events`: its records as JSON lines, streamed.
//! - `GET /v1/sinks`: the SIEM sinks' states (cursor, lag, last error; docs/siem.md).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use portcullis_approvals::ApprovalService;
use portcullis_core::{Identity, SessionId, Timestamp};
use portcullis_identity::{AuthLayer, Authenticator};
use portcullis_recording::{EventStore, SessionFilter};
use portcullis_siem::SinkMonitor;
use serde::Deserialize;
use serde_json::json;

/// State shared by the handlers.
#[derive(Clone)]
struct Api {
    store: Arc<dyn EventStore>,
    auditor_groups: Arc<Vec<String>>,
    sinks: SinkMonitor,
}

/// Builds the API router.
pub fn router(
    store: Arc<dyn EventStore>,
    auth: Authenticator,
    auditor_groups: Vec<String>,
    approvals: Option<ApprovalService>,
    sinks: SinkMonitor,
) -> Router {
    let api = Api {
        store,
        auditor_groups: Arc::new(auditor_groups),
        sinks,
    };
    let protected = Router::new()
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{id}", get(session))
        .route("/v1/sessions/{id}/events", get(session_events))
        .route("/v1/sinks", get(sink_status))
        .layer(middleware::from_fn_with_state(api.clone(), require_auditor))
        .layer(AuthLayer::new(auth.clone()));
    let mut router = Router::new()
        .route("/v1/health", get(health))
        .merge(protected)
        .with_state(api.clone());
    if let Some(service) = approvals {
        let approvals = crate::approvals_api::routes(crate::approvals_api::ApprovalsApi {
            service,
            auditor_groups: api.auditor_groups.clone(),
        })
        .layer(AuthLayer::new(auth));
        router = router.merge(approvals);
    }
    router
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Only members of the auditor groups reach the record.
async fn require_auditor(State(api): State<Api>, request: Request, next: Next) -> Response {
    let allowed = request
        .extensions()
        .get::<Identity>()
        .is_some_and(|id| id.in_any(&api.auditor_groups));
    if !allowed {
        return error(StatusCode::FORBIDDEN, "not a member of an auditor group");
    }
    next.run(request).await
}

async fn health(State(api): State<Api>) -> Response {
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.head()).await {
        Ok(Ok(head)) => Json(json!({ "status": "ok", "head": head })).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn sink_status(State(api): State<Api>) -> Response {
    Json(json!({ "sinks": api.sinks.status() })).into_response()
}

/// Query parameters of `/v1/sessions`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    subject: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<Timestamp>, String> {
    value
        .map(|v| v.parse::<Timestamp>().map_err(|e| format!("{name}: {e}")))
        .transpose()
}

async fn list_sessions(State(api): State<Api>, Query(q): Query<ListQuery>) -> Response {
    let filter = match (parse_time("since", q.since), parse_time("until", q.until)) {
        (Ok(since), Ok(until)) => SessionFilter {
            subject: q.subject,
            target: q.target,
            since,
            until,
            limit: q.limit.unwrap_or(100).min(10_000),
        },
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.list_sessions(&filter)).await {
        Ok(Ok(list)) => Json(list).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn parse_id(id: &str) -> Result<SessionId, String> {
    id.parse().map_err(|_| "not a session id".to_string())
}

async fn session(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.session(id)).await {
        Ok(Ok(Some(s))) => Json(s).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no such session"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Streams a session's records as JSON lines; the store is read as the client reads.
async fn session_events(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let store = api.store.clone();
    tokio::task::spawn_blocking(move || {
        let records = match store.session_events(id) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        for record in records {
            let item = record
                .map(|r| bytes::Bytes::from(format!("{}\n", r.to_json_line())))
                .map_err(|e| std::io::Error::other(e.to_string()));
            if tx.blocking_send(item).is_err() {
                return; // the client went away
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
