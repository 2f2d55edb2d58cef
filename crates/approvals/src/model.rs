//! Requests, votes and grants as stored and as shown to the admin API.

use std::fmt;
use std::time::Duration;

use portcullis_core::{Command, Quorum, SessionId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Open for votes.
    Pending,
    /// Approved: as a one-time approval not yet used, or with a grant.
    Approved,
    /// An approver rejected it.
    Rejected,
    /// It lapsed: undecided within `request_ttl`, or a one-time approval left unused.
    Expired,
    /// Its one-time approval let one statement through.
    Used,
}

impl RequestState {
    /// The name used in JSON and events.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
            RequestState::Expired => "expired",
            RequestState::Used => "used",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an approver asks for when approving with a just-in-time grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// How long the grant lasts (at most `max_grant`).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Statement kinds it covers (`read`, `write`, `ddl`); empty: the approved command only.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Whether it ends with the session that asked.
    #[serde(default)]
    pub session_only: bool,
}

/// One approver's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Subject of the approver.
    pub approver: String,
    /// The approver's groups among the request's approver groups.
    pub groups: Vec<String>,
    /// Approve (true) or reject (false).
    pub approved: bool,
    /// Why.
    pub justification: String,
    /// When.
    pub at: Timestamp,
    /// The grant the approver asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantSpec>,
}

/// An approval request with its votes, as stored and as returned by the decisions API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// Request id (a UUIDv7, so ids sort by creation time).
    pub id: String,
    /// Where it stands.
    pub state: RequestState,
    /// Subject of the identity that sent the command.
    pub requester: String,
    /// The session that first sent the command.
    pub session: SessionId,
    /// The command's sequence in that session.
    pub seq: u64,
    /// The most recent session that sent the command (a retry may come from a new session).
    pub last_session: SessionId,
    /// Target name.
    pub target: String,
    /// The command, masked.
    pub command: Command,
    /// Hash of subject, target and command text; equal commands share a request.
    pub fingerprint: String,
    /// Rule that asked for review.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Statement kinds the policy found.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub quorum: Quorum,
    /// Votes so far, in order.
    #[serde(default)]
    pub votes: Vec<Vote>,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it lapses: undecided, or (once approved one-time) unused.
    pub expires_at: Timestamp,
    /// When it left the pending state.
    #[serde(default)]
    pub decided_at: Option<Timestamp>,
    /// When its approval was used, if one-time.
    #[serde(default)]
    pub used_at: Option<Timestamp>,
    /// The grant issued when it was approved, if any.
    #[serde(default)]
    pub grant: Option<String>,
}

impl RequestView {
    /// Whether the request is pending and not yet past its expiry.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.state == RequestState::Pending && now < self.expires_at
    }

    /// Whether the request holds an unused one-time approval that is still valid.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.state == RequestState::Approved && self.grant.is_none() && now < self.expires_at
    }

    /// Whether the request belongs in the open index (pending, or approved one-time and unused).
    pub(crate) fn indexed(&self) -> bool {
        self.state == RequestState::Pending
            || (self.state == RequestState::Approved && self.grant.is_none())
    }

    /// Subjects of the approving votes.
    pub fn approved_by(&self) -> Vec<&str> {
        self.votes
            .iter()
            .filter(|v| v.approved)
            .map(|v| v.approver.as_str())
            .collect()
    }

    /// Whether the approving votes meet the quorum.
    pub fn quorum_met(&self) -> bool {
        let approving: Vec<&Vote> = self.votes.iter().filter(|v| v.approved).collect();
        match self.quorum {
            Quorum::Count(n) => approving.len() >= usize::try_from(n.max(1)).unwrap_or(usize::MAX),
            Quorum::EachGroup => {
                let groups = distinct(&self.approvers);
                !groups.is_empty() && covered_groups(&approving, &groups) == groups.len()
            }
        }
    }

    /// Progress towards the quorum, for messages: `1 of 2 approvals`, `groups 1 of 2 (dba)`.
    pub fn progress(&self) -> String {
        let approving: Vec<&Vote> = self.votes.iter().filter(|v| v.approved).collect();
        match self.quorum {
            Quorum::Count(n) => format!("{} of {} approvals", approving.len(), n.max(1)),
            Quorum::EachGroup => {
                let groups = distinct(&self.approvers);
                format!(
                    "{} of {} groups approved",
                    covered_groups(&approving, &groups),
                    groups.len()
                )
            }
        }
    }

    /// What the quorum asks for, for messages: `2 approvals`, `one approval from each group`.
    pub fn quorum_text(&self) -> String {
        quorum_text(self.quorum)
    }
}

