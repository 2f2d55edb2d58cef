//! The evidence commands: search, replay, export, verify, report. They read a
//! stopped gateway's store (`--store PATH`), a shared PostgreSQL store
//! (`--store postgres://…`: every chain one by one, or `--chain NAME`) or an
//! exported bundle (`--bundle`).

use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_core::{Command, EventKind, Protocol, SessionId, Timestamp, Verdict};
use portcullis_recording::evidence::EvidenceSource;
use portcullis_recording::search::{SearchHit, SearchQuery, search};
use portcullis_recording::{
    Bundle, EventStore, EvidenceReport, ExportFormat, ExportOptions, PgStore, PublicKey,
    SigningKey, SledStore, VerifyOptions, export, report,
};

use crate::casts;
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

/// Where terminal recordings are read and written for `replay`.
#[derive(Debug, Default)]
pub struct CastOptions {
    /// The directory holding the cast files (`--recordings`).
    pub recordings: Option<PathBuf>,
    /// Write the session's terminal recording here (`--cast`; `-` is stdout).
    pub cast: Option<PathBuf>,
    /// Write every terminal recording of the session into this directory (`--cast-dir`).
    pub cast_dir: Option<PathBuf>,
    /// Which command's recording `--cast` writes (`--command`).
    pub command: Option<u64>,
}

/// The recordings directory: the one given, or the `casts/` directory of a bundle.
pub fn recordings_dir(opened: &Opened, given: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = given {
        return Some(dir.to_path_buf());
    }
    match opened {
        Opened::Bundle(b) => {
            let dir = b.dir().join(casts::BUNDLE_CASTS_DIR);
            dir.is_dir().then_some(dir)
        }
        Opened::Store(..) | Opened::Shared(_) => None,
    }
}

/// `replay SESSION`: the session as a timed transcript. Terminal recordings the record
/// pins are checked against their SHA-256 when the recordings directory is known, and
/// written out on request; a mismatch is an error.
pub fn run_replay(
    out: &mut dyn Write,
    opened: &Opened,
    session: SessionId,
    json: bool,
    cast_options: &CastOptions,
) -> Result<(), AuditError> {
    let src = opened.source();
    let records = src.session_records(session).map_err(store_err)?;
    let recordings = recordings_dir(opened, cast_options.recordings.as_deref());
    if (cast_options.cast.is_some() || cast_options.cast_dir.is_some()) && recordings.is_none() {
        return Err(AuditError::Usage(
            "--cast and --cast-dir read the cast files: give --recordings DIR (the gateway's [ssh.settings] recordings_dir)".into(),
        ));
    }
    let mut start: Option<Timestamp> = None;
    let mut any = false;
    let mut ssh = false;
    let mut pins: Vec<casts::CastPin> = Vec::new();
    let mut first_fault: Option<AuditError> = None;
    for r in records {
        let r = r.map_err(store_err)?;
        any = true;
        let pin = casts::pin_of(&r);
        let checked = match (&pin, &recordings) {
            (Some(p), Some(dir)) => Some(casts::check(dir, p)),
            _ => None,
        };
        let e = &r.event;
        let t0 = *start.get_or_insert(e.at);
        if json {
            let mut line = serde_json::json!({
                "offset_us": e.at.0.saturating_sub(t0.0),
                "seq": r.seq,
                "event": e,
            });
            if let Some(c) = &checked {
                line["cast_verified"] = serde_json::Value::Bool(c.is_ok());
            }
            writeln!(out, "{line}")?;
        } else {
            // A command recorded with its result reads as the command, then the result.
            let (event, result) = e.clone().split_result();
            replay_line(out, session, t0, &event, &mut ssh)?;
            if let Some(result) = &result {
                replay_line(out, session, t0, result, &mut ssh)?;
            }
            if let Some(p) = &pin {
                let status = match &checked {
                    Some(Ok(bytes)) => format!("matches the record ({bytes} bytes)"),
                    Some(Err(e)) => format!("FAULT: {e}"),
                    None => "not checked (give --recordings DIR)".into(),
                };
                writeln!(
                    out,
                    "{:>12}        terminal recording {} sha256 {}: {status}",
                    "", p.name, p.sha256
                )?;
            }
        }
        if let Some(Err(e)) = checked
            && first_fault.is_none()
        {
            first_fault = Some(e);
        }
        if let Some(p) = pin {
            pins.push(p);
        }
    }
    if !any {
        return Err(AuditError::Store(format!("no session {session}")));
    }
    if let Some(e) = first_fault {
        return Err(e);
    }
    let Some(dir) = recordings else {
        return Ok(());
    };
    if let Some(cast_dir) = &cast_options.cast_dir {
        std::fs::create_dir_all(cast_dir)?;
        for p in &pins {
            casts::copy_checked(&dir, p, &cast_dir.join(&p.name))?;
        }
        eprintln!(
            "wrote {} terminal recording(s) to {}",
            pins.len(),
            cast_dir.display()
        );
    }
    if let Some(target) = &cast_options.cast {
        let pin = choose_pin(&pins, cast_options.command)?;
        if target.as_os_str() == "-" {
            casts::write_checked(&dir, pin, std::io::stdout().lock())?;
        } else {
            casts::copy_checked(&dir, pin, target)?;
            eprintln!("wrote {} to {}", pin.name, target.display());
        }
    }
    Ok(())
}

