//! [`PgCluster`]: a private PostgreSQL cluster in a temporary directory.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use portcullis_core::Secret;
use tempfile::TempDir;

use crate::error::{Result, TestkitError};
use crate::net::free_port;
use crate::process::{Process, RunAs, log_tail, run};
use crate::psql::Psql;

/// The superuser every cluster is created with.
pub const ADMIN_USER: &str = "portcullis_admin";

/// How many log lines errors carry.
const LOG_TAIL_LINES: usize = 40;

/// How many ports are tried when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 4;

/// How a login role authenticates over TCP (its `pg_hba.conf` method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgAuth {
    /// `scram-sha-256`, with the password stored as a SCRAM verifier.
    ScramSha256,
    /// `md5`, with the password stored as an MD5 hash (so the server really uses MD5).
    Md5,
    /// `password`: the cleartext password travels over the connection.
    Password,
    /// `trust`: no password is asked.
    Trust,
}

impl PgAuth {
    /// The method's name in `pg_hba.conf`.
    pub fn hba_method(self) -> &'static str {
        match self {
            PgAuth::ScramSha256 => "scram-sha-256",
            PgAuth::Md5 => "md5",
            PgAuth::Password => "password",
            PgAuth::Trust => "trust",
        }
    }

    /// The `password_encryption` the role's password is stored with.
    fn storage(self) -> &'static str {
        match self {
            PgAuth::Md5 => "md5",
            PgAuth::ScramSha256 | PgAuth::Password | PgAuth::Trust => "scram-sha-256",
        }
    }
}

/// A login role created in the cluster.
#[derive(Debug, Clone)]
pub struct PgUser {
    /// The role name.
    pub name: String,
    /// Its password.
    pub password: Secret<String>,
    /// How it authenticates over TCP from 127.0.0.1.
    pub method: PgAuth,
}

impl PgUser {
    /// A login role `name` with `password` that authenticates with `method`.
    pub fn new(name: &str, password: &str, method: PgAuth) -> PgUser {
        PgUser {
            name: name.to_owned(),
            password: Secret::new(password.to_owned()),
            method,
        }
    }
}

impl From<(&str, &str, PgAuth)> for PgUser {
    fn from((name, password, method): (&str, &str, PgAuth)) -> PgUser {
        PgUser::new(name, password, method)
    }
}

