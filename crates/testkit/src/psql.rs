//! [`Psql`]: the real `psql` client, for tests that want what a person would type.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use portcullis_core::Secret;

use crate::error::{Result, TestkitError};
use crate::process::check_output;

/// A configured `psql` invocation.
///
/// Runs `psql -X -q -A -t -v ON_ERROR_STOP=1` (no psqlrc, unaligned, tuples only,
/// stop at the first error), so `SELECT 1` prints `1\n`. Connection parameters
/// travel in `PG*` environment variables; the password never appears on a command line.
/// Use [`Psql::run`] from synchronous code and [`Psql::run_async`] inside a Tokio runtime
/// that also drives the server being queried (a gateway under test, for instance).
#[derive(Debug, Clone)]
pub struct Psql {
    program: PathBuf,
    host: String,
    port: u16,
    user: String,
    password: Option<Secret<String>>,
    dbname: String,
    application_name: String,
    args: Vec<String>,
}

impl Psql {
    /// A `psql` at `program` connecting to `127.0.0.1:port` as `user` to `dbname`.
    pub fn new(program: impl Into<PathBuf>, port: u16, user: &str, dbname: &str) -> Psql {
        Psql {
            program: program.into(),
            host: "127.0.0.1".to_owned(),
            port,
            user: user.to_owned(),
            password: None,
            dbname: dbname.to_owned(),
            application_name: "portcullis-testkit".to_owned(),
            args: Vec::new(),
        }
    }

    /// Sets the host (an address or a unix socket directory).
    pub fn host(mut self, host: &str) -> Psql {
        self.host = host.to_owned();
        self
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Psql {
        self.port = port;
        self
    }

    /// Sets the user name.
    pub fn user(mut self, user: &str) -> Psql {
        self.user = user.to_owned();
        self
    }

    /// Sets the password (passed as `PGPASSWORD`).
    pub fn password(mut self, password: &str) -> Psql {
        self.password = Some(Secret::new(password.to_owned()));
        self
    }

    /// Sets the database.
    pub fn dbname(mut self, dbname: &str) -> Psql {
        self.dbname = dbname.to_owned();
        self
    }

    /// Sets `application_name` (default `portcullis-testkit`).
    pub fn application_name(mut self, name: &str) -> Psql {
        self.application_name = name.to_owned();
        self
    }

    /// Adds a raw psql argument before `-c` (for example `--csv`).
    pub fn arg(mut self, arg: &str) -> Psql {
        self.args.push(arg.to_owned());
        self
    }

    fn display(&self) -> String {
        format!(
            "psql (host={} port={} user={} dbname={})",
            self.host, self.port, self.user, self.dbname
        )
    }

    fn configure(&self, sql: &str) -> Command {
        let mut c = Command::new(&self.program);
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-w"])
            .args(&self.args)
            .arg("-c")
            .arg(sql)
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.dbname)
            .env("PGAPPNAME", &self.application_name)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env_remove("PGPASSFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.password {
            Some(p) => c.env("PGPASSWORD", p.expose()),
            None => c.env_remove("PGPASSWORD"),
        };
        c
    }

    /// Runs `sql` with `-c` and returns stdout; the error carries psql's stderr.
    pub fn run(&self, sql: &str) -> Result<String> {
        let display = self.display();
        let output = self
            .configure(sql)
            .output()
            .map_err(TestkitError::io(format!("running {display}")))?;
        let output = check_output(&display, output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Like [`Psql::run`] without blocking the async runtime.
    pub async fn run_async(&self, sql: &str) -> Result<String> {
        let display = self.display();
        let output = tokio::process::Command::from(self.configure(sql))
            .kill_on_drop(true)
            .output()
            .await
            .map_err(TestkitError::io(format!("running {display}")))?;
        let output = check_output(&display, output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
