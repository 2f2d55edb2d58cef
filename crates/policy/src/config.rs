//! The rule language, as written in the gateway configuration (TOML).

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// What happens when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Forward the command.
    Allow,
    /// Refuse the command (the default).
    #[default]
    Deny,
}

/// The command policy of one target.
///
/// ```toml
/// default = "deny"            # when no rule matches: "allow" or "deny" (default "deny")
/// default_schema = "public"   # schema assumed for unqualified table names in `tables` globs
///
/// [[rules]]
/// id = "no-unbounded-dml"
/// kinds = ["write"]
/// no_where = true
/// action = "deny"
/// reason = "UPDATE/DELETE need a WHERE clause"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Action when no rule matches.
    #[serde(default)]
    pub default: DefaultAction,
    /// Schema assumed for unqualified table names when matching `schema.table` globs.
    #[serde(default = "default_schema")]
    pub default_schema: String,
    /// The rules, evaluated in order; the first that matches decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Rules for SSH requests (exec, shell, file transfer, forwarding), evaluated in
    /// order; the first that matches decides. See [`crate::SshRuleConfig`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_rules: Vec<crate::SshRuleConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            default: DefaultAction::Deny,
            default_schema: default_schema(),
            rules: Vec::new(),
            ssh_rules: Vec::new(),
        }
    }
}

fn default_schema() -> String {
    "public".to_string()
}

impl PolicyConfig {
    /// Reads a policy from TOML text (not yet validated: see [`crate::CompiledPolicy::compile`]).
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))
    }
}

/// One rule. All present matchers must match (AND); items of one list matcher are
/// alternatives (OR). See the crate documentation for how allow rules and deny/review
/// rules apply list matchers to statements that touch several tables or functions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique identifier, reported in decisions.
    pub id: String,
    /// The caller is in any of these groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Statement kinds (`read`, `write`, `ddl`, `privileges`, `admin`, `lock`,
    /// `transaction`, `session`, `utility`, `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    /// Globs on `schema.table` or `table` (`*` any run of characters, `?` one character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Globs on function names (`name` or `schema.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<String>>,
    /// `true`: the statement is an UPDATE/DELETE without WHERE (or a TRUNCATE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_where: Option<bool>,
    /// `true`: the statement calls a dangerous function or does a dangerous operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dangerous_functions: Option<bool>,
    /// A regular expression searched in the raw SQL text (last resort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The SQL string holds more than this many statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements_over: Option<u64>,
    /// `allow`, `deny` or `review`.
    pub action: String,
    /// Groups whose members may approve (review only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<String>>,
    /// How many approvals are needed: a number, or `"each-group"` (one from each
    /// approver group). Review only; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumConfig>,
    /// Text shown to the caller and recorded with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A quorum as written: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuorumConfig {
    /// A number of approvals.
    Count(i64),
    /// A named quorum (`"each-group"`).
    Named(String),
}
