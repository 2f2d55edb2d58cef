//! JWKS by URL (a local HTTP server on 127.0.0.1) and by file: rotation, refresh, rate limiting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use common::*;
use jsonwebtoken::Algorithm;
use portcullis_core::Side;
use portcullis_identity::{Authenticator, IdentityConfig, IdentityError, IssuerConfig};

const ISS: &str = "https://idp.test/realms/main";
const AUD: &str = "portcullis";
const MIN_INTERVAL_PASSED: Duration = Duration::from_millis(1100);

#[derive(Default)]
struct Jwks {
    body: String,
    status: u16,
    hits: usize,
}

type Shared = Arc<Mutex<Jwks>>;

async fn serve_jwks(State(state): State<Shared>) -> (StatusCode, String) {
    let mut s = state.lock().unwrap();
    s.hits += 1;
    (StatusCode::from_u16(s.status).unwrap(), s.body.clone())
}

/// Starts a JWKS server on 127.0.0.1:0 serving `body`; returns its URL and state.
async fn server(body: String) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Jwks {
        body,
        status: 200,
        hits: 0,
    }));
    let app = Router::new()
        .route("/certs", get(serve_jwks))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/certs"), state)
}

fn issuer(url: &str, refresh: Duration, min_interval: Duration) -> IdentityConfig {
    let mut issuer = IssuerConfig::new(ISS, &[AUD], &["RS256", "ES256", "EdDSA"]);
    issuer.jwks_url = Some(url.to_owned());
    issuer.jwks_refresh = refresh;
    issuer.jwks_min_interval = min_interval;
    IdentityConfig {
        issuers: vec![issuer],
        ..Default::default()
    }
}

fn token(alg: Algorithm, key: &str, kid: &str) -> String {
    sign(alg, key, Some(kid), &claims(ISS, AUD, "alice"))
}

fn hits(state: &Shared) -> usize {
    state.lock().unwrap().hits
}

#[tokio::test]
async fn rotation_on_unknown_kid() {
    let (url, state) = server(jwks(&[
        jwk(Algorithm::RS256, "rsa1.key.pem", "k1"),
        jwk(Algorithm::ES256, "ec256.key.pem", "e1"),
    ]))
    .await;
    let auth = Authenticator::from_config(&issuer(
        &url,
        Duration::from_secs(3600),
        Duration::from_secs(1),
    ))
    .await
    .unwrap();
    assert_eq!(hits(&state), 1);

    let id = auth
        .authenticate(&token(Algorithm::RS256, "rsa1.key.pem", "k1"))
        .await
        .unwrap();
    assert_eq!(id.subject, "alice");
    auth.authenticate(&token(Algorithm::ES256, "ec256.key.pem", "e1"))
        .await
        .unwrap();
    // Known keys: no fetch.
    assert_eq!(hits(&state), 1);

    // The IdP rotates to new keys (later than the 1 s minimum interval after the first fetch).
    tokio::time::sleep(MIN_INTERVAL_PASSED).await;
    state.lock().unwrap().body = jwks(&[
        jwk(Algorithm::RS256, "rsa2.key.pem", "k2"),
        jwk(Algorithm::EdDSA, "ed2.key.pem", "d2"),
    ]);
    let id = auth
        .authenticate(&token(Algorithm::RS256, "rsa2.key.pem", "k2"))
        .await
        .unwrap();
    assert_eq!(id.issuer.as_deref(), Some(ISS));
    assert_eq!(hits(&state), 2);
    auth.authenticate(&token(Algorithm::EdDSA, "ed2.key.pem", "d2"))
        .await
        .unwrap();
    assert_eq!(hits(&state), 2);

    // The old key is gone from the set.
    let err = auth
        .authenticate(&token(Algorithm::RS256, "rsa1.key.pem", "k1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IdentityError::UnknownKey { kid: Some(k), .. } if k == "k1"),
        "{err:?}"
    );
    // A kid that exists, signed by a different key.
    let err = auth
        .authenticate(&token(Algorithm::RS256, "rsa1.key.pem", "k2"))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::BadSignature), "{err:?}");

    let status = auth.jwks_status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].keys, 2);
    assert!(status[0].last_success.is_some());
}

