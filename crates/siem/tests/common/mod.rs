//! Shared parts of the sink tests: a recorder over a real sled store, session
//! traffic, real receivers (an axum HTTP server, a syslog TCP/TLS server that
//! parses RFC 6587 octet-counted RFC 5424 frames strictly) and the checks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use portcullis_core::{
    AuthMethod, Command, Completion, Decision, Event, EventKind, Identity, Protocol, SessionId,
    SqlVia, Timestamp,
};
use portcullis_recording::{Durability, Recorder, RecordingConfig};
use portcullis_siem::{SinkSet, SinkStatus};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const PATIENCE: Duration = Duration::from_secs(90);

/// A recorder over a fresh sled store in `dir/record` (strict durability).
pub fn recorder(dir: &Path) -> Recorder {
    let mut config = RecordingConfig::new(dir.join("record"));
    config.durability = Durability::Strict;
    Recorder::open(&config).unwrap()
}

pub fn cursor_dir(dir: &Path) -> PathBuf {
    dir.join("sinks")
}

fn ev(session: SessionId, kind: EventKind) -> Event {
    Event {
        session,
        at: Timestamp::now(),
        kind,
    }
}

/// Records one session: opened, `commands` allowed commands with their results,
/// one denied command, closed. Returns the session id.
pub async fn record_session(recorder: &Recorder, subject: &str, commands: u64) -> SessionId {
    let s = SessionId::new();
    recorder
        .record(ev(
            s,
            EventKind::SessionOpened {
                identity: Identity {
                    subject: subject.into(),
                    groups: vec!["dba".into()],
                    method: AuthMethod::Jwt,
                    issuer: Some("https://issuer.example".into()),
                    expires_at: None,
                },
                target: "orders".into(),
                protocol: Protocol::Postgres,
                client_addr: Some("127.0.0.1:50000".into()),
                details: BTreeMap::new(),
            },
        ))
        .await
        .unwrap();
    for i in 1..=commands {
        record_command(recorder, s, i).await;
        record_result(recorder, s, i).await;
    }
    recorder
        .record(ev(
            s,
            EventKind::Command {
                seq: commands + 1,
                command: Command::Sql {
                    text: "DROP TABLE orders".into(),
                    via: SqlVia::Simple,
                },
                decision: Decision::deny("no-ddl", "DDL is not allowed"),
                result: None,
            },
        ))
        .await
        .unwrap();
    recorder
        .record(ev(
            s,
            EventKind::SessionClosed {
                reason: "client terminated".into(),
                commands: commands + 1,
            },
        ))
        .await
        .unwrap();
    s
}

pub async fn record_command(recorder: &Recorder, s: SessionId, seq: u64) {
    recorder
        .record(ev(
            s,
            EventKind::Command {
                seq,
                command: Command::Sql {
                    text: format!("SELECT {seq} FROM orders"),
                    via: SqlVia::Simple,
                },
                decision: Decision::allow("read", "reads are allowed"),
                result: None,
            },
        ))
        .await
        .unwrap();
}

pub async fn record_result(recorder: &Recorder, s: SessionId, seq: u64) {
    recorder
        .record(ev(
            s,
            EventKind::CommandResult {
                seq,
                duration_us: 150,
                completion: Completion {
                    rows_returned: 1,
                    tag: Some("SELECT 1".into()),
                    ..Default::default()
                },
            },
        ))
        .await
        .unwrap();
}

pub fn head(recorder: &Recorder) -> u64 {
    recorder.store().head().unwrap().seq
}

/// Polls `check` every 20ms until it holds; panics after [`PATIENCE`].
pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until sink 0 of `sinks` acknowledged everything through `seq`.
pub async fn wait_delivered(sinks: &SinkSet, seq: u64) -> SinkStatus {
    wait_for(&format!("delivery through {seq}"), || {
        sinks.status()[0].delivered_seq >= seq
    })
    .await;
    sinks.status().remove(0)
}

/// Checks at-least-once, in-order delivery of exactly `1..=head` (or `from..=head`):
/// each received seq is the next new one or repeats an earlier one (a batch sent
/// again), so there is no gap and no reordering. Returns the number of repeats.
pub fn assert_in_order(seqs: &[u64], from: u64, head: u64) -> usize {
    let mut max = from - 1;
    let mut repeats = 0;
    let mut prev = 0;
    for (i, &s) in seqs.iter().enumerate() {
        if s == max + 1 {
            max = s;
        } else {
            assert!(
                s <= max,
                "gap or reordering at index {i}: {s} after {max} (previous {prev})"
            );
            // A repeat re-sends a batch: it continues the previous line or starts a replay.
            repeats += 1;
        }
        prev = s;
    }
    assert_eq!(max, head, "not everything arrived");
    repeats
}

