//! Shared helpers for the identity tests: fixed test keys and token signing.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const HS_SECRET: &str = "test-secret-of-at-least-32-bytes-0123456789";

pub fn key_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

pub fn pem(name: &str) -> String {
    std::fs::read_to_string(key_path(name)).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims for `iss`, valid for ten minutes.
pub fn claims(iss: &str, aud: &str, sub: &str) -> Value {
    json!({
        "iss": iss,
        "aud": aud,
        "sub": sub,
        "groups": ["dba", "ops"],
        "iat": now(),
        "exp": now() + 600,
    })
}

pub fn encoding_key(alg: Algorithm, key_file: &str) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(HS_SECRET.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(pem(key_file).as_bytes()).unwrap()
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem(key_file).as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem(key_file).as_bytes()).unwrap(),
    }
}

/// Signs `claims` with `alg` and the private key in `key_file` (ignored for HMAC).
pub fn sign(alg: Algorithm, key_file: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key(alg, key_file)).unwrap()
}

/// Builds a compact token from raw header and payload JSON and a raw signature.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// HMAC-SHA256 over `header.payload` with `key`, as an attacker forging an HS256 token would.
pub fn hs256_forge(header: &Value, claims: &Value, key: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The public JWK of a private test key, with `kid`.
pub fn jwk(alg: Algorithm, key_file: &str, kid: &str) -> Value {
    let mut value = if alg == Algorithm::EdDSA {
        let key = EncodingKey::from_ed_pem(pem(key_file).as_bytes()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(key.inner()).unwrap();
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        })
    } else {
        let jwk = Jwk::from_encoding_key(&encoding_key(alg, key_file), alg).unwrap();
        serde_json::to_value(jwk).unwrap()
    };
    value["kid"] = json!(kid);
    value["use"] = json!("sig");
    value
}

pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}
