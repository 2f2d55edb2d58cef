//! `[[sinks]]`: one table per sink.
//!
//! ```toml
//! [[sinks]]
//! name = "siem-file"          # unique; names the cursor file
//! kind = "file"
//! path = "/var/log/portcullis/audit.jsonl"
//! max_bytes = 104857600       # optional: rotate to audit.jsonl.1 .. .keep
//! keep = 5
//!
//! [[sinks]]
//! name = "rsyslog"
//! kind = "syslog"
//! address = "logs.example.com:6514"
//! transport = "tls"           # or "tcp"
//! ca = "/etc/portcullis/logs-ca.pem"
//! format = "ocsf"             # or "portcullis" (default)
//!
//! [[sinks]]
//! name = "collector"
//! kind = "http"
//! url = "https://collector.example.com/ingest"
//! body = "lines"              # or "array"
//! bearer_token = "..."
//! headers = { "X-Tenant" = "acme" }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::Secret;
use serde::Deserialize;

use crate::{Result, SiemError};

/// Most records read and sent in one batch.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// Where a sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// JSON lines appended to a local file, synced after every batch.
    File,
    /// RFC 5424 messages over TCP or TLS with octet-counting framing (RFC 6587).
    Syslog,
    /// Batches POSTed to an HTTP(S) endpoint.
    Http,
}

impl SinkKind {
    /// The kind's configuration name.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Syslog => "syslog",
            SinkKind::Http => "http",
        }
    }
}

/// What one exported line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The record's export line: seq, session_seq, hashes and the canonical event.
    #[default]
    Portcullis,
    /// OCSF 1.1 objects (a command and its result become one object).
    Ocsf,
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS (rustls) over TCP.
    Tls,
}

/// How an HTTP batch is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpBody {
    /// Newline-delimited JSON (`application/x-ndjson`).
    #[default]
    Lines,
    /// One JSON array (`application/json`).
    Array,
}

/// One `[[sinks]]` table. Keys that do not belong to the sink's `kind` are refused
/// by [`SinkConfig::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique name: letters, digits, `-` and `_`; names the cursor file.
    pub name: String,
    /// Where the sink delivers.
    pub kind: SinkKind,
    /// What each line holds.
    #[serde(default)]
    pub format: Format,
    /// Most records read and sent per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How often an idle sink looks for new records.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest wait between two delivery attempts (the backoff doubles up to it).
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Longest time one delivery attempt (connect, send, acknowledgement) may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,

    /// file: the file to append to.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// file: rotate once the file would grow beyond this many bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// file: rotated files to keep (`path.1` newest .. `path.keep`); default 5.
    #[serde(default)]
    pub keep: Option<usize>,

    /// syslog: `host:port` of the receiver.
    #[serde(default)]
    pub address: Option<String>,
    /// syslog: `tcp` (default) or `tls`.
    #[serde(default)]
    pub transport: Option<Transport>,
    /// syslog: facility 0..=23; default 10 (security/authorization).
    #[serde(default)]
    pub facility: Option<u8>,
    /// syslog: HOSTNAME field; default the machine's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// syslog: APP-NAME field; default `portcullis`.
    #[serde(default)]
    pub app_name: Option<String>,

    /// http: the endpoint (`http://` or `https://`).
    #[serde(default)]
    pub url: Option<String>,
    /// http: `lines` (default) or `array`.
    #[serde(default)]
    pub body: Option<HttpBody>,
    /// http: sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub bearer_token: Option<Secret<String>>,
    /// http: extra request headers (values are secrets: they may carry API keys).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret<String>>,

    /// TLS (syslog over TLS, https): PEM file of the CA certificates to trust
    /// instead of the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// TLS: the name to verify in the server certificate (default: the host of
    /// `address` / `url`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// TLS: PEM client certificate chain, for receivers that require client authentication.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// TLS: PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

