//! TLS helpers: certificate loading and the `require` (no verification) mode.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::PgError;

/// Loads a PEM CA bundle.
pub fn load_roots(path: &Path) -> Result<RootCertStore, PgError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| PgError::Config(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// Loads PEM certificates.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PgError> {
    let data = std::fs::read(path)
        .map_err(|e| PgError::Config(format!("cannot read {}: {e}", path.display())))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| PgError::Config(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(PgError::Config(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// Loads a PEM private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PgError> {
    let data = std::fs::read(path)
        .map_err(|e| PgError::Config(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| PgError::Config(format!("{}: {e}", path.display())))?
        .ok_or_else(|| PgError::Config(format!("{}: no private key found", path.display())))
}

/// A server TLS configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, PgError> {
    server_config_from(load_certs(cert)?, load_key(key)?)
}

/// A server TLS configuration from DER certificate chain and key.
pub fn server_config_from(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, PgError> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgError::Config(format!("tls: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| PgError::Config(format!("tls certificate: {e}")))?;
    Ok(Arc::new(config))
}

/// Accepts any server certificate but still checks handshake signatures
/// (`tls = "require"`: encryption without authentication of the server).
#[derive(Debug)]
pub(crate) struct NoVerify(pub(crate) CryptoProvider);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
