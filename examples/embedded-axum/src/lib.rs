//! # Embedding Portcullis in an axum service
//!
//! A Rust service can protect its own routes with the Portcullis crates directly, with no
//! gateway in front: [`portcullis_identity::AuthLayer`] authenticates each request (JWT or API
//! key), and [`portcullis_proto_http::GuardLayer`] records it, decides it through the core
//! pipeline (method/path rules here), and masks and records the response as it streams.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let service = portcullis_example_embedded_axum::build(dir.path()).await.unwrap();
//! let token = service.token_for("alice", &["staff"]).unwrap();
//! assert!(token.len() > 20);
//! # })
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::routing::{delete, get};
use portcullis_core::{Identity, Pipeline, Protocol, Target};
use portcullis_identity::{AuthLayer, Authenticator, IdentityConfig};
use portcullis_proto_http::{GuardLayer, GuardSettings, HttpPolicyConfig, MaskConfig};
use portcullis_recording::{Durability, Recorder, RecordingConfig};

/// The protected service and the pieces a caller may want to inspect.
#[derive(Debug, Clone)]
pub struct Service {
    /// The router, with authentication, policy, masking and recording in place.
    pub router: Router,
    /// The authenticator (used here to mint development tokens).
    pub auth: Authenticator,
    /// The recorder holding the evidence.
    pub recorder: Recorder,
}

impl Service {
    /// A development token for `subject` in `groups`, valid ten minutes.
    pub fn token_for(&self, subject: &str, groups: &[&str]) -> Result<String, String> {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        self.auth
            .mint_dev_token(subject, &groups, Duration::from_secs(600))
            .map(|t| t.expose().clone())
            .map_err(|e| e.to_string())
    }
}

/// The application's own handlers: they know nothing about Portcullis except that the
/// verified [`Identity`] is in the request extensions.
fn routes() -> Router {
    Router::new()
        .route(
            "/orders/{id}",
            get(
                |UrlPath(id): UrlPath<u64>, identity: axum::Extension<Identity>| async move {
                    axum::Json(serde_json::json!({
                        "id": id,
                        "viewer": identity.subject,
                        "customer": { "name": "Ann", "email": "ann@example.com" },
                        "payment": { "card": "4111 1111 1111 1111", "amount": 42 },
                    }))
                },
            ),
        )
        .route("/orders/{id}", delete(|| async { "deleted" }))
        .route("/admin/stats", get(|| async { "internal numbers" }))
}

/// Builds the protected service, recording under `store`.
pub async fn build(store: &Path) -> Result<Service, String> {
    let identity: IdentityConfig = toml::from_str(
        r#"
        [dev_signer]
        issuer = "orders-dev"
        audience = "orders"
        secret = "development secret, at least 32 bytes long"
        "#,
    )
    .map_err(|e| e.to_string())?;
    let auth = Authenticator::from_config(&identity)
        .await
        .map_err(|e| e.to_string())?;

    let mut recording = RecordingConfig::new(store);
    recording.durability = Durability::Batched;
    let recorder = Recorder::open(&recording).map_err(|e| e.to_string())?;

    let policy: HttpPolicyConfig = toml::from_str(
        r#"
        default = "deny"
        [[rules]]
        id = "no-admin"
        paths = ["/admin/**"]
        action = "deny"
        reason = "admin routes are not for API callers"
        [[rules]]
        id = "deletes-need-review"
        methods = ["DELETE"]
        action = "review"
        approvers = ["leads"]
        [[rules]]
        id = "read-orders"
        methods = ["GET"]
        paths = ["/orders/{id}"]
        action = "allow"
        "#,
    )
    .map_err(|e| e.to_string())?;
    let guard = GuardLayer::new(
        Pipeline::new(Arc::new(recorder.clone())),
        Target {
            name: "orders-api".into(),
            protocol: Protocol::Http,
            upstream: "in-process".into(),
            allowed_groups: vec!["staff".into()],
        },
        GuardSettings {
            policy: Some(policy),
            mask: MaskConfig {
                json: vec!["$.customer.email".into(), "**.card".into()],
                headers: vec![],
                content: None,
            },
            record_headers: vec!["user-agent".into()],
            record_body_bytes: 1024,
        },
    )
    .map_err(|e| e.to_string())?;

    // Layers run outside-in: authentication first, then the guard, then the handlers.
    let router = routes().layer(guard).layer(AuthLayer::new(auth.clone()));
    Ok(Service {
        router,
        auth,
        recorder,
    })
}
