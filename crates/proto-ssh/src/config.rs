//! Configuration of the SSH listener and of SSH targets.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::Secret;
use russh::keys::ssh_key::{self, HashAlg, PublicKey};
use serde::Deserialize;

use crate::SshError;

/// An SSH public key that stands for an identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIdentityConfig {
    /// The identity's subject.
    pub subject: String,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The public key line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
}

/// A certificate authority whose OpenSSH user certificates the gateway trusts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCaConfig {
    /// The CA's public key line.
    pub public_key: String,
    /// Groups given to every identity certified by this CA.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Settings of an SSH listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// The gateway's own host key (OpenSSH private key file), shown to clients.
    pub host_key_file: PathBuf,
    /// Public keys mapped to identities.
    #[serde(default)]
    pub keys: Vec<KeyIdentityConfig>,
    /// Trusted user certificate authorities (certificate key id = subject).
    #[serde(default)]
    pub user_cas: Vec<UserCaConfig>,
    /// Accept a JWT or API key as the password (password and keyboard-interactive).
    #[serde(default = "yes")]
    pub token_auth: bool,
    /// Directory where interactive sessions are written as asciicast v2 files; none: not written.
    #[serde(default)]
    pub recordings_dir: Option<PathBuf>,
    /// Time a client has to authenticate.
    #[serde(default = "default_login_timeout", with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Time open sessions get to finish when the gateway shuts down.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Output held back by masking is flushed after this much idle time.
    #[serde(default = "default_idle_flush", with = "humantime_serde")]
    pub idle_flush: Duration,
    /// Connections without traffic for this long are closed.
    #[serde(default = "default_inactivity", with = "humantime_serde")]
    pub inactivity_timeout: Duration,
    /// Most session channels open at once per connection.
    #[serde(default = "default_max_channels")]
    pub max_channels: usize,
    /// Client input queued per channel while the host is not reading it, in bytes.
    #[serde(default = "default_max_input_buffer")]
    pub max_input_buffer: usize,
}