fn default_batch_size() -> usize {
    500
}
fn default_poll_interval() -> Duration {
    Duration::from_millis(250)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SinkConfig {
    /// A sink of `kind` named `name` with every option at its default.
    pub fn new(name: impl Into<String>, kind: SinkKind) -> Self {
        Self {
            name: name.into(),
            kind,
            format: Format::default(),
            batch_size: default_batch_size(),
            poll_interval: default_poll_interval(),
            retry_max: default_retry_max(),
            timeout: default_timeout(),
            path: None,
            max_bytes: None,
            keep: None,
            address: None,
            transport: None,
            facility: None,
            hostname: None,
            app_name: None,
            url: None,
            body: None,
            bearer_token: None,
            headers: BTreeMap::new(),
            ca: None,
            server_name: None,
            client_cert: None,
            client_key: None,
        }
    }

    /// Checks what serde cannot, and loads the TLS files so that a missing or
    /// malformed one is reported before the gateway starts. Errors name the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(SiemError::Config(format!("{key}: {why}")));
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return bad(
                "name",
                format!(
                    "{:?} must be 1 to 64 letters, digits, '-' or '_'",
                    self.name
                ),
            );
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return bad(
                "batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE}"),
            );
        }
        if self.poll_interval < Duration::from_millis(10) {
            return bad("poll_interval", "must be at least 10ms".into());
        }
        if self.retry_max < Duration::from_millis(10) {
            return bad("retry_max", "must be at least 10ms".into());
        }
        if self.timeout < Duration::from_millis(100) {
            return bad("timeout", "must be at least 100ms".into());
        }
        let set = |present: bool, key: &'static str| present.then_some(key);
        let file_keys = [
            set(self.path.is_some(), "path"),
            set(self.max_bytes.is_some(), "max_bytes"),
            set(self.keep.is_some(), "keep"),
        ];
        let syslog_keys = [
            set(self.address.is_some(), "address"),
            set(self.transport.is_some(), "transport"),
            set(self.facility.is_some(), "facility"),
            set(self.hostname.is_some(), "hostname"),
            set(self.app_name.is_some(), "app_name"),
        ];
        let http_keys = [
            set(self.url.is_some(), "url"),
            set(self.body.is_some(), "body"),
            set(self.bearer_token.is_some(), "bearer_token"),
            set(!self.headers.is_empty(), "headers"),
        ];
        let tls_keys = [
            set(self.ca.is_some(), "ca"),
            set(self.server_name.is_some(), "server_name"),
            set(self.client_cert.is_some(), "client_cert"),
            set(self.client_key.is_some(), "client_key"),
        ];
        let foreign: Vec<&str> = match self.kind {
            SinkKind::File => syslog_keys
                .iter()
                .chain(&http_keys)
                .chain(&tls_keys)
                .flatten()
                .copied()
                .collect(),
            SinkKind::Syslog => file_keys
                .iter()
                .chain(&http_keys)
                .flatten()
                .copied()
                .collect(),
            SinkKind::Http => file_keys
                .iter()
                .chain(&syslog_keys)
                .flatten()
                .copied()
                .collect(),
        };
        if let Some(key) = foreign.first() {
            return bad(
                key,
                format!("does not apply to a {} sink", self.kind.name()),
            );
        }
        match self.kind {
            SinkKind::File => {
                match &self.path {
                    None => return bad("path", "required for a file sink".into()),
                    Some(p) if p.as_os_str().is_empty() => {
                        return bad("path", "must not be empty".into());
                    }
                    Some(_) => {}
                }
                if self.max_bytes == Some(0) {
                    return bad("max_bytes", "must be at least 1".into());
                }
                if let Some(k) = self.keep
                    && !(1..=1000).contains(&k)
                {
                    return bad("keep", "must be between 1 and 1000".into());
                }
            }
            SinkKind::Syslog => {
                let Some(address) = &self.address else {
                    return bad("address", "required for a syslog sink (host:port)".into());
                };
                if crate::tls::split_host_port(address).is_none() {
                    return bad("address", format!("{address:?} is not host:port"));
                }
                if self.facility.is_some_and(|f| f > 23) {
                    return bad("facility", "must be between 0 and 23".into());
                }
                for (key, value) in [("hostname", &self.hostname), ("app_name", &self.app_name)] {
                    if let Some(v) = value
                        && !crate::syslog::is_header_field(
                            v,
                            if key == "hostname" { 255 } else { 48 },
                        )
                    {
                        return bad(
                            key,
                            "must be printable ASCII without spaces (255/48 bytes at most)".into(),
                        );
                    }
                }
                let tls = self.transport == Some(Transport::Tls);
                if !tls && let Some(key) = tls_keys.iter().flatten().next() {
                    return bad(key, "only applies with transport = \"tls\"".into());
                }
                if tls {
                    crate::tls::client_config(self)?;
                }
            }
            SinkKind::Http => {
                let Some(url) = &self.url else {
                    return bad("url", "required for an http sink".into());
                };
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| SiemError::Config(format!("url: {e}")))?;
                let https = match uri.scheme_str() {
                    Some("https") => true,
                    Some("http") => false,
                    _ => return bad("url", "must start with http:// or https://".into()),
                };
                if uri.host().is_none() {
                    return bad("url", "has no host".into());
                }
                if !https && let Some(key) = tls_keys.iter().flatten().next() {
                    return bad(key, "only applies to an https:// url".into());
                }
                for name in self.headers.keys() {
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| SiemError::Config(format!("headers.{name}: {e}")))?;
                }
                if https {
                    crate::tls::client_config(self)?;
                }
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return bad(
                "client_cert",
                "client_cert and client_key go together".into(),
            );
        }
        Ok(())
    }
}

