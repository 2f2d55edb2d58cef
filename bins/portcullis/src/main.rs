//! `portcullis`: the access gateway.
//!
//! - `portcullis serve --config FILE`: run the gateway.
//! - `portcullis check --config FILE`: validate a configuration (names the bad key and why).
//! - `portcullis token --config FILE --subject S --groups a,b --ttl 1h`: mint a development token.
//! - `portcullis apikey --id ID --subject S --groups a,b`: generate an API key and its stored hash.

mod admin;
mod approvals_api;
mod approvals_cli;
mod config;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::GatewayConfig;

/// mimalloc instead of the system allocator: events are built on connection tasks and
/// freed on the recorder's writer thread, a cross-thread pattern glibc's malloc handles
/// poorly (arena contention and consolidation showed in profiles of the HTTP gateway).
/// Built without transparent huge pages (the workspace's `no_thp` feature; see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis: identity-bound, policy-checked, masked and recorded access to databases.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the gateway.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Validate a configuration file.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Mint a development token with the configured `[identity.dev_signer]`.
    Token {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Subject of the token.
        #[arg(long)]
        subject: String,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',', default_value = "")]
        groups: Vec<String>,
        /// Lifetime, e.g. `1h`, `15m`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Approve, reject and list just-in-time approval requests and grants.
    Approvals {
        /// Base URL of the gateway's admin API.
        #[arg(
            long,
            env = "PORTCULLIS_GATEWAY",
            default_value = "http://127.0.0.1:9080"
        )]
        gateway: String,
        /// The approver's token (or env PORTCULLIS_TOKEN).
        #[arg(long, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
        token: String,
        #[command(subcommand)]
        command: approvals_cli::ApprovalsCmd,
    },
    /// The record's signing key.
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// Test statement rules before deploying them.
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
    /// Generate an API key; prints the key once and the hash to put in the configuration.
    Apikey {
        /// Key id (part of the key).
        #[arg(long)]
        id: String,
        /// Subject the key authenticates as.
        #[arg(long)]
        subject: String,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',', default_value = "")]
        groups: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Print the key id and public key that verify this gateway's checkpoints
    /// (creates the key if it does not exist yet).
    Show {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Print how a statement or an SSH request is read and which rule decides it.
    /// Give exactly one of --sql, --exec, --shell, --file-transfer, --forward.
    Explain {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Target name.
        #[arg(long)]
        target: String,
        /// Comma-separated groups of the identity.
        #[arg(long, value_delimiter = ',', default_value = "")]
        groups: Vec<String>,
        /// Subject of the identity.
        #[arg(long, default_value = "someone")]
        subject: String,
        /// The SQL text.
        #[arg(long, group = "request")]
        sql: Option<String>,
        /// An SSH exec command line.
        #[arg(long, group = "request")]
        exec: Option<String>,
        /// An SSH shell.
        #[arg(long, group = "request")]
        shell: bool,
        /// An SSH file transfer: upload, download or any (sftp).
        #[arg(long, group = "request")]
        file_transfer: Option<String>,
        /// An SSH direct-tcpip forward to HOST:PORT.
        #[arg(long, group = "request")]
        forward: Option<String>,
    },
}