#[tokio::test]
async fn unknown_kid_flood_is_rate_limited() {
    let (url, state) = server(jwks(&[jwk(Algorithm::RS256, "rsa1.key.pem", "k1")])).await;
    let auth = Authenticator::from_config(&issuer(
        &url,
        Duration::from_secs(3600),
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert_eq!(hits(&state), 1);

    let mut tasks = Vec::new();
    for i in 0..50 {
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            auth.authenticate(&token(
                Algorithm::RS256,
                "rsa1.key.pem",
                &format!("bogus-{i}"),
            ))
            .await
        }));
    }
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, IdentityError::UnknownKey { .. }), "{err:?}");
    }
    for i in 0..50 {
        let err = auth
            .authenticate_cached(&token(Algorithm::RS256, "rsa1.key.pem", &format!("x{i}")))
            .unwrap_err();
        assert!(matches!(err, IdentityError::UnknownKey { .. }), "{err:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The initial fetch counts as the last attempt: 100 unknown kids inside the 60 s window
    // cause no further fetch.
    assert_eq!(hits(&state), 1);
    auth.authenticate(&token(Algorithm::RS256, "rsa1.key.pem", "k1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn periodic_refresh_and_failed_refresh_keeps_keys() {
    let (url, state) = server(jwks(&[jwk(Algorithm::RS256, "rsa1.key.pem", "k1")])).await;
    let auth = Authenticator::from_config(&issuer(
        &url,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    ))
    .await
    .unwrap();

    // The endpoint breaks: refreshes fail, the previous keys stay in use.
    state.lock().unwrap().status = 500;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(hits(&state) >= 2);
    let status = &auth.jwks_status()[0];
    assert_eq!(
        status.last_error.as_deref(),
        Some("HTTP status 500 Internal Server Error")
    );
    assert_eq!(status.keys, 1);
    auth.authenticate_cached(&token(Algorithm::RS256, "rsa1.key.pem", "k1"))
        .unwrap();

    // Garbage is refused the same way.
    {
        let mut s = state.lock().unwrap();
        s.status = 200;
        s.body = "<html>login</html>".into();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        auth.jwks_status()[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("invalid JSON")
    );
    auth.authenticate_cached(&token(Algorithm::RS256, "rsa1.key.pem", "k1"))
        .unwrap();

    // The IdP recovers with a new key; the timer picks it up without any unknown-kid fetch
    // (min interval is an hour), so the non-waiting path sees it.
    state.lock().unwrap().body = jwks(&[jwk(Algorithm::EdDSA, "ed1.key.pem", "d1")]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = &auth.jwks_status()[0];
    assert_eq!(status.last_error, None);
    auth.authenticate_cached(&token(Algorithm::EdDSA, "ed1.key.pem", "d1"))
        .unwrap();
    let err = auth
        .authenticate_cached(&token(Algorithm::RS256, "rsa1.key.pem", "k1"))
        .unwrap_err();
    assert!(matches!(err, IdentityError::UnknownKey { .. }), "{err:?}");
}

#[tokio::test]
async fn unreachable_jwks_fails_start() {
    let (url, state) = server(String::new()).await;
    state.lock().unwrap().status = 404;
    let err = Authenticator::from_config(&issuer(
        &url,
        Duration::from_secs(60),
        Duration::from_secs(1),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, IdentityError::JwksFetch { .. }), "{err:?}");
    assert_eq!(err.side(), Side::Upstream);

    // Nothing listens on this port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = Authenticator::from_config(&issuer(
        &format!("http://{closed}/certs"),
        Duration::from_secs(60),
        Duration::from_secs(1),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, IdentityError::JwksFetch { .. }), "{err:?}");
}

#[tokio::test]
async fn jwks_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[jwk(Algorithm::ES256, "ec256.key.pem", "f1")])).unwrap();
    let mut issuer = IssuerConfig::new(ISS, &[AUD], &["ES256"]);
    issuer.jwks_file = Some(path.clone());
    issuer.jwks_min_interval = Duration::from_secs(1);
    let config = IdentityConfig {
        issuers: vec![issuer],
        ..Default::default()
    };
    let auth = Authenticator::from_config(&config).await.unwrap();
    auth.authenticate(&token(Algorithm::ES256, "ec256.key.pem", "f1"))
        .await
        .unwrap();
    // Without a kid, every fitting key is tried.
    auth.authenticate(&sign(
        Algorithm::ES256,
        "ec256.key.pem",
        None,
        &claims(ISS, AUD, "a"),
    ))
    .await
    .unwrap();

    // The file is rewritten with another key; an unknown kid re-reads it.
    tokio::time::sleep(MIN_INTERVAL_PASSED).await;
    std::fs::write(&path, jwks(&[jwk(Algorithm::ES256, "ec256.key.pem", "f2")])).unwrap();
    auth.authenticate(&token(Algorithm::ES256, "ec256.key.pem", "f2"))
        .await
        .unwrap();

    // A P-384 key in the set never verifies ES256 tokens.
    tokio::time::sleep(MIN_INTERVAL_PASSED).await;
    std::fs::write(&path, jwks(&[jwk(Algorithm::ES384, "ec384.key.pem", "f3")])).unwrap();
    let err = auth
        .authenticate(&token(Algorithm::ES256, "ec256.key.pem", "f3"))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::UnknownKey { .. }), "{err:?}");
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let (url, state) = server(jwks(&[jwk(Algorithm::RS256, "rsa1.key.pem", "k1")])).await;
    let auth = Authenticator::from_config(&issuer(
        &url,
        Duration::from_secs(3600),
        Duration::from_secs(1),
    ))
    .await
    .unwrap();
    tokio::time::sleep(MIN_INTERVAL_PASSED).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move {
                auth.authenticate(&token(Algorithm::RS256, "rsa1.key.pem", &format!("n{i}")))
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            Err(IdentityError::UnknownKey { .. })
        ));
    }
    // One fetch at start, one for the whole burst.
    assert_eq!(hits(&state), 2);
    assert_eq!(auth.jwks_status()[0].fetches, 2);
}
