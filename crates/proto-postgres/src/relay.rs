//! The relay between an authenticated client and its upstream connection.
//!
//! Two halves run concurrently:
//! - the **client side** reads client messages, sends every statement execution
//!   (`Query`, `Execute`) through the pipeline, and forwards what is admitted;
//! - the **server side** reads upstream messages, matches each to the client message
//!   it answers (a queue of [`Expect`] entries that the client side pushes before
//!   writing upstream), applies the command's output hooks, and writes to the client.
//!
//! A refused statement is replaced upstream by a marker statement that fails to
//! parse. The server then behaves exactly as for any failed statement (it aborts the
//! transaction, skips to `Sync`) and the server side replaces the marker's error with
//! the gateway's own. Responses therefore always reach the client in order, even
//! with pipelining, and the transaction state the client sees is the server's.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::copy::CopyData;
use pgwire::messages::extendedquery::{Describe, Parse};
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use portcullis_core::{
    BoxPipeline, Column, Command, CommandRequest, Completion, Decision, FieldFormat, Notifier,
    OutputHooks, SessionContext, SqlVia, TextKind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tower::{Service, ServiceExt};

use crate::frame;
use crate::messages::{self, encode_all, error_fields, error_response, error_with_detail};
use crate::stream::Stream;

/// Statement text sent upstream in place of a refused statement: never valid SQL.
const MARKER_SQL: &str = "PORTCULLIS REFUSED";
/// Statement name used for the marker in the extended protocol.
const MARKER_NAME: &str = "portcullis_refused";
/// Encoded output is written once it reaches this size, to stream large results.
const FLUSH_AT: usize = 64 * 1024;
/// Most entries the client side hands over in one batch.
const BATCH_MAX: usize = 256;
/// Notices waiting to be written to a client.
const NOTICE_QUEUE: usize = 64;

/// What the server side expects next from upstream, in client message order.
enum Expect {
    Parse,
    Bind,
    Close,
    /// A Describe; `portal` when it describes a portal (its RowDescription carries the
    /// real result formats), `hidden` when the gateway sent it to learn an Execute's
    /// columns and the client must not see the answer.
    Describe {
        portal: bool,
        hidden: bool,
    },
    Sync,
    /// A simple-protocol query that was admitted.
    Query(Box<Running>),
    /// An extended-protocol execute that was admitted.
    Execute(Box<Running>),
    /// A simple-protocol query replaced by the marker.
    RefusedQuery(Refusal),
    /// An execute replaced by the marker.
    RefusedExecute(Refusal),
}

/// One entry handed from the client side to the server side.
enum Entry {
    Expect(Expect),
    /// Bytes the gateway sends to the client once everything before them is answered.
    Emit(BytesMut),
    /// Close the client connection once everything before is answered.
    Close,
}

/// Why a statement was not forwarded, as the client will see it.
struct Refusal {
    code: &'static str,
    message: String,
    detail: String,
    /// Whether the gateway's error was already sent (simple protocol waits for ReadyForQuery).
    answered: bool,
}

/// An admitted command whose output is streaming back.
struct Running {
    hooks: OutputHooks,
    completion: Completion,
    /// Whether the hooks were told the columns of the current result.
    columns_known: bool,
    /// Output refused mid-statement: swallow the rest of the current result.
    suppress: bool,
}

impl Running {
    fn finish(&mut self) {
        self.hooks.finish(&mut self.completion);
    }
}

/// How a relay ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The client sent Terminate or closed the connection between messages.
    ClientClosed,
    /// The client closed in the middle of a message.
    ClientDisconnected,
    /// The client broke the protocol.
    ClientProtocol(String),
    /// The upstream closed or failed.
    Upstream(String),
    /// The gateway is shutting down.
    Shutdown,
}

impl Ended {
    pub(crate) fn reason(&self) -> String {
        match self {
            Ended::ClientClosed => "client closed the session".into(),
            Ended::ClientDisconnected => "client disconnected mid-message".into(),
            Ended::ClientProtocol(e) => format!("client protocol violation: {e}"),
            Ended::Upstream(e) => format!("upstream: {e}"),
            Ended::Shutdown => "gateway shutdown".into(),
        }
    }
}

