//! The evidence commands: search, replay, export, verify, report. They read a
//! stopped gateway's store (`--store`) or an exported bundle (`--bundle`).

use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_core::{Command, EventKind, SessionId, Timestamp, Verdict};
use portcullis_recording::evidence::EvidenceSource;
use portcullis_recording::search::{SearchHit, SearchQuery, search};
use portcullis_recording::{
    Bundle, EvidenceReport, ExportFormat, ExportOptions, PublicKey, SigningKey, SledStore,
    VerifyOptions, export, report,
};

use crate::source::AuditError;

/// A store or a bundle, opened.
pub enum Opened {
    /// A stopped gateway's store.
    Store(SledStore, PathBuf),
    /// An exported bundle.
    Bundle(Bundle),
}

impl Opened {
    /// Opens what the command line names.
    pub fn new(
        gateway: bool,
        store: Option<PathBuf>,
        bundle: Option<PathBuf>,
    ) -> Result<Self, AuditError> {
        if gateway {
            return Err(AuditError::Usage(
                "this command reads --store PATH or --bundle DIR; it is not available over --gateway yet".into(),
            ));
        }
        match (store, bundle) {
            (Some(path), None) => {
                if !path.exists() {
                    return Err(AuditError::Store(format!(
                        "{}: no such store",
                        path.display()
                    )));
                }
                let s = SledStore::open(&path).map_err(|e| {
                    AuditError::Store(format!(
                        "{}: {e} (a running gateway holds its store)",
                        path.display()
                    ))
                })?;
                Ok(Opened::Store(s, path))
            }
            (None, Some(dir)) => Bundle::open(&dir)
                .map(Opened::Bundle)
                .map_err(|e| AuditError::Store(e.to_string())),
            (None, None) => Err(AuditError::Usage(
                "say where the evidence is: --store PATH or --bundle DIR".into(),
            )),
            (Some(_), Some(_)) => Err(AuditError::Usage("use either --store or --bundle".into())),
        }
    }

    /// The evidence source.
    pub fn source(&self) -> EvidenceSource<'_> {
        match self {
            Opened::Store(s, _) => EvidenceSource::Store(s),
            Opened::Bundle(b) => EvidenceSource::Bundle(b),
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> AuditError {
    AuditError::Store(e.to_string())
}

/// Reads the `--key` files (each may hold several PEM public keys).
pub fn trusted_keys(files: &[PathBuf]) -> Result<VerifyOptions, AuditError> {
    let mut keys = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| AuditError::Usage(format!("--key {}: {e}", f.display())))?;
        let found = PublicKey::all_from_pem(&text)
            .map_err(|e| AuditError::Usage(format!("--key {}: {e}", f.display())))?;
        if found.is_empty() {
            return Err(AuditError::Usage(format!(
                "--key {}: no PUBLIC KEY block",
                f.display()
            )));
        }
        keys.extend(found);
    }
    Ok(VerifyOptions {
        trusted_keys: keys,
        until_seq: None,
    })
}

/// `search`.
pub fn run_search(
    out: &mut impl Write,
    opened: &Opened,
    query: &SearchQuery,
    json: bool,
) -> Result<(), AuditError> {
    let hits = search(opened.source(), query).map_err(store_err)?;
    if json {
        for h in &hits {
            serde_json::to_writer(&mut *out, h).map_err(|e| AuditError::Io(e.into()))?;
            writeln!(out)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:>7}  {:<27}  {:<36}  {:<12}  {:<10}  {:<16}  STATEMENT",
        "SEQ", "TIME", "SESSION", "SUBJECT", "TARGET", "DECISION"
    )?;
    for h in &hits {
        writeln!(
            out,
            "{:>7}  {:<27}  {:<36}  {:<12}  {:<10}  {:<16}  {}{}",
            h.seq,
            h.at.to_string(),
            h.session,
            h.subject.as_deref().unwrap_or("-"),
            h.target.as_deref().unwrap_or("-"),
            verdict(h),
            one_line(&h.statement),
            match &h.result {
                Some(r) => match &r.error {
                    Some(e) => format!("  [error: {e}]"),
                    None => format!("  [{}]", r.tag.as_deref().unwrap_or("ok")),
                },
                None => String::new(),
            }
        )?;
    }
    if hits.is_empty() {
        writeln!(out, "(no matching commands)")?;
    }
    Ok(())
}