// ---------------------------------------------------------------- HTTP receiver

/// What the HTTP receiver does with the next request.
pub const ACCEPT: u8 = 0;
/// Answer 503 without keeping anything.
pub const REJECT: u8 = 1;
/// Keep the batch but answer 500 once (a lost acknowledgement), then accept.
pub const LOSE_ACK_ONCE: u8 = 2;

#[derive(Clone)]
struct HttpState {
    got: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<Vec<usize>>>,
    mode: Arc<AtomicU8>,
    token: String,
}

/// An axum server that stores every JSON line (or array element) it accepts.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Value>>>,
    /// Lines per accepted request.
    pub requests: Arc<Mutex<Vec<usize>>>,
    pub mode: Arc<AtomicU8>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

async fn ingest(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", st.token)) {
        return StatusCode::UNAUTHORIZED;
    }
    if headers.get("x-tenant").and_then(|v| v.to_str().ok()) != Some("acme") {
        return StatusCode::BAD_REQUEST;
    }
    let mode = st.mode.load(Ordering::SeqCst);
    if mode == REJECT {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let values: Vec<Value> = match content_type {
        "application/x-ndjson" => {
            let text = std::str::from_utf8(&body).unwrap();
            assert!(text.ends_with('\n'));
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
        "application/json" => serde_json::from_slice(&body).unwrap(),
        other => panic!("unexpected content type {other}"),
    };
    st.requests.lock().unwrap().push(values.len());
    st.got.lock().unwrap().extend(values);
    if mode == LOSE_ACK_ONCE {
        st.mode.store(ACCEPT, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

impl HttpReceiver {
    /// Serves on `addr` (port 0 for a free one); keeps `got` across restarts.
    pub async fn start(addr: SocketAddr, token: &str, got: Arc<Mutex<Vec<Value>>>) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = HttpState {
            got: got.clone(),
            requests: Arc::new(Mutex::new(Vec::new())),
            mode: Arc::new(AtomicU8::new(ACCEPT)),
            token: token.into(),
        };
        let (requests, mode) = (state.requests.clone(), state.mode.clone());
        let app = axum::Router::new()
            .route("/ingest", post(ingest))
            .with_state(state);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            got,
            requests,
            mode,
            stop: Some(tx),
            join,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Stops serving: the port refuses connections afterwards.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.join)
            .await
            .expect("receiver stops")
            .unwrap();
    }
}

// ---------------------------------------------------------------- syslog receiver

/// One parsed syslog message.
#[derive(Debug, Clone)]
pub struct SyslogMessage {
    pub pri: u16,
    pub hostname: String,
    pub app_name: String,
    pub msgid: String,
    pub seq: u64,
    pub session: String,
    pub json: Value,
}

fn is_print(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

/// Parses one RFC 5424 message strictly (the shape Portcullis sends: one SD element).
pub fn parse_rfc5424(msg: &str) -> Result<SyslogMessage, String> {
    let rest = msg.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("PRI not closed")?;
    if pri.is_empty() || pri.len() > 3 || (pri.len() > 1 && pri.starts_with('0')) {
        return Err(format!("bad PRI {pri:?}"));
    }
    let pri: u16 = pri.parse().map_err(|_| "PRI not a number")?;
    if pri > 191 {
        return Err(format!("PRI {pri} out of range"));
    }
    let rest = rest.strip_prefix("1 ").ok_or("VERSION is not 1")?;
    let mut fields = rest.splitn(6, ' ');
    let mut next = |what: &str| fields.next().ok_or(format!("missing {what}"));
    let timestamp = next("TIMESTAMP")?;
    humantime::parse_rfc3339(timestamp).map_err(|e| format!("TIMESTAMP {timestamp:?}: {e}"))?;
    let hostname = next("HOSTNAME")?.to_string();
    let app_name = next("APP-NAME")?.to_string();
    let procid = next("PROCID")?;
    let msgid = next("MSGID")?.to_string();
    let rest = next("STRUCTURED-DATA")?;
    if !is_print(&hostname, 255)
        || !is_print(&app_name, 48)
        || !is_print(procid, 128)
        || !is_print(&msgid, 32)
    {
        return Err("header field not PRINTUSASCII or too long".into());
    }
    // STRUCTURED-DATA: one element with escaped parameter values.
    let rest = rest.strip_prefix('[').ok_or("no SD element")?;
    let (sd_id, mut rest) = rest
        .split_once(' ')
        .ok_or("SD element without parameters")?;
    if sd_id != "portcullis@32473" {
        return Err(format!("unexpected SD-ID {sd_id}"));
    }
    let mut params = BTreeMap::new();
    loop {
        let (name, after) = rest.split_once("=\"").ok_or("bad SD-PARAM")?;
        if !is_print(name, 32) || name.contains(['=', ' ', ']', '"']) {
            return Err(format!("bad PARAM-NAME {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated PARAM-VALUE".into()),
                },
                Some((i, '"')) => break i,
                Some((_, ']')) => return Err("unescaped ] in PARAM-VALUE".into()),
                Some((_, c)) => value.push(c),
                None => return Err("unterminated PARAM-VALUE".into()),
            }
        };
        params.insert(name.to_string(), value);
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix("] ") {
            rest = r;
            break;
        }
        rest = rest.strip_prefix(' ').ok_or("bad SD separator")?;
    }
    let seq: u64 = params
        .get("seq")
        .ok_or("no seq parameter")?
        .parse()
        .map_err(|_| "seq not a number")?;
    let session = params.get("session").ok_or("no session parameter")?.clone();
    if rest.starts_with('\u{feff}') {
        return Err("unexpected BOM".into());
    }
    let json: Value = serde_json::from_str(rest).map_err(|e| format!("MSG is not JSON: {e}"))?;
    Ok(SyslogMessage {
        pri,
        hostname,
        app_name,
        msgid,
        seq,
        session,
        json,
    })
}

/// Reads one octet-counted frame (`MSG-LEN SP SYSLOG-MSG`); `None` at a clean end.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<Option<String>, String> {
    let mut len = Vec::new();
    let n = r
        .read_until(b' ', &mut len)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    let digits = len.strip_suffix(b" ").ok_or("frame cut before SP")?;
    if digits.is_empty()
        || digits.len() > 9
        || digits[0] == b'0'
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return Err(format!("bad MSG-LEN {:?}", String::from_utf8_lossy(digits)));
    }
    let len: usize = std::str::from_utf8(digits).unwrap().parse().unwrap();
    let mut msg = vec![0; len];
    r.read_exact(&mut msg)
        .await
        .map_err(|e| format!("frame cut: {e}"))?;
    String::from_utf8(msg).map(Some).map_err(|e| e.to_string())
}

