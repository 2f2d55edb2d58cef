//! JWT verification: every error kind produced by a real signed token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use portcullis_core::{AuthMethod, Secret, Side};
use portcullis_identity::{
    Authenticator, IdentityConfig, IdentityError, IssuerConfig, PublicKeyConfig,
};
use serde_json::json;

const RSA: &str = "https://rsa.idp.test";
const EC: &str = "https://ec.idp.test";
const ED: &str = "https://ed.idp.test";
const HS: &str = "https://hs.idp.test";
const KC: &str = "https://keycloak.test/realms/main";
const AUD: &str = "portcullis";

fn pem_key(file: &str, kid: Option<&str>) -> PublicKeyConfig {
    PublicKeyConfig {
        kid: kid.map(str::to_owned),
        file: Some(key_path(file)),
        pem: None,
    }
}

fn config() -> IdentityConfig {
    let mut rsa = IssuerConfig::new(RSA, &[AUD, "other"], &["RS256", "PS256"]);
    rsa.public_keys = vec![pem_key("rsa1.pub.pem", Some("r1"))];
    let mut ec = IssuerConfig::new(EC, &[AUD], &["ES256", "ES384"]);
    ec.public_keys = vec![
        pem_key("ec256.pub.pem", None),
        pem_key("ec384.pub.pem", None),
    ];
    let mut ed = IssuerConfig::new(ED, &[AUD], &["EdDSA"]);
    ed.public_keys = vec![PublicKeyConfig {
        kid: None,
        pem: Some(pem("ed1.pub.pem")),
        file: None,
    }];
    let mut hs = IssuerConfig::new(HS, &[AUD], &["HS256", "HS512"]);
    hs.secret = Some(Secret::new(HS_SECRET.repeat(2)));
    let mut kc = IssuerConfig::new(KC, &[AUD], &["RS256"]);
    kc.public_keys = vec![pem_key("rsa2.pub.pem", None)];
    kc.groups_claim = Some("realm_access.roles".into());
    kc.subject_claim = Some("preferred_username".into());
    IdentityConfig {
        issuers: vec![rsa, ec, ed, hs, kc],
        ..Default::default()
    }
}

async fn auth() -> Authenticator {
    Authenticator::from_config(&config()).await.unwrap()
}

async fn refuse(auth: &Authenticator, token: &str) -> IdentityError {
    let err = auth.authenticate(token).await.unwrap_err();
    let text = err.to_string();
    // Never echo the credential, or any part of its signature.
    assert!(!text.contains(token), "{text}");
    if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 8) {
        assert!(!text.contains(sig), "{text}");
    }
    assert!(!text.contains(HS_SECRET));
    assert_eq!(err.side(), Side::Client, "{err:?}");
    err
}

#[tokio::test]
async fn accepts_every_supported_algorithm() {
    let auth = auth().await;
    let cases = [
        (RSA, Algorithm::RS256, "rsa1.key.pem", Some("r1")),
        (RSA, Algorithm::PS256, "rsa1.key.pem", None),
        (EC, Algorithm::ES256, "ec256.key.pem", None),
        (EC, Algorithm::ES384, "ec384.key.pem", Some("any")),
        (ED, Algorithm::EdDSA, "ed1.key.pem", None),
        (HS, Algorithm::HS512, "", None),
    ];
    for (iss, alg, key, kid) in cases {
        let mut c = claims(iss, AUD, "alice");
        if alg == Algorithm::HS512 {
            // The HS issuer's secret is HS_SECRET twice (HS512 needs 64 bytes).
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                &c,
                &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.repeat(2).as_bytes()),
            )
            .unwrap();
            let id = auth.authenticate(&token).await.unwrap();
            assert_eq!(id.subject, "alice");
            continue;
        }
        c["aud"] = json!(["unrelated", AUD]);
        let token = sign(alg, key, kid, &c);
        let id = auth
            .authenticate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(id.subject, "alice");
        assert_eq!(id.groups, ["dba", "ops"]);
        assert_eq!(id.method, AuthMethod::Jwt);
        assert_eq!(id.issuer.as_deref(), Some(iss));
        assert_eq!(
            id.expires_at.unwrap().as_micros(),
            c["exp"].as_i64().unwrap() * 1_000_000
        );
        // The synchronous path gives the same answer without I/O.
        assert_eq!(auth.authenticate_cached(&token).unwrap(), id);
    }
}

