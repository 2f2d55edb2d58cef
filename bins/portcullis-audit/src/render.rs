//! Tables and JSON output.

use std::collections::HashMap;
use std::io::Write;

use portcullis_core::{Command, Decision, Event, EventKind, Protocol, Verdict};
use portcullis_recording::{SessionOutcome, SessionSummary};
use serde::Serialize;

use portcullis_core::SessionId;

use crate::source::{AuditError, RecordLine, Source};

/// Any serializable value as pretty JSON.
pub fn json<T: Serialize>(out: &mut impl Write, value: &T) -> Result<(), AuditError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| AuditError::Io(e.into()))?;
    writeln!(out)?;
    Ok(())
}

/// Records as JSON lines.
pub fn json_line(out: &mut impl Write, record: &RecordLine) -> Result<(), AuditError> {
    serde_json::to_writer(&mut *out, record).map_err(|e| AuditError::Io(e.into()))?;
    writeln!(out)?;
    Ok(())
}

fn outcome(s: &SessionSummary) -> String {
    match &s.outcome {
        SessionOutcome::Open => "open".into(),
        SessionOutcome::Closed { reason } => format!("closed: {reason}"),
        SessionOutcome::Refused { side, reason } => format!("refused ({side}): {reason}"),
    }
}

/// The session list as a table.
pub fn sessions(out: &mut impl Write, list: &[SessionSummary]) -> Result<(), AuditError> {
    writeln!(
        out,
        "{:<36}  {:<27}  {:<16}  {:<12}  {:>5}  {:>6}  OUTCOME",
        "SESSION", "OPENED", "SUBJECT", "TARGET", "CMDS", "DENIED"
    )?;
    for s in list {
        writeln!(
            out,
            "{:<36}  {:<27}  {:<16}  {:<12}  {:>5}  {:>6}  {}",
            s.id,
            s.opened_at.to_string(),
            s.subject.as_deref().unwrap_or("-"),
            s.target.as_deref().unwrap_or("-"),
            s.commands,
            s.denied,
            outcome(s)
        )?;
    }
    if list.is_empty() {
        writeln!(out, "(no sessions)")?;
    }
    Ok(())
}

/// Sessions of a shared store, each with the chain (gateway) that recorded it.
pub fn sessions_by_chain(
    out: &mut impl Write,
    list: &[(String, SessionSummary)],
) -> Result<(), AuditError> {
    writeln!(
        out,
        "{:<16}  {:<36}  {:<27}  {:<16}  {:<12}  {:>5}  {:>6}  OUTCOME",
        "GATEWAY", "SESSION", "OPENED", "SUBJECT", "TARGET", "CMDS", "DENIED"
    )?;
    for (chain, s) in list {
        writeln!(
            out,
            "{chain:<16}  {:<36}  {:<27}  {:<16}  {:<12}  {:>5}  {:>6}  {}",
            s.id,
            s.opened_at.to_string(),
            s.subject.as_deref().unwrap_or("-"),
            s.target.as_deref().unwrap_or("-"),
            s.commands,
            s.denied,
            outcome(s)
        )?;
    }
    if list.is_empty() {
        writeln!(out, "(no sessions)")?;
    }
    Ok(())
}

/// Session summaries as JSON objects with an added `chain` field.
pub fn with_chain(list: &[(String, SessionSummary)]) -> Result<Vec<serde_json::Value>, AuditError> {
    list.iter()
        .map(|(chain, s)| {
            let mut v = serde_json::to_value(s).map_err(|e| AuditError::Io(e.into()))?;
            if let Some(map) = v.as_object_mut() {
                map.insert("chain".into(), serde_json::Value::String(chain.clone()));
            }
            Ok(v)
        })
        .collect()
}

fn shorten(text: &str, full: bool) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if full || one_line.chars().count() <= 80 {
        return one_line;
    }
    let cut: String = one_line.chars().take(77).collect();
    format!("{cut}...")
}

fn decision_text(d: &Decision) -> String {
    let verdict = match d.verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "DENY",
        Verdict::Review => "review",
    };
    format!("{verdict} ({})", d.rule)
}

/// A command waiting for its result line.
struct Pending {
    at: String,
    decision: String,
    text: String,
    /// HTTP: the request's recorded details, printed under the row with `--full`.
    details: String,
}

/// `key: value` lines under a row, for recorded request and response details.
fn detail_lines(details: &std::collections::BTreeMap<String, String>) -> String {
    details
        .iter()
        .map(|(k, v)| format!("\n{:>7}{k}: {v}", ""))
        .collect()
}

fn write_row(
    out: &mut impl Write,
    seq: u64,
    p: &Pending,
    duration: &str,
    rows: &str,
    note: &str,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{seq:>5}  {:<27}  {:<28}  {duration:>10}  {rows:>7}  {}{note}",
        p.at, p.decision, p.text
    )
}