/// Everything the relay needs.
pub(crate) struct Relay {
    pub session: Arc<SessionContext>,
    pub pipeline: BoxPipeline,
    pub client: Stream,
    pub client_buf: BytesMut,
    pub upstream: Stream,
    pub upstream_buf: BytesMut,
    pub max_message: usize,
    pub max_pipeline: usize,
    pub shutdown: watch::Receiver<bool>,
    pub grace: std::time::Duration,
}

impl Relay {
    /// Runs the session until either side ends; returns why and how many commands ran.
    pub(crate) async fn run(self) -> (Ended, u64) {
        let (client_r, client_w) = tokio::io::split(self.client);
        let (upstream_r, upstream_w) = tokio::io::split(self.upstream);
        let (tx, rx) = mpsc::channel(self.max_pipeline.div_ceil(BATCH_MAX).max(2));
        // Notices for the client while a statement waits (approvals). PostgreSQL allows a
        // NoticeResponse between any two messages, so they bypass the response queue.
        let (notice_tx, notice_rx) = mpsc::channel::<String>(NOTICE_QUEUE);
        let notifier = Notifier::new(move |text: &str| {
            // Best effort: a client that does not read notices loses the surplus.
            let _ = notice_tx.try_send(text.to_string());
        });
        let mut client_side = ClientSide {
            session: self.session,
            pipeline: self.pipeline,
            reader: client_r,
            buf: self.client_buf,
            upstream: upstream_w,
            out: BytesMut::with_capacity(8192),
            tx: Some(tx),
            batch: Vec::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            seq: 0,
            max_message: self.max_message,
            shutdown: self.shutdown,
            notifier,
            described_portal: None,
        };
        let mut server_side = ServerSide {
            reader: upstream_r,
            buf: self.upstream_buf,
            client: client_w,
            out: BytesMut::with_capacity(8192),
            rx,
            queue: VecDeque::new(),
            skipping: false,
            described: None,
            closing: false,
            notices: notice_rx,
        };
        let ended = {
            let client_fut = client_side.run();
            let server_fut = server_side.run();
            tokio::pin!(client_fut);
            tokio::pin!(server_fut);
            tokio::select! {
                ended = &mut client_fut => {
                    // Let the server side deliver what is still in flight.
                    let shutdown = matches!(ended, Ended::Shutdown);
                    match tokio::time::timeout(self.grace, &mut server_fut).await {
                        Ok(Some(server_ended)) if !shutdown => server_ended,
                        _ => ended,
                    }
                }
                server_ended = &mut server_fut => {
                    server_ended.unwrap_or(Ended::ClientClosed)
                }
            }
        };
        (ended, client_side.seq)
    }
}

/// Reads client messages, decides, forwards.
struct ClientSide {
    session: Arc<SessionContext>,
    pipeline: BoxPipeline,
    reader: ReadHalf<Stream>,
    buf: BytesMut,
    upstream: WriteHalf<Stream>,
    out: BytesMut,
    /// Entries for the server side; dropped when the client side ends.
    tx: Option<mpsc::Sender<Vec<Entry>>>,
    batch: Vec<Entry>,
    /// Prepared statement name → SQL text.
    statements: HashMap<String, Arc<str>>,
    /// Portal name → SQL text of its statement.
    portals: HashMap<String, (String, Arc<str>)>,
    seq: u64,
    max_message: usize,
    shutdown: watch::Receiver<bool>,
    notifier: Notifier,
    /// The portal the previous client message described, if it was a portal Describe.
    described_portal: Option<String>,
}

enum Step {
    Continue,
    Terminate,
}

impl ClientSide {
    async fn run(&mut self) -> Ended {
        let ended = self.relay().await;
        // Closing the channel tells the server side that nothing more will come.
        self.tx = None;
        ended
    }