/// Validates every sink and that their names are unique.
pub fn validate_all(sinks: &[SinkConfig]) -> Result<()> {
    let mut names = BTreeSet::new();
    for (i, sink) in sinks.iter().enumerate() {
        sink.validate()
            .map_err(|e| SiemError::Config(format!("sinks[{i}] ({}): {e}", sink.name)))?;
        if !names.insert(sink.name.as_str()) {
            return Err(SiemError::Config(format!(
                "sinks[{i}].name: {:?} is used twice (it names the cursor file)",
                sink.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SinkConfig, String> {
        let c: SinkConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn minimal_sinks_parse() {
        let f = parse("name = \"f\"\nkind = \"file\"\npath = \"/tmp/x.jsonl\"").unwrap();
        assert_eq!(f.kind, SinkKind::File);
        assert_eq!(f.format, Format::Portcullis);
        let s = parse(
            "name = \"s\"\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\nformat = \"ocsf\"",
        )
        .unwrap();
        assert_eq!(s.format, Format::Ocsf);
        let h = parse(
            "name = \"h\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/x\"\nbearer_token = \"s3cr3t-value\"\nheaders = { \"X-A\" = \"b\" }",
        )
        .unwrap();
        assert!(!format!("{h:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("name = \"f\"\nkind = \"file\"").unwrap_err();
        assert!(e.contains("path"), "{e}");
        let e =
            parse("name = \"f\"\nkind = \"file\"\npath = \"x\"\nurl = \"http://a/\"").unwrap_err();
        assert!(e.contains("url: does not apply to a file sink"), "{e}");
        let e = parse("name = \"s\"\nkind = \"syslog\"\naddress = \"nohost\"").unwrap_err();
        assert!(e.contains("address"), "{e}");
        let e = parse("name = \"s\"\nkind = \"syslog\"\naddress = \"a:1\"\nca = \"x.pem\"")
            .unwrap_err();
        assert!(e.contains("ca: only applies"), "{e}");
        let e = parse(
            "name = \"s\"\nkind = \"syslog\"\naddress = \"a:1\"\ntransport = \"tls\"\nca = \"/nonexistent.pem\"",
        )
        .unwrap_err();
        assert!(e.contains("ca"), "{e}");
        let e = parse("name = \"h\"\nkind = \"http\"\nurl = \"ftp://a/\"").unwrap_err();
        assert!(e.contains("url"), "{e}");
        let e = parse("name = \"a b\"\nkind = \"http\"\nurl = \"http://a/\"").unwrap_err();
        assert!(e.contains("name"), "{e}");
        let e = parse("name = \"h\"\nkind = \"http\"\nurl = \"http://a/\"\nbatch_size = 0")
            .unwrap_err();
        assert!(e.contains("batch_size"), "{e}");
        assert!(parse("name = \"h\"\nkind = \"http\"\nurl = \"http://a/\"\nbogus = 1").is_err());
    }

    #[test]
    fn names_must_be_unique() {
        let a = SinkConfig {
            path: Some("a".into()),
            ..SinkConfig::new("x", SinkKind::File)
        };
        let e = validate_all(&[a.clone(), a]).unwrap_err().to_string();
        assert!(e.contains("used twice"), "{e}");
    }
}
