//! Decisions taken on commands and connections.

use serde::{Deserialize, Serialize};

/// What happens to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Refuse it; it never reaches the target.
    Deny,
    /// Park it until approvers decide.
    Review,
}

/// A verdict with the rule that produced it and why.
///
/// Fields are declared in the byte order of their names, the order of the recorder's
/// canonical JSON, so that the recorder writes them as they come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Approval request or grant that turned a review into this decision, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// What the policy found the command to be (statement kinds such as `read`, `write`,
    /// `ddl`), used by just-in-time grants and shown to approvers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Human-readable reason.
    pub reason: String,
    /// Who must approve, for a [`Verdict::Review`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewRequirement>,
    /// Identifier of the deciding rule (`target-access`, a configured rule id, `default`).
    pub rule: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// Who must approve a command under review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRequirement {
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// How many approvals are needed.
    pub quorum: Quorum,
}

/// How many approvals a review needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quorum {
    /// This many approvals from distinct approvers in any of the approver groups.
    Count(u32),
    /// One approval from a member of each approver group.
    EachGroup,
}

impl Decision {
    /// An allow decision.
    pub fn allow(rule: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(Verdict::Allow, rule, reason)
    }

    /// A deny decision.
    pub fn deny(rule: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(Verdict::Deny, rule, reason)
    }

    /// A decision with any verdict.
    pub fn new(verdict: Verdict, rule: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            verdict,
            rule: rule.into(),
            reason: reason.into(),
            approval: None,
            review: None,
            kinds: Vec::new(),
        }
    }

    /// Whether the command may be forwarded.
    pub fn allows(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}