fn verdict(h: &SearchHit) -> String {
    let v = match h.verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "DENY",
        Verdict::Review => "review",
    };
    format!("{v} ({})", h.rule)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn offset(start: Timestamp, at: Timestamp) -> String {
    let us = at.0.saturating_sub(start.0);
    let sign = if us < 0 { "-" } else { "+" };
    let us = us.unsigned_abs();
    format!("{sign}{}.{:06}s", us / 1_000_000, us % 1_000_000)
}

/// `replay SESSION`: the session as a timed transcript.
pub fn run_replay(
    out: &mut impl Write,
    opened: &Opened,
    session: SessionId,
    json: bool,
) -> Result<(), AuditError> {
    let src = opened.source();
    let records = src.session_records(session).map_err(store_err)?;
    let mut start: Option<Timestamp> = None;
    let mut any = false;
    for r in records {
        let r = r.map_err(store_err)?;
        any = true;
        let e = &r.event;
        let t0 = *start.get_or_insert(e.at);
        if json {
            let line = serde_json::json!({
                "offset_us": e.at.0.saturating_sub(t0.0),
                "seq": r.seq,
                "event": e,
            });
            writeln!(out, "{line}")?;
            continue;
        }
        let off = offset(t0, e.at);
        match &e.kind {
            EventKind::SessionOpened {
                identity,
                target,
                protocol,
                client_addr,
                details,
            } => {
                writeln!(out, "session {session}  opened {}", e.at)?;
                writeln!(
                    out,
                    "{off:>12}  {} -> {target} ({protocol:?}) from {} via {:?}{}",
                    identity.subject,
                    client_addr.as_deref().unwrap_or("-"),
                    identity.method,
                    details
                        .get("application_name")
                        .map(|a| format!(", application {a}"))
                        .unwrap_or_default()
                )?;
            }
            EventKind::SessionRefused {
                subject,
                side,
                reason,
                ..
            } => {
                writeln!(
                    out,
                    "{off:>12}  connection refused ({side}) for {}: {reason}",
                    subject.as_deref().unwrap_or("-")
                )?;
            }
            EventKind::Command {
                seq,
                command,
                decision,
            } => {
                let text = match command {
                    Command::Sql { text, .. } => text.clone(),
                    other => other.summary(),
                };
                let v = match decision.verdict {
                    Verdict::Allow => "allow".to_string(),
                    Verdict::Deny => format!("DENY: {}", decision.reason),
                    Verdict::Review => "review".to_string(),
                };
                writeln!(out, "{off:>12}  #{seq:<4} [{v} ({})]", decision.rule)?;
                for line in text.lines() {
                    writeln!(out, "{:>12}        {line}", "")?;
                }
            }
            EventKind::CommandResult {
                seq,
                duration_us,
                completion,
            } => {
                let mut parts = vec![completion.tag.clone().unwrap_or_else(|| "done".into())];
                parts.push(format!("{} rows", completion.rows_returned));
                if let Some(n) = completion.rows_affected {
                    parts.push(format!("{n} affected"));
                }
                parts.push(format!("{duration_us}µs"));
                let masked: u64 = completion.masked.values().sum();
                if masked > 0 {
                    parts.push(format!("{masked} values masked"));
                }
                if completion.skipped {
                    parts.push("skipped".into());
                }
                writeln!(out, "{off:>12}  #{seq:<4} -> {}", parts.join(", "))?;
                if let Some(err) = &completion.error {
                    writeln!(out, "{:>12}        error: {err}", "")?;
                }
            }
            EventKind::ApprovalRequested { request, rule, .. } => {
                writeln!(out, "{off:>12}  approval requested {request} (rule {rule})")?;
            }
            EventKind::ApprovalDecided {
                request,
                approver,
                approved,
                ..
            } => {
                let what = if *approved { "approved" } else { "rejected" };
                writeln!(out, "{off:>12}  {request} {what} by {approver}")?;
            }
            EventKind::SessionClosed { reason, commands } => {
                writeln!(
                    out,
                    "{off:>12}  session closed: {reason} ({commands} commands)"
                )?;
            }
            other => writeln!(out, "{off:>12}  {}", other.name())?,
        }
    }
    if !any {
        return Err(AuditError::Store(format!("no session {session}")));
    }
    Ok(())
}

