//! [`TestkitError`]: why a test service could not be started, queried or stopped.

use std::time::Duration;

use portcullis_core::Side;

/// Errors of the test kit.
///
/// The test kit has two sides: the caller (options that cannot work, see
/// [`TestkitError::Options`]) and the services it runs (everything else, which
/// [`TestkitError::side`] reports as [`Side::Upstream`]). Errors about a service that
/// failed to start carry the tail of that service's log, so a failing test shows why.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The caller's options cannot work (bad name, missing user, unusable path).
    #[error("invalid test kit options: {0}")]
    Options(String),
    /// A binary the service needs was not found.
    #[error("binary {name} not found (searched: {searched})")]
    MissingBinary {
        /// The binary's name.
        name: String,
        /// Where it was looked for.
        searched: String,
    },
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (initdb, psql, pg_ctl, ...) exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line, without secrets.
        command: String,
        /// The exit status.
        status: String,
        /// What the command printed on stderr (and stdout when stderr was empty).
        stderr: String,
    },
    /// A service did not become ready in time.
    #[error("{service} not ready after {after:?}; log tail:\n{log}")]
    StartTimeout {
        /// The service's name.
        service: String,
        /// How long was waited.
        after: Duration,
        /// The tail of the service's log.
        log: String,
    },
    /// A service exited while starting or running.
    #[error("{service} exited ({status}); log tail:\n{log}")]
    Exited {
        /// The service's name.
        service: String,
        /// The exit status.
        status: String,
        /// The tail of the service's log.
        log: String,
    },
}

impl TestkitError {
    /// Which side failed: [`Side::Client`] for unusable options, [`Side::Upstream`] for the
    /// services and tools the kit runs, [`Side::Internal`] for local I/O.
    pub fn side(&self) -> Side {
        match self {
            TestkitError::Options(_) => Side::Client,
            TestkitError::Io { .. } => Side::Internal,
            TestkitError::MissingBinary { .. }
            | TestkitError::Command { .. }
            | TestkitError::StartTimeout { .. }
            | TestkitError::Exited { .. } => Side::Upstream,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
        let context = context.into();
        move |source| TestkitError::Io { context, source }
    }
}

/// Result alias of the test kit.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;
