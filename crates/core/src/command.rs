//! Commands: the unit that is classified, decided, masked and recorded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a SQL statement reached the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "protocol")]
pub enum SqlVia {
    /// A simple-protocol `Query` message (may hold several statements).
    Simple,
    /// An extended-protocol `Execute` of a prepared statement.
    Extended {
        /// Prepared statement name (empty for the unnamed statement).
        statement: String,
        /// Portal name (empty for the unnamed portal).
        portal: String,
    },
}

/// A command sent by a client, in protocol-neutral form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Command {
    /// SQL text for a database target.
    Sql {
        /// The statement text as sent by the client.
        text: String,
        /// How it was sent.
        via: SqlVia,
    },
    /// A non-interactive command line (SSH `exec`).
    Exec {
        /// The command line.
        command: String,
    },
    /// An interactive shell (SSH `shell`, optionally with a PTY).
    Shell {
        /// Whether a PTY was requested.
        pty: bool,
    },
    /// An SSH file transfer: the `sftp` subsystem, or `scp` / `rsync` run as an exec.
    FileTransfer {
        /// `sftp`, `scp` or `rsync`.
        protocol: String,
        /// `upload` (client to host), `download` (host to client), or `None` when the
        /// protocol decides per file (sftp).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<String>,
        /// The command line (`subsystem sftp` for the subsystem).
        command: String,
    },
    /// A forwarded connection or forwarding request (SSH `direct-tcpip`, `tcpip-forward`,
    /// agent or X11 forwarding).
    Forward {
        /// `direct-tcpip`, `tcpip-forward`, `direct-streamlocal`, `streamlocal-forward`,
        /// `agent` or `x11`.
        mode: String,
        /// Destination host (`direct-tcpip`), bind address (`tcpip-forward`) or socket path.
        host: String,
        /// Destination or bind port (0 when not applicable).
        port: u32,
    },
    /// An HTTP request.
    Http {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// Raw query string, if any.
        query: Option<String>,
        /// What else is recorded about the request: selected headers (`header.NAME`), the
        /// path as the client sent it when routing rewrote it (`client_path`), and an
        /// excerpt of the body (`request_body`, masked; `request_body_truncated`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        details: BTreeMap<String, String>,
    },
}

impl Command {
    /// Short human-readable text of the command, for logs and tables.
    pub fn summary(&self) -> String {
        match self {
            Command::Sql { text, .. } => text.clone(),
            Command::Exec { command } => command.clone(),
            Command::Shell { pty } => {
                if *pty {
                    "shell (pty)".to_string()
                } else {
                    "shell".to_string()
                }
            }
            Command::FileTransfer { command, .. } => command.clone(),
            Command::Forward { mode, host, port } => {
                if *port == 0 && host.is_empty() {
                    mode.clone()
                } else if *port == 0 {
                    format!("{mode} {host}")
                } else {
                    format!("{mode} {host}:{port}")
                }
            }
            Command::Http {
                method,
                path,
                query,
                ..
            } => match query {
                Some(q) => format!("{method} {path}?{q}"),
                None => format!("{method} {path}"),
            },
        }
    }
}