/// Options of [`PgCluster::start`]. [`PgOptions::default`] gives one SCRAM user
/// `portcullis_app` / `portcullis-app-pw`, a database `portcullis_test`, statement and
/// connection logging on, and fsync off.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Login roles to create; each gets all privileges on the database and its `public` schema.
    pub users: Vec<PgUser>,
    /// The database to create.
    pub database: String,
    /// The password of [`ADMIN_USER`] (which authenticates with SCRAM over TCP).
    pub admin_password: Secret<String>,
    /// `log_statement = 'all'` when true.
    pub log_statement: bool,
    /// `log_connections` and `log_disconnections` when true.
    pub log_connections: bool,
    /// `fsync`, `synchronous_commit` and `full_page_writes`; off is faster and fine for tests.
    pub fsync: bool,
    /// Extra `postgresql.conf` settings, written as `name = value` (quote string values yourself).
    pub settings: Vec<(String, String)>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            users: vec![PgUser::new(
                "portcullis_app",
                "portcullis-app-pw",
                PgAuth::ScramSha256,
            )],
            database: "portcullis_test".to_owned(),
            admin_password: Secret::new("portcullis-admin-pw".to_owned()),
            log_statement: true,
            log_connections: true,
            fsync: false,
            settings: Vec::new(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl PgOptions {
    /// Adds a login role.
    pub fn user(mut self, name: &str, password: &str, method: PgAuth) -> PgOptions {
        self.users.push(PgUser::new(name, password, method));
        self
    }

    /// Adds a `postgresql.conf` setting.
    pub fn setting(mut self, name: &str, value: &str) -> PgOptions {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A private PostgreSQL cluster listening on `127.0.0.1` and a free port.
///
/// [`PgCluster::start`] runs `initdb` into a temporary directory, writes `pg_hba.conf`
/// (one line per user with its [`PgAuth`], SCRAM for everyone else), starts `postgres`
/// with its unix socket inside that directory, waits for `pg_isready`, and creates the
/// roles and the database. The server log goes to [`PgCluster::log_path`]; every line
/// is prefixed `<time> [<pid>] app=<application_name> user=<user> db=<database> `.
///
/// Cost: 1.3–2 s to start on two shared cores (`initdb` dominates) and ~120 ms to stop;
/// each cluster uses ~40 MB of disk and six processes. Dropping the cluster stops it
/// (`pg_ctl stop -m immediate`, then SIGKILL if needed) and removes the directory.
///
/// Binaries come from `$PG_BIN` or the highest version under `/usr/lib/postgresql/*/bin`.
/// As root they run as the `postgres` OS user (see [`RunAs`]).
#[derive(Debug)]
pub struct PgCluster {
    postmaster: Process,
    run_as: RunAs,
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
    database: String,
    admin_password: Secret<String>,
    users: Vec<PgUser>,
    stopped: bool,
    // Dropped last: the server must be stopped before its directory goes.
    dir: TempDir,
}

impl PgCluster {
    /// Creates and starts a cluster. Blocks for the ~1–2 s this takes.
    pub fn start(opts: PgOptions) -> Result<PgCluster> {
        validate(&opts)?;
        let started = Instant::now();
        let bin = pg_bin_dir()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-pg-")
            .tempdir()
            .map_err(TestkitError::io("creating the cluster directory"))?;
        run_as.own(dir.path())?;
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        fs::create_dir(&socket_dir).map_err(TestkitError::io("creating the socket directory"))?;
        run_as.own(&socket_dir)?;
        let log = dir.path().join("postgres.log");

        initdb(&bin, &run_as, dir.path(), &data, &opts)?;
        write_config(&data, &socket_dir, &opts)?;

        let mut attempt = 0;
        let (postmaster, port) = loop {
            attempt += 1;
            let port = free_port()?;
            match spawn_postmaster(&bin, &run_as, dir.path(), &data, &log, port, &opts) {
                Ok(p) => break (p, port),
                Err(PortTaken) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!(port, "port taken while starting postgres, retrying");
                }
                Err(PortTaken) => {
                    return Err(TestkitError::Exited {
                        service: "postgres".to_owned(),
                        status: format!("could not bind a port in {PORT_ATTEMPTS} attempts"),
                        log: log_tail(&log, LOG_TAIL_LINES),
                    });
                }
                Err(StartError(e)) => return Err(e),
            }
        };

        let cluster = PgCluster {
            postmaster,
            run_as,
            bin,
            data,
            socket_dir,
            log,
            port,
            database: opts.database.clone(),
            admin_password: opts.admin_password.clone(),
            users: opts.users.clone(),
            stopped: false,
            dir,
        };
        cluster.create_roles_and_database()?;
        tracing::info!(
            port,
            dir = %cluster.dir.path().display(),
            elapsed = ?started.elapsed(),
            "postgres cluster started"
        );
        Ok(cluster)
    }

    fn create_roles_and_database(&self) -> Result<()> {
        let mut script = String::new();
        for user in &self.users {
            let _ = writeln!(
                script,
                "SET password_encryption = '{}';\nCREATE ROLE {} LOGIN PASSWORD {};",
                user.method.storage(),
                ident(&user.name),
                literal(user.password.expose()),
            );
        }
        let db = ident(&self.database);
        let _ = writeln!(script, "RESET password_encryption;\nCREATE DATABASE {db};");
        for user in &self.users {
            let _ = writeln!(
                script,
                "GRANT ALL ON DATABASE {db} TO {};",
                ident(&user.name)
            );
        }
        let _ = writeln!(script, "\\connect {db}");
        for user in &self.users {
            let _ = writeln!(
                script,
                "GRANT ALL ON SCHEMA public TO {};",
                ident(&user.name)
            );
        }
        // The script holds passwords: it lives in the private directory only while psql reads it.
        let path = self.dir.path().join("setup.sql");
        fs::write(&path, script).map_err(TestkitError::io("writing the setup script"))?;
        let socket = self.socket_dir.to_string_lossy().into_owned();
        let result = Psql::new(self.bin.join("psql"), self.port, ADMIN_USER, "postgres")
            .host(&socket)
            .arg("-f")
            .arg(&path.to_string_lossy())
            .run("\\echo setup")
            .map(drop);
        let _ = fs::remove_file(&path);
        result
    }

    /// The server's address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database created for the tests.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The superuser's name, [`ADMIN_USER`].
    pub fn admin_user(&self) -> &str {
        ADMIN_USER
    }

    /// The superuser's password.
    pub fn admin_password(&self) -> &Secret<String> {
        &self.admin_password
    }

    /// The login roles created at start.
    pub fn users(&self) -> &[PgUser] {
        &self.users
    }

    /// A login role created at start, by name.
    pub fn user(&self, name: &str) -> Option<&PgUser> {
        self.users.iter().find(|u| u.name == name)
    }

    /// `postgres://portcullis_admin:<password>@127.0.0.1:<port>/<database>`.
    pub fn admin_url(&self) -> String {
        self.url_for(ADMIN_USER, self.admin_password.expose())
    }

    /// A `postgres://` URL for a created user with its own password, or `None` if no such user.
    pub fn url(&self, user: &str) -> Option<String> {
        self.user(user)
            .map(|u| self.url_for(&u.name, u.password.expose()))
    }

    /// A `postgres://` URL for any user and password, to the test database.
    pub fn url_for(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.port,
            percent_encode(&self.database)
        )
    }

    /// The directory holding the unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole server log (lossily decoded); empty if it cannot be read.
    pub fn read_log(&self) -> String {
        self.read_log_from(0)
    }

    /// The current length of the server log, to pass to [`PgCluster::read_log_from`] later.
    pub fn log_len(&self) -> u64 {
        fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The server log from byte `offset` on (lossily decoded); empty if it cannot be read.
    pub fn read_log_from(&self, offset: u64) -> String {
        read_from(&self.log, offset)
    }

    /// Waits until the log from `offset` on contains `needle`; returns that part of the log.
    pub fn wait_for_log(&self, offset: u64, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.read_log_from(offset);
            if log.contains(needle) {
                return Ok(log);
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::StartTimeout {
                    service: format!("postgres log line containing {needle:?}"),
                    after: timeout,
                    log: log_tail(&self.log, LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The postmaster's process id, while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.pid()
    }

    /// A [`Psql`] connected over TCP as the superuser to the test database.
    pub fn psql_client(&self) -> Psql {
        Psql::new(self.bin.join("psql"), self.port, ADMIN_USER, &self.database)
            .password(self.admin_password.expose())
    }

    /// Runs `sql` with the real `psql` as the superuser (over TCP, SCRAM) and returns
    /// stdout, unaligned and without headers: `SELECT 1` gives `"1\n"`.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_client().run(sql)
    }

    /// Stops the server (`pg_ctl stop -m immediate`) and removes its directory.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut first_error = None;
        if self.postmaster.is_running() {
            let mut pg_ctl = self
                .run_as
                .command(&self.bin.join("pg_ctl"), self.dir.path());
            pg_ctl.arg("stop").arg("-D").arg(&self.data).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
            ]);
            if let Err(e) = run("pg_ctl stop -m immediate", &mut pg_ctl) {
                first_error = Some(e);
            }
        }
        // pg_ctl returns once the postmaster is gone; this reaps it, or kills it if
        // pg_ctl could not stop it.
        if let Err(e) = self.postmaster.stop("QUIT", Duration::from_secs(10)) {
            first_error.get_or_insert(e);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "stopping the postgres cluster");
        }
    }
}

