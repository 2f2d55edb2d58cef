//! The NIST SP 800-53 evidence report: what the record shows, control by control.
//!
//! [`report`] reads the records of a time range from a store or a bundle,
//! verifies the evidence, and lists per control (AU-2, AU-3, AU-6, AU-9, AU-10,
//! AU-12, AC-2, AC-3, AC-5, AC-6, IA-2, IA-5) the facts found. The report states
//! evidence; it does not decide compliance.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use portcullis_core::{EventKind, SessionId, Timestamp, Verdict};
use serde::{Deserialize, Serialize};

use crate::evidence::EvidenceSource;
use crate::{EvidenceReport, Result, VerifyOptions};

/// Denied commands listed individually (the counts cover all).
const MAX_LISTED: usize = 50;

/// One denied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedCommand {
    /// Record `seq`.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Session.
    pub session: SessionId,
    /// Who.
    pub subject: Option<String>,
    /// Deciding rule.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// The (masked) statement.
    pub statement: String,
}

/// One approval request and who decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalEvidence {
    /// Request id.
    pub request: String,
    /// Who asked (the session's subject).
    pub requester: Option<String>,
    /// Rule that asked for review.
    pub rule: Option<String>,
    /// Approver groups.
    pub approver_groups: Vec<String>,
    /// (approver, approved) in order.
    pub decisions: Vec<(String, bool)>,
    /// Final outcome, if recorded.
    pub outcome: Option<String>,
    /// Whether the requester decided their own request (a separation-of-duties breach).
    pub self_decided: bool,
}

/// Counts found in the range.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Records in the range.
    pub records: u64,
    /// First and last `seq` in the range.
    pub seq_range: Option<(u64, u64)>,
    /// Records by event type (a `command` record holding its result counts as `command`;
    /// [`Stats::results`] counts results in either form).
    pub events_by_type: BTreeMap<String, u64>,
    /// Sessions opened.
    pub sessions_opened: u64,
    /// Sessions closed.
    pub sessions_closed: u64,
    /// Sessions by target.
    pub sessions_by_target: BTreeMap<String, u64>,
    /// Sessions by subject.
    pub identities: BTreeMap<String, u64>,
    /// Sessions by authentication method.
    pub auth_methods: BTreeMap<String, u64>,
    /// Sessions by credential issuer.
    pub issuers: BTreeMap<String, u64>,
    /// Sessions whose credential carried an expiry.
    pub credentials_expiring: u64,
    /// Sessions whose credential carried no expiry (API keys, long-lived keys).
    pub credentials_not_expiring: u64,
    /// Refused connections by side.
    pub refused_by_side: BTreeMap<String, u64>,
    /// Refused connections by reason.
    pub refused_reasons: BTreeMap<String, u64>,
    /// Commands by verdict.
    pub commands_by_decision: BTreeMap<String, u64>,
    /// Denied commands by rule.
    pub denied_by_rule: BTreeMap<String, u64>,
    /// The first denied commands.
    pub denied: Vec<DeniedCommand>,
    /// Commands allowed through an approval or a grant.
    pub approved_commands: u64,
    /// Command results recorded.
    pub results: u64,
    /// Results with an error.
    pub failed_results: u64,
    /// Values masked, by detector.
    pub masked: BTreeMap<String, u64>,
    /// Approval requests.
    pub approvals: Vec<ApprovalEvidence>,
    /// Grants issued.
    pub grants_issued: u64,
    /// Session-only grants.
    pub grants_session_only: u64,
    /// Grants ended, by reason.
    pub grants_ended: BTreeMap<String, u64>,
}

/// Evidence for one control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Control id (`AU-9`).
    pub id: String,
    /// Control title.
    pub title: String,
    /// The facts found.
    pub findings: Vec<String>,
    /// Whether the record shows a problem for this control (tampering, self-approval).
    pub attention: bool,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always `nist-800-53`.
    pub framework: String,
    /// When it was generated.
    pub generated_at: Timestamp,
    /// Requested range.
    pub since: Option<Timestamp>,
    /// Requested range.
    pub until: Option<Timestamp>,
    /// `store` or `bundle`.
    pub source: String,
    /// Verification of the whole store or bundle.
    pub verification: EvidenceReport,
    /// Checkpoints by reason.
    pub checkpoints_by_reason: BTreeMap<String, u64>,
    /// Tombstones (pruned ranges) as `(first, last)` seq.
    pub tombstones: Vec<(u64, u64)>,
    /// Public keys: (key id, added at).
    pub keys: Vec<(String, Timestamp)>,
    /// Counts.
    pub stats: Stats,
    /// Per control.
    pub controls: Vec<Control>,
}

