//! [`PgBouncer`]: Debian's `pgbouncer` in front of a [`PgCluster`].

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use portcullis_core::Secret;
use tempfile::TempDir;

use crate::error::{Result, TestkitError};
use crate::net::free_port;
use crate::pg::{ADMIN_USER, PgCluster, read_from};
use crate::process::{Process, RunAs, log_tail};

/// How many log lines errors carry.
const LOG_TAIL_LINES: usize = 40;

/// How many ports are tried when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 4;

/// PgBouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client session.
    Session,
    /// A server connection per transaction.
    Transaction,
    /// A server connection per statement.
    Statement,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// How clients authenticate to PgBouncer (`auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BouncerAuth {
    /// `scram-sha-256`.
    ScramSha256,
    /// `plain`: the cleartext password travels over the connection.
    Plain,
}

impl BouncerAuth {
    fn as_str(self) -> &'static str {
        match self {
            BouncerAuth::ScramSha256 => "scram-sha-256",
            BouncerAuth::Plain => "plain",
        }
    }
}

/// Options of [`PgBouncer::start`]. The default is transaction pooling, SCRAM, and
/// every user of the cluster plus its superuser in the auth file.
#[derive(Debug, Clone)]
pub struct PgBouncerOptions {
    /// `pool_mode`.
    pub pool_mode: PoolMode,
    /// `auth_type`.
    pub auth: BouncerAuth,
    /// Users and passwords for the auth file; `None` takes the cluster's users and superuser.
    /// PgBouncer logs into the cluster with the same names and passwords.
    pub users: Option<Vec<(String, Secret<String>)>>,
    /// `default_pool_size`.
    pub pool_size: u32,
    /// How long to wait for PgBouncer to accept connections.
    pub start_timeout: Duration,
}

impl Default for PgBouncerOptions {
    fn default() -> PgBouncerOptions {
        PgBouncerOptions {
            pool_mode: PoolMode::Transaction,
            auth: BouncerAuth::ScramSha256,
            users: None,
            pool_size: 10,
            start_timeout: Duration::from_secs(15),
        }
    }
}

/// A PgBouncer (`/usr/sbin/pgbouncer`, or `$PGBOUNCER`) on `127.0.0.1` and a free port,
/// pooling connections to one [`PgCluster`]; every database name maps to the same name
/// on the cluster. Runs as the `postgres` OS user when the tests run as root.
///
/// Cost: about 25 ms to start and 20 ms to stop. Dropping it stops the process (SIGTERM,
/// then SIGKILL) and removes its configuration directory.
#[derive(Debug)]
pub struct PgBouncer {
    process: Process,
    port: u16,
    log: PathBuf,
    stopped: bool,
    // Dropped last: the process must be gone before its directory.
    dir: TempDir,
}

impl PgBouncer {
    /// Writes a configuration for `upstream` and starts PgBouncer.
    pub fn start(upstream: &PgCluster, opts: PgBouncerOptions) -> Result<PgBouncer> {
        let program = std::env::var_os("PGBOUNCER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"));
        if !program.is_file() {
            return Err(TestkitError::MissingBinary {
                name: "pgbouncer".to_owned(),
                searched: format!(
                    "$PGBOUNCER, {} (apt-get install -y pgbouncer)",
                    program.display()
                ),
            });
        }
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-pgbouncer-")
            .tempdir()
            .map_err(TestkitError::io("creating the pgbouncer directory"))?;
        run_as.own(dir.path())?;

