//! The tower layer in front of a small axum app.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::get;
use axum::{Extension, Json, Router};
use common::*;
use portcullis_core::Identity;
use portcullis_identity::{
    AuthLayer, Authenticator, DevSignerConfig, IdentityConfig, generate_api_key,
};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn whoami(Extension(identity): Extension<Identity>, headers: HeaderMap) -> Json<Value> {
    Json(json!({
        "subject": identity.subject,
        "groups": identity.groups,
        // What reached the application: the credential headers must be gone.
        "saw_authorization": headers.contains_key(header::AUTHORIZATION),
        "saw_api_key_header": headers.contains_key("x-api-key"),
    }))
}

async fn setup() -> (Router, Authenticator, String) {
    let key = generate_api_key("ci").unwrap();
    let mut config: IdentityConfig = toml::from_str(&format!(
        r#"
        header = "X-Api-Key"
        [[api_keys]]
        id = "ci"
        hash = "{}"
        subject = "ci-bot"
        groups = ["deployers"]
        "#,
        key.hash
    ))
    .unwrap();
    config.dev_signer = Some(DevSignerConfig::hs256(
        "portcullis-dev",
        "portcullis",
        HS_SECRET,
    ));
    let auth = Authenticator::from_config(&config).await.unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(AuthLayer::new(auth.clone()).with_realm("orders-api"));
    (app, auth, key.key.expose().clone())
}

async fn call(app: &Router, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::get("/whoami");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn bearer_jwt_and_api_keys_pass() {
    let (app, auth, api_key) = setup().await;
    let token = auth
        .mint_dev_token("alice", &["dba".into()], Duration::from_secs(300))
        .unwrap();
    let bearer = format!("Bearer {}", token.expose());
    let (status, _, body) = call(&app, &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"subject": "alice", "groups": ["dba"], "saw_authorization": false, "saw_api_key_header": false})
    );

    let bearer = format!("bearer {api_key}");
    let (status, _, body) = call(&app, &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["subject"], "ci-bot");

    let (status, _, body) = call(&app, &[("x-api-key", &api_key)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["subject"], "ci-bot");
    assert_eq!(body["saw_api_key_header"], false);
}

#[tokio::test]
async fn failures_are_401_without_echo() {
    let (app, _, api_key) = setup().await;

    let (status, headers, body) = call(&app, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"orders-api\""
    );
    assert_eq!(body["error"], "missing_credential");

    // Expired development token.
    let mut c = claims("portcullis-dev", "portcullis", "alice");
    c["exp"] = json!(now() - 3600);
    let token = sign(jsonwebtoken::Algorithm::HS256, "", None, &c);
    let (status, headers, body) =
        call(&app, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"orders-api\", error=\"invalid_token\", error_description=\"token expired\""
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        body,
        json!({"error": "expired", "message": "token expired"})
    );

    // A wrong API key: neither the key nor its secret comes back.
    let wrong = format!("{}x", api_key);
    let (status, headers, body) =
        call(&app, &[("authorization", &format!("Bearer {wrong}"))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unknown_api_key");
    let everything = format!("{headers:?}{body}");
    assert!(!everything.contains(&wrong));
    assert!(!everything.contains(&api_key[6..]));

    // A forged token with an unknown issuer: the issuer is named, the token is not.
    let forged = sign(
        jsonwebtoken::Algorithm::HS256,
        "",
        None,
        &claims("https://evil.test", "portcullis", "root"),
    );
    let (status, _, body) = call(&app, &[("authorization", &format!("Bearer {forged}"))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unknown_issuer");
    assert!(!body.to_string().contains(&forged));

    // Another scheme is no credential.
    let (status, _, body) = call(&app, &[("authorization", "Basic YWxpY2U6c2VjcmV0")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_credential");
}