impl Stats {
    /// Counts one command result (a separate record or folded into its command's).
    fn count_result(&mut self, completion: &portcullis_core::Completion) {
        self.results += 1;
        if completion.error.is_some() {
            self.failed_results += 1;
        }
        for (k, n) in &completion.masked {
            *self.masked.entry(k.clone()).or_insert(0) += n;
        }
    }
}

#[derive(Default, Clone)]
struct SessionCtx {
    subject: Option<String>,
}

/// Builds the report over the records with `since <= at < until`.
pub fn report(
    source: EvidenceSource<'_>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    options: &VerifyOptions,
) -> Result<Report> {
    let verification = source.verify(options)?;
    let mut checkpoints_by_reason = BTreeMap::new();
    let mut tombstones = Vec::new();
    for cp in source.checkpoints()? {
        *checkpoints_by_reason
            .entry(cp.reason.as_str().to_string())
            .or_insert(0) += 1;
        if let Some(from) = cp.pruned_from {
            tombstones.push((from, cp.seq));
        }
    }
    let keys = source
        .public_keys()?
        .into_iter()
        .map(|k| (k.key_id, k.added_at))
        .collect();

    let mut st = Stats::default();
    let mut sessions: HashMap<SessionId, SessionCtx> = HashMap::new();
    let mut approvals: BTreeMap<String, ApprovalEvidence> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for r in source.records()? {
        let r = r?;
        let e = &r.event;
        if since.is_some_and(|s| e.at < s) || until.is_some_and(|u| e.at >= u) {
            continue;
        }
        st.records += 1;
        st.seq_range = Some(match st.seq_range {
            None => (r.seq, r.seq),
            Some((a, _)) => (a, r.seq),
        });
        *st.events_by_type.entry(e.kind.name().into()).or_insert(0) += 1;
        if !sessions.contains_key(&e.session) && !matches!(e.kind, EventKind::SessionOpened { .. })
        {
            let subject = source.session(e.session)?.and_then(|s| s.subject);
            sessions.insert(e.session, SessionCtx { subject });
        }
        match &e.kind {
            EventKind::SessionOpened {
                identity, target, ..
            } => {
                sessions.insert(
                    e.session,
                    SessionCtx {
                        subject: Some(identity.subject.clone()),
                    },
                );
                st.sessions_opened += 1;
                *st.sessions_by_target.entry(target.clone()).or_insert(0) += 1;
                *st.identities.entry(identity.subject.clone()).or_insert(0) += 1;
                let method = serde_json::to_value(identity.method)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                *st.auth_methods.entry(method).or_insert(0) += 1;
                if let Some(i) = &identity.issuer {
                    *st.issuers.entry(i.clone()).or_insert(0) += 1;
                }
                if identity.expires_at.is_some() {
                    st.credentials_expiring += 1;
                } else {
                    st.credentials_not_expiring += 1;
                }
            }
            EventKind::SessionRefused { side, reason, .. } => {
                *st.refused_by_side.entry(side.to_string()).or_insert(0) += 1;
                *st.refused_reasons.entry(reason.clone()).or_insert(0) += 1;
            }
            EventKind::SessionClosed { .. } => st.sessions_closed += 1,
            EventKind::Command {
                command,
                decision,
                result,
                ..
            } => {
                if let Some(o) = result {
                    st.count_result(&o.completion);
                }
                let verdict = match decision.verdict {
                    Verdict::Allow => "allow",
                    Verdict::Deny => "deny",
                    Verdict::Review => "review",
                };
                *st.commands_by_decision.entry(verdict.into()).or_insert(0) += 1;
                if decision.approval.is_some() && decision.verdict == Verdict::Allow {
                    st.approved_commands += 1;
                }
                if decision.verdict == Verdict::Deny {
                    *st.denied_by_rule.entry(decision.rule.clone()).or_insert(0) += 1;
                    if st.denied.len() < MAX_LISTED {
                        st.denied.push(DeniedCommand {
                            seq: r.seq,
                            at: e.at,
                            session: e.session,
                            subject: sessions.get(&e.session).and_then(|s| s.subject.clone()),
                            rule: decision.rule.clone(),
                            reason: decision.reason.clone(),
                            statement: command.summary(),
                        });
                    }
                }
            }
            EventKind::CommandResult { completion, .. } => st.count_result(completion),
            EventKind::ApprovalRequested {
                request,
                rule,
                approvers,
                ..
            } => {
                let requester = sessions.get(&e.session).and_then(|s| s.subject.clone());
                let a = approvals.entry(request.clone()).or_insert_with(|| {
                    order.push(request.clone());
                    ApprovalEvidence {
                        request: request.clone(),
                        requester: None,
                        rule: None,
                        approver_groups: Vec::new(),
                        decisions: Vec::new(),
                        outcome: None,
                        self_decided: false,
                    }
                });
                a.requester = requester;
                a.rule = Some(rule.clone());
                a.approver_groups = approvers.clone();
            }
            EventKind::ApprovalDecided {
                request,
                approver,
                approved,
                ..
            } => {
                if let Some(a) = approvals.get_mut(request) {
                    a.decisions.push((approver.clone(), *approved));
                    if a.requester.as_deref() == Some(approver.as_str()) {
                        a.self_decided = true;
                    }
                }
            }
            EventKind::ApprovalClosed { request, outcome } => {
                if let Some(a) = approvals.get_mut(request) {
                    a.outcome = Some(outcome.clone());
                }
            }
            EventKind::GrantIssued { session_only, .. } => {
                st.grants_issued += 1;
                if *session_only {
                    st.grants_session_only += 1;
                }
            }
            EventKind::GrantEnded { reason, .. } => {
                *st.grants_ended.entry(reason.clone()).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    st.approvals = order
        .into_iter()
        .filter_map(|k| approvals.remove(&k))
        .collect();

    let mut r = Report {
        framework: "nist-800-53".into(),
        generated_at: Timestamp::now(),
        since,
        until,
        source: match source {
            EvidenceSource::Store(_) => "store".into(),
            EvidenceSource::Bundle(_) => "bundle".into(),
        },
        verification,
        checkpoints_by_reason,
        tombstones,
        keys,
        stats: st,
        controls: Vec::new(),
    };
    r.controls = controls(&r);
    Ok(r)
}

fn map_text(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn controls(r: &Report) -> Vec<Control> {
    let s = &r.stats;
    let v = &r.verification;
    let c = |id: &str, title: &str, findings: Vec<String>, attention: bool| Control {
        id: id.into(),
        title: title.into(),
        findings,
        attention,
    };
    let commands: u64 = s.commands_by_decision.values().sum();
    let refused: u64 = s.refused_by_side.values().sum();
    let verified = match &v.fault {
        None => format!(
            "chain verified: {} records from {:?} (seq {}) to seq {}",
            v.records, v.anchor_kind, v.anchor.seq, v.head.seq
        ),
        Some(f) => format!("VERIFICATION FAILED: {f}"),
    };
    let self_decided: Vec<&ApprovalEvidence> =
        s.approvals.iter().filter(|a| a.self_decided).collect();
    let distinct_approvers: BTreeSet<&str> = s
        .approvals
        .iter()
        .flat_map(|a| a.decisions.iter().map(|(who, _)| who.as_str()))
        .collect();
    vec![
        c(
            "AU-2",
            "Event Logging",
            vec![
                format!("{} records in range, by type: {}", s.records, map_text(&s.events_by_type)),
                "logged event types: session opened/refused/closed, command with decision, command result, approval requested/decided/closed, grant issued/ended".into(),
            ],
            false,
        ),
        c(
            "AU-3",
            "Content of Audit Records",
            vec![
                "every record carries: time (µs, UTC), session id, event type, global and session sequence, and for commands the statement, decision, rule and reason; session openings carry subject, groups, authentication method, issuer, target and client address".into(),
                format!("{commands} commands, {} results recorded ({} with errors)", s.results, s.failed_results),
            ],
            false,
        ),
        c(
            "AU-6",
            "Audit Record Review, Analysis, and Reporting",
            vec![
                format!("denied commands by rule: {}", map_text(&s.denied_by_rule)),
                format!("refused connections by side: {}", map_text(&s.refused_by_side)),
                format!("{} denied commands listed below for review", s.denied.len()),
            ],
            false,
        ),
        c(
            "AU-9",
            "Protection of Audit Information",
            vec![
                verified.clone(),
                "records are SHA-256 hash-chained; the store is append-only to the gateway".into(),
                format!("pruned ranges (signed tombstones): {}", if r.tombstones.is_empty() { "none".into() } else { r.tombstones.iter().map(|(a, b)| format!("{a}..={b}")).collect::<Vec<_>>().join(", ") }),
            ],
            v.fault.is_some(),
        ),
        c(
            "AU-10",
            "Non-repudiation",
            vec![
                format!("{} valid Ed25519 checkpoints, signed through seq {} (of {})", v.checkpoints, v.signed_through, v.head.seq),
                format!("checkpoints by reason: {}", map_text(&r.checkpoints_by_reason)),
                format!("signing keys used: {}", if v.keys_used.is_empty() { "none".into() } else { v.keys_used.join(", ") }),
                format!("keys trusted from: {:?}", v.key_source),
            ],
            v.fault.is_some() || v.checkpoints == 0,
        ),
        c(
            "AU-12",
            "Audit Record Generation",
            vec![
                format!("{} sessions opened, {} closed, {refused} connections refused", s.sessions_opened, s.sessions_closed),
                format!("{commands} commands recorded before forwarding; {} results", s.results),
            ],
            false,
        ),
        c(
            "AC-2",
            "Account Management",
            vec![
                format!("{} identities: {}", s.identities.len(), map_text(&s.identities)),
                format!("just-in-time grants issued: {}, ended: {}", s.grants_issued, map_text(&s.grants_ended)),
            ],
            false,
        ),
        c(
            "AC-3",
            "Access Enforcement",
            vec![
                format!("commands by decision: {}", map_text(&s.commands_by_decision)),
                format!("refused connections by side: {}", map_text(&s.refused_by_side)),
                format!("sessions by target: {}", map_text(&s.sessions_by_target)),
            ],
            false,
        ),
        c(
            "AC-5",
            "Separation of Duties",
            {
                let mut f = vec![
                    format!("{} approval requests, {} distinct approvers, {} commands run through an approval or grant", s.approvals.len(), distinct_approvers.len(), s.approved_commands),
                ];
                for a in &self_decided {
                    f.push(format!("request {} was decided by its own requester {}", a.request, a.requester.as_deref().unwrap_or("?")));
                }
                if self_decided.is_empty() && !s.approvals.is_empty() {
                    f.push("no request was decided by its requester".into());
                }
                f
            },
            !self_decided.is_empty(),
        ),
        c(
            "AC-6",
            "Least Privilege",
            vec![
                format!("denied commands by rule: {}", map_text(&s.denied_by_rule)),
                format!("grants: {} issued ({} limited to the session)", s.grants_issued, s.grants_session_only),
                format!("values masked in results: {}", map_text(&s.masked)),
            ],
            false,
        ),
        c(
            "IA-2",
            "Identification and Authentication",
            vec![
                format!("authentication methods: {}", map_text(&s.auth_methods)),
                format!("{} distinct identities authenticated", s.identities.len()),
                format!("refused connections: {refused} (by side: {})", map_text(&s.refused_by_side)),
            ],
            false,
        ),
        c(
            "IA-5",
            "Authenticator Management",
            vec![
                format!("credential issuers: {}", map_text(&s.issuers)),
                format!("{} sessions with expiring credentials, {} without expiry", s.credentials_expiring, s.credentials_not_expiring),
                format!("refusal reasons: {}", map_text(&s.refused_reasons)),
            ],
            false,
        ),
    ]
}

impl Report {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let t = |x: Option<Timestamp>| x.map_or_else(|| "-".to_string(), |t| t.to_string());
        let _ = writeln!(o, "# Portcullis evidence report (NIST SP 800-53)\n");
        let _ = writeln!(o, "- generated: {}", self.generated_at);
        let _ = writeln!(o, "- range: {} to {}", t(self.since), t(self.until));
        let _ = writeln!(o, "- source: {}", self.source);
        let _ = writeln!(
            o,
            "- chain: {}",
            self.verification.chain.as_deref().unwrap_or("-")
        );
        let v = &self.verification;
        let _ = writeln!(
            o,
            "- verification: {}",
            match &v.fault {
                None => format!(
                    "intact ({} records, {} checkpoints, signed through seq {})",
                    v.records, v.checkpoints, v.signed_through
                ),
                Some(f) => format!("**FAILED**: {f}"),
            }
        );
        for w in &v.warnings {
            let _ = writeln!(o, "- note: {w}");
        }
        for (id, at) in &self.keys {
            let _ = writeln!(o, "- public key `{id}` (since {at})");
        }
        let _ = writeln!(o);
        for c in &self.controls {
            let mark = if c.attention { " ⚠" } else { "" };
            let _ = writeln!(o, "## {} {}{mark}\n", c.id, c.title);
            for f in &c.findings {
                let _ = writeln!(o, "- {f}");
            }
            if c.id == "AU-6" && !self.stats.denied.is_empty() {
                let _ = writeln!(o, "\n| seq | time | subject | rule | statement |");
                let _ = writeln!(o, "| ---: | --- | --- | --- | --- |");
                for d in &self.stats.denied {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | `{}` |",
                        d.seq,
                        d.at,
                        d.subject.as_deref().unwrap_or("-"),
                        d.rule,
                        d.statement.replace('|', "\\|").replace('`', "'")
                    );
                }
            }
            if c.id == "AC-5" && !self.stats.approvals.is_empty() {
                let _ = writeln!(o, "\n| request | requester | rule | decisions | outcome |");
                let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
                for a in &self.stats.approvals {
                    let d = a
                        .decisions
                        .iter()
                        .map(|(w, ok)| format!("{w}: {}", if *ok { "approve" } else { "reject" }))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} |",
                        a.request,
                        a.requester.as_deref().unwrap_or("-"),
                        a.rule.as_deref().unwrap_or("-"),
                        d,
                        a.outcome.as_deref().unwrap_or("-")
                    );
                }
            }
            let _ = writeln!(o);
        }
        o
    }
}
