//! The gateway configuration file (TOML).
//!
//! Relative paths are relative to the directory the gateway is started from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_approvals::ApprovalConfig;
use portcullis_identity::IdentityConfig;
use portcullis_masking::MaskingConfig;
use portcullis_policy::PolicyConfig;
use portcullis_proto_http::HttpGatewayConfig;
use portcullis_proto_postgres::UpstreamConfig;
use portcullis_proto_ssh::{SshSettings, SshUpstreamConfig};
use portcullis_recording::RecordingConfig;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The session record (`[recording]`); defaults to a sled store under `.portcullis/recording`.
    #[serde(default = "default_recording")]
    pub recording: RecordingConfig,
    /// Who may connect (`[identity]`).
    pub identity: IdentityConfig,
    /// Just-in-time approvals (`[approvals]`); without it, statements under review are denied.
    #[serde(default)]
    pub approvals: Option<ApprovalConfig>,
    /// The admin and query API (`[admin]`).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The PostgreSQL listener (`[postgres]`).
    #[serde(default)]
    pub postgres: Option<PostgresListenerConfig>,
    /// The SSH listener (`[ssh]`).
    #[serde(default)]
    pub ssh: Option<SshListenerConfig>,
    /// The HTTP gateway (`[http]`, with its own routes and targets: docs/http.md).
    #[serde(default)]
    pub http: Option<HttpGatewayConfig>,
    /// Targets by name (`[targets.NAME]`).
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// Streaming export of the record to SIEMs (`[[sinks]]`: docs/siem.md).
    #[serde(default)]
    pub sinks: Vec<portcullis_siem::SinkConfig>,
}

fn default_recording() -> RecordingConfig {
    RecordingConfig::new(".portcullis/recording")
}

/// `[admin]`: the authenticated HTTP API used by `portcullis-audit --gateway`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Groups whose members may query the record.
    pub auditor_groups: Vec<String>,
}

/// `[postgres]`: where PostgreSQL clients connect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// TLS towards clients.
    #[serde(default)]
    pub tls: ListenerTls,
    /// Refuse clients without TLS (tokens travel as passwords).
    #[serde(default)]
    pub require_tls: bool,
    /// Largest client message accepted, in bytes (default 64 MiB).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Time a client has to log in.
    #[serde(default = "default_login_timeout", with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Time open sessions get to finish on shutdown.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_max_message() -> usize {
    64 << 20
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}

/// TLS of a listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// `off`, `self-signed` (a certificate generated at start, for development) or `files`.
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM certificate chain (`mode = "files"`).
    pub cert: Option<PathBuf>,
    /// PEM private key (`mode = "files"`).
    pub key: Option<PathBuf>,
}

/// How a listener gets its certificate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// No TLS.
    #[default]
    Off,
    /// A certificate generated at start for `localhost` and the listen address.
    SelfSigned,
    /// Certificate and key from files.
    Files,
}

/// `[ssh]`: where SSH clients connect (`ssh -p PORT TARGET@gateway`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Host key, client keys, CAs, timeouts (`[ssh.settings]`, docs/ssh.md).
    pub settings: SshSettings,
}

/// `[targets.NAME]`: one upstream that identities reach through the gateway.
#[derive(Debug, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum TargetConfig {
    /// A PostgreSQL database.
    Postgres(PostgresTargetConfig),
    /// An SSH host.
    Ssh(SshTargetConfig),
}

impl TargetConfig {
    /// Groups allowed to connect.
    pub fn allowed_groups(&self) -> &[String] {
        match self {
            TargetConfig::Postgres(t) => &t.allowed_groups,
            TargetConfig::Ssh(t) => &t.allowed_groups,
        }
    }

    /// Statement or command rules, if any.
    pub fn policy(&self) -> Option<&PolicyConfig> {
        match self {
            TargetConfig::Postgres(t) => t.policy.as_ref(),
            TargetConfig::Ssh(t) => t.policy.as_ref(),
        }
    }

    /// Output masking, if any.
    pub fn masking(&self) -> Option<&MaskingConfig> {
        match self {
            TargetConfig::Postgres(t) => t.masking.as_ref(),
            TargetConfig::Ssh(t) => t.masking.as_ref(),
        }
    }
}

/// An SSH target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTargetConfig {
    /// Groups allowed to connect at all.
    pub allowed_groups: Vec<String>,
    /// The host, the gateway's credential for it and its pinned host keys.
    pub upstream: SshUpstreamConfig,
    /// Command rules (exec commands are classified as `unsupported-command` until SSH
    /// command rules exist; the target's `default` decides them).
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Output masking.
    #[serde(default)]
    pub masking: Option<MaskingConfig>,
}

/// A PostgreSQL target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTargetConfig {
    /// Groups allowed to connect at all.
    pub allowed_groups: Vec<String>,
    /// Where the database is and the gateway's credential for it.
    pub upstream: UpstreamConfig,
    /// Statement rules (`[targets.NAME.policy]`); without it every statement of an
    /// admitted identity is allowed (and recorded) under rule `default`.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Masking of results, errors and notices (`[targets.NAME.masking]`).
    #[serde(default)]
    pub masking: Option<MaskingConfig>,
}

