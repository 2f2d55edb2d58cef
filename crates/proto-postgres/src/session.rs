//! One client connection: negotiation, login, upstream login, relay, close.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use portcullis_core::{Event, EventKind, Identity, Secret, SessionContext, SessionId, Timestamp};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::PgError;
use crate::cancel::CancelTarget;
use crate::conn::MessageConn;
use crate::frame;
use crate::messages::{encode_all, error_response};
use crate::relay::Relay;
use crate::server::GatewayInner;
use crate::stream::Stream;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// Startup parameters passed on to the upstream (everything else is dropped:
/// `options` and arbitrary GUCs could change the role or security settings).
const FORWARDED_PARAMETERS: &[&str] = &[
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
];

/// What the client asked for at startup.
struct StartupRequest {
    params: BTreeMap<String, String>,
    minor: u16,
}

/// Serves one client connection to its end.
pub(crate) async fn serve(
    gw: Arc<GatewayInner>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let attempt = SessionId::new();
    let negotiation = tokio::time::timeout(gw.settings.login_timeout, negotiate(&gw, tcp));
    let (mut conn, startup) = match negotiation.await {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return, // a cancel request, handled
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection closed before startup");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "startup timed out");
            return;
        }
    };
    let target_name = startup
        .params
        .get("database")
        .or_else(|| startup.params.get("user"))
        .cloned()
        .unwrap_or_default();
    let verified = tokio::time::timeout(
        gw.settings.login_timeout,
        login(&gw, &mut conn, &startup, &target_name),
    )
    .await
    .unwrap_or_else(|_| Err(PgError::Auth("login timed out".into())));
    let (identity, target) = match verified {
        Ok(x) => x,
        // psql and others connect once without a password to learn that one is needed:
        // nothing was attempted, so nothing is refused.
        Err(PgError::ClientGone(_)) => return,
        Err(e) => {
            refuse(&gw, &mut conn, attempt, peer, None, Some(target_name), &e).await;
            return;
        }
    };

    // Open the upstream with the target's own credential.
    let session_id = attempt;
    let mut upstream_params: BTreeMap<String, String> = startup
        .params
        .iter()
        .filter(|(k, _)| FORWARDED_PARAMETERS.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    upstream_params.insert(
        "application_name".into(),
        application_name(&identity.subject, session_id),
    );
    upstream_params.insert(
        "options".into(),
        format!(
            "-c portcullis.session_id={} -c portcullis.subject={}",
            session_id,
            escape_option(&identity.subject)
        ),
    );
    let upstream = match target.endpoint.login(upstream_params).await {
        Ok(u) => u,
        Err(e) => {
            refuse(
                &gw,
                &mut conn,
                attempt,
                peer,
                Some(identity.subject.clone()),
                Some(target_name),
                &e,
            )
            .await;
            return;
        }
    };

    let session = Arc::new(SessionContext {
        id: session_id,
        identity: identity.clone(),
        target: target.target.clone(),
        client_addr: Some(peer),
        opened_at: Timestamp::now(),
    });
    let mut details = BTreeMap::new();
    if let Some(user) = startup.params.get("user") {
        details.insert("client_user".into(), user.clone());
    }
    if let Some(app) = startup.params.get("application_name") {
        details.insert("application_name".into(), app.clone());
    }
    details.insert("tls".into(), conn.stream.is_tls().to_string());
    details.insert("upstream_pid".into(), upstream.pid.to_string());
    let opened = Event::now(
        session_id,
        EventKind::SessionOpened {
            identity: identity.clone(),
            target: target.target.name.clone(),
            protocol: portcullis_core::Protocol::Postgres,
            client_addr: Some(peer.to_string()),
            details,
        },
    );
    if let Err(e) = gw.pipeline.sink.record(opened).await {
        // Fail closed: a session that cannot be recorded does not open.
        let err = PgError::Audit(e.to_string());
        send_fatal(&mut conn, &err).await;
        return;
    }

    let (pid, secret, _cancel_guard) = gw.cancel.register(CancelTarget {
        endpoint: target.endpoint.clone(),
        pid: upstream.pid,
        secret: upstream.secret.clone(),
    });
    let mut hello = vec![PgWireBackendMessage::Authentication(Authentication::Ok)];
    for (name, value) in &upstream.parameters {
        hello.push(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            name.clone(),
            value.clone(),
        )));
    }
    hello.push(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
        pid,
        SecretKey::I32(secret),
    )));
    hello.push(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
        TransactionStatus::Idle,
    )));
    if let Err(e) = conn.send_backend(&hello).await {
        close(&gw, session_id, &format!("client lost at login: {e}"), 0).await;
        return;
    }
    tracing::info!(session = %session_id, subject = %identity.subject, target = %target.target.name, %peer, "session opened");

    let relay = Relay {
        session,
        pipeline: gw.pipeline.build(),
        client: conn.stream,
        client_buf: conn.buf,
        upstream: upstream.conn.stream,
        upstream_buf: upstream.conn.buf,
        max_message: gw.settings.max_message_bytes,
        max_pipeline: gw.settings.max_pipeline,
        shutdown,
        grace: gw.settings.shutdown_grace,
    };
    let (ended, commands) = relay.run().await;
    tracing::info!(session = %session_id, reason = %ended.reason(), commands, "session closed");
    close(&gw, session_id, &ended.reason(), commands).await;
}

