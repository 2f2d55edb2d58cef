//! # portcullis-policy
//!
//! SQL-aware command classification and rule evaluation for Portcullis.
//!
//! - [`classify`] parses SQL (PostgreSQL dialect) and walks the whole syntax tree —
//!   every expression, subquery, CTE, function argument, set operation, `RETURNING` —
//!   to find the statement [`Kind`]s, the tables touched with read/write access, the
//!   functions called (dangerous ones flagged), DML without `WHERE` and the statement
//!   count. Nothing is decided by string matching, so comments, case, quoting and
//!   dollar quoting hide nothing. What does not parse is [`Kind::Unknown`].
//! - [`PolicyConfig`] is a target's rule list as written in TOML;
//!   [`CompiledPolicy::compile`] validates it and [`CompiledPolicy::decide`] decides.
//!   The first matching rule (in file order) wins; a multi-statement string gets the
//!   strictest decision of its statements (deny > review > allow).
//! - [`SshRuleConfig`] (`ssh_rules` of a target's policy) decides SSH requests: exec
//!   command lines (read like a POSIX shell would, see [`parse_command_line`]), shells,
//!   file transfer and forwarding, through [`CompiledPolicy::decide_ssh`].
//! - [`PolicySet`] holds the compiled policies of all targets and implements
//!   [`portcullis_core::CommandPolicy`] for the pipeline.
//!
//! List matchers (`kinds`, `tables`, `functions`) are applied so that rules fail safe:
//! an **allow** rule's list must cover *everything* the statement has (every kind, every
//! table, every function, and at least one), while a **deny** or **review** rule's list
//! is triggered by *any* one of them. So `allow kinds = ["read"]` does not allow
//! `INSERT ... SELECT`, and `deny tables = ["secrets.*"]` catches a join that touches
//! one secret table.
//!
//! ```
//! use portcullis_core::{AuthMethod, Identity, Verdict};
//! use portcullis_policy::{classify, CompiledPolicy, Kind, PolicyConfig};
//!
//! let config = PolicyConfig::from_toml(r#"
//!     default = "deny"
//!
//!     [[rules]]
//!     id = "no-unbounded-dml"
//!     kinds = ["write"]
//!     no_where = true
//!     action = "deny"
//!     reason = "UPDATE and DELETE need a WHERE clause"
//!
//!     [[rules]]
//!     id = "oncall-writes"
//!     groups = ["oncall"]
//!     kinds = ["read", "write", "transaction"]
//!     action = "review"
//!     approvers = ["dba"]
//!
//!     [[rules]]
//!     id = "readers"
//!     kinds = ["read"]
//!     tables = ["public.*"]
//!     action = "allow"
//! "#)?;
//! let policy = CompiledPolicy::compile(&config)?;
//!
//! let alice = Identity {
//!     subject: "alice".into(),
//!     groups: vec!["oncall".into()],
//!     method: AuthMethod::Jwt,
//!     issuer: None,
//!     expires_at: None,
//! };
//!
//! // A DELETE hidden in a CTE, behind a comment, is still a write without WHERE.
//! let sql = "WITH gone AS (DELETE /* harmless */ FROM Orders RETURNING id) SELECT count(*) FROM gone";
//! let class = classify(sql);
//! assert!(class.kinds.contains(&Kind::Write) && class.no_where);
//! assert_eq!(class.tables[0].qualified(), "orders");
//!
//! let (_, decision) = policy.decide(&alice, sql);
//! assert_eq!((decision.verdict, decision.rule.as_str()), (Verdict::Deny, "no-unbounded-dml"));
//!
//! let (_, decision) = policy.decide(&alice, "UPDATE orders SET paid = true WHERE id = $1");
//! assert_eq!((decision.verdict, decision.rule.as_str()), (Verdict::Review, "oncall-writes"));
//!
//! // DO blocks cannot be classified: denied unless a rule allows kind "unknown".
//! let (_, decision) = policy.decide(&alice, "DO $$ BEGIN PERFORM 1; END $$");
//! assert_eq!(decision.rule, "unknown-statement");
//! # Ok::<(), portcullis_policy::PolicyError>(())
//! ```

mod cache;
mod classify;
mod cmdline;
mod config;
mod error;
mod fallback;
mod functions;
mod rules;
mod set;
mod ssh;

pub use cache::{ClassificationCache, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_MAX_SQL};
pub use classify::{Classification, Kind, MAX_OPERATORS, StatementClass, TableAccess, classify};
pub use cmdline::{CommandLine, SimpleCommand, parse_command_line};
pub use config::{DefaultAction, PolicyConfig, QuorumConfig, RuleConfig};
pub use error::PolicyError;
pub use functions::{DANGEROUS_FUNCTIONS, danger_of};
pub use rules::{
    CompiledPolicy, Glob, Quorum, RULE_DEFAULT, RULE_UNKNOWN, RULE_UNSUPPORTED, ReviewRequirement,
    Rule, StatementDecision,
};
pub use set::{PolicySet, PolicySetConfig};
pub use ssh::{RULE_FORWARDING_DEFAULT, RULE_UNPARSABLE, SshRule, SshRuleConfig};

use portcullis_core::Identity;

/// A human-readable account of how `sql` is classified and decided by `policy` for
/// `identity`: each statement's kinds, tables, functions, dangerous calls, and the
/// deciding rule. This is what `portcullis policy explain` prints.
pub fn explain(policy: &CompiledPolicy, identity: &Identity, sql: &str) -> String {
    policy.explain(identity, sql)
}
