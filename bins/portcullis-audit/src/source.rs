//! Where records come from: a running gateway's query API or a stopped gateway's store.

use std::path::PathBuf;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::{Event, Secret, SessionId};
use portcullis_recording::pg_store::redacted_url;
use portcullis_recording::{EventStore, PgStore, SessionFilter, SessionSummary, SledStore};
use serde::{Deserialize, Serialize};

/// Errors of the audit tool, by where they happened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The command line is incomplete or contradictory.
    #[error("{0}")]
    Usage(String),
    /// Reading the store failed.
    #[error("store: {0}")]
    Store(String),
    /// Talking to the gateway failed.
    #[error("gateway: {0}")]
    Gateway(String),
    /// A terminal recording is missing, unreadable or does not match its pin in the record.
    #[error("terminal recording {0}")]
    Recording(String),
    /// Writing output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

/// One record as exported (`Record::to_json_line`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordLine {
    /// Global sequence number.
    pub seq: u64,
    /// Sequence within the session.
    pub session_seq: u64,
    /// Hash of the previous record (hex).
    pub prev_hash: String,
    /// This record's hash (hex).
    pub hash: String,
    /// The event.
    pub event: Event,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// What `--store` names: a sled directory or a shared PostgreSQL store.
pub enum StoreArg {
    /// A stopped gateway's sled directory.
    Sled(PathBuf),
    /// A shared PostgreSQL store (the URL may hold a password: never printed).
    Postgres(Secret<String>),
}

impl StoreArg {
    /// Reads `--store`: a `postgres://` or `postgresql://` URL, or a directory.
    pub fn parse(value: &str) -> StoreArg {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            StoreArg::Postgres(Secret::new(value.to_owned()))
        } else {
            StoreArg::Sled(PathBuf::from(value))
        }
    }
}

/// Opens a shared store: one chain with `chain`, every chain without.
pub fn open_shared(url: &Secret<String>, chain: Option<&str>) -> Result<PgStore, AuditError> {
    let opened = match chain {
        Some(c) => PgStore::open_chain(url.expose(), c),
        None => PgStore::open_all(url.expose()),
    };
    opened.map_err(|e| AuditError::Store(format!("{}: {e}", redacted_url(url.expose()))))
}

/// Opens a stopped gateway's sled store.
pub fn open_sled(path: &std::path::Path) -> Result<SledStore, AuditError> {
    if !path.exists() {
        return Err(AuditError::Store(format!(
            "{}: no such store",
            path.display()
        )));
    }
    SledStore::open(path).map_err(|e| {
        AuditError::Store(format!(
            "{}: {e} (a running gateway holds its store: use --gateway URL)",
            path.display()
        ))
    })
}

/// A source of records.
pub enum Source {
    /// A stopped gateway's store.
    Store(Box<SledStore>),
    /// A shared PostgreSQL store (every chain, or the one `--chain` names).
    Shared(Box<PgStore>),
    /// A running gateway's query API.
    Gateway {
        /// Base URL without a trailing slash.
        base: String,
        /// Bearer token.
        token: String,
        /// HTTP client.
        client: Box<HttpClient>,
    },
}

