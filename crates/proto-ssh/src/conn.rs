//! One client connection: authentication, the upstream login, channels, close.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_core::{
    AuthMethod, Command, Decision, Event, EventKind, Identity, Protocol, Secret, SessionContext,
    SessionId, Timestamp,
};
use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SshError;
use crate::config::fingerprint;
use crate::error::HandlerError;
use crate::server::{GatewayInner, SshTarget};
use crate::upstream::UpstreamHandle;

/// What a connection knows once its session is open.
pub(crate) struct OpenSession {
    pub context: Arc<SessionContext>,
    pub target: Arc<SshTarget>,
    pub upstream: Arc<UpstreamHandle>,
}

/// Why a login failed: claimed or verified subject, requested target, the error.
pub(crate) type Refusal = (Option<String>, Option<String>, SshError);

/// State shared by a connection's handler, its channel tasks and its supervisor.
pub(crate) struct ConnState {
    pub id: SessionId,
    pub peer: SocketAddr,
    pub seq: AtomicU64,
    pub open: Mutex<Option<Arc<OpenSession>>>,
    /// The last reason a login attempt failed (recorded if no session opens).
    pub refused: Mutex<Option<Refusal>>,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Turns true when the client connection has ended.
    pub closed: watch::Sender<bool>,
}

impl ConnState {
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn opened(&self) -> Option<Arc<OpenSession>> {
        self.open.lock().ok().and_then(|g| g.clone())
    }

    /// Notes why a login failed unless a more specific reason is already known.
    fn refuse_weak(&self, subject: Option<String>, target: Option<String>, err: SshError) {
        if let Ok(mut slot) = self.refused.lock()
            && slot.is_none()
        {
            *slot = Some((subject, target, err));
        }
    }

    fn refuse(&self, subject: Option<String>, target: Option<String>, err: SshError) {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some((subject, target, err));
        }
    }
}

