//! Opening an upstream connection with the target's own credential.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::{
    Authentication, Password, PasswordMessageFamily, SASLInitialResponse, SASLResponse, SecretKey,
    Startup,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use portcullis_core::Secret;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::UpstreamConfig;
use crate::conn::MessageConn;
use crate::stream::Stream;
use crate::{PgError, error_fields};

/// An authenticated upstream connection, ready for queries.
pub(crate) struct UpstreamLogin {
    /// The connection, with any bytes read past `ReadyForQuery`.
    pub conn: MessageConn,
    /// Parameters the server reported (`server_version`, `TimeZone`...).
    pub parameters: Vec<(String, String)>,
    /// The server's cancel key.
    pub pid: i32,
    /// The server's cancel secret.
    pub secret: SecretKey,
}

/// The parts of an upstream needed to open a connection.
#[derive(Clone)]
pub(crate) struct UpstreamEndpoint {
    pub config: UpstreamConfig,
    pub password: Secret<String>,
    pub tls: Option<tokio_rustls::TlsConnector>,
}

impl UpstreamEndpoint {
    /// Opens a TCP (and TLS if configured) connection; with TLS, also returns the
    /// `tls-server-end-point` channel binding data (SHA-256 of the server certificate).
    async fn open(&self) -> Result<(Stream, Option<Vec<u8>>), PgError> {
        let tcp = TcpStream::connect(&self.config.address)
            .await
            .map_err(|e| PgError::UpstreamConnect(format!("{}: {e}", self.config.address)))?;
        let _ = tcp.set_nodelay(true);
        let Some(connector) = &self.tls else {
            return Ok((Stream::Plain(tcp), None));
        };
        let mut tcp = tcp;
        // SSLRequest: length 8, code 80877103.
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .map_err(PgError::UpstreamIo)?;
        let answer = tcp.read_u8().await.map_err(PgError::UpstreamIo)?;
        if answer != b'S' {
            return Err(PgError::UpstreamConnect(format!(
                "{} does not accept TLS",
                self.config.address
            )));
        }
        let name = self
            .config
            .server_name
            .clone()
            .unwrap_or_else(|| self.config.host().to_string());
        let server_name = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| PgError::Config(format!("server_name: {e}")))?;
        let tls = connector.connect(server_name, tcp).await.map_err(|e| {
            PgError::UpstreamConnect(format!("TLS with {}: {e}", self.config.address))
        })?;
        let binding = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|cert| Sha256::digest(cert.as_ref()).to_vec());
        Ok((Stream::ClientTls(Box::new(tls)), binding))
    }

    /// Connects and logs in, within the configured timeout.
    pub(crate) async fn login(
        &self,
        parameters: BTreeMap<String, String>,
    ) -> Result<UpstreamLogin, PgError> {
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.login_inner(parameters)).await {
            Ok(r) => r,
            Err(_) => Err(PgError::UpstreamConnect(format!(
                "{}: no answer within {timeout:?}",
                self.config.address
            ))),
        }
    }

    async fn login_inner(
        &self,
        mut parameters: BTreeMap<String, String>,
    ) -> Result<UpstreamLogin, PgError> {
        let (stream, binding_data) = self.open().await?;
        let mut conn = MessageConn::new(stream);
        parameters.insert("user".into(), self.config.user.clone());
        parameters.insert("database".into(), self.config.database.clone());
        let mut startup = Startup::new();
        startup.parameters = parameters;
        conn.send_frontend(&PgWireFrontendMessage::Startup(startup))
            .await?;

        let mut scram: Option<ScramSha256> = None;
        let mut server_params = Vec::new();
        let mut key = None;
        loop {
            match conn.read_backend().await? {
                PgWireBackendMessage::Authentication(auth) => match auth {
                    Authentication::Ok => {
                        // A server that skips SASLFinal never proved it knows the password.
                        if scram.is_some() {
                            return Err(PgError::UpstreamAuth(
                                "server ended SCRAM without its final message".into(),
                            ));
                        }
                    }
                    Authentication::CleartextPassword => {
                        let pw = Password::new(self.password.expose().clone());
                        conn.send_frontend(&PgWireFrontendMessage::PasswordMessageFamily(
                            PasswordMessageFamily::Password(pw),
                        ))
                        .await?;
                    }
                    Authentication::MD5Password(salt) => {
                        let salt: [u8; 4] = salt.as_slice().try_into().map_err(|_| {
                            PgError::UpstreamProtocol("MD5 salt is not 4 bytes".into())
                        })?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            self.config.user.as_bytes(),
                            self.password.expose().as_bytes(),
                            salt,
                        );
                        conn.send_frontend(&PgWireFrontendMessage::PasswordMessageFamily(
                            PasswordMessageFamily::Password(Password::new(hash)),
                        ))
                        .await?;
                    }
                    Authentication::SASL(mechanisms) => {
                        // Over TLS, bind SCRAM to the server certificate when the server
                        // offers it (SCRAM-SHA-256-PLUS), which defeats a TLS-terminating
                        // man in the middle.
                        let plus = mechanisms.iter().any(|m| m == "SCRAM-SHA-256-PLUS");
                        let (mechanism, binding) = match (&binding_data, plus) {
                            (Some(data), true) => (
                                "SCRAM-SHA-256-PLUS",
                                ChannelBinding::tls_server_end_point(data.clone()),
                            ),
                            (Some(_), false) => ("SCRAM-SHA-256", ChannelBinding::unrequested()),
                            (None, _) => ("SCRAM-SHA-256", ChannelBinding::unsupported()),
                        };
                        if !mechanisms.iter().any(|m| m == mechanism) {
                            return Err(PgError::UpstreamAuth(format!(
                                "server offers no supported SASL mechanism ({})",
                                mechanisms.join(", ")
                            )));
                        }
                        let s = ScramSha256::new(self.password.expose().as_bytes(), binding);
                        let first = SASLInitialResponse::new(
                            mechanism.to_string(),
                            Some(Bytes::copy_from_slice(s.message())),
                        );
                        conn.send_frontend(&PgWireFrontendMessage::PasswordMessageFamily(
                            PasswordMessageFamily::SASLInitialResponse(first),
                        ))
                        .await?;
                        scram = Some(s);
                    }
                    Authentication::SASLContinue(data) => {
                        let s = scram.as_mut().ok_or_else(|| {
                            PgError::UpstreamProtocol("SASL continue without SASL start".into())
                        })?;
                        s.update(&data)
                            .map_err(|e| PgError::UpstreamAuth(format!("SCRAM: {e}")))?;
                        let msg = SASLResponse::new(Bytes::copy_from_slice(s.message()));
                        conn.send_frontend(&PgWireFrontendMessage::PasswordMessageFamily(
                            PasswordMessageFamily::SASLResponse(msg),
                        ))
                        .await?;
                    }
                    Authentication::SASLFinal(data) => {
                        let mut s = scram.take().ok_or_else(|| {
                            PgError::UpstreamProtocol("SASL final without SASL start".into())
                        })?;
                        s.finish(&data).map_err(|e| {
                            PgError::UpstreamAuth(format!("server signature did not verify: {e}"))
                        })?;
                    }
                    other => {
                        return Err(PgError::UpstreamAuth(format!(
                            "unsupported authentication request {other:?}"
                        )));
                    }
                },
                PgWireBackendMessage::ParameterStatus(p) => server_params.push((p.name, p.value)),
                PgWireBackendMessage::BackendKeyData(k) => key = Some((k.pid, k.secret_key)),
                PgWireBackendMessage::NoticeResponse(_) => {}
                PgWireBackendMessage::NegotiateProtocolVersion(_) => {}
                PgWireBackendMessage::ErrorResponse(e) => {
                    let (code, message) = error_fields(&e.fields);
                    return Err(if code.starts_with("28") {
                        PgError::UpstreamAuth(message)
                    } else {
                        PgError::UpstreamConnect(format!("{message} (SQLSTATE {code})"))
                    });
                }
                PgWireBackendMessage::ReadyForQuery(_) => {
                    let (pid, secret) = key.unwrap_or((0, SecretKey::I32(0)));
                    return Ok(UpstreamLogin {
                        conn,
                        parameters: server_params,
                        pid,
                        secret,
                    });
                }
                other => {
                    return Err(PgError::UpstreamProtocol(format!(
                        "unexpected message during login: {other:?}"
                    )));
                }
            }
        }
    }

    /// Sends a cancel request for an upstream backend.
    pub(crate) async fn cancel(&self, pid: i32, secret: SecretKey) -> Result<(), PgError> {
        let (mut stream, _) = self.open().await?;
        let mut out = BytesMut::new();
        PgWireFrontendMessage::CancelRequest(CancelRequest::new(pid, secret))
            .encode(&mut out)
            .map_err(|e| PgError::Config(format!("encoding cancel request: {e}")))?;
        stream.write_all(&out).await.map_err(PgError::UpstreamIo)?;
        stream.flush().await.map_err(PgError::UpstreamIo)?;
        // The server closes the connection once it has handled the request.
        let mut sink = [0u8; 64];
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut sink)).await;
        Ok(())
    }
}