    async fn relay(&mut self) -> Ended {
        loop {
            // Handle every complete message already buffered.
            loop {
                let frame = match frame::split_typed(&mut self.buf, self.max_message) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return self.refuse_protocol(e).await,
                };
                let msg = match frame::decode_frontend(frame, &frame::frontend_context()) {
                    Ok(m) => m,
                    Err(e) => return self.refuse_protocol(e).await,
                };
                match self.handle(msg).await {
                    Ok(Step::Continue) => {}
                    Ok(Step::Terminate) => {
                        let _ = self.flush().await;
                        return Ended::ClientClosed;
                    }
                    Err(ended) => return ended,
                }
                if (self.batch.len() >= BATCH_MAX || self.out.len() >= FLUSH_AT)
                    && let Err(e) = self.flush().await
                {
                    return e;
                }
            }
            if let Err(e) = self.flush().await {
                return e;
            }
            tokio::select! {
                read = self.reader.read_buf(&mut self.buf) => match read {
                    Ok(0) if self.buf.is_empty() => {
                        self.send_terminate().await;
                        return Ended::ClientClosed;
                    }
                    Ok(0) => {
                        self.send_terminate().await;
                        return Ended::ClientDisconnected;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.send_terminate().await;
                        return Ended::ClientDisconnected;
                    }
                },
                _ = self.shutdown.changed() => {
                    let mut out = BytesMut::new();
                    let _ = encode_all(
                        &[error_response("FATAL", "57P01", "terminating connection: the Portcullis gateway is shutting down")],
                        &mut out,
                    );
                    self.batch.push(Entry::Emit(out));
                    self.batch.push(Entry::Close);
                    let _ = self.flush().await;
                    self.send_terminate().await;
                    return Ended::Shutdown;
                }
            }
        }
    }

    /// Hands pending entries to the server side, then writes pending upstream bytes.
    /// Entries go first so that no response can arrive before its entry.
    async fn flush(&mut self) -> Result<(), Ended> {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            let sent = match &self.tx {
                Some(tx) => tx.send(batch).await.is_ok(),
                None => false,
            };
            if !sent {
                return Err(Ended::Upstream("connection closed".into()));
            }
        }
        if !self.out.is_empty() {
            self.upstream
                .write_all(&self.out)
                .await
                .map_err(|e| Ended::Upstream(e.to_string()))?;
            self.out.clear();
        }
        Ok(())
    }

    async fn send_terminate(&mut self) {
        let mut out = BytesMut::new();
        if PgWireFrontendMessage::Terminate(pgwire::messages::terminate::Terminate::new())
            .encode(&mut out)
            .is_ok()
        {
            let _ = self.upstream.write_all(&out).await;
        }
        let _ = self.upstream.shutdown().await;
    }

    async fn refuse_protocol(&mut self, e: String) -> Ended {
        let mut out = BytesMut::new();
        let _ = encode_all(
            &[error_response(
                "FATAL",
                "08P01",
                &format!("protocol violation: {e}"),
            )],
            &mut out,
        );
        self.batch.push(Entry::Emit(out));
        self.batch.push(Entry::Close);
        let _ = self.flush().await;
        self.send_terminate().await;
        Ended::ClientProtocol(e)
    }

    fn forward(&mut self, msg: &PgWireFrontendMessage) -> Result<(), Ended> {
        msg.encode(&mut self.out)
            .map_err(|e| Ended::ClientProtocol(format!("cannot re-encode message: {e}")))
    }

    async fn handle(&mut self, msg: PgWireFrontendMessage) -> Result<Step, Ended> {
        let step = self.handle_message(&msg).await;
        if !matches!(msg, PgWireFrontendMessage::Describe(_)) {
            self.described_portal = None;
        }
        step
    }

    async fn handle_message(&mut self, msg: &PgWireFrontendMessage) -> Result<Step, Ended> {
        match msg {
            PgWireFrontendMessage::Query(q) => {
                let command = Command::Sql {
                    text: q.query.clone(),
                    via: SqlVia::Simple,
                };
                match self.admit(command).await {
                    Admission::Forward(running) => {
                        self.batch.push(Entry::Expect(Expect::Query(running)));
                        self.forward(msg)?;
                    }
                    Admission::Refuse(refusal) => {
                        self.batch
                            .push(Entry::Expect(Expect::RefusedQuery(refusal)));
                        self.forward(&PgWireFrontendMessage::Query(Query::new(
                            MARKER_SQL.to_string(),
                        )))?;
                    }
                }
            }
            PgWireFrontendMessage::Parse(p) => {
                let name = p.name.clone().unwrap_or_default();
                self.statements.insert(name, Arc::from(p.query.as_str()));
                self.batch.push(Entry::Expect(Expect::Parse));
                self.forward(msg)?;
            }
            PgWireFrontendMessage::Bind(b) => {
                let statement = b.statement_name.clone().unwrap_or_default();
                let portal = b.portal_name.clone().unwrap_or_default();
                if let Some(text) = self.statements.get(&statement).cloned() {
                    self.portals.insert(portal, (statement, text));
                } else {
                    self.portals.remove(&portal);
                }
                self.batch.push(Entry::Expect(Expect::Bind));
                self.forward(msg)?;
            }
            PgWireFrontendMessage::Execute(e) => {
                let portal = e.name.clone().unwrap_or_default();
                let portal_name = portal.clone();
                let (statement, text) = match self.portals.get(&portal) {
                    Some((s, t)) => (s.clone(), t.to_string()),
                    // Unknown portal: nothing can be classified, so nothing is forwarded.
                    None => (String::new(), String::new()),
                };
                let command = Command::Sql {
                    text,
                    via: SqlVia::Extended { statement, portal },
                };
                let just_described = self.described_portal.as_deref() == Some(portal_name.as_str());
                match self.admit(command).await {
                    Admission::Forward(running) => {
                        if running.hooks.inspects_rows() && !just_described {
                            // Masking needs the columns and their wire formats: ask for
                            // the portal's description without showing it to the client.
                            self.batch.push(Entry::Expect(Expect::Describe {
                                portal: true,
                                hidden: true,
                            }));
                            self.forward(&PgWireFrontendMessage::Describe(Describe::new(
                                b'P',
                                Some(portal_name.clone()),
                            )))?;
                        }
                        self.batch.push(Entry::Expect(Expect::Execute(running)));
                        self.forward(msg)?;
                    }
                    Admission::Refuse(refusal) => {
                        self.batch
                            .push(Entry::Expect(Expect::RefusedExecute(refusal)));
                        self.forward(&PgWireFrontendMessage::Parse(Parse::new(
                            Some(MARKER_NAME.to_string()),
                            MARKER_SQL.to_string(),
                            Vec::new(),
                        )))?;
                    }
                }
            }
            PgWireFrontendMessage::Describe(d) => {
                let portal = d.target_type == b'P';
                if portal {
                    self.described_portal = Some(d.name.clone().unwrap_or_default());
                }
                self.batch.push(Entry::Expect(Expect::Describe {
                    portal,
                    hidden: false,
                }));
                self.forward(msg)?;
                return Ok(Step::Continue);
            }
            PgWireFrontendMessage::Close(c) => {
                let name = c.name.clone().unwrap_or_default();
                if c.target_type == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                self.batch.push(Entry::Expect(Expect::Close));
                self.forward(msg)?;
            }
            PgWireFrontendMessage::Sync(_) => {
                self.batch.push(Entry::Expect(Expect::Sync));
                self.forward(msg)?;
            }
            PgWireFrontendMessage::Flush(_)
            | PgWireFrontendMessage::CopyData(_)
            | PgWireFrontendMessage::CopyDone(_)
            | PgWireFrontendMessage::CopyFail(_) => self.forward(msg)?,
            PgWireFrontendMessage::Terminate(_) => {
                self.forward(msg)?;
                return Ok(Step::Terminate);
            }
            other => {
                return Err(self
                    .refuse_protocol(format!("unexpected message {}", message_name(other)))
                    .await);
            }
        }
        Ok(Step::Continue)
    }

    /// Sends a command through the pipeline.
    async fn admit(&mut self, command: Command) -> Admission {
        self.seq += 1;
        let request = CommandRequest::new(self.session.clone(), self.seq, command)
            .with_notifier(self.notifier.clone());
        let response = match self.pipeline.ready().await {
            Ok(svc) => svc.call(request).await,
            Err(e) => Err(e),
        };
        match response {
            Ok(r) if r.forward() => Admission::Forward(Box::new(Running {
                hooks: r.hooks,
                completion: Completion::default(),
                columns_known: false,
                suppress: false,
            })),
            Ok(r) => Admission::Refuse(refusal_for(&r.decision, self.session.id)),
            Err(e) => {
                // Fail closed: nothing that could not be decided and recorded is forwarded.
                tracing::error!(session = %self.session.id, error = %e, "command refused: pipeline failed");
                Admission::Refuse(Refusal {
                    code: "58000",
                    message: format!("Portcullis refused the statement: {e}"),
                    detail: format!("session {}", self.session.id),
                    answered: false,
                })
            }
        }
    }
}