/// `export`.
pub fn run_export(
    out: &mut impl Write,
    opened: &Opened,
    options: &ExportOptions,
    dir: &Path,
    signing_key: Option<PathBuf>,
) -> Result<(), AuditError> {
    let Opened::Store(store, path) = opened else {
        return Err(AuditError::Usage("export reads a --store".into()));
    };
    // The gateway's key, if reachable: lets the export end at a checkpoint it signs.
    let key_path = signing_key.or_else(|| {
        let p = path.join("signing-key.pem");
        p.exists().then_some(p)
    });
    let key = match key_path {
        Some(p) => Some(SigningKey::load(&p).map_err(store_err)?),
        None => None,
    };
    let m = export(store, key.as_ref(), options, dir).map_err(store_err)?;
    writeln!(
        out,
        "exported {} records (seq {}..={}, {} sessions) and {} checkpoints to {}",
        m.counts.events,
        m.first_seq,
        m.last_seq,
        m.counts.sessions,
        m.counts.checkpoints,
        dir.display()
    )?;
    if m.counts.events > 0 && m.signed_through < m.last_seq {
        writeln!(
            out,
            "note: records after seq {} are not covered by a checkpoint (no signing key)",
            m.signed_through
        )?;
    }
    if options.format == ExportFormat::Ocsf {
        writeln!(
            out,
            "OCSF events: {}",
            dir.join("events.ocsf.jsonl").display()
        )?;
    }
    Ok(())
}

/// `verify`: prints the result; `Ok(true)` when intact.
pub fn run_verify(
    out: &mut impl Write,
    opened: &Opened,
    options: &VerifyOptions,
    json: bool,
) -> Result<bool, AuditError> {
    let r = opened.source().verify(options).map_err(store_err)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &r).map_err(|e| AuditError::Io(e.into()))?;
        writeln!(out)?;
    } else {
        print_verify(out, &r)?;
    }
    Ok(r.is_intact())
}

fn print_verify(out: &mut impl Write, r: &EvidenceReport) -> Result<(), AuditError> {
    match &r.fault {
        None => writeln!(
            out,
            "OK: {} records verified (seq {}..={}), {} checkpoints, signed through seq {}",
            r.records,
            r.anchor.seq.saturating_add(1),
            r.head.seq,
            r.checkpoints,
            r.signed_through
        )?,
        Some(f) => writeln!(out, "FAULT: {f}")?,
    }
    writeln!(out, "chain: {}", r.chain.as_deref().unwrap_or("-"))?;
    writeln!(out, "start: {:?} at seq {}", r.anchor_kind, r.anchor.seq)?;
    writeln!(
        out,
        "keys: {} ({:?})",
        if r.keys_used.is_empty() {
            "none".to_string()
        } else {
            r.keys_used.join(", ")
        },
        r.key_source
    )?;
    for w in &r.warnings {
        writeln!(out, "note: {w}")?;
    }
    Ok(())
}

/// `report`.
pub fn run_report(
    out: &mut impl Write,
    opened: &Opened,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    options: &VerifyOptions,
    json: bool,
) -> Result<(), AuditError> {
    let r = report(opened.source(), since, until, options).map_err(store_err)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &r).map_err(|e| AuditError::Io(e.into()))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", r.to_markdown())?;
    }
    Ok(())
}
