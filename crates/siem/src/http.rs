//! The HTTP sink: one POST per batch, as JSON lines (`application/x-ndjson`) or
//! one JSON array (`application/json`); any 2xx status acknowledges the batch.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::Secret;

use crate::format::Line;
use crate::{HttpBody, Result, SiemError, SinkConfig};

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The HTTP sink.
pub(crate) struct HttpSink {
    uri: Uri,
    body: HttpBody,
    headers: Vec<(HeaderName, Secret<HeaderValue>)>,
    client: HttpClient,
}

impl HttpSink {
    pub(crate) fn new(sink: &SinkConfig) -> Result<Self> {
        let url = sink
            .url
            .as_deref()
            .ok_or_else(|| SiemError::Config("url: required".into()))?;
        let uri: Uri = url
            .parse()
            .map_err(|e| SiemError::Config(format!("url: {e}")))?;
        let mut headers = Vec::new();
        for (name, value) in &sink.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| SiemError::Config(format!("headers.{name}: {e}")))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| SiemError::Config(format!("headers.{name}: not a header value")))?;
            value.set_sensitive(true);
            headers.push((name, Secret::new(value)));
        }
        if let Some(token) = &sink.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| SiemError::Config("bearer_token: not a header value".into()))?;
            value.set_sensitive(true);
            headers.push((header::AUTHORIZATION, Secret::new(value)));
        }
        let tls = if uri.scheme_str() == Some("https") {
            crate::tls::client_config(sink)?
        } else {
            // Never used for http:// URLs; the connector still wants a configuration.
            let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            std::sync::Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| SiemError::Config(format!("TLS setup failed: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        };
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(sink.timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((*tls).clone());
        let https = match &sink.server_name {
            Some(name) => builder
                .https_or_http()
                .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                    rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|e| SiemError::Config(format!("server_name: {e}")))?,
                ))
                .enable_http1()
                .wrap_connector(connector),
            None => builder
                .https_or_http()
                .enable_http1()
                .wrap_connector(connector),
        };
        Ok(Self {
            uri,
            body: sink.body.unwrap_or_default(),
            headers,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// POSTs the batch; `Ok` only for a 2xx answer.
    pub(crate) async fn send(&mut self, lines: &[Line]) -> Result<()> {
        let mut body =
            Vec::with_capacity(lines.iter().map(|l| l.json.len() + 1).sum::<usize>() + 2);
        let content_type = match self.body {
            HttpBody::Lines => {
                for line in lines {
                    body.extend_from_slice(line.json.as_bytes());
                    body.push(b'\n');
                }
                "application/x-ndjson"
            }
            HttpBody::Array => {
                body.push(b'[');
                for (i, line) in lines.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(line.json.as_bytes());
                }
                body.push(b']');
                "application/json"
            }
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, content_type)
            .header(header::USER_AGENT, "portcullis")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SiemError::Config(format!("url: {e}")))?;
        for (name, value) in &self.headers {
            request
                .headers_mut()
                .insert(name.clone(), value.expose().clone());
        }
        if let (Some(first), Some(last)) = (lines.first(), lines.last()) {
            let range = format!("{}-{}", first.seq, last.seq);
            if let Ok(v) = HeaderValue::from_str(&range) {
                request
                    .headers_mut()
                    .insert(HeaderName::from_static("x-portcullis-seq"), v);
            }
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| SiemError::Delivery(format!("http {}: {e}", self.uri)))?;
        let status = response.status();
        // Read a bounded part of the answer so the connection can be reused.
        let _ = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(SiemError::Delivery(format!(
                "http {}: answered {status}",
                self.uri
            )))
        }
    }

    pub(crate) fn reset(&mut self) {}
}