enum Admission {
    Forward(Box<Running>),
    Refuse(Refusal),
}

fn refusal_for(decision: &Decision, session: portcullis_core::SessionId) -> Refusal {
    Refusal {
        code: "42501",
        message: format!(
            "Portcullis denied the statement (rule \"{}\"): {}",
            decision.rule, decision.reason
        ),
        detail: format!("session {session}"),
        answered: false,
    }
}

fn message_name(msg: &PgWireFrontendMessage) -> &'static str {
    match msg {
        PgWireFrontendMessage::SslNegotiation(_) => "SSLRequest",
        PgWireFrontendMessage::Startup(_) => "StartupMessage",
        PgWireFrontendMessage::CancelRequest(_) => "CancelRequest",
        PgWireFrontendMessage::PasswordMessageFamily(_) => "PasswordMessage",
        PgWireFrontendMessage::PortalSuspended(_) => "PortalSuspended",
        _ => "message",
    }
}

/// Reads upstream messages, matches them to client messages, applies hooks, writes to the client.
struct ServerSide {
    reader: ReadHalf<Stream>,
    buf: BytesMut,
    client: WriteHalf<Stream>,
    out: BytesMut,
    rx: mpsc::Receiver<Vec<Entry>>,
    queue: VecDeque<Entry>,
    /// After an error in the extended protocol the server skips to the next Sync.
    skipping: bool,
    /// Columns of the last portal Describe, used for the next Execute's hooks.
    described: Option<Vec<Column>>,
    closing: bool,
    notices: mpsc::Receiver<String>,
}

