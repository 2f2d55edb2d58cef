//! API keys and development tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use portcullis_core::{AuthMethod, Side};
use portcullis_identity::{
    ApiKeyConfig, Authenticator, DevSigner, DevSignerConfig, IdentityConfig, IdentityError,
    generate_api_key, hash_api_key, verify_api_key_hash,
};
use serde_json::json;

fn api_key(id: &str, hash: &str, expires_at: Option<&str>) -> ApiKeyConfig {
    ApiKeyConfig {
        id: id.into(),
        hash: hash.into(),
        subject: format!("{id}-owner"),
        groups: vec!["deployers".into()],
        expires_at: expires_at.map(str::to_owned),
    }
}

#[tokio::test]
async fn api_keys() {
    let live = generate_api_key("ci").unwrap();
    let old = generate_api_key("old-ci").unwrap();
    let config = IdentityConfig {
        api_keys: vec![
            api_key("ci", &live.hash, Some("2999-01-01T00:00:00Z")),
            api_key("old-ci", &old.hash, Some("2020-01-01T00:00:00Z")),
        ],
        ..Default::default()
    };
    let auth = Authenticator::from_config(&config).await.unwrap();

    let id = auth.authenticate(live.key.expose()).await.unwrap();
    assert_eq!(id.subject, "ci-owner");
    assert_eq!(id.groups, ["deployers"]);
    assert_eq!(id.method, AuthMethod::ApiKey);
    assert_eq!(id.issuer.as_deref(), Some("api-key:ci"));
    assert!(id.expires_at.is_some());

    let err = auth.authenticate(old.key.expose()).await.unwrap_err();
    assert!(matches!(err, IdentityError::ApiKeyExpired), "{err:?}");

    // Right id, wrong secret; unknown id; another key's secret under this id.
    let live_secret = live.key.expose().strip_prefix("pk_ci_").unwrap();
    for bad in [
        format!("pk_ci_{}", "A".repeat(43)),
        format!("pk_nobody_{live_secret}"),
        format!(
            "pk_ci_{}",
            old.key.expose().strip_prefix("pk_old-ci_").unwrap()
        ),
    ] {
        let err = auth.authenticate(&bad).await.unwrap_err();
        assert!(matches!(err, IdentityError::UnknownApiKey), "{err:?}");
        assert_eq!(err.side(), Side::Client);
        assert!(!err.to_string().contains(live_secret));
    }
    let err = auth.authenticate("pk_ci").await.unwrap_err();
    assert!(matches!(err, IdentityError::Malformed(_)), "{err:?}");
}

#[test]
fn api_key_hashes() {
    let key = "pk_ops_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";
    let stored = hash_api_key(key).unwrap();
    assert!(stored.starts_with("hmac-sha256:"));
    assert_eq!(stored.len(), "hmac-sha256:".len() + 32 + 1 + 64);
    assert!(verify_api_key_hash(key, &stored).unwrap());
    assert!(!verify_api_key_hash(&key.replace("ops", "dev"), &stored).unwrap());
    assert!(hash_api_key("not-a-key").is_err());
    assert!(verify_api_key_hash(key, "sha256:abc").is_err());
}

#[tokio::test]
async fn dev_tokens_round_trip_hs256_and_ed25519() {
    let configs = [
        DevSignerConfig::hs256("portcullis-dev", "portcullis", HS_SECRET),
        DevSignerConfig::ed25519("portcullis-dev", "portcullis", pem("ed1.key.pem")),
        DevSignerConfig {
            private_key_pem: None,
            private_key_file: Some(key_path("ed2.key.pem")),
            ..DevSignerConfig::ed25519("portcullis-dev", "portcullis", "")
        },
    ];
    for dev in configs {
        let config = IdentityConfig {
            dev_signer: Some(dev.clone()),
            ..Default::default()
        };
        let auth = Authenticator::from_config(&config).await.unwrap();
        let token = auth
            .mint_dev_token(
                "alice",
                &["dba".into(), "ops".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        assert_eq!(format!("{token:?}"), "[redacted]");
        let id = auth.authenticate(token.expose()).await.unwrap();
        assert_eq!(id.subject, "alice");
        assert_eq!(id.groups, ["dba", "ops"]);
        assert_eq!(id.issuer.as_deref(), Some("portcullis-dev"));
        let expires = id.expires_at.unwrap().as_micros() / 1_000_000;
        assert!((expires - (now() as i64 + 3600)).abs() <= 2);

        // A standalone signer (as `portcullis token` uses) mints tokens the gateway accepts.
        let signer = DevSigner::from_config(&dev).unwrap();
        let token = signer.mint("bob", &[], Duration::from_secs(60)).unwrap();
        assert_eq!(
            auth.authenticate(token.expose()).await.unwrap().subject,
            "bob"
        );

        // Too long a lifetime is refused.
        assert!(
            signer
                .mint("bob", &[], Duration::from_secs(48 * 3600))
                .is_err()
        );
        assert!(signer.mint("", &[], Duration::from_secs(60)).is_err());
    }

    // A token from another development key with the same issuer name is refused.
    let other = DevSigner::from_config(&DevSignerConfig::hs256(
        "portcullis-dev",
        "portcullis",
        "another-secret-of-at-least-32-bytes!!",
    ))
    .unwrap();
    let config = IdentityConfig {
        dev_signer: Some(DevSignerConfig::hs256(
            "portcullis-dev",
            "portcullis",
            HS_SECRET,
        )),
        ..Default::default()
    };
    let auth = Authenticator::from_config(&config).await.unwrap();
    let forged = other
        .mint("root", &["admin".into()], Duration::from_secs(60))
        .unwrap();
    let err = auth.authenticate(forged.expose()).await.unwrap_err();
    assert!(matches!(err, IdentityError::BadSignature), "{err:?}");

    // Development tokens obey the same checks: an expired one is refused.
    let mut c = claims("portcullis-dev", "portcullis", "alice");
    c["exp"] = json!(now() - 3600);
    let err = auth
        .authenticate(&sign(Algorithm::HS256, "", Some("portcullis-dev"), &c))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Expired), "{err:?}");
}

#[tokio::test]
async fn dev_signer_errors() {
    let auth = Authenticator::from_config(&IdentityConfig::default())
        .await
        .unwrap();
    let err = auth
        .mint_dev_token("alice", &[], Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, IdentityError::NoDevSigner), "{err:?}");
    assert_eq!(err.side(), Side::Internal);

    // An RSA key is not an Ed25519 key; the message names the setting and not the key.
    let bad = DevSignerConfig::ed25519("dev", "portcullis", pem("rsa1.key.pem"));
    let err = DevSigner::from_config(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "identity.dev_signer.private_key_pem: not an Ed25519 private key in PKCS#8 PEM"
    );
}