/// Serves one client connection to its end and records how it ended.
pub(crate) async fn serve(
    gw: Arc<GatewayInner>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    gw.open.fetch_add(1, Ordering::Relaxed);
    let state = Arc::new(ConnState {
        id: SessionId::new(),
        peer,
        seq: AtomicU64::new(0),
        open: Mutex::new(None),
        refused: Mutex::new(None),
        tasks: Mutex::new(Vec::new()),
        closed: watch::channel(false).0,
    });
    let handler = ConnHandler {
        gw: gw.clone(),
        state: state.clone(),
        pending: None,
    };
    let started = tokio::time::timeout(
        gw.settings.login_timeout,
        russh::server::run_stream(gw.russh.clone(), tcp, handler),
    )
    .await;
    let running = match started {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "ssh handshake failed");
            gw.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "ssh handshake timed out");
            gw.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let handle = running.handle();
    tokio::pin!(running);
    let login_deadline = tokio::time::sleep(gw.settings.login_timeout);
    tokio::pin!(login_deadline);
    let mut login_checked = false;
    let mut stopping = false;
    let grace = tokio::time::sleep(std::time::Duration::from_secs(u64::MAX / 4));
    tokio::pin!(grace);
    let mut reason = String::from("client closed the connection");
    loop {
        tokio::select! {
            done = &mut running => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "ssh connection ended with an error");
                    reason = format!("connection ended: {e}");
                }
                break;
            }
            () = &mut login_deadline, if !login_checked => {
                login_checked = true;
                if state.opened().is_none() {
                    state.refuse(None, None, SshError::Auth("login timed out".into()));
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "Portcullis: login timed out".into(), String::new())
                        .await;
                }
            }
            changed = shutdown.changed(), if !stopping => {
                if changed.is_err() || *shutdown.borrow() {
                    stopping = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + gw.settings.shutdown_grace);
                }
            }
            () = &mut grace, if stopping => {
                reason = "gateway shutdown".into();
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "Portcullis: the gateway is shutting down".into(), String::new())
                    .await;
                stopping = false;
            }
        }
    }
    // Channel tasks end once the client side is gone; their results are recorded first.
    state.closed.send_replace(true);
    let tasks = state
        .tasks
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    for task in tasks {
        if tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .is_err()
        {
            tracing::warn!(session = %state.id, "a channel did not finish after the client left");
        }
    }
    if let Some(open) = state.opened() {
        let _ = open
            .upstream
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
        let commands = state.seq.load(Ordering::Relaxed);
        tracing::info!(session = %state.id, %reason, commands, "ssh session closed");
        let event = Event::now(state.id, EventKind::SessionClosed { reason, commands });
        if let Err(e) = gw.pipeline.sink.record(event).await {
            tracing::error!(session = %state.id, error = %e, "session close not recorded");
        }
    } else {
        let refused = state.refused.lock().ok().and_then(|mut r| r.take());
        if let Some((subject, target, err)) = refused {
            tracing::info!(%peer, error = %err, side = %err.side(), "ssh connection refused");
            let event = Event::now(
                state.id,
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
    }
    gw.open.fetch_sub(1, Ordering::Relaxed);
}

/// The russh handler of one client connection.
pub(crate) struct ConnHandler {
    gw: Arc<GatewayInner>,
    state: Arc<ConnState>,
    /// Identity and target admitted by the last successful authentication.
    pending: Option<(Identity, Arc<SshTarget>, String)>,
}

fn reject() -> Auth {
    Auth::reject()
}

impl ConnHandler {
    /// Maps the login name to a target, checks access and remembers the result.
    fn admit(&mut self, login: &str, identity: Identity) -> Auth {
        let (claimed, target_name) = match login.rsplit_once('+') {
            Some((subject, target)) => (Some(subject), target),
            None => (None, login),
        };
        if let Some(claimed) = claimed
            && claimed != identity.subject
        {
            self.state.refuse(
                Some(identity.subject.clone()),
                Some(target_name.to_string()),
                SshError::Auth(format!(
                    "login name names subject {claimed} but the credential is {}",
                    identity.subject
                )),
            );
            return reject();
        }
        let Some(target) = self.gw.targets.get(target_name).cloned() else {
            self.state.refuse(
                Some(identity.subject.clone()),
                Some(target_name.to_string()),
                SshError::UnknownTarget(target_name.to_string()),
            );
            return reject();
        };
        if !target.target.admits(&identity) {
            self.state.refuse(
                Some(identity.subject.clone()),
                Some(target_name.to_string()),
                SshError::AccessDenied {
                    subject: identity.subject.clone(),
                    target: target_name.to_string(),
                },
            );
            return reject();
        }
        self.pending = Some((identity, target, login.to_string()));
        Auth::Accept
    }

    fn key_identity(&self, key: &russh::keys::PublicKey) -> Option<Identity> {
        let (_, cfg) = self
            .gw
            .keys
            .iter()
            .find(|(k, _)| k.key_data() == key.key_data())?;
        Some(Identity {
            subject: cfg.subject.clone(),
            groups: cfg.groups.clone(),
            method: AuthMethod::SshKey,
            issuer: Some(fingerprint(key)),
            expires_at: None,
        })
    }

    fn certificate_identity(&self, login: &str, cert: &Certificate) -> Result<Identity, SshError> {
        if self.gw.cas.is_empty() {
            return Err(SshError::Auth(
                "no user certificate authority is trusted".into(),
            ));
        }
        if cert.cert_type() != russh::keys::ssh_key::certificate::CertType::User {
            return Err(SshError::Auth("not a user certificate".into()));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ca_fp = fingerprint(&russh::keys::PublicKey::from(cert.signature_key().clone()));
        let Some((_, ca)) = self.gw.cas.iter().find(|(fp, _)| *fp == ca_fp) else {
            return Err(SshError::Auth(format!(
                "certificate signed by untrusted CA {ca_fp}"
            )));
        };
        if !cert.critical_options().is_empty() {
            // force-command and source-address would have to be enforced; refuse rather than ignore.
            return Err(SshError::Auth(
                "certificates with critical options (force-command, source-address) are not supported"
                    .into(),
            ));
        }
        let trusted = [cert
            .signature_key()
            .fingerprint(russh::keys::HashAlg::Sha256)];
        cert.validate_at(now, trusted.iter())
            .map_err(|e| SshError::Auth(format!("certificate not valid: {e}")))?;
        let target = login.rsplit_once('+').map_or(login, |(_, t)| t);
        let subject = cert.key_id().to_string();
        if subject.is_empty() {
            return Err(SshError::Auth("certificate has an empty key id".into()));
        }
        let principals = cert.valid_principals();
        if !principals.iter().any(|p| p == target || *p == subject) {
            return Err(SshError::Auth(format!(
                "certificate principals do not include target {target} or subject {subject}"
            )));
        }
        Ok(Identity {
            subject,
            groups: ca.groups.clone(),
            method: AuthMethod::SshCertificate,
            issuer: Some(ca_fp),
            expires_at: i64::try_from(cert.valid_before())
                .ok()
                .and_then(|s| s.checked_mul(1_000_000))
                .map(Timestamp),
        })
    }

    async fn token_login(&mut self, login: &str, token: String) -> Auth {
        let Some(verifier) = self.gw.verifier.clone() else {
            return reject();
        };
        if !self.gw.settings.token_auth || token.is_empty() {
            return reject();
        }
        match verifier.verify(Secret::new(token)).await {
            Ok(identity) => self.admit(login, identity),
            Err(e) => {
                let message = match e {
                    portcullis_core::Error::Client(m) => m,
                    other => other.to_string(),
                };
                self.state
                    .refuse(None, Some(login.to_string()), SshError::Auth(message));
                reject()
            }
        }
    }

    /// Records a refused forwarding request as a denied command.
    async fn record_refusal(&self, command: Command, rule: &str, reason: &str) {
        let seq = self.state.next_seq();
        let event = Event::now(
            self.state.id,
            EventKind::Command {
                seq,
                command,
                decision: Decision::deny(rule, reason),
                result: None,
            },
        );
        if let Err(e) = self.gw.pipeline.sink.record(event).await {
            tracing::error!(session = %self.state.id, error = %e, "refusal not recorded");
        }
    }

    /// Gives the open back when another channel may open; otherwise refuses it.
    async fn channel_room(&self, reply: ChannelOpenHandle) -> Option<ChannelOpenHandle> {
        let running = match self.state.tasks.lock() {
            Ok(mut t) => {
                t.retain(|t| !t.is_finished());
                t.len()
            }
            Err(_) => usize::MAX,
        };
        if running < self.gw.settings.max_channels {
            return Some(reply);
        }
        reply
            .reject(ChannelOpenFailure::Other {
                code: 4,
                reason: format!(
                    "Portcullis: at most {} channels per connection",
                    self.gw.settings.max_channels
                ),
            })
            .await;
        None
    }
}

fn forward(mode: &str, host: &str, port: u32) -> Command {
    Command::Forward {
        mode: mode.into(),
        host: host.into(),
        port,
    }
}

fn methods_left(gw: &GatewayInner) -> MethodSet {
    let mut m = MethodSet::empty();
    m.push(MethodKind::PublicKey);
    if gw.settings.token_auth && gw.verifier.is_some() {
        m.push(MethodKind::KeyboardInteractive);
        m.push(MethodKind::Password);
    }
    m
}

impl russh::server::Handler for ConnHandler {
    type Error = HandlerError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(methods_left(&self.gw)),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let known = self
            .gw
            .keys
            .iter()
            .any(|(k, _)| k.key_data() == offer.public_key.key_data());
        if known || !self.gw.cas.is_empty() {
            return Ok(Auth::Accept);
        }
        self.state.refuse_weak(
            None,
            Some(user.to_string()),
            SshError::Auth(format!(
                "public key {} is not mapped to an identity",
                fingerprint(offer.public_key)
            )),
        );
        Ok(reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.key_identity(key.public_key) {
            Some(identity) => Ok(self.admit(user, identity)),
            None => {
                self.state.refuse_weak(
                    None,
                    Some(user.to_string()),
                    SshError::Auth(format!(
                        "public key {} is not mapped to an identity",
                        fingerprint(key.public_key)
                    )),
                );
                Ok(reject())
            }
        }
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        match self.certificate_identity(user, certificate) {
            Ok(identity) => Ok(self.admit(user, identity)),
            Err(e) => {
                self.state.refuse(None, Some(user.to_string()), e);
                Ok(reject())
            }
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.token_login(user, password.to_string()).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if self.gw.verifier.is_none() || !self.gw.settings.token_auth {
            return Ok(reject());
        }
        match response {
            None => Ok(Auth::Partial {
                name: "Portcullis".into(),
                instructions: "Paste a token or API key.".into(),
                prompts: vec![("Token: ".into(), false)].into(),
            }),
            Some(mut answers) => {
                let token = answers
                    .next()
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_default();
                Ok(self.token_login(user, token).await)
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some((identity, target, login)) = self.pending.take() else {
            return Ok(());
        };
        let upstream = match target.endpoint.connect().await {
            Ok(u) => u,
            Err(e) => {
                let message = format!("Portcullis: {e}");
                self.state.refuse(
                    Some(identity.subject.clone()),
                    Some(target.target.name.clone()),
                    e,
                );
                session.disconnect(russh::Disconnect::ByApplication, &message, "")?;
                return Ok(());
            }
        };
        let context = Arc::new(SessionContext {
            id: self.state.id,
            identity: identity.clone(),
            target: target.target.clone(),
            client_addr: Some(self.state.peer),
            opened_at: Timestamp::now(),
        });
        let mut details = BTreeMap::new();
        details.insert("login".to_string(), login);
        details.insert(
            "upstream_user".to_string(),
            target.endpoint.config.user.clone(),
        );
        details.insert(
            "client_version".to_string(),
            String::from_utf8_lossy(session.remote_sshid()).into_owned(),
        );
        let opened = Event::now(
            self.state.id,
            EventKind::SessionOpened {
                identity: identity.clone(),
                target: target.target.name.clone(),
                protocol: Protocol::Ssh,
                client_addr: Some(self.state.peer.to_string()),
                details,
            },
        );
        if let Err(e) = self.gw.pipeline.sink.record(opened).await {
            // Fail closed: a session that cannot be recorded does not open.
            let message = format!("Portcullis: {}", SshError::Audit(e.to_string()));
            session.disconnect(russh::Disconnect::ByApplication, &message, "")?;
            return Ok(());
        }
        tracing::info!(session = %self.state.id, subject = %identity.subject, target = %target.target.name, peer = %self.state.peer, "ssh session opened");
        let open = Arc::new(OpenSession {
            context,
            target,
            upstream: Arc::new(upstream),
        });
        if let Ok(mut slot) = self.state.open.lock() {
            *slot = Some(open);
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(open) = self.state.opened() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let Some(reply) = self.channel_room(reply).await else {
            return Ok(());
        };
        let task = tokio::spawn(crate::channel::run(
            self.gw.clone(),
            self.state.clone(),
            open,
            channel,
            session.handle(),
        ));
        if let Ok(mut t) = self.state.tasks.lock() {
            t.push(task);
        }
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(open) = self.state.opened() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let Some(reply) = self.channel_room(reply).await else {
            return Ok(());
        };
        // Decided (and possibly approved) in its own task: the connection keeps running.
        let task = tokio::spawn(crate::forward::run(
            self.gw.clone(),
            self.state.clone(),
            open,
            channel,
            reply,
            crate::forward::Destination {
                host: host_to_connect.to_string(),
                port: port_to_connect,
                originator: originator_address.to_string(),
                originator_port,
            },
        ));
        if let Ok(mut t) = self.state.tasks.lock() {
            t.push(task);
        }
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let reason = "socket forwarding is disabled on this gateway";
        self.record_refusal(
            forward("direct-streamlocal", socket_path, 0),
            "ssh-forwarding",
            reason,
        )
        .await;
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: format!("Portcullis: {reason}"),
            })
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.record_refusal(
            forward("tcpip-forward", address, *port),
            "ssh-forwarding",
            "remote port forwarding (ssh -R) is not supported by this gateway",
        )
        .await;
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.record_refusal(
            forward("streamlocal-forward", socket_path, 0),
            "ssh-forwarding",
            "remote socket forwarding is disabled on this gateway",
        )
        .await;
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.record_refusal(
            forward("agent", "", 0),
            "ssh-forwarding",
            "agent forwarding is not supported by this gateway",
        )
        .await;
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.record_refusal(
            forward("x11", "", 0),
            "ssh-forwarding",
            "X11 forwarding is not supported by this gateway",
        )
        .await;
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel task decides; a refusal is reported on stderr with an exit status.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }
}
