#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! An https upstream that requires a client certificate and speaks HTTP/2: the gateway
//! presents the target's certificate (mTLS credential) and negotiates h2 by ALPN.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use portcullis_core::Pipeline;
use portcullis_identity::{Authenticator, IdentityConfig};
use portcullis_proto_http::{HttpError, HttpGateway, HttpGatewayConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Pki {
    dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["portcullis-gateway".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
    Pki {
        ca_der: ca.der().clone(),
        server: (
            server.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        ),
        dir,
    }
}

/// An https upstream requiring client certificates signed by the CA; answers with the HTTP version.
async fn start_mtls_upstream(pki: &Pki) -> std::net::SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = Router::new().route(
        "/whoami",
        get(|req: axum::extract::Request| async move {
            let auth = req.headers().get("authorization").is_some();
            format!("{:?} authorization-header={auth}", req.version())
        }),
    );
    let (listener, addr) = free_listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                // Handshakes without a valid client certificate fail here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_credential_and_http2_upstream() {
    let pki = pki();
    let upstream = start_mtls_upstream(&pki).await;
    let d = pki.dir.path().display();
    let config = HttpGatewayConfig::from_toml(&format!(
        r#"
        [[routes]]
        path_prefix = "/secure"
        strip_prefix = true
        target = "secure"
        [[routes]]
        path_prefix = "/nocert"
        strip_prefix = true
        target = "nocert"

        [targets.secure]
        upstream = "https://localhost:{port}"
        ca_file = "{d}/ca.pem"
        allowed_groups = ["dev"]
        credential = {{ type = "mtls", cert_file = "{d}/client.pem", key_file = "{d}/client.key" }}
        policy = {{ default = "allow" }}

        [targets.nocert]
        upstream = "https://localhost:{port}"
        ca_file = "{d}/ca.pem"
        allowed_groups = ["dev"]
        retries = 0
        policy = {{ default = "allow" }}
        "#,
        port = upstream.port()
    ))
    .unwrap();
    let identity: IdentityConfig = toml::from_str(
        r#"
        [dev_signer]
        issuer = "portcullis-dev"
        audience = "portcullis"
        secret = "a development secret of 32+ bytes"
        "#,
    )
    .unwrap();
    let auth = Authenticator::from_config(&identity).await.unwrap();
    let token = auth
        .mint_dev_token("alice", &["dev".into()], std::time::Duration::from_secs(60))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recorder = portcullis_recording::Recorder::open(
        &portcullis_recording::RecordingConfig::new(dir.path()),
    )
    .unwrap();
    let gateway = HttpGateway::new(config, auth, Pipeline::new(Arc::new(recorder))).unwrap();
    let (listener, addr) = free_listener().await;
    tokio::spawn(gateway.serve(listener, std::future::pending()));

    let (head, body) = {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-i",
                "-H",
                &format!("Authorization: Bearer {}", token.expose()),
            ])
            .arg(format!("http://{addr}/secure/whoami"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (h, b) = text.split_once("\r\n\r\n").unwrap();
        (h.to_owned(), b.to_owned())
    };
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "HTTP/2.0 authorization-header=false");

    // Without the client certificate the upstream refuses the handshake: 502 naming the upstream.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {}", token.expose()),
        ])
        .arg(format!("http://{addr}/nocert/whoami"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["side"], "upstream");
    // With TLS 1.3 the server rejects the missing certificate after the client's handshake
    // completes, so this shows as a failed exchange rather than a failed connect.
    assert!(
        ["upstream_unreachable", "upstream_failed"].contains(&v["error"].as_str().unwrap()),
        "{v}"
    );

    // mTLS needs https.
    let mut bad = HttpGatewayConfig::from_toml(
        r#"
        [[routes]]
        path_prefix = "/x"
        target = "x"
        [targets.x]
        upstream = "http://127.0.0.1:1"
        credential = { type = "mtls", cert_file = "/nonexistent", key_file = "/nonexistent" }
        "#,
    )
    .unwrap();
    match bad.validate() {
        Err(HttpError::Config { key, .. }) => assert_eq!(key, "targets.x.credential"),
        other => panic!("{other:?}"),
    }
    bad.targets.get_mut("x").unwrap().upstream = "https://127.0.0.1:1".into();
    match bad.validate() {
        Ok(()) => {}
        other => panic!("{other:?}"),
    }
    // Worker threads: bounded, and named in the error.
    bad.workers = Some(257);
    match bad.validate() {
        Err(HttpError::Config { key, .. }) => assert_eq!(key, "workers"),
        other => panic!("{other:?}"),
    }
    bad.workers = Some(0);
    assert!(bad.validate().is_ok(), "0 serves on the caller's runtime");
}