async fn close(gw: &GatewayInner, session: SessionId, reason: &str, commands: u64) {
    let event = Event::now(
        session,
        EventKind::SessionClosed {
            reason: reason.to_string(),
            commands,
        },
    );
    if let Err(e) = gw.pipeline.sink.record(event).await {
        tracing::error!(%session, error = %e, "session close not recorded");
    }
}

/// Handles SSL/GSS negotiation and cancel requests; returns the startup request.
async fn negotiate(
    gw: &GatewayInner,
    tcp: TcpStream,
) -> Result<Option<(MessageConn, StartupRequest)>, PgError> {
    let mut conn = MessageConn::new(Stream::Plain(tcp));
    loop {
        let packet = conn.read_startup_packet().await?;
        let code = packet
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0);
        match code {
            SSL_REQUEST => {
                // Bytes sent after SSLRequest but before the answer would bypass TLS.
                if !conn.buf.is_empty() {
                    return Err(PgError::ClientProtocol(
                        "data received after SSLRequest".into(),
                    ));
                }
                match (&gw.settings.tls, conn.stream) {
                    (Some(cfg), Stream::Plain(mut tcp)) => {
                        tcp.write_all(b"S").await.map_err(PgError::ClientIo)?;
                        let tls = tokio_rustls::TlsAcceptor::from(cfg.clone())
                            .accept(tcp)
                            .await
                            .map_err(|e| PgError::ClientProtocol(format!("TLS handshake: {e}")))?;
                        conn = MessageConn::new(Stream::ServerTls(Box::new(tls)));
                    }
                    (_, stream) => {
                        conn.stream = stream;
                        conn.send_byte(b'N').await?;
                    }
                }
            }
            GSSENC_REQUEST => conn.send_byte(b'N').await?,
            CANCEL_REQUEST => {
                let msg =
                    frame::decode_frontend(BytesMut::from(&packet[..]), &frame::startup_context())
                        .map_err(PgError::ClientProtocol)?;
                if let PgWireFrontendMessage::CancelRequest(c) = msg {
                    cancel(gw, c.pid, &c.secret_key).await;
                }
                return Ok(None);
            }
            _ => {
                let major = (code >> 16) as u16;
                let minor = (code & 0xffff) as u16;
                if major != 3 {
                    let err = PgError::Unsupported(format!("protocol version {major}.{minor}"));
                    send_fatal(&mut conn, &err).await;
                    return Err(err);
                }
                let msg = frame::decode_frontend(packet, &frame::startup_context())
                    .map_err(PgError::ClientProtocol)?;
                let PgWireFrontendMessage::Startup(startup) = msg else {
                    return Err(PgError::ClientProtocol("expected a startup message".into()));
                };
                return Ok(Some((
                    conn,
                    StartupRequest {
                        params: startup.parameters,
                        minor,
                    },
                )));
            }
        }
    }
}

/// A target as the gateway serves it.
pub(crate) struct PgTarget {
    pub target: Arc<portcullis_core::Target>,
    pub endpoint: Arc<crate::upstream::UpstreamEndpoint>,
}

