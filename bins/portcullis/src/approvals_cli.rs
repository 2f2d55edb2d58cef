//! `portcullis approvals ...`: approvers' side of just-in-time approval, through a
//! running gateway's admin API.

use bytes::Bytes;
use clap::Subcommand;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Approval commands.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// List requests (pending by default).
    List {
        /// Include decided, expired and used requests.
        #[arg(long)]
        all: bool,
    },
    /// Show one request.
    Show {
        /// Request id.
        id: String,
    },
    /// Approve a request (one-time, or a just-in-time grant with --grant).
    Approve {
        /// Request id.
        id: String,
        /// Why (recorded).
        #[arg(long, short)]
        justification: String,
        /// Issue a grant for this long (e.g. 30m) instead of a one-time approval.
        #[arg(long)]
        grant: Option<String>,
        /// Statement kinds the grant covers (comma-separated; empty: this command only).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// End the grant when the requesting session closes.
        #[arg(long)]
        session_only: bool,
    },
    /// Reject a request.
    Reject {
        /// Request id.
        id: String,
        /// Why (recorded).
        #[arg(long, short)]
        justification: String,
    },
    /// List grants (active by default).
    Grants {
        /// Include ended grants.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a grant.
    Revoke {
        /// Grant id.
        id: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
}

/// Runs an approvals command against `gateway` with `token`; prints the JSON answer.
pub async fn run(gateway: &str, token: &str, cmd: ApprovalsCmd) -> Result<(), String> {
    let base = gateway.trim_end_matches('/');
    let (method, path, body) = match cmd {
        ApprovalsCmd::List { all } => (
            "GET",
            format!(
                "/v1/approvals?state={}",
                if all { "all" } else { "pending" }
            ),
            None,
        ),
        ApprovalsCmd::Show { id } => ("GET", format!("/v1/approvals/{id}"), None),
        ApprovalsCmd::Approve {
            id,
            justification,
            grant,
            kinds,
            session_only,
        } => {
            let grant = grant.map(|d| {
                serde_json::json!({
                    "duration": d,
                    "kinds": kinds.into_iter().filter(|k| !k.is_empty()).collect::<Vec<_>>(),
                    "session_only": session_only,
                })
            });
            (
                "POST",
                format!("/v1/approvals/{id}/approve"),
                Some(serde_json::json!({ "justification": justification, "grant": grant })),
            )
        }
        ApprovalsCmd::Reject { id, justification } => (
            "POST",
            format!("/v1/approvals/{id}/reject"),
            Some(serde_json::json!({ "justification": justification })),
        ),
        ApprovalsCmd::Grants { all } => ("GET", format!("/v1/grants?active={}", !all), None),
        ApprovalsCmd::Revoke { id, reason } => (
            "POST",
            format!("/v1/grants/{id}/revoke"),
            Some(serde_json::json!({ "reason": reason })),
        ),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let body = match body {
        Some(v) => Full::new(Bytes::from(v.to_string())),
        None => Full::new(Bytes::new()),
    };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| format!("bad gateway URL: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{base}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{base}: {e}"))?
        .to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    if !status.is_success() {
        let message = value
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        return Err(format!("{status}: {message}"));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
    );
    Ok(())
}
