//! `portcullis-audit`: reads the Portcullis record, from a running gateway's query API
//! (`--gateway URL`, authenticated with a token of an auditor), from a stopped
//! gateway's store (`--store PATH`) or from a shared PostgreSQL store
//! (`--store postgres://…`, every gateway's chain; `--chain NAME` for one).
//!
//! - `sessions [--subject S] [--target T] [--since TIME] [--until TIME] [--limit N] [--json]`
//! - `show SESSION [--json]`: the session's statements in order, with identity, decision and timing.
//!
//! Evidence commands (read `--store PATH` or an exported `--bundle DIR`; not over `--gateway` yet):
//!
//! - `search [--subject S] [--target T] [--since] [--until] [--decision allow|deny|review] [--text S] [--table NAME]`
//! - `replay SESSION [--json] [--recordings DIR] [--cast OUT [--command SEQ]] [--cast-dir DIR]`:
//!   a session as a timed transcript; SSH terminal recordings checked against the record.
//! - `export --out DIR [--since] [--until] [--format jsonl|ocsf] [--signing-key PEM] [--recordings DIR]` (store only)
//! - `verify [--key PEM]... [--json]`: exit 0 when intact, 1 with the first fault named.
//! - `report --framework nist-800-53 [--since] [--until] [--format md|json] [--key PEM]...`