/// Authenticates the client and checks access to the target.
async fn login(
    gw: &GatewayInner,
    conn: &mut MessageConn,
    startup: &StartupRequest,
    target_name: &str,
) -> Result<(Identity, Arc<PgTarget>), PgError> {
    if startup.minor > 0 {
        let unsupported = startup
            .params
            .keys()
            .filter(|k| k.starts_with("_pq_."))
            .cloned()
            .collect();
        conn.send_backend(&[PgWireBackendMessage::NegotiateProtocolVersion(
            NegotiateProtocolVersion::new(0, unsupported),
        )])
        .await?;
    }
    if startup.params.contains_key("replication") {
        return Err(PgError::Unsupported("replication connections".into()));
    }
    if gw.settings.require_tls && !conn.stream.is_tls() {
        return Err(PgError::TlsRequired);
    }
    conn.send_backend(&[PgWireBackendMessage::Authentication(
        Authentication::CleartextPassword,
    )])
    .await?;
    let credential = match conn.read_frontend(frame::MAX_STARTUP_PACKET).await? {
        PgWireFrontendMessage::PasswordMessageFamily(p) => {
            p.into_password()
                .map_err(|e| PgError::ClientProtocol(e.to_string()))?
                .password
        }
        _ => {
            return Err(PgError::ClientProtocol(
                "expected a password message".into(),
            ));
        }
    };
    if credential.is_empty() {
        return Err(PgError::Auth(
            "no credential: send a token or API key as the password".into(),
        ));
    }
    let identity = gw
        .verifier
        .verify(Secret::new(credential))
        .await
        .map_err(|e| PgError::Auth(client_message(&e)))?;
    let target = gw
        .targets
        .get(target_name)
        .cloned()
        .ok_or_else(|| PgError::UnknownTarget(target_name.to_string()))?;
    if !target.target.admits(&identity) {
        return Err(PgError::AccessDenied {
            subject: identity.subject.clone(),
            target: target_name.to_string(),
        });
    }
    Ok((identity, target))
}

/// The verifier's message without the "client error:" prefix.
fn client_message(e: &portcullis_core::Error) -> String {
    match e {
        portcullis_core::Error::Client(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Tells the client why it was refused, and records it.
async fn refuse(
    gw: &GatewayInner,
    conn: &mut MessageConn,
    attempt: SessionId,
    peer: SocketAddr,
    subject: Option<String>,
    target: Option<String>,
    err: &PgError,
) {
    tracing::info!(%peer, error = %err, side = %err.side(), "connection refused");
    if !matches!(err, PgError::ClientGone(_) | PgError::ClientIo(_)) {
        send_fatal(conn, err).await;
    }
    let event = Event::now(
        attempt,
        EventKind::SessionRefused {
            subject,
            target,
            client_addr: Some(peer.to_string()),
            side: err.side(),
            reason: err.to_string(),
        },
    );
    if let Err(e) = gw.pipeline.sink.record(event).await {
        tracing::error!(error = %e, "refused connection not recorded");
    }
}

async fn send_fatal(conn: &mut MessageConn, err: &PgError) {
    let mut out = BytesMut::new();
    if encode_all(
        &[error_response(
            "FATAL",
            err.sqlstate(),
            &format!("Portcullis: {err}"),
        )],
        &mut out,
    )
    .is_ok()
    {
        let _ = conn.stream.write_all(&out).await;
        let _ = conn.stream.flush().await;
    }
    let _ = conn.stream.shutdown().await;
}

async fn cancel(gw: &GatewayInner, pid: i32, secret: &SecretKey) {
    match gw.cancel.lookup(pid, secret) {
        Some(t) => {
            if let Err(e) = t.endpoint.cancel(t.pid, t.secret).await {
                tracing::warn!(error = %e, "cancel request could not be delivered");
            } else {
                tracing::info!(pid, "cancel request forwarded");
            }
        }
        None => tracing::info!(pid, "cancel request with an unknown key ignored"),
    }
}

/// `application_name` for the upstream: who and which session, within 63 bytes.
fn application_name(subject: &str, session: SessionId) -> String {
    let sid = session.to_string();
    let short = sid.get(sid.len().saturating_sub(12)..).unwrap_or(&sid);
    let mut name = format!("portcullis {short} {subject}");
    if name.len() > 63 {
        let mut cut = 63;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

/// Escapes a value for the `options` startup parameter.
fn escape_option(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == ' ' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_fits() {
        let n = application_name(&"é".repeat(100), SessionId::new());
        assert!(n.len() <= 63);
        assert!(n.starts_with("portcullis "));
    }

    #[test]
    fn options_are_escaped() {
        assert_eq!(escape_option(r"a b\c"), r"a\ b\\c");
    }
}