/// A syslog receiver (TCP, or TLS with `acceptor`) that parses every frame strictly.
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<SyslogMessage>>>,
    pub errors: Arc<Mutex<Vec<String>>>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl SyslogReceiver {
    pub async fn start(
        addr: SocketAddr,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        got: Arc<Mutex<Vec<SyslogMessage>>>,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (stop, stop_rx) = watch::channel(false);
        let (g, e) = (got.clone(), errors.clone());
        let join = tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut rx = stop_rx.clone();
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => r.unwrap(),
                    _ = rx.wait_for(|s| *s) => break,
                };
                let (g, e, acceptor, mut rx) =
                    (g.clone(), e.clone(), acceptor.clone(), stop_rx.clone());
                conns.push(tokio::spawn(async move {
                    let work = async {
                        match acceptor {
                            None => serve_frames(BufReader::new(tcp), &g, &e).await,
                            Some(a) => match a.accept(tcp).await {
                                Ok(tls) => serve_frames(BufReader::new(tls), &g, &e).await,
                                Err(err) => e.lock().unwrap().push(format!("TLS accept: {err}")),
                            },
                        }
                    };
                    tokio::select! {
                        _ = work => {}
                        _ = rx.wait_for(|s| *s) => {}
                    }
                }));
            }
            drop(listener);
            for c in conns {
                let _ = c.await;
            }
        });
        Self {
            addr,
            got,
            errors,
            stop,
            join,
        }
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(PATIENCE, self.join)
            .await
            .expect("receiver stops")
            .unwrap();
    }
}

async fn serve_frames<R: AsyncRead + Unpin>(
    mut r: BufReader<R>,
    got: &Mutex<Vec<SyslogMessage>>,
    errors: &Mutex<Vec<String>>,
) {
    loop {
        match read_frame(&mut r).await {
            Ok(Some(msg)) => match parse_rfc5424(&msg) {
                Ok(m) => got.lock().unwrap().push(m),
                Err(e) => errors.lock().unwrap().push(format!("{e}: {msg}")),
            },
            Ok(None) => return,
            Err(e) => {
                errors.lock().unwrap().push(e);
                return;
            }
        }
    }
}