/// Human text of a quorum.
pub(crate) fn quorum_text(q: Quorum) -> String {
    match q {
        Quorum::Count(n) if n <= 1 => "1 approval".to_string(),
        Quorum::Count(n) => format!("{n} approvals"),
        Quorum::EachGroup => "one approval from each group".to_string(),
    }
}

fn distinct(groups: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for g in groups {
        if !out.contains(&g.as_str()) {
            out.push(g);
        }
    }
    out
}

/// The most groups that approvers can cover when each approver counts for one group only
/// (a maximum bipartite matching of approvers to groups, by augmenting paths).
fn covered_groups(approving: &[&Vote], groups: &[&str]) -> usize {
    // owner[g] = index of the vote assigned to group g.
    let mut owner: Vec<Option<usize>> = vec![None; groups.len()];
    let edges: Vec<Vec<usize>> = approving
        .iter()
        .map(|v| {
            groups
                .iter()
                .enumerate()
                .filter(|(_, g)| v.groups.iter().any(|vg| vg == *g))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    fn augment(
        v: usize,
        edges: &[Vec<usize>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        let Some(adj) = edges.get(v) else {
            return false;
        };
        for &g in adj {
            if seen.get(g).copied().unwrap_or(true) {
                continue;
            }
            if let Some(s) = seen.get_mut(g) {
                *s = true;
            }
            let current = owner.get(g).copied().flatten();
            let free = match current {
                None => true,
                Some(other) => augment(other, edges, owner, seen),
            };
            if free {
                if let Some(o) = owner.get_mut(g) {
                    *o = Some(v);
                }
                return true;
            }
        }
        false
    }
    let mut matched = 0;
    for v in 0..edges.len() {
        let mut seen = vec![false; groups.len()];
        if augment(v, &edges, &mut owner, &mut seen) {
            matched += 1;
        }
    }
    matched
}

/// How a grant ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEnd {
    /// `expired`, `revoked` or `session_closed`.
    pub reason: String,
    /// Who revoked it.
    #[serde(default)]
    pub by: Option<String>,
    /// The revoker's justification.
    #[serde(default)]
    pub note: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A just-in-time grant, as stored and as returned by the decisions API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    /// Grant id (a UUIDv7).
    pub id: String,
    /// The request it came from.
    pub request: String,
    /// Who may use it.
    pub subject: String,
    /// On which target.
    pub target: String,
    /// Statement kinds it covers; empty: only the approved command.
    pub kinds: Vec<String>,
    /// Fingerprint of the approved command (always covered).
    pub fingerprint: String,
    /// Text of the approved command (masked).
    pub command: String,
    /// The only session that may use it, for a session-only grant.
    #[serde(default)]
    pub session: Option<SessionId>,
    /// The session its request was recorded in (where its events are recorded).
    pub request_session: SessionId,
    /// The approvers.
    pub issued_by: Vec<String>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
    /// How it ended, once it has.
    #[serde(default)]
    pub ended: Option<GrantEnd>,
}

impl GrantView {
    /// Whether it can be used at `now`: not ended and not past its end.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.ended.is_none() && now < self.expires_at
    }

    /// Whether it lets `session` run a command with this fingerprint and these kinds.
    /// A command of unknown kinds is covered only by a grant for exactly that command.
    pub fn covers(&self, session: SessionId, fingerprint: &str, kinds: &[String]) -> bool {
        if self.session.is_some_and(|s| s != session) {
            return false;
        }
        if self.fingerprint == fingerprint {
            return true;
        }
        !self.kinds.is_empty()
            && !kinds.is_empty()
            && kinds.iter().all(|k| self.kinds.iter().any(|g| g == k))
    }
}

/// Which requests to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    /// Only requests open for votes.
    #[default]
    Pending,
    /// Requests in any state.
    All,
}

/// A query of [`crate::ApprovalService::list_requests`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestFilter {
    /// Pending only, or all.
    pub state: StateFilter,
    /// Only requests of this requester.
    pub requester: Option<String>,
    /// Only requests for this target.
    pub target: Option<String>,
    /// Only requests that a member of this group may approve.
    pub approver_group: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: usize,
}