fn validate(opts: &PgOptions) -> Result<()> {
    let bad = |s: &str| s.is_empty() || s.len() > 63 || s.contains('\0') || s.contains('"');
    if bad(&opts.database) {
        return Err(TestkitError::Options(format!(
            "unusable database name {:?}",
            opts.database
        )));
    }
    for user in &opts.users {
        if bad(&user.name) || user.name == ADMIN_USER {
            return Err(TestkitError::Options(format!(
                "unusable user name {:?}",
                user.name
            )));
        }
        if user.password.expose().contains('\0') || user.password.expose().contains('\n') {
            return Err(TestkitError::Options(format!(
                "password of {} contains NUL or newline",
                user.name
            )));
        }
    }
    let pw = opts.admin_password.expose();
    if pw.is_empty() || pw.contains('\0') || pw.contains('\n') {
        return Err(TestkitError::Options(
            "admin password must be non-empty without NUL or newline".to_owned(),
        ));
    }
    for (name, value) in &opts.settings {
        if name.contains(['\n', '=']) || value.contains('\n') {
            return Err(TestkitError::Options(format!("unusable setting {name:?}")));
        }
    }
    Ok(())
}

/// `$PG_BIN`, or the highest-versioned `/usr/lib/postgresql/<v>/bin` with a `postgres` binary.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("postgres").is_file() {
            return Ok(dir);
        }
        return Err(TestkitError::MissingBinary {
            name: "postgres".to_owned(),
            searched: format!("$PG_BIN={}", dir.display()),
        });
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(version) = name
                .split('.')
                .map(str::parse::<u32>)
                .collect::<std::result::Result<Vec<u32>, _>>()
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("postgres").is_file() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, bin)| bin)
        .ok_or_else(|| TestkitError::MissingBinary {
            name: "postgres".to_owned(),
            searched: "$PG_BIN, /usr/lib/postgresql/*/bin".to_owned(),
        })
}