        let users = match opts.users.clone() {
            Some(users) => users,
            None => {
                let mut users: Vec<(String, Secret<String>)> = upstream
                    .users()
                    .iter()
                    .map(|u| (u.name.clone(), u.password.clone()))
                    .collect();
                users.push((ADMIN_USER.to_owned(), upstream.admin_password().clone()));
                users
            }
        };
        let mut userlist = String::new();
        for (name, password) in &users {
            if name.contains(['"', '\n']) || password.expose().contains(['"', '\n']) {
                return Err(TestkitError::Options(format!(
                    "pgbouncer auth file cannot hold user {name:?} or its password"
                )));
            }
            let _ = writeln!(userlist, "\"{name}\" \"{}\"", password.expose());
        }
        let userlist_path = dir.path().join("userlist.txt");
        fs::write(&userlist_path, userlist)
            .map_err(TestkitError::io("writing the pgbouncer auth file"))?;
        run_as.own(&userlist_path)?;
        let log = dir.path().join("pgbouncer.log");

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let config = dir.path().join("pgbouncer.ini");
            fs::write(&config, ini(upstream, &opts, dir.path(), port))
                .map_err(TestkitError::io("writing pgbouncer.ini"))?;
            run_as.own(&config)?;
            match spawn(&program, &run_as, dir.path(), &config, &log, port, &opts) {
                Ok(process) => {
                    tracing::info!(port, upstream = upstream.port(), "pgbouncer started");
                    return Ok(PgBouncer {
                        process,
                        port,
                        log,
                        stopped: false,
                        dir,
                    });
                }
                Err(Spawn::PortTaken) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!(port, "port taken while starting pgbouncer, retrying");
                }
                Err(Spawn::PortTaken) => {
                    return Err(TestkitError::Exited {
                        service: "pgbouncer".to_owned(),
                        status: format!("could not bind a port in {PORT_ATTEMPTS} attempts"),
                        log: log_tail(&log, LOG_TAIL_LINES),
                    });
                }
                Err(Spawn::Failed(e)) => return Err(e),
            }
        }
    }

    /// PgBouncer's address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// PgBouncer's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PgBouncer's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The directory holding `pgbouncer.ini`, the auth file and the log.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// PgBouncer's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole PgBouncer log (lossily decoded); empty if it cannot be read.
    pub fn read_log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Stops PgBouncer (SIGTERM, its immediate shutdown; SIGKILL after 5 s) and removes
    /// its directory.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        self.process.stop("TERM", Duration::from_secs(5)).map(drop)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "stopping pgbouncer");
        }
    }
}

fn ini(upstream: &PgCluster, opts: &PgBouncerOptions, dir: &Path, port: u16) -> String {
    let mut ini = String::new();
    let _ = writeln!(ini, "[databases]");
    let _ = writeln!(ini, "* = host=127.0.0.1 port={}", upstream.port());
    let _ = writeln!(ini, "\n[pgbouncer]");
    let _ = writeln!(ini, "listen_addr = 127.0.0.1");
    let _ = writeln!(ini, "listen_port = {port}");
    let _ = writeln!(ini, "unix_socket_dir = {}", dir.display());
    let _ = writeln!(ini, "auth_type = {}", opts.auth.as_str());
    let _ = writeln!(ini, "auth_file = {}", dir.join("userlist.txt").display());
    let _ = writeln!(ini, "admin_users = {ADMIN_USER}");
    let _ = writeln!(ini, "stats_users = {ADMIN_USER}");
    let _ = writeln!(ini, "pool_mode = {}", opts.pool_mode.as_str());
    let _ = writeln!(ini, "default_pool_size = {}", opts.pool_size);
    let _ = writeln!(ini, "max_client_conn = 200");
    let _ = writeln!(
        ini,
        "ignore_startup_parameters = extra_float_digits,options"
    );
    let _ = writeln!(ini, "server_login_retry = 1");
    ini
}

enum Spawn {
    PortTaken,
    Failed(TestkitError),
}

impl From<TestkitError> for Spawn {
    fn from(e: TestkitError) -> Spawn {
        Spawn::Failed(e)
    }
}

fn spawn(
    program: &Path,
    run_as: &RunAs,
    dir: &Path,
    config: &Path,
    log: &Path,
    port: u16,
    opts: &PgBouncerOptions,
) -> std::result::Result<Process, Spawn> {
    let log_start = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    // In the foreground PgBouncer logs to stderr.
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(TestkitError::io("opening the pgbouncer log"))?;
    run_as.own(log)?;
    let mut cmd = run_as.command(program, dir);
    cmd.arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    let mut process = Process::spawn("pgbouncer", &mut cmd)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + opts.start_timeout;
    loop {
        if let Some(status) = process.try_wait()? {
            if read_from(log, log_start).contains("Address already in use") {
                return Err(Spawn::PortTaken);
            }
            return Err(Spawn::Failed(TestkitError::Exited {
                service: "pgbouncer".to_owned(),
                status: status.to_string(),
                log: log_tail(log, LOG_TAIL_LINES),
            }));
        }
        // The port is ours only once our PgBouncer says it listens on it (another
        // process may have bound it after free_port released it).
        let listening = format!("listening on {addr}");
        if read_from(log, log_start).contains(&listening)
            && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            return Ok(process);
        }
        if Instant::now() >= deadline {
            return Err(Spawn::Failed(TestkitError::StartTimeout {
                service: "pgbouncer".to_owned(),
                after: opts.start_timeout,
                log: log_tail(log, LOG_TAIL_LINES),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
