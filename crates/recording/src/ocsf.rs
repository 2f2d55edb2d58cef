//! Events as OCSF 1.1 JSON objects, for SIEMs.
//!
//! | Portcullis event | OCSF class | activity |
//! | --- | --- | --- |
//! | `session_opened` | Authentication (3002) | Logon (1), status Success |
//! | `session_refused` | Authentication (3002) | Logon (1), status Failure |
//! | `session_closed` | Authentication (3002) | Logoff (2) |
//! | `command` + `command_result` (or one `command` with its `result`), SQL | Datastore Activity (6005) | Read 1 / Update 2 / Write 5 / Create 6 / Delete 7 / Query 4 by the statement's first keyword |
//! | `command` + `command_result` (or one `command` with its `result`), HTTP | API Activity (6003) | Create 1 / Read 2 / Update 3 / Delete 4 by method |
//! | `command` + `command_result` (or one `command` with its `result`), SSH exec/shell | Process Activity (1007) | Launch (1) |
//! | `grant_issued` | User Access Management (3005) | Assign Privileges (1) |
//! | `grant_ended` | User Access Management (3005) | Revoke Privileges (2) |
//! | `approval_requested` / `approval_decided` / `approval_closed` | User Access Management (3005) | Other (99) |
//!
//! A command and its result become one OCSF event (emitted when the result
//! arrives; a denied command at once; a command whose result is not in the
//! range at the end). `action_id` is Allowed (1) / Denied (2), `disposition_id`
//! Allowed (1) / Blocked (2), the deciding rule is in `authorizations`, and
//! Portcullis fields without an OCSF home are under `unmapped`.

use std::collections::{BTreeMap, HashMap};

use portcullis_core::{Command, Decision, EventKind, SessionId, Timestamp, Verdict};
use serde_json::{Value, json};

use crate::{SessionSummary, StoredEvent};

/// OCSF schema version the objects follow.
pub const OCSF_VERSION: &str = "1.1.0";

#[derive(Debug, Clone, Default)]
struct SessionInfo {
    subject: Option<String>,
    groups: Vec<String>,
    target: Option<String>,
    client_addr: Option<String>,
}

#[derive(Debug, Clone)]
struct PendingCommand {
    seq: u64,
    at: Timestamp,
    command: Command,
    decision: Decision,
}

/// Turns records into OCSF objects; keeps the session context and the commands
/// waiting for their results.
#[derive(Debug, Default)]
pub struct OcsfMapper {
    sessions: HashMap<SessionId, SessionInfo>,
    pending: BTreeMap<(SessionId, u64), PendingCommand>,
}