fn yes() -> bool {
    true
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_flush() -> Duration {
    Duration::from_millis(25)
}
fn default_inactivity() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_channels() -> usize {
    10
}
fn default_max_input_buffer() -> usize {
    16 << 20
}

impl SshSettings {
    /// Settings with defaults and the given host key file.
    pub fn new(host_key_file: impl Into<PathBuf>) -> Self {
        Self {
            host_key_file: host_key_file.into(),
            keys: Vec::new(),
            user_cas: Vec::new(),
            token_auth: true,
            recordings_dir: None,
            login_timeout: default_login_timeout(),
            shutdown_grace: default_grace(),
            idle_flush: default_idle_flush(),
            inactivity_timeout: default_inactivity(),
            max_channels: default_max_channels(),
            max_input_buffer: default_max_input_buffer(),
        }
    }
}

/// Where an SSH target lives and the credential the gateway uses there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshUpstreamConfig {
    /// `host:port` of the SSH server.
    pub address: String,
    /// User the gateway logs in as.
    pub user: String,
    /// The gateway's private key for this host (OpenSSH format, unencrypted).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Password, inline (prefer `password_env` or `password_file`).
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Pinned host keys: public key lines (`ssh-ed25519 AAAA...`, a leading
    /// known_hosts host pattern is allowed) or fingerprints (`SHA256:...`). Required.
    pub host_keys: Vec<String>,
    /// Time allowed to connect and log in.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Allow `sftp` and `scp` (each still decided by the policy). Their bytes are not masked.
    #[serde(default)]
    pub allow_file_transfer: bool,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How the gateway logs in upstream.
#[derive(Clone)]
pub(crate) enum UpstreamCredential {
    Key(std::sync::Arc<ssh_key::PrivateKey>),
    Password(Secret<String>),
}

impl SshUpstreamConfig {
    /// Loads the gateway's credential for this upstream (exactly one source).
    pub(crate) fn credential(&self) -> Result<UpstreamCredential, SshError> {
        let sources = usize::from(self.private_key_file.is_some())
            + usize::from(self.password.is_some())
            + usize::from(self.password_env.is_some())
            + usize::from(self.password_file.is_some());
        if sources != 1 {
            return Err(SshError::Config(format!(
                "target at {}: set exactly one of private_key_file, password, password_env, password_file",
                self.address
            )));
        }
        if let Some(path) = &self.private_key_file {
            let key = russh::keys::load_secret_key(path, None).map_err(|e| {
                SshError::Config(format!("private_key_file {}: {e}", path.display()))
            })?;
            return Ok(UpstreamCredential::Key(std::sync::Arc::new(key)));
        }
        if let Some(p) = &self.password {
            return Ok(UpstreamCredential::Password(p.clone()));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map(|v| UpstreamCredential::Password(Secret::new(v)))
                .map_err(|_| SshError::Config(format!("password_env: variable {var} is not set")));
        }
        if let Some(path) = &self.password_file {
            return std::fs::read_to_string(path)
                .map(|s| {
                    UpstreamCredential::Password(Secret::new(
                        s.trim_end_matches(['\r', '\n']).to_string(),
                    ))
                })
                .map_err(|e| SshError::Config(format!("password_file {}: {e}", path.display())));
        }
        Err(SshError::Config("no upstream credential".into()))
    }

    /// Parses the pinned host keys.
    pub(crate) fn pins(&self) -> Result<Vec<HostKeyPin>, SshError> {
        if self.host_keys.is_empty() {
            return Err(SshError::Config(format!(
                "target at {}: host_keys is empty; pin the host's key (ssh-keyscan) or its SHA256 fingerprint",
                self.address
            )));
        }
        self.host_keys
            .iter()
            .map(|s| HostKeyPin::parse(s))
            .collect()
    }
}

/// One pinned upstream host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyPin {
    /// The SHA-256 fingerprint, as OpenSSH prints it (`SHA256:...`).
    pub fingerprint: String,
}

impl HostKeyPin {
    /// Parses `SHA256:...`, `ssh-ed25519 AAAA... [comment]` or a known_hosts line
    /// (`host ssh-ed25519 AAAA...`).
    pub fn parse(text: &str) -> Result<Self, SshError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("SHA256:") {
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                return Err(SshError::Config(format!(
                    "bad host key fingerprint {text:?}"
                )));
            }
            return Ok(Self {
                fingerprint: text.to_string(),
            });
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        // A known_hosts line starts with host patterns; a key line with the algorithm.
        let start = words
            .iter()
            .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))
            .ok_or_else(|| SshError::Config(format!("bad host key {text:?}")))?;
        let line = words.get(start..).unwrap_or_default().join(" ");
        let key = parse_public_key(&line)?;
        Ok(Self {
            fingerprint: fingerprint(&key),
        })
    }
}

/// Parses a public key line.
pub(crate) fn parse_public_key(line: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(line.trim())
        .map_err(|e| SshError::Config(format!("bad public key {:?}: {e}", short(line))))
}

/// The SHA-256 fingerprint of a key, as OpenSSH prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA0/y26KBsAOgNq+jlLYqHV3pbatz1DjDOsuaIvWnG/g test";

    #[test]
    fn pins_parse_in_every_form() {
        let a = HostKeyPin::parse(KEY).unwrap();
        let b = HostKeyPin::parse(&format!("[127.0.0.1]:22,web1 {KEY}")).unwrap();
        assert_eq!(a, b);
        assert!(a.fingerprint.starts_with("SHA256:"));
        let c = HostKeyPin::parse(&a.fingerprint).unwrap();
        assert_eq!(a, c);
        assert!(HostKeyPin::parse("nonsense").is_err());
        assert!(HostKeyPin::parse("SHA256:").is_err());
    }

    #[test]
    fn settings_from_toml() {
        let s: SshSettings = toml::from_str(&format!(
            r#"
            host_key_file = "/etc/portcullis/ssh_host_ed25519_key"
            recordings_dir = "/var/lib/portcullis/casts"
            idle_flush = "10ms"
            [[keys]]
            subject = "alice"
            groups = ["ops"]
            public_key = "{KEY}"
            "#
        ))
        .unwrap();
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.idle_flush, Duration::from_millis(10));
        assert!(s.token_auth);
        let u: SshUpstreamConfig = toml::from_str(&format!(
            r#"
            address = "10.0.0.5:22"
            user = "deploy"
            password = "pw"
            host_keys = ["{KEY}"]
            "#
        ))
        .unwrap();
        assert!(matches!(
            u.credential().unwrap(),
            UpstreamCredential::Password(_)
        ));
        assert_eq!(u.pins().unwrap().len(), 1);
    }
}
