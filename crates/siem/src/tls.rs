//! The TLS client side of the syslog and HTTP sinks (rustls, aws-lc-rs).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Result, SiemError, SinkConfig};

/// Splits `host:port` (`[v6]:port` for IPv6 literals); `None` if it is not that shape.
pub(crate) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && port != 0).then_some((host, port))
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| SiemError::Config(format!("{key}: {}: {e}", path.display())))
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(key, path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| SiemError::Config(format!("{key}: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SiemError::Config(format!(
            "{key}: {}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read("client_key", path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| SiemError::Config(format!("client_key: {}: {e}", path.display())))?
        .ok_or_else(|| SiemError::Config(format!("client_key: {}: no private key", path.display())))
}

/// The rustls client configuration of a sink: the CA file's certificates (or the
/// system's roots), and the client certificate if configured.
pub(crate) fn client_config(sink: &SinkConfig) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match &sink.ca {
        Some(ca) => {
            for cert in certs("ca", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| SiemError::Config(format!("ca: {}: {e}", ca.display())))?;
            }
        }
        None => {
            let native = rustls_native_roots();
            if native.is_empty() {
                return Err(SiemError::Config(
                    "ca: the system has no trusted root certificates; set ca".into(),
                ));
            }
            for cert in native {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SiemError::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots);
    let config = match (&sink.client_cert, &sink.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certs("client_cert", cert)?, private_key(key)?)
            .map_err(|e| SiemError::Config(format!("client_cert: {e}")))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The system's root certificates (empty when none can be loaded).
fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    let result = rustls_native_certs::load_native_certs();
    for e in &result.errors {
        tracing::debug!(error = %e, "a system root certificate could not be loaded");
    }
    result.certs
}