impl OcsfMapper {
    /// An empty mapper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the mapper has context for the session.
    pub fn knows(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Adds context for a session whose opening is outside the mapped range.
    pub fn learn(&mut self, s: &SessionSummary) {
        self.sessions.insert(
            s.id,
            SessionInfo {
                subject: s.subject.clone(),
                groups: Vec::new(),
                target: s.target.clone(),
                client_addr: s.client_addr.clone(),
            },
        );
    }

    /// The OCSF objects that this record completes (zero, one or two).
    pub fn map(&mut self, r: &StoredEvent) -> Vec<Value> {
        let e = &r.event;
        let sid = e.session;
        match &e.kind {
            EventKind::SessionOpened {
                identity,
                target,
                protocol,
                client_addr,
                ..
            } => {
                self.sessions.insert(
                    sid,
                    SessionInfo {
                        subject: Some(identity.subject.clone()),
                        groups: identity.groups.clone(),
                        target: Some(target.clone()),
                        client_addr: client_addr.clone(),
                    },
                );
                let mut v = self.base(r, 3002, "Authentication", 3, 1, "Logon");
                v["status_id"] = json!(1);
                v["status"] = json!("Success");
                v["auth_protocol_id"] = json!(99);
                v["auth_protocol"] = json!(method_name(&identity.method));
                v["is_remote"] = json!(true);
                v["service"] = json!({ "name": target });
                v["dst_endpoint"] = json!({ "svc_name": format!("{protocol:?}").to_lowercase() });
                if let Some(issuer) = &identity.issuer {
                    v["unmapped"]["issuer"] = json!(issuer);
                }
                if let Some(exp) = identity.expires_at {
                    v["unmapped"]["credential_expires_at"] = json!(exp.0 / 1000);
                }
                v["user"] = v["actor"]["user"].clone();
                vec![v]
            }
            EventKind::SessionRefused {
                subject,
                target,
                client_addr,
                side,
                reason,
            } => {
                let info = self.sessions.entry(sid).or_default();
                info.subject = info.subject.take().or_else(|| subject.clone());
                info.target = info.target.take().or_else(|| target.clone());
                info.client_addr = info.client_addr.take().or_else(|| client_addr.clone());
                let mut v = self.base(r, 3002, "Authentication", 3, 1, "Logon");
                v["status_id"] = json!(2);
                v["status"] = json!("Failure");
                v["status_detail"] = json!(reason);
                v["is_remote"] = json!(true);
                if let Some(t) = target {
                    v["service"] = json!({ "name": t });
                }
                v["unmapped"]["side"] = json!(side.to_string());
                v["user"] = v["actor"]["user"].clone();
                vec![v]
            }
            EventKind::SessionClosed { reason, commands } => {
                let mut out: Vec<Value> = Vec::new();
                let left: Vec<(SessionId, u64)> = self
                    .pending
                    .range((sid, 0)..=(sid, u64::MAX))
                    .map(|(k, _)| *k)
                    .collect();
                for k in left {
                    if let Some(p) = self.pending.remove(&k) {
                        out.push(self.command(r, sid, &p, None));
                    }
                }
                let mut v = self.base(r, 3002, "Authentication", 3, 2, "Logoff");
                v["status_id"] = json!(1);
                v["status"] = json!("Success");
                v["message"] = json!(reason);
                v["unmapped"]["commands"] = json!(commands);
                v["user"] = v["actor"]["user"].clone();
                out.push(v);
                out
            }
            EventKind::Command {
                seq,
                command,
                decision,
                result,
            } => {
                let p = PendingCommand {
                    seq: r.seq,
                    at: e.at,
                    command: command.clone(),
                    decision: decision.clone(),
                };
                if let Some(o) = result {
                    // Recorded with its result in one record.
                    let result = result_json(o.duration_us, &o.completion);
                    vec![self.command(r, sid, &p, Some((result, o.at)))]
                } else if decision.verdict == Verdict::Deny {
                    vec![self.command(r, sid, &p, None)]
                } else {
                    self.pending.insert((sid, *seq), p);
                    Vec::new()
                }
            }
            EventKind::CommandResult {
                seq,
                duration_us,
                completion,
            } => {
                let result = result_json(*duration_us, completion);
                match self.pending.remove(&(sid, *seq)) {
                    Some(p) => vec![self.command(r, sid, &p, Some((result, e.at)))],
                    None => {
                        let mut v = self.base(r, 6005, "Datastore Activity", 6, 99, "Other");
                        v["message"] = json!("command result without its command in the range");
                        v["unmapped"]["result"] = result;
                        vec![v]
                    }
                }
            }
            EventKind::ApprovalRequested {
                request,
                command,
                rule,
                reason,
                approvers,
                quorum,
                expires_at,
                ..
            } => {
                let mut v = self.base(r, 3005, "User Access Management", 3, 99, "Other");
                v["activity_name"] = json!("Approval Requested");
                v["message"] = json!(reason);
                v["unmapped"]["request"] = json!(request);
                v["unmapped"]["command"] = json!(command.summary());
                v["unmapped"]["rule"] = json!(rule);
                v["unmapped"]["approver_groups"] = json!(approvers);
                v["unmapped"]["quorum"] = json!(quorum);
                v["unmapped"]["expires_at"] = json!(expires_at.0 / 1000);
                vec![v]
            }
            EventKind::ApprovalDecided {
                request,
                approver,
                approved,
                justification,
            } => {
                let mut v = self.base(r, 3005, "User Access Management", 3, 99, "Other");
                v["activity_name"] = json!("Approval Decided");
                // The approver acts; the requester's identity stays in `user`.
                v["user"] = v["actor"]["user"].clone();
                v["actor"]["user"] = json!({ "name": approver });
                v["status_id"] = json!(1);
                v["status"] = json!("Success");
                v["message"] = json!(justification);
                v["unmapped"]["request"] = json!(request);
                v["unmapped"]["approved"] = json!(approved);
                vec![v]
            }
            EventKind::ApprovalClosed { request, outcome } => {
                let mut v = self.base(r, 3005, "User Access Management", 3, 99, "Other");
                v["activity_name"] = json!("Approval Closed");
                v["message"] = json!(outcome);
                v["unmapped"]["request"] = json!(request);
                vec![v]
            }
            EventKind::GrantIssued {
                grant,
                request,
                subject,
                target,
                kinds,
                expires_at,
                session_only,
            } => {
                let mut v = self.base(r, 3005, "User Access Management", 3, 1, "Assign Privileges");
                v["user"] = json!({ "name": subject });
                v["privileges"] = json!(kinds);
                v["resource"] = json!({ "name": target, "type": "target" });
                v["unmapped"]["grant"] = json!(grant);
                v["unmapped"]["request"] = json!(request);
                v["unmapped"]["expires_at"] = json!(expires_at.0 / 1000);
                v["unmapped"]["session_only"] = json!(session_only);
                vec![v]
            }
            EventKind::GrantEnded { grant, reason, by } => {
                let mut v = self.base(r, 3005, "User Access Management", 3, 2, "Revoke Privileges");
                v["message"] = json!(reason);
                if let Some(by) = by {
                    v["actor"]["user"] = json!({ "name": by });
                }
                v["unmapped"]["grant"] = json!(grant);
                vec![v]
            }
            _ => {
                let mut v = self.base(r, 0, "Base Event", 0, 99, "Other");
                v["unmapped"]["event_type"] = json!(e.kind.name());
                vec![v]
            }
        }
    }

    /// The commands still waiting for a result, as OCSF objects without a result.
    pub fn finish(mut self) -> Vec<Value> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .into_iter()
            .map(|((sid, _), p)| self.unanswered(sid, &p))
            .collect()
    }

