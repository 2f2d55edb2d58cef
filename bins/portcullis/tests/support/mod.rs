//! A real gateway process in front of a private PostgreSQL cluster, for end-to-end tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_testkit::{PgAuth, PgCluster, PgOptions, Process, Psql, free_port, wait_for_tcp};

/// The password of the SCRAM role the gateway uses upstream. Tests grep for it.
pub const UPSTREAM_PASSWORD: &str = "upstream-Secret-7f3a91";

pub struct Harness {
    pub pg: PgCluster,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub store: PathBuf,
    pub pg_port: u16,
    pub admin_port: u16,
    pub gateway: Option<Process>,
    pub log: PathBuf,
}

pub fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// `portcullis-audit`, built next to `portcullis`.
pub fn audit_bin() -> PathBuf {
    let path = gateway_bin().with_file_name("portcullis-audit");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "portcullis-audit"])
            .status()
            .unwrap();
        assert!(status.success(), "building portcullis-audit failed");
    }
    path
}

pub struct Options {
    pub durability: &'static str,
    pub tls: &'static str,
    pub require_tls: bool,
    pub leeway: &'static str,
    pub wait: &'static str,
    /// The body of `[recording]` in place of the default sled store under the
    /// harness directory (`durability` is then taken from this text too).
    pub recording: Option<String>,
    /// Appended to the configuration (top-level tables such as `[[sinks]]`).
    pub extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: "batched",
            tls: "off",
            require_tls: false,
            leeway: "30s",
            wait: "20s",
            recording: None,
            extra: String::new(),
        }
    }
}