impl Source {
    /// Chooses the source from the command line.
    pub fn new(
        gateway: Option<String>,
        token: Option<String>,
        store: Option<StoreArg>,
        chain: Option<&str>,
    ) -> Result<Self, AuditError> {
        match (gateway, store) {
            (Some(base), None) => {
                let token = token.ok_or_else(|| {
                    AuditError::Usage("--gateway needs --token or PORTCULLIS_TOKEN".into())
                })?;
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| AuditError::Gateway(format!("TLS roots: {e}")))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = Client::builder(TokioExecutor::new()).build(https);
                Ok(Source::Gateway {
                    base: base.trim_end_matches('/').to_string(),
                    token,
                    client: Box::new(client),
                })
            }
            (None, Some(StoreArg::Sled(path))) => Ok(Source::Store(Box::new(open_sled(&path)?))),
            (None, Some(StoreArg::Postgres(url))) => Ok(Source::Shared(Box::new(open_shared(&url, chain)?))),
            (None, None) => Err(AuditError::Usage(
                "say where the record is: --gateway URL (running gateway) or --store PATH (stopped gateway)".into(),
            )),
            (Some(_), Some(_)) => Err(AuditError::Usage("use either --gateway or --store".into())),
        }
    }

    /// The store behind a store source.
    fn store(&self) -> Option<&dyn EventStore> {
        match self {
            Source::Store(s) => Some(s.as_ref()),
            Source::Shared(s) => Some(s.as_ref()),
            Source::Gateway { .. } => None,
        }
    }

    /// Session summaries matching `filter`, newest first.
    pub async fn sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionSummary>, AuditError> {
        match self {
            Source::Store(_) | Source::Shared(_) => self
                .store()
                .ok_or_else(|| AuditError::Usage("not a store".into()))?
                .list_sessions(filter)
                .map_err(|e| AuditError::Store(e.to_string())),
            Source::Gateway { .. } => {
                let mut query = vec![format!("limit={}", filter.limit)];
                if let Some(s) = &filter.subject {
                    query.push(format!("subject={}", encode(s)));
                }
                if let Some(t) = &filter.target {
                    query.push(format!("target={}", encode(t)));
                }
                if let Some(t) = filter.since {
                    query.push(format!("since={}", t.as_micros()));
                }
                if let Some(t) = filter.until {
                    query.push(format!("until={}", t.as_micros()));
                }
                let body = self
                    .get(&format!("/v1/sessions?{}", query.join("&")))
                    .await?;
                let bytes = body
                    .collect()
                    .await
                    .map_err(|e| AuditError::Gateway(e.to_string()))?
                    .to_bytes();
                serde_json::from_slice(&bytes)
                    .map_err(|e| AuditError::Gateway(format!("bad answer: {e}")))
            }
        }
    }

    /// One session's summary.
    pub async fn session(&self, id: SessionId) -> Result<SessionSummary, AuditError> {
        match self {
            Source::Store(_) | Source::Shared(_) => self
                .store()
                .ok_or_else(|| AuditError::Usage("not a store".into()))?
                .session(id)
                .map_err(|e| AuditError::Store(e.to_string()))?
                .ok_or_else(|| AuditError::Store(format!("no session {id}"))),
            Source::Gateway { .. } => {
                let body = self.get(&format!("/v1/sessions/{id}")).await?;
                let bytes = body
                    .collect()
                    .await
                    .map_err(|e| AuditError::Gateway(e.to_string()))?
                    .to_bytes();
                serde_json::from_slice(&bytes)
                    .map_err(|e| AuditError::Gateway(format!("bad answer: {e}")))
            }
        }
    }

    /// Streams one session's records, in order, to `each`.
    pub async fn records(
        &self,
        id: SessionId,
        mut each: impl FnMut(RecordLine) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        match self {
            Source::Store(_) | Source::Shared(_) => {
                let records = self
                    .store()
                    .ok_or_else(|| AuditError::Usage("not a store".into()))?
                    .session_events(id)
                    .map_err(|e| AuditError::Store(e.to_string()))?;
                for r in records {
                    let r = r.map_err(|e| AuditError::Store(e.to_string()))?;
                    each(RecordLine {
                        seq: r.seq,
                        session_seq: r.session_seq,
                        prev_hash: r.prev_hash.to_hex(),
                        hash: r.hash.to_hex(),
                        event: r.event,
                    })?;
                }
                Ok(())
            }
            Source::Gateway { .. } => {
                let mut body = self.get(&format!("/v1/sessions/{id}/events")).await?;
                let mut pending = BytesMut::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| AuditError::Gateway(e.to_string()))?;
                    if let Ok(data) = frame.into_data() {
                        pending.extend_from_slice(&data);
                        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                            let line = pending.split_to(pos + 1);
                            each(parse_line(&line[..pos])?)?;
                        }
                    }
                }
                if pending.has_remaining() {
                    each(parse_line(&pending)?)?;
                }
                Ok(())
            }
        }
    }

    async fn get(&self, path: &str) -> Result<hyper::body::Incoming, AuditError> {
        let Source::Gateway {
            base,
            token,
            client,
        } = self
        else {
            return Err(AuditError::Usage("not a gateway source".into()));
        };
        let request = http::Request::get(format!("{base}{path}"))
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| AuditError::Usage(format!("bad --gateway URL: {e}")))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| AuditError::Gateway(format!("{base}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(AuditError::Gateway(format!("{status}: {message}")))
    }
}

fn parse_line(line: &[u8]) -> Result<RecordLine, AuditError> {
    serde_json::from_slice(line).map_err(|e| AuditError::Gateway(format!("bad record line: {e}")))
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
