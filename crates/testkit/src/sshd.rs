//! [`Sshd`]: the real OpenSSH server on 127.0.0.1, and client key pairs made with `ssh-keygen`.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{Result, TestkitError};
use crate::net::free_port;
use crate::process::{Process, log_tail, run};

/// How many log lines errors carry.
const LOG_TAIL_LINES: usize = 40;

/// How many ports are tried when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 4;

/// Options of [`Sshd::start`].
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Public key lines (`ssh-ed25519 AAAA... comment`) written to the authorized keys file.
    pub authorized_keys: Vec<String>,
    /// Extra `sshd_config` lines, appended after the kit's own.
    pub extra_config: Vec<String>,
    /// How long to wait for sshd to accept connections.
    pub start_timeout: Duration,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self {
            authorized_keys: Vec::new(),
            extra_config: Vec::new(),
            start_timeout: Duration::from_secs(10),
        }
    }
}

impl SshdOptions {
    /// Adds a public key line to the authorized keys file.
    pub fn authorize(mut self, public_key: impl Into<String>) -> Self {
        self.authorized_keys.push(public_key.into());
        self
    }
}

/// A key pair made by `ssh-keygen` (Ed25519, no passphrase).
#[derive(Debug, Clone)]
pub struct SshKeyPair {
    /// The OpenSSH private key file.
    pub private_key: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
}

/// Generates an Ed25519 key pair as `dir/name` and `dir/name.pub` with `ssh-keygen`.
pub fn generate_keypair(dir: &Path, name: &str) -> Result<SshKeyPair> {
    if name.is_empty() || name.contains('/') {
        return Err(TestkitError::Options(format!("bad key file name {name:?}")));
    }
    let private_key = dir.join(name);
    let _ = fs::remove_file(&private_key);
    let _ = fs::remove_file(dir.join(format!("{name}.pub")));
    run(
        "ssh-keygen -t ed25519",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(name)
            .arg("-f")
            .arg(&private_key),
    )?;
    let public_key = fs::read_to_string(dir.join(format!("{name}.pub")))
        .map_err(TestkitError::io("reading the generated public key"))?
        .trim()
        .to_owned();
    Ok(SshKeyPair {
        private_key,
        public_key,
    })
}

/// A running OpenSSH `sshd` on 127.0.0.1 with its own host key, authorized keys and
/// configuration in a temporary directory. Dropping it stops sshd and removes the directory.
///
/// sshd runs as the current user (root in CI; `UsePAM no`, `StrictModes no`), so clients
/// log in as that user ([`Sshd::user`]). `-o` lines can be added with
/// [`SshdOptions::extra_config`].
#[derive(Debug)]
pub struct Sshd {
    process: Process,
    port: u16,
    host_public_key: String,
    user: String,
    log: PathBuf,
    authorized_keys: PathBuf,
    dir: TempDir,
}