/// One session: header, then its statements in order with decision and timing.
/// Records are rendered as they stream in; only commands awaiting their result are held.
pub async fn show(
    out: &mut impl Write,
    summary: &SessionSummary,
    source: &Source,
    session: SessionId,
    full: bool,
) -> Result<(), AuditError> {
    let mut shown = Shown {
        summary,
        full,
        pending: HashMap::new(),
        header_done: false,
    };
    source
        .records(session, |r| {
            // A command recorded with its result reads as the command, then the result.
            let (event, result) = r.event.split_result();
            show_event(out, &mut shown, event)?;
            if let Some(result) = result {
                show_event(out, &mut shown, result)?;
            }
            Ok(())
        })
        .await?;
    // Commands whose results are not recorded (yet): the session is open or was cut short.
    let mut left: Vec<_> = shown.pending.drain().collect();
    left.sort_by_key(|(seq, _)| *seq);
    for (seq, p) in left {
        write_row(out, seq, &p, "?", "?", "  (no result recorded)")?;
    }
    Ok(())
}

/// What `show` keeps between the events of a session.
struct Shown<'a> {
    summary: &'a SessionSummary,
    full: bool,
    /// Allowed commands waiting for their results, by command seq.
    pending: HashMap<u64, Pending>,
    header_done: bool,
}

/// The lines `show` writes for one event.
fn show_event(out: &mut impl Write, shown: &mut Shown<'_>, event: Event) -> Result<(), AuditError> {
    let at = event.at.to_string();
    match event.kind {
        EventKind::SessionOpened {
            identity,
            target,
            protocol,
            client_addr,
            details,
        } => {
            writeln!(
                out,
                "session {}\n  identity  {} (via {:?}, groups: {})\n  target    {} ({:?})\n  client    {}\n  opened    {at}",
                shown.summary.id,
                identity.subject,
                identity.method,
                identity.groups.join(", "),
                target,
                protocol,
                client_addr.unwrap_or_else(|| "-".into()),
            )?;
            for (k, v) in details {
                writeln!(out, "  {k}: {v}")?;
            }
        }
        EventKind::SessionRefused {
            subject,
            target,
            side,
            reason,
            ..
        } => {
            writeln!(
                out,
                "connection refused at {at}\n  subject   {}\n  target    {}\n  side      {side}\n  reason    {reason}",
                subject.unwrap_or_else(|| "-".into()),
                target.unwrap_or_else(|| "-".into())
            )?;
        }
        EventKind::Command {
            seq,
            command,
            decision,
            ..
        } => {
            if !shown.header_done {
                writeln!(
                    out,
                    "\n{:>5}  {:<27}  {:<28}  {:>10}  {:>7}  STATEMENT",
                    "#", "TIME", "DECISION", "DURATION", "ROWS"
                )?;
                shown.header_done = true;
            }
            let text = match &command {
                Command::Sql { text, .. } => shorten(text, shown.full),
                other => shorten(&other.summary(), shown.full),
            };
            let details = match &command {
                Command::Http { details, .. } if shown.full => detail_lines(details),
                _ => String::new(),
            };
            let p = Pending {
                at,
                decision: decision_text(&decision),
                text,
                details,
            };
            if decision.allows() {
                shown.pending.insert(seq, p);
            } else {
                let note = format!("{}\n{:>7}refused: {}", p.details, "", decision.reason);
                write_row(out, seq, &p, "-", "-", &note)?;
            }
        }
        EventKind::CommandResult {
            seq,
            duration_us,
            completion,
        } => {
            if let Some(p) = shown.pending.remove(&seq) {
                // HTTP results carry their status as the tag and no rows.
                let rows = match &completion.tag {
                    Some(tag) if shown.summary.protocol == Some(Protocol::Http) => tag.clone(),
                    _ => completion
                        .rows_affected
                        .unwrap_or(completion.rows_returned)
                        .to_string(),
                };
                let mut note = p.details.clone();
                if shown.full {
                    note.push_str(&detail_lines(&completion.details));
                }
                if let Some(e) = &completion.error {
                    note.push_str(&format!("\n{:>7}error: {e}", ""));
                }
                write_row(out, seq, &p, &format!("{duration_us}µs"), &rows, &note)?;
            }
        }
        EventKind::FileOperation {
            seq,
            protocol,
            op,
            path,
            to,
            direction,
            bytes,
            size,
            error,
        } => {
            let mut line = format!("{:>7}{at}  {protocol} {op} {path}", format!("#{seq} "));
            if let Some(to) = to {
                line.push_str(&format!(" -> {to}"));
            }
            line.push_str(&format!(" ({bytes} bytes"));
            if let Some(d) = direction {
                line.push_str(&format!(", {d}"));
            }
            if let Some(n) = size {
                line.push_str(&format!(", announced {n}"));
            }
            line.push(')');
            if let Some(e) = error {
                line.push_str(&format!(" error: {e}"));
            }
            writeln!(out, "{line}")?;
        }
        EventKind::SessionClosed { reason, commands } => {
            let mut left: Vec<_> = shown.pending.drain().collect();
            left.sort_by_key(|(seq, _)| *seq);
            for (seq, p) in left {
                write_row(out, seq, &p, "?", "?", "  (no result recorded)")?;
            }
            writeln!(out, "\nclosed    {at}: {reason} ({commands} commands)")?;
        }
        _ => {}
    }
    Ok(())
}