fn initdb(bin: &Path, run_as: &RunAs, dir: &Path, data: &Path, opts: &PgOptions) -> Result<()> {
    let pwfile = dir.join("admin.pw");
    fs::write(&pwfile, opts.admin_password.expose())
        .map_err(TestkitError::io("writing the admin password file"))?;
    run_as.own(&pwfile)?;
    let mut cmd = run_as.command(&bin.join("initdb"), dir);
    cmd.arg("-D")
        .arg(data)
        .args([
            "-U",
            ADMIN_USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
    let result = run("initdb", &mut cmd).map(drop);
    let _ = fs::remove_file(&pwfile);
    result
}

fn write_config(data: &Path, socket_dir: &Path, opts: &PgOptions) -> Result<()> {
    let on_off = |b: bool| if b { "on" } else { "off" };
    let mut conf = String::from("\n# portcullis-testkit\n");
    let _ = writeln!(conf, "listen_addresses = '127.0.0.1'");
    let _ = writeln!(
        conf,
        "unix_socket_directories = {}",
        literal(&socket_dir.to_string_lossy())
    );
    let _ = writeln!(conf, "password_encryption = 'scram-sha-256'");
    let _ = writeln!(conf, "max_connections = 200");
    let _ = writeln!(conf, "shared_buffers = '16MB'");
    let _ = writeln!(conf, "logging_collector = off");
    let _ = writeln!(conf, "log_line_prefix = '%m [%p] app=%a user=%u db=%d '");
    let _ = writeln!(
        conf,
        "log_statement = '{}'",
        if opts.log_statement { "all" } else { "none" }
    );
    let _ = writeln!(conf, "log_connections = {}", on_off(opts.log_connections));
    let _ = writeln!(
        conf,
        "log_disconnections = {}",
        on_off(opts.log_connections)
    );
    let _ = writeln!(conf, "fsync = {}", on_off(opts.fsync));
    let _ = writeln!(conf, "synchronous_commit = {}", on_off(opts.fsync));
    let _ = writeln!(conf, "full_page_writes = {}", on_off(opts.fsync));
    let _ = writeln!(conf, "dynamic_shared_memory_type = posix");
    for (name, value) in &opts.settings {
        let _ = writeln!(conf, "{name} = {value}");
    }
    let path = data.join("postgresql.conf");
    let mut existing =
        fs::read_to_string(&path).map_err(TestkitError::io("reading postgresql.conf"))?;
    existing.push_str(&conf);
    fs::write(&path, existing).map_err(TestkitError::io("writing postgresql.conf"))?;

    let mut hba = String::from("# portcullis-testkit\nlocal all all trust\n");
    let _ = writeln!(hba, "host all {ADMIN_USER} 127.0.0.1/32 scram-sha-256");
    for user in &opts.users {
        let _ = writeln!(
            hba,
            "host all {} 127.0.0.1/32 {}",
            ident(&user.name),
            user.method.hba_method()
        );
    }
    let _ = writeln!(hba, "host all all 127.0.0.1/32 scram-sha-256");
    fs::write(data.join("pg_hba.conf"), hba).map_err(TestkitError::io("writing pg_hba.conf"))
}

/// Why one attempt to start the postmaster failed.
enum SpawnError {
    /// Another process took the port; try another.
    PortTaken,
    /// Anything else.
    StartError(TestkitError),
}
use SpawnError::{PortTaken, StartError};

impl From<TestkitError> for SpawnError {
    fn from(e: TestkitError) -> SpawnError {
        StartError(e)
    }
}

fn spawn_postmaster(
    bin: &Path,
    run_as: &RunAs,
    dir: &Path,
    data: &Path,
    log: &Path,
    port: u16,
    opts: &PgOptions,
) -> std::result::Result<Process, SpawnError> {
    let log_start = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(TestkitError::io("opening the server log"))?;
    let err_file = file
        .try_clone()
        .map_err(TestkitError::io("opening the server log"))?;
    let mut cmd = run_as.command(&bin.join("postgres"), dir);
    cmd.arg("-D")
        .arg(data)
        .arg("-p")
        .arg(port.to_string())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err_file));
    let mut postmaster = Process::spawn("postgres", &mut cmd)?;

    let deadline = Instant::now() + opts.start_timeout;
    loop {
        if let Some(status) = postmaster.try_wait()? {
            if read_from(log, log_start).contains("Address already in use") {
                return Err(PortTaken);
            }
            return Err(StartError(TestkitError::Exited {
                service: "postgres".to_owned(),
                status: status.to_string(),
                log: log_tail(log, LOG_TAIL_LINES),
            }));
        }
        // The port is ours only once our server says it listens on it (another
        // process may have bound it after free_port released it).
        let listening = format!("listening on IPv4 address \"127.0.0.1\", port {port}");
        let ours = read_from(log, log_start).contains(&listening);
        let ready = ours
            && std::process::Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-t", "1", "-d", "postgres"])
                .arg("-p")
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(TestkitError::io("running pg_isready"))?
                .success();
        if ready {
            return Ok(postmaster);
        }
        if Instant::now() >= deadline {
            return Err(StartError(TestkitError::StartTimeout {
                service: "postgres".to_owned(),
                after: opts.start_timeout,
                log: log_tail(log, LOG_TAIL_LINES),
            }));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A log file from byte `offset` on, lossily decoded; empty if unreadable.
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// A double-quoted SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string literal (standard_conforming_strings).
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(percent_encode("a b:c@d/é"), "a%20b%3Ac%40d%2F%C3%A9");
    }

    #[test]
    fn rejects_unusable_names() {
        let opts = PgOptions {
            database: String::new(),
            ..PgOptions::default()
        };
        assert!(matches!(validate(&opts), Err(TestkitError::Options(_))));
        let opts = PgOptions::default().user(ADMIN_USER, "x", PgAuth::Trust);
        assert!(matches!(validate(&opts), Err(TestkitError::Options(_))));
        assert!(validate(&PgOptions::default()).is_ok());
    }
}
