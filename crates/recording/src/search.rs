//! Searching recorded commands across sessions.

use std::collections::HashMap;

use portcullis_core::{Command, EventKind, SessionId, Timestamp, Verdict};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::evidence::EvidenceSource;

/// What to look for; every given criterion must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    /// The session's subject, exactly.
    pub subject: Option<String>,
    /// The session's target, exactly.
    pub target: Option<String>,
    /// Commands at or after this time.
    pub since: Option<Timestamp>,
    /// Commands before this time.
    pub until: Option<Timestamp>,
    /// The decision's verdict.
    pub decision: Option<Verdict>,
    /// A substring of the statement text (case-sensitive).
    pub text: Option<String>,
    /// A table name, matched case-insensitively as a whole identifier in the
    /// statement text (quotes and a schema prefix are allowed around it).
    pub table: Option<String>,
    /// At most this many hits (default 100).
    pub limit: usize,
}

impl Default for SearchQuery {
    fn default() -> Self {
        Self {
            subject: None,
            target: None,
            since: None,
            until: None,
            decision: None,
            text: None,
            table: None,
            limit: 100,
        }
    }
}

/// How a found command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitResult {
    /// Duration in microseconds.
    pub duration_us: u64,
    /// Rows returned or affected.
    pub rows: u64,
    /// Completion tag.
    pub tag: Option<String>,
    /// Error, if any.
    pub error: Option<String>,
}

impl HitResult {
    fn new(duration_us: u64, completion: &portcullis_core::Completion) -> Self {
        Self {
            duration_us,
            rows: completion.rows_affected.unwrap_or(completion.rows_returned),
            tag: completion.tag.clone(),
            error: completion.error.clone(),
        }
    }
}

/// One command that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Record `seq`.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Session.
    pub session: SessionId,
    /// Command number within the session.
    pub command_seq: u64,
    /// Who.
    pub subject: Option<String>,
    /// Where.
    pub target: Option<String>,
    /// The statement (masked as recorded).
    pub statement: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Deciding rule.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// The result, if recorded (and within the searched records).
    pub result: Option<HitResult>,
}

/// Commands matching `query`, oldest first, at most `query.limit`.
pub fn search(source: EvidenceSource<'_>, query: &SearchQuery) -> Result<Vec<SearchHit>> {
    let mut ctx: HashMap<SessionId, (Option<String>, Option<String>)> = HashMap::new();
    let mut hits: Vec<SearchHit> = Vec::new();
    let mut open: HashMap<(SessionId, u64), usize> = HashMap::new();
    for r in source.records()? {
        let r = r?;
        let e = &r.event;
        match &e.kind {
            EventKind::SessionOpened {
                identity, target, ..
            } => {
                ctx.insert(
                    e.session,
                    (Some(identity.subject.clone()), Some(target.clone())),
                );
            }
            EventKind::Command {
                seq,
                command,
                decision,
                result,
            } => {
                if hits.len() >= query.limit {
                    if open.is_empty() {
                        break;
                    }
                    continue;
                }
                if query.since.is_some_and(|s| e.at < s) || query.until.is_some_and(|u| e.at >= u) {
                    continue;
                }
                if query.decision.is_some_and(|d| d != decision.verdict) {
                    continue;
                }
                let statement = match command {
                    Command::Sql { text, .. } => text.clone(),
                    other => other.summary(),
                };
                if query
                    .text
                    .as_deref()
                    .is_some_and(|t| !statement.contains(t))
                {
                    continue;
                }
                if query
                    .table
                    .as_deref()
                    .is_some_and(|t| !mentions_table(&statement, t))
                {
                    continue;
                }
                let (subject, target) = match ctx.entry(e.session) {
                    std::collections::hash_map::Entry::Occupied(o) => o.get().clone(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let s = source.session(e.session)?;
                        v.insert((
                            s.as_ref().and_then(|s| s.subject.clone()),
                            s.and_then(|s| s.target),
                        ))
                        .clone()
                    }
                };
                let eq = |want: &Option<String>, have: &Option<String>| {
                    want.as_ref().is_none_or(|w| have.as_deref() == Some(w))
                };
                if !eq(&query.subject, &subject) || !eq(&query.target, &target) {
                    continue;
                }
                if result.is_none() {
                    open.insert((e.session, *seq), hits.len());
                }
                hits.push(SearchHit {
                    seq: r.seq,
                    at: e.at,
                    session: e.session,
                    command_seq: *seq,
                    subject,
                    target,
                    statement,
                    verdict: decision.verdict,
                    rule: decision.rule.clone(),
                    reason: decision.reason.clone(),
                    result: result
                        .as_ref()
                        .map(|o| HitResult::new(o.duration_us, &o.completion)),
                });
            }
            EventKind::CommandResult {
                seq,
                duration_us,
                completion,
            } => {
                if let Some(i) = open.remove(&(e.session, *seq))
                    && let Some(hit) = hits.get_mut(i)
                {
                    hit.result = Some(HitResult::new(*duration_us, completion));
                }
            }
            EventKind::SessionClosed { .. } => {
                open.retain(|(s, _), _| *s != e.session);
                if hits.len() >= query.limit && open.is_empty() {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(hits)
}

/// Whether `sql` mentions `table` as a whole identifier, case-insensitively
/// (`orders` matches `FROM public.orders`, `"Orders"` and `orders;`, not `orders_archive`).
pub fn mentions_table(sql: &str, table: &str) -> bool {
    let want = table.trim_matches('"').to_lowercase();
    if want.is_empty() {
        return false;
    }
    let hay = sql.to_lowercase();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut from = 0;
    while let Some(pos) = hay.get(from..).and_then(|h| h.find(&want)) {
        let start = from + pos;
        let end = start + want.len();
        let before = hay.get(..start).and_then(|h| h.chars().next_back());
        let after = hay.get(end..).and_then(|h| h.chars().next());
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return true;
        }
        from = start + want.len().max(1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_match_whole_identifiers() {
        assert!(mentions_table("SELECT * FROM public.Orders o", "orders"));
        assert!(mentions_table("delete from \"orders\";", "orders"));
        assert!(mentions_table("UPDATE orders SET x=1", "ORDERS"));
        assert!(!mentions_table("SELECT * FROM orders_archive", "orders"));
        assert!(!mentions_table("SELECT * FROM my_orders", "orders"));
        assert!(!mentions_table("SELECT 1", ""));
    }
}