impl ServerSide {
    /// Returns `None` when the client side closed and everything was delivered.
    async fn run(&mut self) -> Option<Ended> {
        let ctx = frame::backend_context();
        let mut channel_open = true;
        loop {
            tokio::select! {
                read = self.reader.read_buf(&mut self.buf) => match read {
                    Ok(0) | Err(_) => {
                        if !channel_open && self.queue.is_empty() {
                            return None;
                        }
                        return Some(self.upstream_lost("the database server closed the connection").await);
                    }
                    Ok(_) => {
                        self.receive_entries(&mut channel_open);
                        loop {
                            let frame = match frame::split_typed(&mut self.buf, usize::MAX >> 2) {
                                Ok(Some(f)) => f,
                                Ok(None) => break,
                                Err(e) => return Some(self.upstream_lost(&e).await),
                            };
                            let msg = match frame::decode_backend(frame, &ctx) {
                                Ok(m) => m,
                                Err(e) => return Some(self.upstream_lost(&e).await),
                            };
                            if let Err(e) = self.handle(msg) {
                                return Some(self.upstream_lost(&e).await);
                            }
                            if self.out.len() >= FLUSH_AT
                                && let Err(e) = self.write_out().await
                            {
                                return Some(e);
                            }
                        }
                    }
                },
                Some(text) = self.notices.recv() => {
                    let _ = encode_all(&[messages::notice(&text)], &mut self.out);
                }
                batch = self.rx.recv(), if channel_open => match batch {
                    Some(batch) => {
                        self.queue.extend(batch);
                        self.receive_entries(&mut channel_open);
                    }
                    None => channel_open = false,
                },
            }
            self.settle();
            if let Err(e) = self.write_out().await {
                return Some(e);
            }
            if self.closing {
                let _ = self.client.shutdown().await;
                return None;
            }
            if !channel_open && self.queue.is_empty() && self.buf.is_empty() {
                // The client side is done and everything it sent was answered.
                return None;
            }
        }
    }