/// A configuration problem: the file, the key and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// What is wrong, naming the key.
    pub message: String,
}

impl GatewayConfig {
    /// The masking engine: one masker per target that configures masking.
    pub fn masking_engine(&self) -> Result<portcullis_masking::MaskingEngine, String> {
        let mut maskers = BTreeMap::new();
        for (name, target) in &self.targets {
            if let Some(masking) = target.masking() {
                let masker = portcullis_masking::Masker::new(masking)
                    .map_err(|e| format!("targets.{name}.masking: {e}"))?;
                maskers.insert(name.clone(), masker);
            }
        }
        for (name, target) in self.http.iter().flat_map(|h| &h.targets) {
            if let Some(content) = &target.mask.content {
                if self.targets.contains_key(name) {
                    return Err(format!(
                        "http.targets.{name}: a target of this name is also defined in [targets]"
                    ));
                }
                let masker = portcullis_masking::Masker::new(content)
                    .map_err(|e| format!("http.targets.{name}.mask.content: {e}"))?;
                maskers.insert(name.clone(), masker);
            }
        }
        portcullis_masking::MaskingEngine::by_target(maskers, None)
            .map_err(|e| format!("masking: {e}"))
    }

    /// The compiled statement policies of all targets.
    pub fn policy_set(&self) -> Result<portcullis_policy::PolicySet, String> {
        let mut set = portcullis_policy::PolicySet::new(portcullis_policy::DefaultAction::Allow);
        for (name, target) in &self.targets {
            if let Some(policy) = target.policy() {
                let compiled = portcullis_policy::CompiledPolicy::compile(policy)
                    .map_err(|e| format!("targets.{name}.policy: {e}"))?;
                set.insert(name.clone(), compiled);
            }
        }
        Ok(set)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |message: String| ConfigError {
            file: file.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let config: GatewayConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        config.validate().map_err(err)?;
        Ok(config)
    }

    /// Checks what serde cannot: names the key and why.
    pub fn validate(&self) -> Result<(), String> {
        self.recording
            .validate()
            .map_err(|e| format!("recording: {e}"))?;
        self.identity
            .validate()
            .map_err(|e| format!("identity: {e}"))?;
        portcullis_siem::validate_all(&self.sinks).map_err(|e| e.to_string())?;
        if let Some(approvals) = &self.approvals {
            approvals
                .validate()
                .map_err(|e| format!("approvals: {e}"))?;
        }
        if let Some(admin) = &self.admin
            && admin.auditor_groups.is_empty()
        {
            return Err("admin.auditor_groups: empty, nobody could use the query API".into());
        }
        if let Some(pg) = &self.postgres {
            if pg.tls.mode == TlsMode::Files && (pg.tls.cert.is_none() || pg.tls.key.is_none()) {
                return Err("postgres.tls: mode = \"files\" needs cert and key".into());
            }
            if pg.require_tls && pg.tls.mode == TlsMode::Off {
                return Err("postgres.require_tls: true but postgres.tls.mode is off".into());
            }
            if pg.max_message_bytes < 1024 {
                return Err("postgres.max_message_bytes: must be at least 1024".into());
            }
        }
        let mut has_postgres_target = false;
        let mut has_ssh_target = false;
        for (name, target) in &self.targets {
            if name.is_empty() || name.len() > 63 {
                return Err(format!("targets.{name}: name must be 1 to 63 bytes"));
            }
            if target.allowed_groups().is_empty() {
                return Err(format!(
                    "targets.{name}.allowed_groups: empty, nobody could connect"
                ));
            }
            if let Some(policy) = target.policy() {
                portcullis_policy::CompiledPolicy::compile(policy)
                    .map_err(|e| format!("targets.{name}.policy: {e}"))?;
            }
            if let Some(masking) = target.masking() {
                portcullis_masking::Masker::new(masking)
                    .map_err(|e| format!("targets.{name}.masking: {e}"))?;
            }
            match target {
                TargetConfig::Ssh(t) => {
                    has_ssh_target = true;
                    if name.contains('+') {
                        return Err(format!(
                            "targets.{name}: SSH target names cannot contain '+'"
                        ));
                    }
                    if t.upstream.address.rsplit_once(':').is_none() {
                        return Err(format!(
                            "targets.{name}.upstream.address: expected host:port, got {:?}",
                            t.upstream.address
                        ));
                    }
                }
                TargetConfig::Postgres(t) => {
                    has_postgres_target = true;
                    if t.allowed_groups.is_empty() {
                        return Err(format!(
                            "targets.{name}.allowed_groups: empty, nobody could connect"
                        ));
                    }
                    if t.upstream.address.rsplit_once(':').is_none() {
                        return Err(format!(
                            "targets.{name}.upstream.address: expected host:port, got {:?}",
                            t.upstream.address
                        ));
                    }
                    t.upstream
                        .resolve_password()
                        .map_err(|e| format!("targets.{name}.upstream: {e}"))?;
                    t.upstream
                        .tls_connector()
                        .map_err(|e| format!("targets.{name}.upstream: {e}"))?;
                    if let Some(policy) = &t.policy {
                        portcullis_policy::CompiledPolicy::compile(policy)
                            .map_err(|e| format!("targets.{name}.policy: {e}"))?;
                    }
                    if let Some(masking) = &t.masking {
                        portcullis_masking::Masker::new(masking)
                            .map_err(|e| format!("targets.{name}.masking: {e}"))?;
                    }
                }
            }
        }
        if has_ssh_target && self.ssh.is_none() {
            return Err("ssh: SSH targets are defined but no [ssh] listener".into());
        }
        if let Some(http) = &self.http {
            http.validate().map_err(|e| format!("http: {e}"))?;
            self.masking_engine()?;
        }
        if has_postgres_target && self.postgres.is_none() {
            return Err(
                "postgres: PostgreSQL targets are defined but no [postgres] listener".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        let c: GatewayConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    const BASE: &str = r#"
[identity.dev_signer]
issuer = "dev"
audience = "portcullis"
secret = "0123456789abcdef0123456789abcdef"

[postgres]
listen = "127.0.0.1:6432"
"#;

    #[test]
    fn the_quickstart_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
        GatewayConfig::load(&path).unwrap();
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(&format!("{BASE}\n[targets.db]\nprotocol = \"postgres\"\nallowed_groups = [\"a\"]\ncolour = 1\n[targets.db.upstream]\naddress = \"h:1\"\ndatabase = \"d\"\nuser = \"u\"\n")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse(&format!("{BASE}\nlisten_typo = 1\n")).unwrap_err();
        assert!(e.contains("listen_typo"), "{e}");
    }

    #[test]
    fn policy_errors_name_the_target_and_rule() {
        let e = parse(&format!("{BASE}\n[targets.db]\nprotocol = \"postgres\"\nallowed_groups = [\"a\"]\n[targets.db.upstream]\naddress = \"h:1\"\ndatabase = \"d\"\nuser = \"u\"\n[[targets.db.policy.rules]]\nid = \"r1\"\naction = \"review\"\n")).unwrap_err();
        assert!(
            e.contains("targets.db.policy") && e.contains("approvers"),
            "{e}"
        );
        let e = parse(&format!("{BASE}\n[targets.db]\nprotocol = \"postgres\"\nallowed_groups = [\"a\"]\n[targets.db.upstream]\naddress = \"h:1\"\ndatabase = \"d\"\nuser = \"u\"\n[[targets.db.policy.rules]]\nid = \"r1\"\nkinds = [\"reed\"]\naction = \"deny\"\n")).unwrap_err();
        assert!(e.contains("reed"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let e = parse(&format!("{BASE}\n[targets.db]\nprotocol = \"postgres\"\nallowed_groups = []\n[targets.db.upstream]\naddress = \"h:1\"\ndatabase = \"d\"\nuser = \"u\"\n")).unwrap_err();
        assert!(e.contains("targets.db.allowed_groups"), "{e}");
        let e = parse(&format!("{BASE}\n[targets.db]\nprotocol = \"postgres\"\nallowed_groups = [\"a\"]\n[targets.db.upstream]\naddress = \"nohost\"\ndatabase = \"d\"\nuser = \"u\"\n")).unwrap_err();
        assert!(e.contains("targets.db.upstream.address"), "{e}");
        let e = parse(&format!("{BASE}\n[targets.db]\nprotocol = \"postgres\"\nallowed_groups = [\"a\"]\n[targets.db.upstream]\naddress = \"h:1\"\ndatabase = \"d\"\nuser = \"u\"\npassword_env = \"PORTCULLIS_SURELY_UNSET\"\n")).unwrap_err();
        assert!(e.contains("PORTCULLIS_SURELY_UNSET"), "{e}");
        let e = parse("[identity]\n[postgres]\nlisten = \"127.0.0.1:1\"\nrequire_tls = true\n")
            .unwrap_err();
        assert!(e.contains("postgres.require_tls"), "{e}");
        let e = parse("[identity]\n[admin]\nlisten = \"127.0.0.1:1\"\nauditor_groups = []\n")
            .unwrap_err();
        assert!(e.contains("admin.auditor_groups"), "{e}");
    }

    #[test]
    fn sinks_are_parsed_and_checked() {
        let c = parse(&format!(
            "{BASE}\n[[sinks]]\nname = \"f\"\nkind = \"file\"\npath = \"/tmp/a.jsonl\"\n[[sinks]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\nformat = \"ocsf\"\n"
        ))
        .unwrap();
        assert_eq!(c.sinks.len(), 2);
        let e = parse(&format!(
            "{BASE}\n[[sinks]]\nname = \"h\"\nkind = \"http\"\nurl = \"ftp://x/\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("sinks[0] (h)") && e.contains("url"), "{e}");
    }
}