impl Default for RequestFilter {
    fn default() -> Self {
        Self {
            state: StateFilter::Pending,
            requester: None,
            target: None,
            approver_group: None,
            limit: 100,
        }
    }
}

impl RequestFilter {
    /// Pending requests, at most 100.
    pub fn pending() -> Self {
        Self::default()
    }

    /// Requests in any state, at most 100.
    pub fn all() -> Self {
        Self {
            state: StateFilter::All,
            ..Self::default()
        }
    }

    pub(crate) fn matches(&self, r: &RequestView, now: Timestamp) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        (self.state == StateFilter::All || r.is_open(now))
            && eq(&self.requester, &r.requester)
            && eq(&self.target, &r.target)
            && self
                .approver_group
                .as_deref()
                .is_none_or(|g| r.approvers.iter().any(|a| a == g))
    }
}

/// Fingerprint of a command: SHA-256 over subject, target and command text, each
/// length-prefixed, as lowercase hex.
pub fn fingerprint(subject: &str, target: &str, command: &Command) -> String {
    let mut h = Sha256::new();
    h.update(b"portcullis-approval-v1\n");
    for part in [subject, target, command.summary().as_str()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(who: &str, groups: &[&str]) -> Vote {
        Vote {
            approver: who.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            approved: true,
            justification: "ok".into(),
            at: Timestamp(0),
            grant: None,
        }
    }

    fn request(quorum: Quorum, approvers: &[&str], votes: Vec<Vote>) -> RequestView {
        RequestView {
            id: "r".into(),
            state: RequestState::Pending,
            requester: "alice".into(),
            session: SessionId::new(),
            seq: 1,
            last_session: SessionId::new(),
            target: "t".into(),
            command: Command::Exec {
                command: "ls".into(),
            },
            fingerprint: "f".into(),
            rule: "r".into(),
            reason: "why".into(),
            kinds: vec![],
            approvers: approvers.iter().map(|g| g.to_string()).collect(),
            quorum,
            votes,
            created_at: Timestamp(0),
            expires_at: Timestamp(1),
            decided_at: None,
            used_at: None,
            grant: None,
        }
    }

    #[test]
    fn each_group_counts_an_approver_once_whatever_the_order() {
        // Bob can serve dba or sec; Carol only dba. Bob voting first must not block.
        let r = request(
            Quorum::EachGroup,
            &["dba", "sec"],
            vec![vote("bob", &["dba", "sec"]), vote("carol", &["dba"])],
        );
        assert!(r.quorum_met());
        // One approver in both groups covers only one.
        let r = request(
            Quorum::EachGroup,
            &["dba", "sec"],
            vec![vote("bob", &["dba", "sec"])],
        );
        assert!(!r.quorum_met());
        assert_eq!(r.progress(), "1 of 2 groups approved");
    }

    #[test]
    fn count_quorum() {
        let r = request(Quorum::Count(2), &["dba"], vec![vote("bob", &["dba"])]);
        assert!(!r.quorum_met());
        let r = request(
            Quorum::Count(2),
            &["dba"],
            vec![vote("bob", &["dba"]), vote("carol", &["dba"])],
        );
        assert!(r.quorum_met());
        // Count(0) still needs one approval.
        assert!(!request(Quorum::Count(0), &["dba"], vec![]).quorum_met());
    }

    #[test]
    fn grant_coverage_fails_closed_on_unknown_kinds() {
        let g = GrantView {
            id: "g".into(),
            request: "r".into(),
            subject: "alice".into(),
            target: "t".into(),
            kinds: vec!["read".into(), "write".into()],
            fingerprint: "f".into(),
            command: "x".into(),
            session: None,
            request_session: SessionId::new(),
            issued_by: vec![],
            issued_at: Timestamp(0),
            expires_at: Timestamp(10),
            ended: None,
        };
        let s = SessionId::new();
        assert!(g.covers(s, "other", &["read".into()]));
        assert!(g.covers(s, "other", &["read".into(), "write".into()]));
        assert!(!g.covers(s, "other", &["read".into(), "ddl".into()]));
        assert!(!g.covers(s, "other", &[]));
        assert!(g.covers(s, "f", &[]));
    }
}
