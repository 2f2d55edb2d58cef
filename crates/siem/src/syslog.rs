//! The syslog sink: RFC 5424 messages with octet-counting framing (RFC 6587,
//! `MSG-LEN SP SYSLOG-MSG`) over TCP or TLS.
//!
//! ```text
//! 123 <86>1 2026-11-26T11:31:45.123456Z gw01 portcullis 4242 command [portcullis@32473 seq="17" session="0190..."] {"seq":17,...}
//! ```
//!
//! PRI is `facility * 8 + severity` (informational 6, warning 4 for refused
//! connections and denied commands). The structured data element
//! `portcullis@32473` uses the enterprise number reserved for documentation
//! (RFC 5612). MSG is the JSON line, without a BOM.

use std::time::{Duration, UNIX_EPOCH};

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::format::Line;
use crate::tls::split_host_port;
use crate::{Result, SiemError, SinkConfig, Transport};

/// Whether `value` is a valid RFC 5424 header field (PRINTUSASCII, 1..=max bytes).
pub(crate) fn is_header_field(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| (33..=126).contains(&b))
}

fn header_field(value: &str, max: usize) -> String {
    let cleaned: String = value
        .bytes()
        .filter(|b| (33..=126).contains(b))
        .take(max)
        .map(char::from)
        .collect();
    if cleaned.is_empty() {
        "-".into()
    } else {
        cleaned
    }
}

/// Escapes a structured-data parameter value (`"`, `\` and `]`).
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The fixed header fields of one sink.
#[derive(Debug, Clone)]
pub struct SyslogHeader {
    /// Facility 0..=23.
    pub facility: u8,
    /// HOSTNAME.
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
    /// PROCID.
    pub procid: String,
}

impl SyslogHeader {
    /// The header of `sink`: its settings or the defaults (facility 10, this
    /// machine's host name, `portcullis`, this process's id).
    pub fn of(sink: &SinkConfig) -> Self {
        Self {
            facility: sink.facility.unwrap_or(10).min(23),
            hostname: header_field(sink.hostname.as_deref().unwrap_or(&local_hostname()), 255),
            app_name: header_field(sink.app_name.as_deref().unwrap_or("portcullis"), 48),
            procid: std::process::id().to_string(),
        }
    }

    /// One RFC 5424 message (without framing).
    pub fn message(&self, line: &Line) -> String {
        let pri = u16::from(self.facility) * 8 + u16::from(line.severity.min(7));
        let micros = u64::try_from(line.at.0).unwrap_or(0);
        let time = humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(micros));
        format!(
            "<{pri}>1 {time} {} {} {} {} [portcullis@32473 seq=\"{}\" session=\"{}\"] {}",
            self.hostname,
            self.app_name,
            self.procid,
            header_field(&line.msgid, 32),
            line.seq,
            sd_escape(&line.session.to_string()),
            line.json
        )
    }

    /// One octet-counted frame: `LEN SP MESSAGE`.
    pub fn frame(&self, line: &Line, out: &mut Vec<u8>) {
        let msg = self.message(line);
        out.extend_from_slice(msg.len().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(msg.as_bytes());
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Whether the receiver has closed the connection. Syslog receivers never
    /// write, so a read that is ready means end of stream (or a broken
    /// connection); checking before every batch keeps a batch from being
    /// written into a connection the receiver already closed.
    async fn closed_by_peer(&mut self) -> bool {
        fn probe<S: AsyncRead + Unpin>(s: &mut S, cx: &mut Context<'_>) -> Poll<bool> {
            let mut byte = [0u8; 64];
            let mut buf = ReadBuf::new(&mut byte);
            match Pin::new(s).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Ready(false),
                Poll::Ready(Ok(())) => Poll::Ready(buf.filled().is_empty()),
                Poll::Ready(Err(_)) => Poll::Ready(true),
            }
        }
        std::future::poll_fn(|cx| match self {
            Conn::Tcp(s) => probe(s, cx),
            Conn::Tls(s) => probe(s.as_mut(), cx),
        })
        .await
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        async fn go<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
            s.write_all(bytes).await?;
            s.flush().await
        }
        match self {
            Conn::Tcp(s) => go(s, bytes).await,
            Conn::Tls(s) => go(s.as_mut(), bytes).await,
        }
    }
}

/// A syslog connection that is opened on first use and after every failure.
pub(crate) struct SyslogSink {
    address: String,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    header: SyslogHeader,
    conn: Option<Conn>,
}

impl SyslogSink {
    pub(crate) fn new(sink: &SinkConfig) -> Result<Self> {
        let address = sink
            .address
            .clone()
            .ok_or_else(|| SiemError::Config("address: required".into()))?;
        let tls = if sink.transport == Some(Transport::Tls) {
            let config = crate::tls::client_config(sink)?;
            let host = match &sink.server_name {
                Some(n) => n.clone(),
                None => split_host_port(&address)
                    .map(|(h, _)| h.to_string())
                    .ok_or_else(|| SiemError::Config("address: not host:port".into()))?,
            };
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| SiemError::Config(format!("server_name: {e}")))?;
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        Ok(Self {
            address,
            tls,
            header: SyslogHeader::of(sink),
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Conn> {
        let fail = |e: std::io::Error| SiemError::Delivery(format!("syslog {}: {e}", self.address));
        let tcp = TcpStream::connect(&self.address).await.map_err(fail)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Tcp(tcp)),
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                    SiemError::Delivery(format!("syslog {} TLS: {e}", self.address))
                })?;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    /// Writes and flushes every frame of the batch; any failure drops the
    /// connection so the next attempt reconnects.
    pub(crate) async fn send(&mut self, lines: &[Line]) -> Result<()> {
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.json.len() + 160).sum());
        for line in lines {
            self.header.frame(line, &mut bytes);
        }
        let open = match self.conn.take() {
            Some(mut c) => (!c.closed_by_peer().await).then_some(c),
            None => None,
        };
        let mut conn = match open {
            Some(c) => c,
            None => self.connect().await?,
        };
        conn.send(&bytes)
            .await
            .map_err(|e| SiemError::Delivery(format!("syslog {}: {e}", self.address)))?;
        self.conn = Some(conn);
        Ok(())
    }

    /// Drops the connection (after a failed or timed-out attempt).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{SessionId, Timestamp};

    #[test]
    fn frames_are_rfc5424_with_octet_counting() {
        let header = SyslogHeader {
            facility: 10,
            hostname: "gw".into(),
            app_name: "portcullis".into(),
            procid: "42".into(),
        };
        let session = SessionId::new();
        let line = Line {
            seq: 17,
            at: Timestamp(1_700_000_000_123_456),
            session,
            msgid: "command".into(),
            severity: 4,
            json: "{\"a\":\"é\"}".into(),
        };
        let mut out = Vec::new();
        header.frame(&line, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert_eq!(
            msg,
            format!(
                "<84>1 2023-11-14T22:13:20.123456Z gw portcullis 42 command [portcullis@32473 seq=\"17\" session=\"{session}\"] {{\"a\":\"é\"}}"
            )
        );
        assert_eq!(sd_escape("a\"b]c\\"), "a\\\"b\\]c\\\\");
        assert_eq!(header_field("a b\u{7f}c", 32), "abc");
        assert_eq!(header_field("", 32), "-");
    }
}