fn choose_pin(
    pins: &[casts::CastPin],
    command: Option<u64>,
) -> Result<&casts::CastPin, AuditError> {
    if let Some(seq) = command {
        return pins
            .iter()
            .find(|p| p.command == seq)
            .ok_or_else(|| AuditError::Usage(format!("command #{seq} has no terminal recording")));
    }
    match pins {
        [] => Err(AuditError::Usage(
            "the session has no terminal recording (only PTY channels are recorded)".into(),
        )),
        [one] => Ok(one),
        many => Err(AuditError::Usage(format!(
            "the session has {} terminal recordings (commands {}): choose one with --command SEQ, or use --cast-dir DIR",
            many.len(),
            many.iter()
                .map(|p| format!("#{}", p.command))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One transcript line (or a few) for an event.
fn replay_line(
    out: &mut dyn Write,
    session: SessionId,
    t0: Timestamp,
    e: &portcullis_core::Event,
    ssh: &mut bool,
) -> Result<(), AuditError> {
    let off = offset(t0, e.at);
    match &e.kind {
        EventKind::SessionOpened {
            identity,
            target,
            protocol,
            client_addr,
            details,
        } => {
            *ssh = *protocol == Protocol::Ssh;
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
            if *ssh {
                for key in ["login", "upstream_user", "client_version"] {
                    if let Some(v) = details.get(key) {
                        writeln!(out, "{:>12}        {key}: {v}", "")?;
                    }
                }
            }
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
            ..
        } => {
            let text = match command {
                Command::Sql { text, .. } => text.clone(),
                Command::Exec { command } => format!("exec: {command}"),
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
            let tag = completion.tag.as_deref().unwrap_or("done");
            let mut parts = if *ssh {
                let (exit, _) = casts::split_tag(tag);
                vec![exit.to_string(), format!("{} bytes out", completion.bytes)]
            } else {
                vec![
                    tag.to_string(),
                    format!("{} rows", completion.rows_returned),
                ]
            };
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
    Ok(())
}

/// `export`.
pub fn run_export(
    out: &mut impl Write,
    opened: &Opened,
    options: &ExportOptions,
    dir: &Path,
    signing_key: Option<PathBuf>,
    recordings: Option<&Path>,
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
                    export_one(out, reader, None, options, &sub, recordings)?;
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
    export_one(out, store, key.as_ref(), options, dir, recordings)
}

fn export_one(
    out: &mut impl Write,
    store: &dyn EventStore,
    key: Option<&SigningKey>,
    options: &ExportOptions,
    dir: &Path,
    recordings: Option<&Path>,
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
    export_casts(out, dir, recordings)
}

/// Copies the terminal recordings pinned by the exported records into the bundle's
/// `casts/` directory, each checked against its pin, and lists them in `casts.json`.
fn export_casts(
    out: &mut impl Write,
    dir: &Path,
    recordings: Option<&Path>,
) -> Result<(), AuditError> {
    let bundle = Bundle::open(dir).map_err(store_err)?;
    let mut listed = Vec::new();
    let mut pinned = 0usize;
    for r in bundle.records().map_err(store_err)? {
        let Some(pin) = casts::pin_of(&r.map_err(store_err)?) else {
            continue;
        };
        pinned += 1;
        let Some(from) = recordings else { continue };
        let to = dir.join(casts::BUNDLE_CASTS_DIR);
        std::fs::create_dir_all(&to)?;
        let bytes = casts::copy_checked(from, &pin, &to.join(&pin.name))?;
        listed.push(casts::BundledCast { pin, bytes });
    }
    if recordings.is_none() {
        if pinned > 0 {
            writeln!(
                out,
                "note: {pinned} terminal recording(s) are pinned by these records but not included (give --recordings DIR)"
            )?;
        }
        return Ok(());
    }
    let list = serde_json::to_vec_pretty(&listed).map_err(|e| AuditError::Io(e.into()))?;
    std::fs::write(dir.join(casts::BUNDLE_CASTS_LIST), list)?;
    writeln!(
        out,
        "terminal recordings: {} checked against the record and copied to {}",
        listed.len(),
        dir.join(casts::BUNDLE_CASTS_DIR).display()
    )?;
    Ok(())
}

/// Checks every terminal recording the records pin against the files in `dir`.
/// Returns the number checked and the first fault.
fn verify_casts(opened: &Opened, dir: &Path) -> Result<(usize, Option<AuditError>), AuditError> {
    let mut checked = 0usize;
    for r in opened.source().records().map_err(store_err)? {
        let Some(pin) = casts::pin_of(&r.map_err(store_err)?) else {
            continue;
        };
        if let Err(e) = casts::check(dir, &pin) {
            return Ok((checked, Some(e)));
        }
        checked += 1;
    }
    Ok((checked, None))
}

/// `verify`: prints the result; `Ok(true)` when intact.
pub fn run_verify(
    out: &mut impl Write,
    opened: &Opened,
    options: &VerifyOptions,
    json: bool,
    recordings: Option<&Path>,
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
    if !r.is_intact() {
        return Ok(false);
    }
    // Terminal recordings: the records pin them; the files must still match.
    let Some(dir) = recordings_dir(opened, recordings) else {
        return Ok(true);
    };
    let (checked, fault) = verify_casts(opened, &dir)?;
    match fault {
        Some(e) => {
            if json {
                eprintln!("FAULT: {e}");
            } else {
                writeln!(out, "FAULT: {e}")?;
            }
            Ok(false)
        }
        None => {
            if !json {
                writeln!(
                    out,
                    "terminal recordings: {checked} match their SHA-256 in the record ({})",
                    dir.display()
                )?;
            }
            Ok(true)
        }
    }
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
