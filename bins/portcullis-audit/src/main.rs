//! `portcullis-audit`: reads the Portcullis record, from a running gateway's query API
//! (`--gateway URL`, authenticated with a token of an auditor) or from a stopped
//! gateway's store (`--store PATH`).
//!
//! - `sessions [--subject S] [--target T] [--since TIME] [--until TIME] [--limit N] [--json]`
//! - `show SESSION [--json]`: the session's statements in order, with identity, decision and timing.

mod render;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_core::{SessionId, Timestamp};
use portcullis_recording::SessionFilter;

use crate::source::Source;

/// Query the Portcullis session record.
#[derive(Debug, Parser)]
#[command(name = "portcullis-audit", version)]
struct Cli {
    /// Base URL of a running gateway's admin API (e.g. http://127.0.0.1:9080).
    #[arg(long, global = true, conflicts_with = "store")]
    gateway: Option<String>,
    /// Token of an auditor for --gateway (or env PORTCULLIS_TOKEN).
    #[arg(long, global = true, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Path of a stopped gateway's store (the `[recording] path`).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List sessions, newest first.
    Sessions {
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// Opened at or after (RFC 3339, e.g. 2026-11-26T09:00:00Z).
        #[arg(long)]
        since: Option<Timestamp>,
        /// Opened before (RFC 3339).
        #[arg(long)]
        until: Option<Timestamp>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one session's statements in order.
    Show {
        /// Session id.
        session: SessionId,
        /// JSON lines output (one record per line, as stored).
        #[arg(long)]
        json: bool,
        /// Do not shorten statement text.
        #[arg(long)]
        full: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis-audit: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-audit: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), source::AuditError> {
    let source = Source::new(cli.gateway, cli.token, cli.store)?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Cmd::Sessions {
            subject,
            target,
            since,
            until,
            limit,
            json,
        } => {
            let filter = SessionFilter {
                subject,
                target,
                since,
                until,
                limit,
            };
            let sessions = source.sessions(&filter).await?;
            if json {
                render::json(&mut out, &sessions)?;
            } else {
                render::sessions(&mut out, &sessions)?;
            }
        }
        Cmd::Show {
            session,
            json,
            full,
        } => {
            let summary = source.session(session).await?;
            if json {
                source
                    .records(session, |r| render::json_line(&mut out, &r))
                    .await?;
            } else {
                render::show(&mut out, &summary, &source, session, full).await?;
            }
        }
    }
    Ok(())
}