    fn receive_entries(&mut self, channel_open: &mut bool) {
        loop {
            match self.rx.try_recv() {
                Ok(batch) => self.queue.extend(batch),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    *channel_open = false;
                    break;
                }
            }
        }
    }

    async fn write_out(&mut self) -> Result<(), Ended> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.client.write_all(&self.out).await;
        self.out.clear();
        r.map_err(|_| Ended::ClientDisconnected)
    }

    async fn upstream_lost(&mut self, why: &str) -> Ended {
        let _ = encode_all(
            &[error_response(
                "FATAL",
                "08006",
                &format!("connection to the database server lost: {why}"),
            )],
            &mut self.out,
        );
        let _ = self.write_out().await;
        let _ = self.client.shutdown().await;
        // Commands still in flight did not complete.
        while let Some(entry) = self.queue.pop_front() {
            if let Entry::Expect(Expect::Query(mut r) | Expect::Execute(mut r)) = entry {
                r.completion.error = Some(format!("connection to the database server lost: {why}"));
                r.finish();
            }
        }
        Ended::Upstream(why.to_string())
    }

    /// Emits gateway messages at the head and drops entries the server skips.
    fn settle(&mut self) {
        loop {
            match self.queue.front() {
                Some(Entry::Emit(_)) => {
                    if let Some(Entry::Emit(bytes)) = self.queue.pop_front() {
                        self.out.extend_from_slice(&bytes);
                    }
                }
                Some(Entry::Close) => {
                    self.queue.pop_front();
                    self.closing = true;
                    return;
                }
                Some(Entry::Expect(Expect::Sync)) | None => return,
                Some(Entry::Expect(_)) if self.skipping => {
                    if let Some(Entry::Expect(e)) = self.queue.pop_front() {
                        skipped(e);
                    }
                }
                Some(Entry::Expect(_)) => return,
            }
        }
    }

    fn head(&mut self) -> Option<&mut Expect> {
        self.settle();
        match self.queue.front_mut() {
            Some(Entry::Expect(e)) => Some(e),
            _ => None,
        }
    }

    fn pop(&mut self) -> Option<Expect> {
        self.settle();
        match self.queue.pop_front() {
            Some(Entry::Expect(e)) => Some(e),
            Some(other) => {
                self.queue.push_front(other);
                None
            }
            None => None,
        }
    }

    fn emit(&mut self, msg: &PgWireBackendMessage) -> Result<(), String> {
        msg.encode(&mut self.out).map_err(|e| e.to_string())
    }

    fn handle(&mut self, mut msg: PgWireBackendMessage) -> Result<(), String> {
        match &mut msg {
            PgWireBackendMessage::ParameterStatus(_)
            | PgWireBackendMessage::NotificationResponse(_)
            | PgWireBackendMessage::ParameterDescription(_)
            | PgWireBackendMessage::CopyInResponse(_)
            | PgWireBackendMessage::CopyBothResponse(_) => {}
            PgWireBackendMessage::NoticeResponse(n) => {
                if let Some(Expect::Query(r) | Expect::Execute(r)) = self.head() {
                    mask_fields(&mut r.hooks, TextKind::Notice, &mut n.fields)?;
                }
            }
            PgWireBackendMessage::ParseComplete(_)
            | PgWireBackendMessage::BindComplete(_)
            | PgWireBackendMessage::CloseComplete(_) => {
                self.expect_simple_reply()?;
            }
            PgWireBackendMessage::NoData(_) => match self.pop() {
                Some(Expect::Describe { portal, hidden }) => {
                    if portal {
                        self.described = None;
                    }
                    if hidden {
                        return Ok(());
                    }
                }
                _ => return Err("unexpected NoData".into()),
            },
            PgWireBackendMessage::RowDescription(rd) => {
                let columns: Vec<Column> = rd
                    .fields
                    .iter()
                    .map(|f| Column {
                        name: f.name.clone(),
                        table_oid: u32::try_from(f.table_id).unwrap_or(0),
                        column_id: f.column_id,
                        type_oid: f.type_id,
                        format: if f.format_code == 1 {
                            FieldFormat::Binary
                        } else {
                            FieldFormat::Text
                        },
                    })
                    .collect();
                match self.head() {
                    Some(Expect::Describe { portal, hidden }) => {
                        let (portal, hidden) = (*portal, *hidden);
                        self.pop();
                        if portal {
                            self.described = Some(columns);
                        }
                        if hidden {
                            return Ok(());
                        }
                    }
                    Some(Expect::Query(r)) => {
                        r.hooks.columns(&columns).map_err(|e| e.to_string())?;
                        r.columns_known = true;
                    }
                    _ => return Err("unexpected RowDescription".into()),
                }
            }
            PgWireBackendMessage::DataRow(row) => {
                self.settle();
                let described = &self.described;
                let Some(Entry::Expect(Expect::Query(r) | Expect::Execute(r))) =
                    self.queue.front_mut()
                else {
                    return Err("unexpected DataRow".into());
                };
                r.completion.rows_returned += 1;
                if r.hooks.inspects_rows() {
                    if !r.columns_known {
                        // An Execute has no RowDescription of its own: use its portal's Describe.
                        if let Some(cols) = described {
                            r.hooks.columns(cols).map_err(|e| e.to_string())?;
                        }
                        r.columns_known = true;
                    }
                    let mut fields =
                        messages::split_fields(row).ok_or("malformed DataRow from server")?;
                    r.hooks.row(&mut fields).map_err(|e| e.to_string())?;
                    *row = messages::join_fields(&fields).ok_or("row too large to re-encode")?;
                }
                r.completion.bytes += row.data.len() as u64;
            }
            PgWireBackendMessage::CopyData(data) => {
                if let Some(Expect::Query(r) | Expect::Execute(r)) = self.head() {
                    if r.suppress {
                        return Ok(());
                    }
                    if r.hooks.inspects_rows() {
                        let mut bytes = data.data.to_vec();
                        r.hooks.chunk(&mut bytes).map_err(|e| e.to_string())?;
                        data.data = bytes.into();
                        if data.data.is_empty() {
                            // Held back until the rest of a value arrives.
                            return Ok(());
                        }
                    }
                    r.completion.bytes += data.data.len() as u64;
                }
            }
            PgWireBackendMessage::CopyDone(_) => {
                if let Some(Expect::Query(r) | Expect::Execute(r)) = self.head()
                    && r.suppress
                {
                    return Ok(());
                }
                if let Some(Expect::Query(r) | Expect::Execute(r)) = self.head()
                    && r.hooks.inspects_rows()
                {
                    // Release what the streaming masker still holds.
                    let mut rest = Vec::new();
                    r.hooks.chunk(&mut rest).map_err(|e| e.to_string())?;
                    if !rest.is_empty() {
                        r.completion.bytes += rest.len() as u64;
                        self.emit(&PgWireBackendMessage::CopyData(CopyData::new(rest.into())))?;
                    }
                }
            }
            PgWireBackendMessage::CopyOutResponse(c) => {
                if let Some(Expect::Query(r) | Expect::Execute(r)) = self.head()
                    && r.hooks.inspects_rows()
                {
                    // Binary COPY cannot be masked at all; text COPY carries no column
                    // names for column rules. Either way: fail closed for this statement.
                    let refused = if c.format != 0 {
                        Some("binary COPY TO STDOUT cannot be masked".to_string())
                    } else {
                        r.hooks.begin_stream(true).err().map(|e| e.to_string())
                    };
                    if let Some(why) = refused {
                        r.suppress = true;
                        r.completion.error = Some(format!("refused: {why}"));
                        let msg = error_with_detail(
                            "42501",
                            &format!("Portcullis refused the output: {why}"),
                            "the statement ran; its output was withheld",
                        );
                        return self.emit(&msg);
                    }
                }
            }
            PgWireBackendMessage::CommandComplete(cc) => match self.head() {
                Some(Expect::Query(r)) if r.suppress => {
                    // The refused output's completion is not shown either.
                    r.suppress = false;
                    return Ok(());
                }
                Some(Expect::Execute(r)) if r.suppress => {
                    if let Some(Expect::Execute(mut r)) = self.pop() {
                        r.finish();
                    }
                    return Ok(());
                }
                Some(Expect::Query(r)) => {
                    if let Some(n) = messages::rows_affected(&cc.tag) {
                        *r.completion.rows_affected.get_or_insert(0) += n;
                    }
                    r.completion.tag = Some(cc.tag.clone());
                }
                Some(Expect::Execute(r)) => {
                    r.completion.rows_affected = messages::rows_affected(&cc.tag);
                    r.completion.tag = Some(cc.tag.clone());
                    if let Some(Expect::Execute(mut r)) = self.pop() {
                        r.finish();
                    }
                }
                _ => return Err("unexpected CommandComplete".into()),
            },
            PgWireBackendMessage::EmptyQueryResponse(_) => match self.head() {
                Some(Expect::Query(_)) => {}
                Some(Expect::Execute(_)) => {
                    if let Some(Expect::Execute(mut r)) = self.pop() {
                        r.finish();
                    }
                }
                _ => return Err("unexpected EmptyQueryResponse".into()),
            },
            PgWireBackendMessage::PortalSuspended(_) => match self.pop() {
                Some(Expect::Execute(mut r)) => {
                    r.completion.tag = Some("suspended".into());
                    r.finish();
                }
                _ => return Err("unexpected PortalSuspended".into()),
            },
            PgWireBackendMessage::ErrorResponse(err) => return self.on_error(err),
            PgWireBackendMessage::ReadyForQuery(_) => {
                match self.pop() {
                    Some(Expect::Query(mut r)) => r.finish(),
                    Some(Expect::Sync | Expect::RefusedQuery(_)) => {}
                    Some(_) => return Err("unexpected ReadyForQuery".into()),
                    None => return Err("ReadyForQuery with nothing pending".into()),
                }
                self.skipping = false;
            }
            other => return Err(format!("unexpected message from server: {other:?}")),
        }
        self.emit(&msg)
    }

    fn expect_simple_reply(&mut self) -> Result<(), String> {
        match self.head() {
            Some(Expect::Parse | Expect::Bind | Expect::Close) => {
                self.pop();
                Ok(())
            }
            _ => Err("reply does not match any pending request".into()),
        }
    }

    fn on_error(
        &mut self,
        err: &mut pgwire::messages::response::ErrorResponse,
    ) -> Result<(), String> {
        let refused = |r: &mut Refusal| {
            r.answered = true;
            error_with_detail(r.code, &r.message, &r.detail)
        };
        match self.head() {
            Some(Expect::RefusedQuery(r)) => {
                // The marker failed as intended; the client sees the gateway's error.
                if r.answered {
                    return Ok(());
                }
                let msg = refused(r);
                return self.emit(&msg);
            }
            Some(Expect::RefusedExecute(r)) => {
                let msg = refused(r);
                self.pop();
                self.skipping = true;
                return self.emit(&msg);
            }
            Some(Expect::Query(r)) => {
                mask_fields(&mut r.hooks, TextKind::Error, &mut err.fields)?;
                let (code, message) = error_fields(&err.fields);
                r.completion.error = Some(format!("{code}: {message}"));
            }
            Some(Expect::Execute(r)) => {
                mask_fields(&mut r.hooks, TextKind::Error, &mut err.fields)?;
                let (code, message) = error_fields(&err.fields);
                r.completion.error = Some(format!("{code}: {message}"));
                if let Some(Expect::Execute(mut r)) = self.pop() {
                    r.finish();
                }
                self.skipping = true;
            }
            Some(Expect::Parse | Expect::Bind | Expect::Describe { .. } | Expect::Close) => {
                self.pop();
                self.skipping = true;
            }
            // An error at Sync (a failed commit) or outside any request (FATAL).
            Some(Expect::Sync) | None => {}
        }
        self.emit(&PgWireBackendMessage::ErrorResponse(std::mem::take(err)))
    }
}

/// Records a command the server skipped after an earlier error.
fn skipped(e: Expect) {
    if let Expect::Query(mut r) | Expect::Execute(mut r) = e {
        r.completion.skipped = true;
        r.completion.error =
            Some("not executed: an earlier statement in the pipeline failed".into());
        r.finish();
    }
}

/// Passes the message text of an error or notice through the hooks.
fn mask_fields(
    hooks: &mut OutputHooks,
    kind: TextKind,
    fields: &mut [(u8, String)],
) -> Result<(), String> {
    if hooks.is_empty() {
        return Ok(());
    }
    for (code, value) in fields.iter_mut() {
        // Message, detail, hint, context, and where the error is: any may quote data.
        if matches!(code, b'M' | b'D' | b'H' | b'W' | b'q') {
            hooks.text(kind, value).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
