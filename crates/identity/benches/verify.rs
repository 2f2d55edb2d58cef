//! Verification cost of a token whose key is already held (no I/O): RS256, EdDSA, ES256, HS256,
//! and an API key for comparison.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_core::Secret;
use portcullis_identity::{
    ApiKeyConfig, Authenticator, IdentityConfig, IssuerConfig, PublicKeyConfig, generate_api_key,
};
use serde_json::json;

const SECRET: &str = "bench-secret-of-at-least-32-bytes-0123456789";

fn key(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name),
    )
    .unwrap()
}

fn issuer(name: &str, alg: &str, pem: Option<String>) -> IssuerConfig {
    let mut issuer = IssuerConfig::new(name, &["portcullis"], &[alg]);
    match pem {
        Some(pem) => {
            issuer.public_keys = vec![PublicKeyConfig {
                kid: None,
                pem: Some(pem),
                file: None,
            }]
        }
        None => issuer.secret = Some(Secret::new(SECRET.into())),
    }
    issuer
}

fn token(iss: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": iss, "aud": "portcullis", "sub": "alice", "groups": ["dba", "ops"],
        "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api_key = generate_api_key("bench").unwrap();
    let config = IdentityConfig {
        issuers: vec![
            issuer("rs", "RS256", Some(key("rsa1.pub.pem"))),
            issuer("ed", "EdDSA", Some(key("ed1.pub.pem"))),
            issuer("es", "ES256", Some(key("ec256.pub.pem"))),
            issuer("hs", "HS256", None),
        ],
        api_keys: vec![ApiKeyConfig {
            id: "bench".into(),
            hash: api_key.hash.clone(),
            subject: "bot".into(),
            groups: vec![],
            expires_at: None,
        }],
        ..Default::default()
    };
    let auth = runtime
        .block_on(Authenticator::from_config(&config))
        .unwrap();
    let cases = [
        (
            "RS256",
            token(
                "rs",
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(key("rsa1.key.pem").as_bytes()).unwrap(),
            ),
        ),
        (
            "EdDSA",
            token(
                "ed",
                Algorithm::EdDSA,
                &EncodingKey::from_ed_pem(key("ed1.key.pem").as_bytes()).unwrap(),
            ),
        ),
        (
            "ES256",
            token(
                "es",
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(key("ec256.key.pem").as_bytes()).unwrap(),
            ),
        ),
        (
            "HS256",
            token(
                "hs",
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            ),
        ),
        ("api_key", api_key.key.expose().clone()),
    ];
    let mut group = c.benchmark_group("verify");
    for (name, credential) in &cases {
        auth.authenticate_cached(credential).unwrap();
        group.bench_function(*name, |b| {
            b.iter(|| auth.authenticate_cached(black_box(credential)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