mod casts;
mod evidence_cmd;
mod render;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use portcullis_core::{SessionId, Timestamp, Verdict};
use portcullis_recording::search::SearchQuery;
use portcullis_recording::{ExportFormat, ExportOptions, SessionFilter};

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
    /// A stopped gateway's store directory (the `[recording] path`), or a shared
    /// PostgreSQL store (`postgres://user@host/db`, the `[recording] store`; or env
    /// PORTCULLIS_STORE, which keeps a password off the command line).
    #[arg(long, global = true, env = "PORTCULLIS_STORE", hide_env_values = true)]
    store: Option<String>,
    /// With a PostgreSQL store: only this chain (gateway). Without it, sessions,
    /// show and replay read every chain, and search, export, verify and report
    /// go through the chains one by one.
    #[arg(long, global = true)]
    chain: Option<String>,
    /// Directory of an exported evidence bundle (search, replay, verify, report).
    #[arg(long, global = true, conflicts_with_all = ["store", "gateway"])]
    bundle: Option<PathBuf>,
    /// Trust only checkpoints signed by the public key(s) in this PEM file (repeatable).
    /// Without it the keys stored with the evidence are used.
    #[arg(long = "key", global = true)]
    keys: Vec<PathBuf>,
    /// Directory of the SSH terminal recordings (the gateway's `[ssh.settings]
    /// recordings_dir`), for replay, export and verify. A bundle's own `casts/` is the default.
    #[arg(long, global = true)]
    recordings: Option<PathBuf>,
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
        /// Do not shorten statement text; print HTTP request and response details.
        #[arg(long)]
        full: bool,
    },
    /// Find commands across sessions.
    Search {
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// At or after (RFC 3339).
        #[arg(long)]
        since: Option<Timestamp>,
        /// Before (RFC 3339).
        #[arg(long)]
        until: Option<Timestamp>,
        /// Only this decision.
        #[arg(long, value_enum)]
        decision: Option<DecisionArg>,
        /// Statement text contains this (case-sensitive).
        #[arg(long)]
        text: Option<String>,
        /// Statement mentions this table (whole identifier, any case).
        #[arg(long)]
        table: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON lines output.
        #[arg(long)]
        json: bool,
    },
    /// Show a session as a timed transcript; SSH terminal recordings are checked
    /// against the record (with --recordings) and can be written out.
    Replay {
        /// Session id.
        session: SessionId,
        /// JSON lines output (offset in µs, seq, event).
        #[arg(long)]
        json: bool,
        /// Write the session's terminal recording (asciicast v2) to this file, after
        /// checking it against the SHA-256 in the record; `-` writes it to stdout (the
        /// transcript then goes to stderr).
        #[arg(long, value_name = "OUT")]
        cast: Option<PathBuf>,
        /// With --cast: the command whose recording to write (when there are several).
        #[arg(long, value_name = "SEQ", requires = "cast")]
        command: Option<u64>,
        /// Write every terminal recording of the session into this directory, checked.
        #[arg(long, value_name = "DIR")]
        cast_dir: Option<PathBuf>,
    },
    /// Write an evidence bundle (from --store).
    Export {
        /// Records at or after (RFC 3339).
        #[arg(long)]
        since: Option<Timestamp>,
        /// Records before (RFC 3339).
        #[arg(long)]
        until: Option<Timestamp>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// jsonl (the bundle) or ocsf (the bundle plus events.ocsf.jsonl).
        #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
        format: FormatArg,
        /// The gateway's signing key, to end the export at a fresh checkpoint
        /// (default: <store>/signing-key.pem when present).
        #[arg(long)]
        signing_key: Option<PathBuf>,
    },
    /// Verify the chain, checkpoints and signatures; exit 1 on the first fault.
    Verify {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Evidence report for a framework.
    Report {
        /// The framework.
        #[arg(long, value_enum, default_value_t = FrameworkArg::Nist80053)]
        framework: FrameworkArg,
        /// Records at or after (RFC 3339).
        #[arg(long)]
        since: Option<Timestamp>,
        /// Records before (RFC 3339).
        #[arg(long)]
        until: Option<Timestamp>,
        /// md or json.
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecisionArg {
    Allow,
    Deny,
    Review,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Jsonl,
    Ocsf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FrameworkArg {
    #[value(name = "nist-800-53")]
    Nist80053,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Md,
    Json,
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
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("portcullis-audit: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs one command; `Ok(false)` when verification found a fault.
async fn run(cli: Cli) -> Result<bool, source::AuditError> {
    if let Some(ok) = run_evidence(&cli)? {
        return Ok(ok);
    }
    let store = cli.store.as_deref().map(source::StoreArg::parse);
    if cli.chain.is_some() && !matches!(store, Some(source::StoreArg::Postgres(_))) {
        return Err(source::AuditError::Usage(
            "--chain selects a chain of a PostgreSQL --store".into(),
        ));
    }
    let source = Source::new(cli.gateway, cli.token, store, cli.chain.as_deref())?;
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
            if let Source::Shared(pg) = &source {
                let sessions = pg
                    .list_sessions_with_chain(&filter)
                    .map_err(|e| source::AuditError::Store(e.to_string()))?;
                if json {
                    render::json(&mut out, &render::with_chain(&sessions)?)?;
                } else {
                    render::sessions_by_chain(&mut out, &sessions)?;
                }
                return Ok(true);
            }
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
        _ => {}
    }
    Ok(true)
}

/// The evidence commands; `None` for the others.
fn run_evidence(cli: &Cli) -> Result<Option<bool>, source::AuditError> {
    use evidence_cmd::*;
    if matches!(cli.command, Cmd::Sessions { .. } | Cmd::Show { .. }) {
        return Ok(None);
    }
    let store = cli.store.as_deref().map(source::StoreArg::parse);
    if cli.chain.is_some() && !matches!(store, Some(source::StoreArg::Postgres(_))) {
        return Err(source::AuditError::Usage(
            "--chain selects a chain of a PostgreSQL --store".into(),
        ));
    }
    let opened = Opened::new(
        cli.gateway.is_some(),
        store,
        cli.chain.as_deref(),
        cli.bundle.clone(),
    )?;
    let verify_options = trusted_keys(&cli.keys)?;
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Cmd::Search {
            subject,
            target,
            since,
            until,
            decision,
            text,
            table,
            limit,
            json,
        } => {
            let query = SearchQuery {
                subject: subject.clone(),
                target: target.clone(),
                since: *since,
                until: *until,
                decision: decision.map(|d| match d {
                    DecisionArg::Allow => Verdict::Allow,
                    DecisionArg::Deny => Verdict::Deny,
                    DecisionArg::Review => Verdict::Review,
                }),
                text: text.clone(),
                table: table.clone(),
                limit: *limit,
            };
            run_search(&mut out, &opened, &query, *json)?;
        }
        Cmd::Replay {
            session,
            json,
            cast,
            command,
            cast_dir,
        } => {
            let options = CastOptions {
                recordings: cli.recordings.clone(),
                cast: cast.clone(),
                cast_dir: cast_dir.clone(),
                command: *command,
            };
            if cast.as_deref().is_some_and(|c| c.as_os_str() == "-") {
                drop(out);
                let mut err = std::io::stderr().lock();
                run_replay(&mut err, &opened, *session, *json, &options)?;
            } else {
                run_replay(&mut out, &opened, *session, *json, &options)?;
            }
        }
        Cmd::Export {
            since,
            until,
            out: dir,
            format,
            signing_key,
        } => {
            let options = ExportOptions {
                since: *since,
                until: *until,
                format: match format {
                    FormatArg::Jsonl => ExportFormat::Jsonl,
                    FormatArg::Ocsf => ExportFormat::Ocsf,
                },
            };
            run_export(
                &mut out,
                &opened,
                &options,
                dir,
                signing_key.clone(),
                cli.recordings.as_deref(),
            )?;
        }
        Cmd::Verify { json } => {
            let ok = run_verify(
                &mut out,
                &opened,
                &verify_options,
                *json,
                cli.recordings.as_deref(),
            )?;
            if !ok {
                eprintln!("portcullis-audit: verification failed");
            }
            return Ok(Some(ok));
        }
        Cmd::Report {
            framework: FrameworkArg::Nist80053,
            since,
            until,
            format,
        } => run_report(
            &mut out,
            &opened,
            *since,
            *until,
            &verify_options,
            *format == ReportFormat::Json,
        )?,
        Cmd::Sessions { .. } | Cmd::Show { .. } => return Ok(None),
    }
    Ok(Some(true))
}
