//! A gateway in front of the real OpenSSH server, with the real recorder and masking.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{
    Command, CommandPolicy, CredentialVerifier, Decision, Event, Pipeline, Protocol, Result,
    SessionContext, Target, TargetAccessOnly,
};
use portcullis_masking::{Masker, MaskingConfig, MaskingEngine};
use portcullis_proto_ssh::{SshGateway, SshSettings, SshUpstreamConfig};
use portcullis_recording::{Recorder, RecordingConfig};
use portcullis_testkit::{SshKeyPair, Sshd, SshdOptions, generate_keypair};
use tempfile::TempDir;
use tokio::sync::watch;

/// Denies commands that contain `rm -rf`; otherwise target access decides.
pub struct DenyRmRf;

impl CommandPolicy for DenyRmRf {
    fn decide(&self, session: &SessionContext, command: &Command) -> Result<Decision> {
        if let Command::Exec { command } = command
            && command.contains("rm -rf")
        {
            return Ok(Decision::deny(
                "no-rm-rf",
                "recursive deletion is not allowed",
            ));
        }
        TargetAccessOnly.decide(session, command)
    }
}

/// How to set the harness up.
#[derive(Default)]
pub struct Options {
    /// Pin this key instead of sshd's.
    pub wrong_pin: bool,
    /// Point the target at a port where nothing listens.
    pub host_down: bool,
    /// A verifier for tokens typed as the password.
    pub verifier: Option<Arc<dyn CredentialVerifier>>,
    /// `max_input_buffer` of the listener.
    pub max_input_buffer: Option<usize>,
    /// Trusted user CA public key line.
    pub user_ca: Option<String>,
}

pub struct Harness {
    pub dir: TempDir,
    pub sshd: Sshd,
    pub alice: SshKeyPair,
    pub stranger: SshKeyPair,
    pub recorder: Recorder,
    pub port: u16,
    pub casts: PathBuf,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start(options: Options) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path();
        let host = generate_keypair(keys, "gateway_host").unwrap();
        let upstream_key = generate_keypair(keys, "gateway_upstream").unwrap();
        let alice = generate_keypair(keys, "alice").unwrap();
        let stranger = generate_keypair(keys, "stranger").unwrap();
        let other = generate_keypair(keys, "other_host").unwrap();
        let sshd = Sshd::start(SshdOptions::default().authorize(&upstream_key.public_key)).unwrap();

        let recorder = Recorder::open(&RecordingConfig::new(keys.join("events"))).unwrap();
        let masker = Masker::new(
            &serde_json::from_value::<MaskingConfig>(serde_json::json!({
                "detectors": { "email": "redact", "card": { "strategy": "partial", "keep_last": 4 } },
            }))
            .unwrap(),
        )
        .unwrap();
        let pipeline = Pipeline::new(Arc::new(recorder.clone()))
            .with_policy(Arc::new(DenyRmRf))
            .with_masking(Arc::new(MaskingEngine::new(masker)));

        let casts = keys.join("casts");
        let mut settings: SshSettings = toml::from_str(&format!(
            r#"
            host_key_file = "{host}"
            recordings_dir = "{casts}"
            login_timeout = "20s"
            max_input_buffer = {max_input}
            [[keys]]
            subject = "alice"
            groups = ["ops"]
            public_key = "{alice}"
            "#,
            host = host.private_key.display(),
            casts = casts.display(),
            alice = alice.public_key,
            max_input = options.max_input_buffer.unwrap_or(16 << 20),
        ))
        .unwrap();
        if let Some(ca) = &options.user_ca {
            settings.user_cas.push(portcullis_proto_ssh::UserCaConfig {
                public_key: ca.clone(),
                groups: vec!["ops".into()],
            });
        }
        let address = if options.host_down {
            format!("127.0.0.1:{}", portcullis_testkit::free_port().unwrap())
        } else {
            sshd.addr().to_string()
        };
        let pin = if options.wrong_pin {
            other.public_key.clone()
        } else {
            sshd.host_public_key().to_string()
        };
        let upstream: SshUpstreamConfig = toml::from_str(&format!(
            r#"
            address = "{address}"
            user = "{user}"
            private_key_file = "{key}"
            host_keys = ["{pin}"]
            connect_timeout = "5s"
            "#,
            user = sshd.user(),
            key = upstream_key.private_key.display(),
        ))
        .unwrap();
        let target = Target {
            name: "box".into(),
            protocol: Protocol::Ssh,
            upstream: address.clone(),
            allowed_groups: vec!["ops".into()],
        };
        let gateway = SshGateway::builder(settings, options.verifier.clone(), pipeline)
            .target(target, upstream)
            .unwrap()
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            gateway.serve(listener, stop_rx).await.unwrap();
        });
        Harness {
            dir,
            sshd,
            alice,
            stranger,
            recorder,
            port,
            casts,
            stop,
            server,
        }
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `ssh box@gateway` with alice's key.
    pub fn ssh(&self, login: &str, key: &Path) -> tokio::process::Command {
        tokio::process::Command::from(Sshd::client_command(
            self.port,
            login,
            key,
            &self.known_hosts(),
        ))
    }

    pub async fn exec(&self, command: &str) -> Output {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.ssh("box", &self.alice.private_key)
                .arg(command)
                .output(),
        )
        .await
        .expect("ssh did not finish")
        .unwrap()
    }

    /// Every recorded event so far (waits for the recorder to write what it holds).
    pub async fn events(&self) -> Vec<Event> {
        self.recorder.flush().await.unwrap();
        self.recorder
            .store()
            .scan(1, usize::MAX)
            .unwrap()
            .map(|r| r.unwrap().event)
            .collect()
    }

    /// Waits until an event of `kind` satisfying `pred` is recorded.
    pub async fn wait_event(&self, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
        for _ in 0..100 {
            let events = self.events().await;
            if events.iter().any(&pred) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("event not recorded; got {:#?}", self.events().await);
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.server).await;
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether a process whose command line contains `marker` runs.
pub fn process_running(marker: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    for entry in dir.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !cmdline.contains("ssh ") && !cmdline.starts_with("ssh") {
            return true;
        }
    }
    false
}
