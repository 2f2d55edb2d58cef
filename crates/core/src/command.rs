//! Commands: the unit that is classified, decided, masked and recorded.

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
    /// An HTTP request.
    Http {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// Raw query string, if any.
        query: Option<String>,
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
            Command::Http {
                method,
                path,
                query,
            } => match query {
                Some(q) => format!("{method} {path}?{q}"),
                None => format!("{method} {path}"),
            },
        }
    }
}