impl Sshd {
    /// Starts sshd (`$SSHD` or `/usr/sbin/sshd`; `apt-get install -y openssh-server`).
    pub fn start(options: SshdOptions) -> Result<Sshd> {
        let binary = sshd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-sshd-")
            .tempdir()
            .map_err(TestkitError::io("creating the sshd directory"))?;
        let host_key = generate_keypair(dir.path(), "ssh_host_ed25519_key")?;
        let authorized_keys = dir.path().join("authorized_keys");
        let mut keys = String::new();
        for key in &options.authorized_keys {
            let _ = writeln!(keys, "{}", key.trim());
        }
        fs::write(&authorized_keys, keys)
            .map_err(TestkitError::io("writing the authorized keys file"))?;
        // sshd refuses to start without its privilege separation directory.
        if is_root() {
            fs::create_dir_all("/run/sshd").map_err(TestkitError::io("creating /run/sshd"))?;
        }
        let user = current_user()?;
        let log = dir.path().join("sshd.log");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let config = dir.path().join("sshd_config");
            fs::write(
                &config,
                sshd_config(
                    dir.path(),
                    port,
                    &host_key.private_key,
                    &authorized_keys,
                    &options,
                ),
            )
            .map_err(TestkitError::io("writing sshd_config"))?;
            let log_file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(TestkitError::io("opening the sshd log"))?;
            let log_err = log_file
                .try_clone()
                .map_err(TestkitError::io("duplicating the sshd log handle"))?;
            let mut process = Process::spawn(
                "sshd",
                Command::new(&binary)
                    .arg("-D")
                    .arg("-e")
                    .arg("-f")
                    .arg(&config)
                    .current_dir(dir.path())
                    .stdin(Stdio::null())
                    .stdout(log_file)
                    .stderr(log_err),
            )?;
            match wait_ready(&mut process, port, &log, options.start_timeout) {
                Ok(()) => {
                    return Ok(Sshd {
                        process,
                        port,
                        host_public_key: host_key.public_key,
                        user,
                        log,
                        authorized_keys,
                        dir,
                    });
                }
                Err(e) => {
                    let _ = process.kill();
                    let taken = log_tail(&log, LOG_TAIL_LINES).contains("Address already in use");
                    last_error = Some(e);
                    if !taken {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Options("sshd did not start".into())))
    }

    /// The port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The host public key line (`ssh-ed25519 AAAA... comment`), for pinning.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The OS user that clients log in as (the user sshd runs as).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The temporary directory holding sshd's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Appends a public key line to the authorized keys file (read at each login).
    pub fn authorize(&self, public_key: &str) -> Result<()> {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .map_err(TestkitError::io("opening the authorized keys file"))?;
        std::io::Write::write_all(&mut file, format!("{}\n", public_key.trim()).as_bytes())
            .map_err(TestkitError::io("writing the authorized keys file"))
    }

    /// The whole sshd log (`-e`: every message, including each login).
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether sshd still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Stops sshd (TERM, then KILL after a second).
    pub fn stop(&mut self) -> Result<()> {
        self.process.stop("TERM", Duration::from_secs(1)).map(drop)
    }

    /// A `ssh` command for `user@127.0.0.1 -p port` with batch mode, the given identity file,
    /// and host keys not checked (a fresh known-hosts file in `dir`).
    pub fn client_command(port: u16, user: &str, identity: &Path, known_hosts: &Path) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-F")
            .arg("/dev/null")
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "ConnectTimeout=10"])
            .arg("-i")
            .arg(identity)
            .arg("-p")
            .arg(port.to_string())
            .arg(format!("{user}@127.0.0.1"));
        command
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Err(e) = self.process.kill() {
            tracing::warn!(error = %e, "could not stop sshd");
        }
    }
}

fn sshd_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SSHD") {
        return Ok(PathBuf::from(path));
    }
    let path = PathBuf::from("/usr/sbin/sshd");
    if path.exists() {
        Ok(path)
    } else {
        Err(TestkitError::MissingBinary {
            name: "sshd".into(),
            searched: "$SSHD, /usr/sbin/sshd (apt-get install -y openssh-server)".into(),
        })
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn current_user() -> Result<String> {
    let output = run("id -un", Command::new("id").arg("-un"))?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if name.is_empty() {
        return Err(TestkitError::Options("cannot tell the current user".into()));
    }
    Ok(name)
}

fn sshd_config(
    dir: &Path,
    port: u16,
    host_key: &Path,
    authorized_keys: &Path,
    options: &SshdOptions,
) -> String {
    let mut config = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         AllowTcpForwarding yes\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        authorized_keys = authorized_keys.display(),
    );
    for line in &options.extra_config {
        let _ = writeln!(config, "{line}");
    }
    config
}

fn wait_ready(process: &mut Process, port: u16, log: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = process.try_wait()? {
            return Err(TestkitError::Exited {
                service: "sshd".into(),
                status: status.to_string(),
                log: log_tail(log, LOG_TAIL_LINES),
            });
        }
        if log_tail(log, LOG_TAIL_LINES).contains(&format!("listening on 127.0.0.1 port {port}"))
            && crate::net::wait_for_tcp(addr, Duration::from_millis(200)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TestkitError::StartTimeout {
                service: "sshd".into(),
                after: timeout,
                log: log_tail(log, LOG_TAIL_LINES),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