/// The SSH request named on the `policy explain` command line, if any.
fn explain_request(
    exec: Option<String>,
    shell: bool,
    file_transfer: Option<String>,
    forward: Option<String>,
) -> Result<Option<portcullis_core::Command>, String> {
    use portcullis_core::Command;
    Ok(Some(if let Some(command) = exec {
        Command::Exec { command }
    } else if shell {
        Command::Shell { pty: true }
    } else if let Some(direction) = file_transfer {
        Command::FileTransfer {
            protocol: if direction == "any" { "sftp" } else { "scp" }.into(),
            direction: (direction != "any").then_some(direction),
            command: "file transfer".into(),
        }
    } else if let Some(dest) = forward {
        let (host, port) = dest
            .rsplit_once(':')
            .ok_or_else(|| format!("--forward {dest:?}: expected HOST:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("--forward {dest:?}: bad port"))?;
        Command::Forward {
            mode: "direct-tcpip".into(),
            host: host.into(),
            port,
        }
    } else {
        return Ok(None);
    }))
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Turns transparent huge pages off for the gateway's process (Linux `PR_SET_THP_DISABLE`).
/// Connection tasks and the recorder allocate and free in bursts; with huge pages, memory the
/// allocator had returned and then touched again came back as a freshly zeroed 2 MiB page (a
/// third of the recorder's writer thread under HTTP load). mimalloc's `no_thp` build stops
/// asking for huge pages, but a kernel in THP `always` mode hands them out unasked
/// (docs/http.md). A refusal is logged and changes nothing else.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!(error = %e, "could not turn transparent huge pages off for this process");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Serve { config, json_logs } => {
            init_logs(json_logs);
            no_huge_pages();
            let parsed = GatewayConfig::load(&config).map_err(|e| e.to_string())?;
            serve::serve(parsed, &config.display().to_string()).await
        }
        Cmd::Check { config } => {
            let parsed = GatewayConfig::load(&config).map_err(|e| e.to_string())?;
            // Also build what serve would build, without binding sockets.
            portcullis_identity::Authenticator::from_config(&parsed.identity)
                .await
                .map_err(|e| format!("{}: identity: {e}", config.display()))?;
            println!(
                "{}: ok ({} target{})",
                config.display(),
                parsed.targets.len(),
                if parsed.targets.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Cmd::Token {
            config,
            subject,
            groups,
            ttl,
        } => {
            let parsed = GatewayConfig::load(&config).map_err(|e| e.to_string())?;
            let signer_config = parsed.identity.dev_signer.as_ref().ok_or_else(|| {
                format!(
                    "{}: identity.dev_signer is not configured",
                    config.display()
                )
            })?;
            let signer = portcullis_identity::DevSigner::from_config(signer_config)
                .map_err(|e| format!("identity.dev_signer: {e}"))?;
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            let token = signer
                .mint(&subject, &groups, ttl)
                .map_err(|e| e.to_string())?;
            println!("{}", token.expose());
            Ok(())
        }
        Cmd::Key {
            command: KeyCmd::Show { config },
        } => {
            let parsed = GatewayConfig::load(&config).map_err(|e| e.to_string())?;
            let (key_id, pem) = portcullis_recording::public_key_info(&parsed.recording)
                .map_err(|e| format!("recording: {e}"))?;
            println!("key id: {key_id}\n{pem}");
            Ok(())
        }
        Cmd::Approvals {
            gateway,
            token,
            command,
        } => approvals_cli::run(&gateway, &token, command).await,
        Cmd::Policy {
            command:
                PolicyCmd::Explain {
                    config,
                    target,
                    groups,
                    subject,
                    sql,
                    exec,
                    shell,
                    file_transfer,
                    forward,
                },
        } => {
            let ssh = explain_request(exec, shell, file_transfer, forward)?;
            let parsed = GatewayConfig::load(&config).map_err(|e| e.to_string())?;
            let Some(t) = parsed.targets.get(&target) else {
                return Err(format!("{}: no target {target:?}", config.display()));
            };
            let identity = portcullis_core::Identity {
                subject,
                groups: groups.into_iter().filter(|g| !g.is_empty()).collect(),
                method: portcullis_core::AuthMethod::Jwt,
                issuer: None,
                expires_at: None,
            };
            if !identity.in_any(t.allowed_groups()) {
                println!(
                    "identity: {} (groups: {})\ndecision: deny by rule target-access: not in allowed_groups ({})",
                    identity.subject,
                    identity.groups.join(", "),
                    t.allowed_groups().join(", ")
                );
                return Ok(());
            }
            let policy = match t.policy() {
                Some(policy) => Some(
                    portcullis_policy::CompiledPolicy::compile(policy)
                        .map_err(|e| format!("targets.{target}.policy: {e}"))?,
                ),
                None => None,
            };
            match (ssh, sql, policy) {
                (Some(command), _, Some(compiled)) => {
                    let text = compiled
                        .explain_ssh(&identity, &command)
                        .ok_or("not an SSH request")?;
                    print!("{text}");
                }
                (Some(command), _, None) => {
                    let verdict = if let portcullis_core::Command::Forward { .. } = command {
                        "deny by rule forwarding-default"
                    } else {
                        "allow by rule default"
                    };
                    println!(
                        "request: {}\ndecision: {verdict} (target {target} has no policy)",
                        command.summary()
                    );
                }
                (None, Some(sql), Some(compiled)) => {
                    print!("{}", compiled.explain(&identity, &sql));
                }
                (None, Some(sql), None) => {
                    let class = portcullis_policy::classify(&sql);
                    println!(
                        "classification: {}\ndecision: allow by rule default (target {target} has no policy)",
                        serde_json::to_string(&class).map_err(|e| e.to_string())?
                    );
                }
                (None, None, _) => {
                    return Err(
                        "give one of --sql, --exec, --shell, --file-transfer, --forward".into(),
                    );
                }
            }
            Ok(())
        }
        Cmd::Apikey {
            id,
            subject,
            groups,
        } => {
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            let key = portcullis_identity::generate_api_key(&id).map_err(|e| e.to_string())?;
            println!(
                "API key (shown once; give it to the caller):\n  {}\n",
                key.key.expose()
            );
            println!(
                "Add to the configuration:\n{}",
                key.toml_snippet(&subject, &groups)
            );
            Ok(())
        }
    }
}
