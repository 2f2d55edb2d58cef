//! The evidence commands: search, replay, export, verify, report. They read a
//! stopped gateway's store (`--store PATH`), a shared PostgreSQL store
//! (`--store postgres://…`: every chain one by one, or `--chain NAME`) or an
//! exported bundle (`--bundle`).

use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_core::{Command, EventKind, SessionId, Timestamp, Verdict};
use portcullis_recording::evidence::EvidenceSource;
use portcullis_recording::search::{SearchHit, SearchQuery, search};
use portcullis_recording::{
    Bundle, EventStore, EvidenceReport, ExportFormat, ExportOptions, PgStore, PublicKey,
    SigningKey, SledStore, VerifyOptions, export, report,
};

use crate::source::{AuditError, StoreArg, open_shared, open_sled};

/// A store or a bundle, opened.
pub enum Opened {
    /// A stopped gateway's store.
    Store(SledStore, PathBuf),
    /// A shared PostgreSQL store: one chain (`--chain`) or every chain.
    Shared(Box<PgStore>),
    /// An exported bundle.
    Bundle(Bundle),
}

impl Opened {
    /// Opens what the command line names.
    pub fn new(
        gateway: bool,
        store: Option<StoreArg>,
        chain: Option<&str>,
        bundle: Option<PathBuf>,
    ) -> Result<Self, AuditError> {
        if gateway {
            return Err(AuditError::Usage(
                "this command reads --store PATH or --bundle DIR; it is not available over --gateway yet".into(),
            ));
        }
        match (store, bundle) {
            (Some(StoreArg::Sled(path)), None) => {
                let s = open_sled(&path)?;
                Ok(Opened::Store(s, path))
            }
            (Some(StoreArg::Postgres(url)), None) => {
                Ok(Opened::Shared(Box::new(open_shared(&url, chain)?)))
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

    /// The evidence source (for a shared store: its handle, over one chain or all).
    pub fn source(&self) -> EvidenceSource<'_> {
        match self {
            Opened::Store(s, _) => EvidenceSource::Store(s),
            Opened::Shared(s) => EvidenceSource::Store(s.as_ref()),
            Opened::Bundle(b) => EvidenceSource::Bundle(b),
        }
    }

    /// The chains to go through one by one: `None` unless this is a shared store
    /// opened over every chain; then a reader of each chain, by name.
    pub fn chains(&self) -> Result<Option<Vec<(String, PgStore)>>, AuditError> {
        let Opened::Shared(pg) = self else {
            return Ok(None);
        };
        if pg.chain_name().is_some() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for c in pg.chains().map_err(store_err)? {
            let reader = pg.chain(&c.name).map_err(store_err)?;
            out.push((c.name, reader));
        }
        Ok(Some(out))
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
    // Hits with the chain (gateway) they come from, for a shared store.
    let hits: Vec<(Option<String>, SearchHit)> = match opened.chains()? {
        None => {
            let chain = match opened {
                Opened::Shared(pg) => pg.chain_name().map(str::to_owned),
                _ => None,
            };
            search(opened.source(), query)
                .map_err(store_err)?
                .into_iter()
                .map(|h| (chain.clone(), h))
                .collect()
        }
        Some(chains) => {
            let mut all = Vec::new();
            for (name, reader) in &chains {
                for h in search(EvidenceSource::Store(reader), query).map_err(store_err)? {
                    all.push((Some(name.clone()), h));
                }
            }
            all.sort_by(|a, b| (a.1.at, &a.0, a.1.seq).cmp(&(b.1.at, &b.0, b.1.seq)));
            all.truncate(query.limit);
            all
        }
    };
    if json {
        for (chain, h) in &hits {
            let mut v = serde_json::to_value(h).map_err(|e| AuditError::Io(e.into()))?;
            if let (Some(c), Some(map)) = (chain, v.as_object_mut()) {
                map.insert("chain".into(), serde_json::Value::String(c.clone()));
            }
            serde_json::to_writer(&mut *out, &v).map_err(|e| AuditError::Io(e.into()))?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let shared = matches!(opened, Opened::Shared(_));
    if shared {
        write!(out, "{:<16}  ", "GATEWAY")?;
    }
    writeln!(
        out,
        "{:>7}  {:<27}  {:<36}  {:<12}  {:<10}  {:<16}  STATEMENT",
        "SEQ", "TIME", "SESSION", "SUBJECT", "TARGET", "DECISION"
    )?;
    for (chain, h) in &hits {
        if shared {
            write!(out, "{:<16}  ", chain.as_deref().unwrap_or("-"))?;
        }
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
    let (store, key_path): (&dyn EventStore, Option<PathBuf>) = match opened {
        Opened::Store(store, path) => {
            // The gateway's key, if reachable: lets the export end at a checkpoint it signs.
            let key_path = signing_key.or_else(|| {
                let p = path.join("signing-key.pem");
                p.exists().then_some(p)
            });
            (store, key_path)
        }
        Opened::Shared(pg) => match opened.chains()? {
            None => (pg.as_ref(), signing_key),
            Some(chains) => {
                if signing_key.is_some() {
                    return Err(AuditError::Usage(
                        "--signing-key signs one gateway's chain: add --chain NAME".into(),
                    ));
                }
                for (name, reader) in &chains {
                    let sub = dir.join(name);
                    write!(out, "{name}: ")?;
                    export_one(out, reader, None, options, &sub)?;
                }
                if chains.is_empty() {
                    writeln!(out, "(the store has no chains)")?;
                }
                return Ok(());
            }
        },
        Opened::Bundle(_) => return Err(AuditError::Usage("export reads a --store".into())),
    };
    let key = match key_path {
        Some(p) => Some(SigningKey::load(&p).map_err(store_err)?),
        None => None,
    };
    export_one(out, store, key.as_ref(), options, dir)
}

fn export_one(
    out: &mut impl Write,
    store: &dyn EventStore,
    key: Option<&SigningKey>,
    options: &ExportOptions,
    dir: &Path,
) -> Result<(), AuditError> {
    let m = export(store, key, options, dir).map_err(store_err)?;
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
    if let Some(chains) = opened.chains()? {
        // Every gateway's chain on its own; intact only if all are.
        let mut reports = serde_json::Map::new();
        let mut faulty: Vec<&str> = Vec::new();
        for (name, reader) in &chains {
            let r = EvidenceSource::Store(reader)
                .verify(options)
                .map_err(store_err)?;
            if !r.is_intact() {
                faulty.push(name);
            }
            if json {
                let v = serde_json::to_value(&r).map_err(|e| AuditError::Io(e.into()))?;
                reports.insert(name.clone(), v);
            } else {
                writeln!(out, "== chain {name}")?;
                print_verify(out, &r)?;
            }
        }
        if json {
            serde_json::to_writer_pretty(&mut *out, &reports)
                .map_err(|e| AuditError::Io(e.into()))?;
            writeln!(out)?;
        } else if chains.is_empty() {
            writeln!(out, "(the store has no chains)")?;
        } else if faulty.is_empty() {
            writeln!(out, "OK: all {} chains verified", chains.len())?;
        } else {
            writeln!(
                out,
                "FAULT in {} of {} chains: {}",
                faulty.len(),
                chains.len(),
                faulty.join(", ")
            )?;
        }
        return Ok(faulty.is_empty());
    }
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
    if let Some(chains) = opened.chains()? {
        let mut reports = serde_json::Map::new();
        for (name, reader) in &chains {
            let r =
                report(EvidenceSource::Store(reader), since, until, options).map_err(store_err)?;
            if json {
                let v = serde_json::to_value(&r).map_err(|e| AuditError::Io(e.into()))?;
                reports.insert(name.clone(), v);
            } else {
                writeln!(out, "# Chain {name}\n")?;
                write!(out, "{}", r.to_markdown())?;
                writeln!(out)?;
            }
        }
        if json {
            serde_json::to_writer_pretty(&mut *out, &reports)
                .map_err(|e| AuditError::Io(e.into()))?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let r = report(opened.source(), since, until, options).map_err(store_err)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &r).map_err(|e| AuditError::Io(e.into()))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", r.to_markdown())?;
    }
    Ok(())
}