impl Harness {
    pub fn start(opts: Options) -> Harness {
        let pg = PgCluster::start(
            PgOptions::default()
                .user("gw_scram", UPSTREAM_PASSWORD, PgAuth::ScramSha256)
                .user("gw_md5", "md5-pw-2b1c", PgAuth::Md5)
                .user("gw_plain", "plain-pw-9d8e", PgAuth::Password),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pg_port = free_port().unwrap();
        let admin_port = free_port().unwrap();
        let dead_port = free_port().unwrap();
        let store = dir.path().join("recording");
        let approvals = dir.path().join("approvals");
        let config = dir.path().join("portcullis.toml");
        let db = pg.database();
        let up = pg.port();
        let text = format!(
            r#"
[recording]
{recording}

[identity]
leeway = "{leeway}"

[identity.dev_signer]
issuer = "portcullis-test"
audience = "portcullis"
secret = "test-signing-secret-0123456789abcdef"

[approvals]
path = "{approvals}"
wait = "{wait}"
request_ttl = "10m"
approve_url = "http://127.0.0.1:{admin_port}"

[admin]
listen = "127.0.0.1:{admin_port}"
auditor_groups = ["auditors"]

[postgres]
listen = "127.0.0.1:{pg_port}"
tls = {{ mode = "{tls}" }}
require_tls = {require_tls}
shutdown_grace = "2s"

[targets.app]
protocol = "postgres"
allowed_groups = ["dba", "developers"]
[targets.app.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_scram"
password = "{UPSTREAM_PASSWORD}"

[targets.legacy_md5]
protocol = "postgres"
allowed_groups = ["dba"]
[targets.legacy_md5.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_md5"
password = "md5-pw-2b1c"

[targets.legacy_plain]
protocol = "postgres"
allowed_groups = ["dba"]
[targets.legacy_plain.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_plain"
password = "plain-pw-9d8e"

[targets.down]
protocol = "postgres"
allowed_groups = ["dba"]
[targets.down.upstream]
address = "127.0.0.1:{dead_port}"
database = "{db}"
user = "gw_scram"
password = "{UPSTREAM_PASSWORD}"
connect_timeout = "2s"

[targets.badcred]
protocol = "postgres"
allowed_groups = ["dba"]
[targets.badcred.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_scram"
password = "not-the-password"

[targets.guarded]
protocol = "postgres"
allowed_groups = ["dba", "developers"]
[targets.guarded.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_scram"
password = "{UPSTREAM_PASSWORD}"
[targets.guarded.policy]
default = "deny"
[[targets.guarded.policy.rules]]
id = "no-ddl-for-developers"
groups = ["developers"]
kinds = ["ddl", "privileges", "admin"]
action = "deny"
reason = "developers may not change the schema"
[[targets.guarded.policy.rules]]
id = "no-unfiltered-writes"
kinds = ["write"]
no_where = true
action = "deny"
[[targets.guarded.policy.rules]]
id = "no-dangerous-functions"
dangerous_functions = true
action = "deny"
[[targets.guarded.policy.rules]]
id = "payroll-writes-need-review"
kinds = ["write"]
tables = ["payroll"]
action = "review"
approvers = ["payroll-approvers"]
[[targets.guarded.policy.rules]]
id = "dba-anything-else"
groups = ["dba"]
kinds = ["read", "write", "ddl", "transaction", "session", "utility", "lock"]
action = "allow"
[[targets.guarded.policy.rules]]
id = "developers-read-write"
kinds = ["read", "write", "transaction", "session", "utility"]
action = "allow"

[targets.masked]
protocol = "postgres"
allowed_groups = ["dba", "developers"]
[targets.masked.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_scram"
password = "{UPSTREAM_PASSWORD}"
[targets.masked.masking]
columns = [{{ pattern = "ssn", strategy = "redact" }}, {{ pattern = "*secret*", strategy = "null" }}]

[targets.masked_content]
protocol = "postgres"
allowed_groups = ["dba", "developers"]
[targets.masked_content.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_scram"
password = "{UPSTREAM_PASSWORD}"
[targets.masked_content.masking]
enabled = true

[targets.restricted]
protocol = "postgres"
allowed_groups = ["admins-only"]
[targets.restricted.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "gw_scram"
password = "{UPSTREAM_PASSWORD}"
"#,
            recording = opts.recording.clone().unwrap_or_else(|| format!(
                "path = \"{}\"\ndurability = \"{}\"\nflush_interval = \"50ms\"",
                store.display(),
                opts.durability
            )),
            approvals = approvals.display(),
            wait = opts.wait,
            leeway = opts.leeway,
            tls = opts.tls,
            require_tls = opts.require_tls,
        );
        std::fs::write(&config, format!("{text}\n{}\n", opts.extra)).unwrap();
        let log = dir.path().join("gateway.log");
        let mut h = Harness {
            pg,
            dir,
            config,
            store,
            pg_port,
            admin_port,
            gateway: None,
            log,
        };
        h.spawn_gateway();
        h
    }

    pub fn spawn_gateway(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(gateway_bin());
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut process = Process::spawn("portcullis", &mut cmd).unwrap();
        let addr = format!("127.0.0.1:{}", self.pg_port).parse().unwrap();
        if wait_for_tcp(addr, Duration::from_secs(20)).is_err() || !process.is_running() {
            panic!("gateway did not start:\n{}", self.logs());
        }
        let admin = format!("127.0.0.1:{}", self.admin_port).parse().unwrap();
        wait_for_tcp(admin, Duration::from_secs(10)).unwrap();
        self.gateway = Some(process);
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn token(&self, subject: &str, groups: &str, ttl: &str) -> String {
        let out = Command::new(gateway_bin())
            .args(["token", "--config"])
            .arg(&self.config)
            .args(["--subject", subject, "--groups", groups, "--ttl", ttl])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn psql(&self, token: &str, target: &str) -> Psql {
        Psql::new("psql", self.pg_port, "alice", target).password(token)
    }

    pub fn url(&self, token: &str, target: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=alice dbname={target} password={token} sslmode=disable",
            self.pg_port
        )
    }

    pub async fn connect(&self, token: &str, target: &str) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.url(token, target), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.logs()));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Stops the gateway with a signal; returns its exit status.
    pub fn stop(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let mut p = self.gateway.take()?;
        p.stop(signal, Duration::from_secs(15)).unwrap()
    }

    pub fn kill9(&mut self) {
        if let Some(mut p) = self.gateway.take() {
            p.kill().unwrap();
        }
    }

    /// Runs `portcullis-audit` and returns stdout (panics on failure).
    pub fn audit(&self, args: &[&str]) -> String {
        let out = self.audit_raw(args);
        assert!(
            out.status.success(),
            "portcullis-audit {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn audit_raw(&self, args: &[&str]) -> std::process::Output {
        Command::new(audit_bin()).args(args).output().unwrap()
    }

    /// The session's records read from the stopped gateway's store, as JSON values.
    pub fn records_from_store(&self, session: &str) -> Vec<serde_json::Value> {
        let store = self.store.display().to_string();
        self.audit(&["--store", &store, "show", session, "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every file under `dir`, read as bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