    /// Global sequence of the oldest command still waiting for its result.
    pub fn oldest_pending(&self) -> Option<u64> {
        self.pending.values().map(|p| p.seq).min()
    }

    /// Emits the commands recorded before `seq` that still wait for their result,
    /// as OCSF objects without a result (as [`OcsfMapper::finish`] does), so that a
    /// stream does not hold a command forever when its result never comes.
    pub fn take_pending_before(&mut self, seq: u64) -> Vec<Value> {
        let old: Vec<(SessionId, u64)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.seq < seq)
            .map(|(k, _)| *k)
            .collect();
        old.into_iter()
            .filter_map(|k| self.pending.remove(&k).map(|p| self.unanswered(k.0, &p)))
            .collect()
    }

    /// Drops the context of a session (a stream calls this once the session closed,
    /// so the mapper's memory stays bounded by the open sessions).
    pub fn forget(&mut self, id: SessionId) {
        self.sessions.remove(&id);
    }

    fn unanswered(&self, sid: SessionId, p: &PendingCommand) -> Value {
        let stub = StoredEvent {
            seq: p.seq,
            session_seq: 0,
            prev_hash: crate::ChainHash::ZERO,
            hash: crate::ChainHash::ZERO,
            event: portcullis_core::Event {
                session: sid,
                at: p.at,
                kind: EventKind::SessionClosed {
                    reason: String::new(),
                    commands: 0,
                },
            },
            canonical: String::new(),
        };
        self.command(&stub, sid, p, None)
    }

    fn command(
        &self,
        r: &StoredEvent,
        sid: SessionId,
        p: &PendingCommand,
        result: Option<(Value, Timestamp)>,
    ) -> Value {
        let (class, class_name, category, activity, activity_name) = match &p.command {
            Command::Sql { text, .. } => {
                let (a, n) = sql_activity(text);
                (6005, "Datastore Activity", 6, a, n)
            }
            Command::Http { method, .. } => {
                let (a, n) = http_activity(method);
                (6003, "API Activity", 6, a, n)
            }
            _ => (1007, "Process Activity", 1, 1, "Launch"),
        };
        let mut v = self.base(r, class, class_name, category, activity, activity_name);
        v["time"] = json!(p.at.0 / 1000);
        v["metadata"]["sequence"] = json!(p.seq);
        let allowed = p.decision.verdict == Verdict::Allow;
        v["action_id"] = json!(if allowed { 1 } else { 2 });
        v["action"] = json!(if allowed { "Allowed" } else { "Denied" });
        v["disposition_id"] = json!(if allowed { 1 } else { 2 });
        v["disposition"] = json!(if allowed { "Allowed" } else { "Blocked" });
        v["authorizations"] = json!([{
            "decision": format!("{:?}", p.decision.verdict).to_lowercase(),
            "policy": { "name": p.decision.rule, "desc": p.decision.reason },
        }]);
        if let Some(a) = &p.decision.approval {
            v["unmapped"]["approval"] = json!(a);
        }
        if !p.decision.kinds.is_empty() {
            v["unmapped"]["statement_kinds"] = json!(p.decision.kinds);
        }
        match &p.command {
            Command::Sql { text, .. } => {
                v["query_info"] = json!({ "query_string": text });
                if let Some(t) = self.sessions.get(&sid).and_then(|s| s.target.clone()) {
                    v["database"] = json!({ "name": t, "type": "PostgreSQL" });
                }
            }
            Command::Http {
                method,
                path,
                query,
                ..
            } => {
                v["http_request"] = json!({
                    "http_method": method,
                    "url": { "path": path, "query_string": query },
                });
                v["api"] = json!({ "operation": format!("{method} {path}") });
            }
            other => {
                v["process"] = json!({ "cmd_line": other.summary() });
            }
        }
        let failed = !allowed
            || result
                .as_ref()
                .is_some_and(|(r, _)| r.get("error").is_some_and(|e| !e.is_null()));
        v["status_id"] = json!(if failed { 2 } else { 1 });
        v["status"] = json!(if failed { "Failure" } else { "Success" });
        if !allowed {
            v["status_detail"] = json!(p.decision.reason);
        }
        match result {
            Some((res, end)) => {
                if let Some(us) = res.get("duration_us").and_then(Value::as_u64) {
                    v["duration"] = json!(us / 1000);
                    v["end_time"] = json!(end.0 / 1000);
                }
                if let Some(err) = res.get("error").and_then(Value::as_str) {
                    v["status_detail"] = json!(err);
                }
                v["unmapped"]["result"] = res;
            }
            None if allowed => v["unmapped"]["result"] = json!(null),
            None => {}
        }
        v
    }

    fn base(
        &self,
        r: &StoredEvent,
        class: u32,
        class_name: &str,
        category: u32,
        activity: u32,
        activity_name: &str,
    ) -> Value {
        let sid = r.event.session;
        let info = self.sessions.get(&sid).cloned().unwrap_or_default();
        let category_name = match category {
            1 => "System Activity",
            3 => "Identity & Access Management",
            6 => "Application Activity",
            _ => "Uncategorized",
        };
        let mut user = json!({ "name": info.subject.clone().unwrap_or_else(|| "unknown".into()) });
        if !info.groups.is_empty() {
            user["groups"] = json!(
                info.groups
                    .iter()
                    .map(|g| json!({ "name": g }))
                    .collect::<Vec<_>>()
            );
        }
        let mut v = json!({
            "class_uid": class,
            "class_name": class_name,
            "category_uid": category,
            "category_name": category_name,
            "activity_id": activity,
            "activity_name": activity_name,
            "type_uid": u64::from(class) * 100 + u64::from(activity),
            "severity_id": 1,
            "severity": "Informational",
            "time": r.event.at.0 / 1000,
            "metadata": {
                "version": OCSF_VERSION,
                "product": { "name": "Portcullis", "vendor_name": "Portcullis", "version": env!("CARGO_PKG_VERSION") },
                "log_name": "portcullis-recording",
                "sequence": r.seq,
                "uid": r.hash.to_hex(),
                "correlation_uid": sid.to_string(),
            },
            "actor": {
                "user": user,
                "session": { "uid": sid.to_string() },
            },
            "unmapped": { "portcullis_event": r.event.kind.name() },
        });
        if let Some(addr) = &info.client_addr {
            v["src_endpoint"] = endpoint(addr);
        }
        v
    }
}

