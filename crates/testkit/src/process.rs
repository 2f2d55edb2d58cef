//! Child processes that die with their guard, and running service binaries as a
//! non-root user.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError};

/// A running child process that is killed (SIGKILL) and reaped when dropped.
///
/// Use [`Process::stop`] for an orderly stop with a chosen signal first.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
}

impl Process {
    /// Spawns `command` and guards the child under `name` (used in errors and logs).
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> Result<Process> {
        let name = name.into();
        let child = command
            .spawn()
            .map_err(TestkitError::io(format!("spawning {name}")))?;
        tracing::debug!(process = %name, pid = child.id(), "spawned");
        Ok(Process {
            name,
            child: Some(child),
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            None => Ok(None),
            Some(child) => child
                .try_wait()
                .map_err(TestkitError::io(format!("waiting for {}", self.name))),
        }
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && matches!(self.try_wait(), Ok(None))
    }

    /// Sends `signal` (a name such as `TERM`, `INT`, `QUIT`) to the child.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let output = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(pid.to_string())
            .output()
            .map_err(TestkitError::io("running kill"))?;
        check_output(&format!("kill -s {signal} {pid}"), output).map(drop)
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal`, waits up to `grace` for the child to exit, then kills it, and
    /// reaps it. Returns the exit status.
    pub fn stop(&mut self, signal: &str, grace: Duration) -> Result<Option<ExitStatus>> {
        if self.child.is_none() {
            return Ok(None);
        }
        if self.try_wait()?.is_none() {
            if let Err(e) = self.signal(signal) {
                tracing::debug!(process = %self.name, error = %e, "signal failed");
            }
            if self.wait_timeout(grace)?.is_none() {
                self.kill()?;
            }
        }
        let status = self.try_wait()?;
        self.child = None;
        Ok(status)
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                // An error here means the child already exited; wait reaps it either way.
                let _ = child.kill();
            }
            child
                .wait()
                .map_err(TestkitError::io(format!("reaping {}", self.name)))?;
            tracing::debug!(process = %self.name, "stopped");
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!(process = %self.name, error = %e, "could not kill child");
        }
    }
}

/// Whether a process with this id exists and is not a zombie (Linux `/proc`).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the parenthesised command name, which may itself contain ')'.
        Ok(stat) => match stat.rfind(')') {
            Some(end) => !matches!(stat.get(end + 2..end + 3), Some("Z") | Some("X")),
            None => true,
        },
    }
}

/// Who service binaries run as.
///
/// PostgreSQL and PgBouncer refuse to run as root. When the tests run as root the
/// kit runs them as the `postgres` OS user through `setpriv` (which execs, so the
/// guarded child is the service itself) and hands that user its directories; when
/// they run as any other user the binaries run directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// Run binaries directly as the current user.
    Current,
    /// Run binaries as another OS user.
    User {
        /// The user name.
        name: String,
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
    },
}

impl RunAs {
    /// [`RunAs::Current`] when not root, otherwise the `postgres` user.
    pub fn detect() -> Result<RunAs> {
        let euid = fs::metadata("/proc/self")
            .map_err(TestkitError::io("reading /proc/self"))?
            .uid();
        if euid != 0 {
            return Ok(RunAs::Current);
        }
        RunAs::user("postgres")
    }

    /// Looks `name` up in `/etc/passwd`.
    pub fn user(name: &str) -> Result<RunAs> {
        let passwd =
            fs::read_to_string("/etc/passwd").map_err(TestkitError::io("reading /etc/passwd"))?;
        for line in passwd.lines() {
            let mut fields = line.split(':');
            if fields.next() != Some(name) {
                continue;
            }
            let _password = fields.next();
            let uid = fields.next().and_then(|f| f.parse().ok());
            let gid = fields.next().and_then(|f| f.parse().ok());
            if let (Some(uid), Some(gid)) = (uid, gid) {
                return Ok(RunAs::User {
                    name: name.to_owned(),
                    uid,
                    gid,
                });
            }
        }
        Err(TestkitError::Options(format!(
            "OS user {name} not found in /etc/passwd (services refuse to run as root; \
             install postgresql or create the user)"
        )))
    }

    /// A command that runs `program` as this user, with `dir` as working directory.
    pub fn command(&self, program: &Path, dir: &Path) -> Command {
        let mut command = match self {
            RunAs::Current => Command::new(program),
            RunAs::User { uid, gid, .. } => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                c
            }
        };
        command
            .current_dir(dir)
            .env("HOME", dir)
            .stdin(Stdio::null());
        command
    }

    /// Hands `path` to this user (no-op for [`RunAs::Current`]).
    pub fn own(&self, path: &Path) -> Result<()> {
        if let RunAs::User { uid, gid, .. } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(TestkitError::io(format!("chown {}", path.display())))?;
        }
        Ok(())
    }
}

/// Runs `command` to completion; fails with its stderr if it exits unsuccessfully.
/// `display` names the command in errors (it must not contain secrets).
pub(crate) fn run(display: &str, command: &mut Command) -> Result<Output> {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(TestkitError::io(format!("running {display}")))?;
    check_output(display, output)
}

/// Turns an unsuccessful [`Output`] into [`TestkitError::Command`].
pub(crate) fn check_output(display: &str, output: Output) -> Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(TestkitError::Command {
        command: display.to_owned(),
        status: output.status.to_string(),
        stderr,
    })
}

/// The last `lines` lines of a log file, or a note that it could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Err(e) => format!("(log {} unreadable: {e})", path.display()),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all.get(start..).unwrap_or_default().join("\n")
        }
    }
}
