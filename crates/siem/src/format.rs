//! Records to exported lines, in the Portcullis or the OCSF format.
//!
//! Every line carries the global sequence of the record that produced it, which
//! the cursor counts in. A Portcullis line is the record's export line
//! ([`StoredEvent::to_json_line`]), one per record. OCSF pairs a command with
//! its result, so the object of an allowed command is produced by its result's
//! record; the formatter reports the oldest command still waiting
//! ([`Formatter::replay_from`]) so that a restarted sink can rebuild that state by
//! re-reading (not re-sending) the records from there.

use portcullis_core::{EventKind, SessionId, Timestamp, Verdict};
use portcullis_recording::ocsf::OcsfMapper;
use portcullis_recording::{EventStore, StoredEvent};

use crate::{Format, Result};

/// A command whose result has not arrived after this many records is exported
/// without its result, so one lost result cannot hold the replay point forever.
pub const OCSF_PENDING_LIMIT: u64 = 100_000;

/// Syslog severity of an ordinary event (informational).
pub(crate) const SEVERITY_INFO: u8 = 6;
/// Syslog severity of a refused connection or a denied command (warning).
pub(crate) const SEVERITY_WARNING: u8 = 4;

/// One exported line (one JSON object, no newline) and what syslog needs to frame it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Global sequence of the record that produced the line.
    pub seq: u64,
    /// Time of that record's event.
    pub at: Timestamp,
    /// Session of that record's event.
    pub session: SessionId,
    /// Short ASCII name: the event type, or `ocsf-<class_uid>`.
    pub msgid: String,
    /// Syslog severity (0..=7).
    pub severity: u8,
    /// The JSON object.
    pub json: String,
}

/// Turns records into lines; keeps the OCSF state between batches.
#[derive(Debug)]
pub struct Formatter {
    format: Format,
    mapper: OcsfMapper,
}

fn severity(r: &StoredEvent) -> u8 {
    match &r.event.kind {
        EventKind::SessionRefused { .. } => SEVERITY_WARNING,
        EventKind::Command { decision, .. } if decision.verdict == Verdict::Deny => {
            SEVERITY_WARNING
        }
        _ => SEVERITY_INFO,
    }
}

impl Formatter {
    /// A formatter with no state.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            mapper: OcsfMapper::new(),
        }
    }

    /// The lines of `records` (consecutive, in chain order) whose record is after
    /// `delivered`; records up to `delivered` only rebuild state. `store` supplies
    /// the context of sessions that opened before the records read.
    pub fn feed(
        &mut self,
        store: &dyn EventStore,
        records: &[StoredEvent],
        delivered: u64,
    ) -> Result<Vec<Line>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let line = |json: String, msgid: String| Line {
                seq: r.seq,
                at: r.event.at,
                session: r.event.session,
                msgid,
                severity: severity(r),
                json,
            };
            match self.format {
                Format::Portcullis => {
                    if r.seq > delivered {
                        out.push(line(r.to_json_line(), r.event.kind.name().to_string()));
                    }
                }
                Format::Ocsf => {
                    let sid = r.event.session;
                    if !self.mapper.knows(sid)
                        && !matches!(r.event.kind, EventKind::SessionOpened { .. })
                        && let Some(summary) = store.session(sid)?
                    {
                        self.mapper.learn(&summary);
                    }
                    let mut objects = self.mapper.map(r);
                    if matches!(r.event.kind, EventKind::SessionClosed { .. }) {
                        self.mapper.forget(sid);
                    }
                    if r.seq % 256 == 0 && r.seq > OCSF_PENDING_LIMIT {
                        objects.extend(self.mapper.take_pending_before(r.seq - OCSF_PENDING_LIMIT));
                    }
                    if r.seq > delivered {
                        for v in objects {
                            let class = v.get("class_uid").and_then(|c| c.as_u64()).unwrap_or(0);
                            out.push(line(v.to_string(), format!("ocsf-{class}")));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where a restarted sink must start reading to rebuild this formatter's state,
    /// given that everything through `delivered` was delivered.
    pub fn replay_from(&self, delivered: u64) -> u64 {
        let next = delivered.saturating_add(1);
        match self.format {
            Format::Portcullis => next,
            Format::Ocsf => self.mapper.oldest_pending().map_or(next, |s| s.min(next)),
        }
    }
}