#[tokio::test]
async fn time_claims() {
    let auth = auth().await;
    let mut c = claims(RSA, AUD, "alice");
    c["exp"] = json!(now() - 120);
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(matches!(err, IdentityError::Expired), "{err:?}");
    assert_eq!(err.to_string(), "token expired");

    // Within the default 30 s leeway.
    c["exp"] = json!(now() - 10);
    auth.authenticate(&sign(Algorithm::RS256, "rsa1.key.pem", None, &c))
        .await
        .unwrap();

    let mut c = claims(RSA, AUD, "alice");
    c["nbf"] = json!(now() + 120);
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(matches!(err, IdentityError::NotYetValid), "{err:?}");
    c["nbf"] = json!(now() + 10);
    auth.authenticate(&sign(Algorithm::RS256, "rsa1.key.pem", None, &c))
        .await
        .unwrap();

    let mut c = claims(RSA, AUD, "alice");
    c.as_object_mut().unwrap().remove("exp");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::MissingClaim { claim } if claim == "exp"),
        "{err:?}"
    );

    c["exp"] = json!("tomorrow");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::InvalidClaim { claim, .. } if claim == "exp"),
        "{err:?}"
    );
}

#[tokio::test]
async fn audience_issuer_and_claims() {
    let auth = auth().await;
    let c = claims(RSA, "someone-else", "alice");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(err, IdentityError::WrongAudience { .. }),
        "{err:?}"
    );

    let mut c = claims(RSA, AUD, "alice");
    c.as_object_mut().unwrap().remove("aud");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::MissingClaim { claim } if claim == "aud"),
        "{err:?}"
    );

    let c = claims("https://evil.test", AUD, "alice");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::UnknownIssuer { issuer } if issuer == "https://evil.test"),
        "{err:?}"
    );

    let mut c = claims(RSA, AUD, "alice");
    c.as_object_mut().unwrap().remove("iss");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::MissingClaim { claim } if claim == "iss"),
        "{err:?}"
    );

    let mut c = claims(RSA, AUD, "alice");
    c.as_object_mut().unwrap().remove("sub");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::MissingClaim { claim } if claim == "sub"),
        "{err:?}"
    );

    let mut c = claims(RSA, AUD, "alice");
    c["groups"] = json!([1, 2]);
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::InvalidClaim { claim, .. } if claim == "groups"),
        "{err:?}"
    );

    // A single string is one group; no groups claim means no groups.
    let mut c = claims(RSA, AUD, "alice");
    c["groups"] = json!("dba");
    let id = auth
        .authenticate(&sign(Algorithm::RS256, "rsa1.key.pem", None, &c))
        .await
        .unwrap();
    assert_eq!(id.groups, ["dba"]);
    c.as_object_mut().unwrap().remove("groups");
    let id = auth
        .authenticate(&sign(Algorithm::RS256, "rsa1.key.pem", None, &c))
        .await
        .unwrap();
    assert!(id.groups.is_empty());
}

