//! The approvals part of the admin API (behind the identity layer).
//!
//! - `GET /v1/approvals?state=pending|all`: requests the caller may see (auditors see
//!   all; others see their own and those they may approve).
//! - `GET /v1/approvals/{id}`
//! - `POST /v1/approvals/{id}/approve` `{"justification": "...", "grant": {"duration": "30m", "kinds": ["write"], "session_only": false}}`
//! - `POST /v1/approvals/{id}/reject` `{"justification": "..."}`
//! - `GET /v1/grants?active=true`
//! - `POST /v1/grants/{id}/revoke` `{"reason": "..."}` (members of the request's approver groups, or auditors)

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use portcullis_approvals::{ApprovalError, ApprovalService, GrantSpec, RequestFilter, RequestView};
use portcullis_core::Identity;
use serde::Deserialize;
use serde_json::json;

/// State of the approvals handlers.
#[derive(Clone)]
pub struct ApprovalsApi {
    /// The service.
    pub service: ApprovalService,
    /// Groups that may see every request and revoke any grant.
    pub auditor_groups: Arc<Vec<String>>,
}

/// The approvals routes; the caller adds the identity layer.
pub fn routes(api: ApprovalsApi) -> Router {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/reject", post(reject))
        .route("/v1/grants", get(grants))
        .route("/v1/grants/{id}/revoke", post(revoke))
        .with_state(api)
}

fn failure(e: ApprovalError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

fn may_see(api: &ApprovalsApi, who: &Identity, r: &RequestView) -> bool {
    who.in_any(&api.auditor_groups) || r.requester == who.subject || who.in_any(&r.approvers)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(api): State<ApprovalsApi>,
    Extension(who): Extension<Identity>,
    Query(q): Query<ListQuery>,
) -> Response {
    let mut filter = match q.state.as_deref() {
        None | Some("pending") => RequestFilter::pending(),
        Some("all") => RequestFilter::all(),
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("state: expected pending or all, got {other}") })),
            )
                .into_response();
        }
    };
    if let Some(limit) = q.limit {
        filter.limit = limit.min(1000);
    }
    match api.service.list_requests(&filter) {
        Ok(list) => Json(
            list.into_iter()
                .filter(|r| may_see(&api, &who, r))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => failure(e),
    }
}

async fn show(
    State(api): State<ApprovalsApi>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Response {
    match api.service.get(&id) {
        Ok(r) if may_see(&api, &who, &r) => Json(r).into_response(),
        Ok(_) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "not yours to see" })),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Debug, Deserialize)]
struct DecideBody {
    justification: String,
    #[serde(default)]
    grant: Option<GrantSpec>,
}

async fn approve(
    State(api): State<ApprovalsApi>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Json(body): Json<DecideBody>,
) -> Response {
    match api
        .service
        .decide(&id, &who, true, &body.justification, body.grant)
        .await
    {
        Ok(r) => Json(r).into_response(),
        Err(e) => failure(e),
    }
}

async fn reject(
    State(api): State<ApprovalsApi>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Json(body): Json<DecideBody>,
) -> Response {
    match api
        .service
        .decide(&id, &who, false, &body.justification, None)
        .await
    {
        Ok(r) => Json(r).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Debug, Deserialize)]
struct GrantQuery {
    active: Option<bool>,
}

async fn grants(
    State(api): State<ApprovalsApi>,
    Extension(who): Extension<Identity>,
    Query(q): Query<GrantQuery>,
) -> Response {
    match api.service.list_grants(q.active.unwrap_or(true)) {
        Ok(list) => {
            let visible: Vec<_> = list
                .into_iter()
                .filter(|g| {
                    who.in_any(&api.auditor_groups)
                        || g.subject == who.subject
                        || api
                            .service
                            .get(&g.request)
                            .map(|r| who.in_any(&r.approvers))
                            .unwrap_or(false)
                })
                .collect();
            Json(visible).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Debug, Deserialize)]
struct RevokeBody {
    reason: String,
}

async fn revoke(
    State(api): State<ApprovalsApi>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Json(body): Json<RevokeBody>,
) -> Response {
    let grant = match api.service.get_grant(&id) {
        Ok(g) => g,
        Err(e) => return failure(e),
    };
    let may_revoke = who.in_any(&api.auditor_groups)
        || api
            .service
            .get(&grant.request)
            .map(|r| who.in_any(&r.approvers))
            .unwrap_or(false);
    if !may_revoke {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "only the request's approvers or auditors may revoke" })),
        )
            .into_response();
    }
    match api.service.revoke(&id, &who, &body.reason).await {
        Ok(g) => Json(g).into_response(),
        Err(e) => failure(e),
    }
}