fn method_name(m: &portcullis_core::AuthMethod) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "other".into())
}

fn endpoint(addr: &str) -> Value {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(sa) => json!({ "ip": sa.ip().to_string(), "port": sa.port() }),
        Err(_) => json!({ "ip": addr }),
    }
}

/// The datastore activity of a SQL statement, by its first keyword.
pub fn sql_activity(text: &str) -> (u32, &'static str) {
    let word: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    match word.as_str() {
        "SELECT" | "WITH" | "SHOW" | "TABLE" | "EXPLAIN" | "VALUES" | "FETCH" => (1, "Read"),
        "UPDATE" | "ALTER" | "MERGE" => (2, "Update"),
        "INSERT" | "COPY" => (5, "Write"),
        "CREATE" => (6, "Create"),
        "DELETE" | "DROP" | "TRUNCATE" => (7, "Delete"),
        _ => (4, "Query"),
    }
}

fn http_activity(method: &str) -> (u32, &'static str) {
    match method.to_ascii_uppercase().as_str() {
        "POST" => (1, "Create"),
        "GET" | "HEAD" | "OPTIONS" => (2, "Read"),
        "PUT" | "PATCH" => (3, "Update"),
        "DELETE" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// The `result` object of a command's OCSF event.
fn result_json(duration_us: u64, completion: &portcullis_core::Completion) -> Value {
    json!({
        "duration_us": duration_us,
        "rows_returned": completion.rows_returned,
        "rows_affected": completion.rows_affected,
        "tag": completion.tag,
        "error": completion.error,
        "bytes": completion.bytes,
        "skipped": completion.skipped,
        "masked": completion.masked,
    })
}