#[tokio::test]
async fn keycloak_style_claims() {
    let auth = auth().await;
    let mut c = claims(KC, AUD, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    c["preferred_username"] = json!("bob");
    c["realm_access"] = json!({"roles": ["offline_access", "dba"]});
    let id = auth
        .authenticate(&sign(Algorithm::RS256, "rsa2.key.pem", Some("kc-key"), &c))
        .await
        .unwrap();
    assert_eq!(id.subject, "bob");
    assert_eq!(id.groups, ["offline_access", "dba"]);
}

#[tokio::test]
async fn signatures_and_keys() {
    let auth = auth().await;
    // Signed by another RSA key.
    let c = claims(RSA, AUD, "alice");
    let err = refuse(&auth, &sign(Algorithm::RS256, "rsa2.key.pem", None, &c)).await;
    assert!(matches!(err, IdentityError::BadSignature), "{err:?}");

    // A tampered payload.
    let token = sign(
        Algorithm::EdDSA,
        "ed1.key.pem",
        None,
        &claims(ED, AUD, "alice"),
    );
    let forged_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        claims(ED, AUD, "root").to_string(),
    );
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &forged_payload;
    let err = refuse(&auth, &parts.join(".")).await;
    assert!(matches!(err, IdentityError::BadSignature), "{err:?}");

    // The RSA issuer's only key has kid r1: a token naming another kid has no key.
    let err = refuse(
        &auth,
        &sign(Algorithm::RS256, "rsa1.key.pem", Some("r9"), &c),
    )
    .await;
    assert!(
        matches!(&err, IdentityError::UnknownKey { kid: Some(k), .. } if k == "r9"),
        "{err:?}"
    );

    // Pinned algorithms: RS384 is not listed for the RSA issuer.
    let err = refuse(&auth, &sign(Algorithm::RS384, "rsa1.key.pem", None, &c)).await;
    assert!(
        matches!(&err, IdentityError::DisallowedAlgorithm { alg, .. } if alg == "RS384"),
        "{err:?}"
    );
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let auth = auth().await;
    let c = claims(RSA, AUD, "mallory");
    // HS256 "signed" with the RSA issuer's public key bytes (PEM and DER forms).
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let public_pem = pem("rsa1.pub.pem");
    let token = hs256_forge(&header, &c, public_pem.as_bytes());
    let err = refuse(&auth, &token).await;
    assert!(
        matches!(&err, IdentityError::DisallowedAlgorithm { alg, .. } if alg == "HS256"),
        "{err:?}"
    );

    // Even an issuer that allows both families never uses a public key as an HMAC secret.
    let mut config = config();
    config.issuers[0].algorithms.push("HS256".into());
    config.issuers[0].secret = Some(Secret::new(HS_SECRET.into()));
    let mixed = Authenticator::from_config(&config).await.unwrap();
    let err = refuse(&mixed, &token).await;
    assert!(matches!(err, IdentityError::BadSignature), "{err:?}");
    // ... while the real secret works.
    mixed
        .authenticate(&sign(Algorithm::HS256, "", None, &c))
        .await
        .unwrap();
}

#[tokio::test]
async fn none_algorithm_is_refused() {
    let auth = auth().await;
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg}), &claims(RSA, AUD, "mallory"), b"");
        let err = refuse(&auth, &token).await;
        assert!(
            matches!(err, IdentityError::DisallowedAlgorithm { .. }),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn malformed_credentials() {
    let auth = auth().await;
    for bad in [
        "not-a-token",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.!!!.sig",
        &raw_token(&json!({"typ": "JWT"}), &claims(RSA, AUD, "x"), b"sig"),
    ] {
        let err = refuse(&auth, bad).await;
        assert!(matches!(err, IdentityError::Malformed(_)), "{bad}: {err:?}");
    }
    let err = refuse(&auth, &"a.b.".repeat(10_000)).await;
    assert!(matches!(err, IdentityError::Malformed(_)), "{err:?}");
    assert!(matches!(
        auth.authenticate("   ").await.unwrap_err(),
        IdentityError::MissingCredential
    ));
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let mut c = config();
    c.issuers[1].public_keys[0].file = Some(key_path("missing.pem"));
    let err = Authenticator::from_config(&c).await.unwrap_err();
    assert_eq!(err.side(), Side::Internal);
    assert!(
        err.to_string()
            .starts_with("identity.issuers[1].public_keys[0].file: cannot read"),
        "{err}"
    );

    let mut c = config();
    c.issuers[1].public_keys[0].file = Some(key_path("ec256.key.pem"));
    let err = Authenticator::from_config(&c).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("identity.issuers[1].public_keys[0]: not a PEM"),
        "{err}"
    );
    assert!(!err.to_string().contains("PRIVATE"));

    let mut c = config();
    c.issuers[3].algorithms.push("HS384".into());
    c.issuers[3].secret = None;
    let err = Authenticator::from_config(&c).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "identity.issuers[3].algorithms: HS256 needs a secret"
    );
}
