//! Compiled rules and their evaluation.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use portcullis_core::{Decision, Identity, Verdict};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::cache::ClassificationCache;
use crate::classify::{Classification, Kind, StatementClass, TableAccess};
use crate::config::{DefaultAction, PolicyConfig, QuorumConfig, RuleConfig};

/// Rule id of decisions taken because no rule matched.
pub const RULE_DEFAULT: &str = "default";
/// Rule id of decisions on statements of kind `unknown` that no rule allowed.
pub const RULE_UNKNOWN: &str = "unknown-statement";
/// Rule id of decisions on commands the policy has no rules for (exec, shell, HTTP).
pub const RULE_UNSUPPORTED: &str = "unsupported-command";

pub(crate) const RESERVED_IDS: &[&str] = &[
    RULE_DEFAULT,
    RULE_UNKNOWN,
    RULE_UNSUPPORTED,
    crate::ssh::RULE_UNPARSABLE,
    portcullis_core::RULE_FORWARDING_DEFAULT,
    "target-access",
    "no-policy",
    "policy-error",
];

/// A shell-style glob: `*` matches any run of characters, `?` one character.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    regex: Regex,
}

impl Glob {
    /// Compiles a glob. Empty globs and globs with whitespace or control characters are refused.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty glob".to_string());
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("glob {pattern:?} contains whitespace"));
        }
        let mut re = String::with_capacity(pattern.len() + 8);
        re.push_str("^(?s:");
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push_str(")$");
        let regex = Regex::new(&re).map_err(|e| format!("glob {pattern:?}: {e}"))?;
        Ok(Self {
            pattern: pattern.to_string(),
            regex,
        })
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The glob as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

/// A glob on `schema.table` (both parts matched separately) or on `table` alone.
#[derive(Debug, Clone)]
struct TableGlob {
    schema: Option<Glob>,
    table: Glob,
}

impl TableGlob {
    fn new(pattern: &str) -> Result<Self, String> {
        let parts: Vec<&str> = pattern.split('.').collect();
        match parts.as_slice() {
            [table] => Ok(Self {
                schema: None,
                table: Glob::new(table)?,
            }),
            [schema, table] if !schema.is_empty() && !table.is_empty() => Ok(Self {
                schema: Some(Glob::new(schema)?),
                table: Glob::new(table)?,
            }),
            _ => Err(format!(
                "table glob {pattern:?} must be `table` or `schema.table` with non-empty parts"
            )),
        }
    }

    fn matches(&self, t: &TableAccess, default_schema: &str) -> bool {
        if !self.table.matches(&t.name) {
            return false;
        }
        match &self.schema {
            None => true,
            Some(s) => s.matches(t.schema.as_deref().unwrap_or(default_schema)),
        }
    }
}

pub use portcullis_core::{Quorum, ReviewRequirement};

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's id.
    pub id: String,
    /// Position in the file (from 0).
    pub index: usize,
    /// The verdict when it matches.
    pub verdict: Verdict,
    /// Approvers, for review rules.
    pub review: Option<ReviewRequirement>,
    /// The configured reason, if any.
    pub reason: Option<String>,
    groups: Option<Vec<String>>,
    kinds: Option<BTreeSet<Kind>>,
    tables: Option<Vec<TableGlob>>,
    functions: Option<Vec<Glob>>,
    no_where: Option<bool>,
    dangerous: Option<bool>,
    regex: Option<Regex>,
    statements_over: Option<u64>,
}

/// A rule's `action` as a verdict and, for review rules, who must approve (shared by SQL
/// and SSH rules). Errors are `(key, message)`.
pub(crate) fn compile_action(
    action: &str,
    approvers: Option<&Vec<String>>,
    quorum: Option<&QuorumConfig>,
) -> Result<(Verdict, Option<ReviewRequirement>), (&'static str, String)> {
    let verdict = match action {
        "allow" => Verdict::Allow,
        "deny" => Verdict::Deny,
        "review" => Verdict::Review,
        other => {
            return Err((
                "action",
                format!("unknown action {other:?}; expected \"allow\", \"deny\" or \"review\""),
            ));
        }
    };
    if verdict != Verdict::Review {
        if approvers.is_some() {
            return Err(("approvers", "only review rules take approvers".into()));
        }
        if quorum.is_some() {
            return Err(("quorum", "only review rules take a quorum".into()));
        }
        return Ok((verdict, None));
    }
    let approvers = approvers.cloned().ok_or_else(|| {
        (
            "approvers",
            "a review rule needs at least one approver group".to_string(),
        )
    })?;
    let quorum = match quorum {
        None => Quorum::Count(1),
        Some(QuorumConfig::Count(n)) => match u32::try_from(*n) {
            Ok(n) if n >= 1 => Quorum::Count(n),
            _ => return Err(("quorum", format!("must be at least 1, got {n}"))),
        },
        Some(QuorumConfig::Named(name)) if name == "each-group" => Quorum::EachGroup,
        Some(QuorumConfig::Named(name)) => {
            return Err((
                "quorum",
                format!("expected a number or \"each-group\", got {name:?}"),
            ));
        }
    };
    Ok((verdict, Some(ReviewRequirement { approvers, quorum })))
}

impl Rule {
    fn compile(index: usize, cfg: &RuleConfig) -> Result<Self, PolicyError> {
        let err = |key: &'static str, message: String| PolicyError::Rule {
            index,
            id: cfg.id.clone(),
            key,
            message,
        };
        if cfg.id.trim().is_empty() {
            return Err(err("id", "must not be empty".into()));
        }
        if RESERVED_IDS.contains(&cfg.id.as_str()) {
            return Err(err(
                "id",
                format!("`{}` is reserved for built-in decisions", cfg.id),
            ));
        }
        let non_empty = |key: &'static str, v: &Option<Vec<String>>| -> Result<(), PolicyError> {
            match v {
                Some(list) if list.is_empty() => Err(err(
                    key,
                    "empty list matches nothing; remove the key to match anything".into(),
                )),
                Some(list) if list.iter().any(|s| s.trim().is_empty()) => {
                    Err(err(key, "list holds an empty name".into()))
                }
                _ => Ok(()),
            }
        };
        non_empty("groups", &cfg.groups)?;
        non_empty("kinds", &cfg.kinds)?;
        non_empty("tables", &cfg.tables)?;
        non_empty("functions", &cfg.functions)?;
        non_empty("approvers", &cfg.approvers)?;

        let kinds = match &cfg.kinds {
            None => None,
            Some(list) => {
                let mut set = BTreeSet::new();
                for name in list {
                    let kind = Kind::from_name(name).ok_or_else(|| {
                        err(
                            "kinds",
                            format!(
                                "unknown kind {name:?}; known kinds: {}",
                                Kind::ALL.map(Kind::name).join(", ")
                            ),
                        )
                    })?;
                    set.insert(kind);
                }
                Some(set)
            }
        };
        let tables = match &cfg.tables {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| TableGlob::new(p).map_err(|m| err("tables", m)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let functions = match &cfg.functions {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| Glob::new(p).map_err(|m| err("functions", m)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let regex = match &cfg.regex {
            None => None,
            Some(r) if r.is_empty() => return Err(err("regex", "empty regular expression".into())),
            Some(r) => Some(
                Regex::new(r)
                    .map_err(|e| err("regex", format!("invalid regular expression: {e}")))?,
            ),
        };
        if cfg.statements_over == Some(u64::MAX) {
            return Err(err(
                "statements_over",
                "no string can exceed this count".into(),
            ));
        }
        let (verdict, review) =
            compile_action(&cfg.action, cfg.approvers.as_ref(), cfg.quorum.as_ref())
                .map_err(|(key, message)| err(key, message))?;
        Ok(Self {
            id: cfg.id.clone(),
            index,
            verdict,
            review,
            reason: cfg.reason.clone(),
            groups: cfg.groups.clone(),
            kinds,
            tables,
            functions,
            no_where: cfg.no_where,
            dangerous: cfg.dangerous_functions,
            regex,
            statements_over: cfg.statements_over,
        })
    }

    /// Whether this rule's list matchers must cover the whole statement (allow rules) or
    /// are triggered by any element (deny and review rules).
    fn covering(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// Whether the rule names kind `unknown`.
    fn names_unknown(&self) -> bool {
        self.kinds
            .as_ref()
            .is_some_and(|k| k.contains(&Kind::Unknown))
    }

    /// Evaluates the rule on one statement; on a match, returns what matched.
    fn matches(
        &self,
        identity: &Identity,
        stmt: &StatementClass,
        whole: &Classification,
        sql: &str,
        default_schema: &str,
    ) -> Option<Vec<String>> {
        let mut why = Vec::new();
        let covering = self.covering();
        if let Some(groups) = &self.groups {
            let hit: Vec<&String> = groups.iter().filter(|g| identity.in_group(g)).collect();
            if hit.is_empty() {
                return None;
            }
            why.push(format!("group {}", join(hit.iter().map(|s| s.as_str()))));
        }
        if let Some(kinds) = &self.kinds {
            let ok = if covering {
                !stmt.kinds.is_empty() && stmt.kinds.is_subset(kinds)
            } else {
                !stmt.kinds.is_disjoint(kinds)
            };
            if !ok {
                return None;
            }
            let shown = stmt
                .kinds
                .iter()
                .filter(|k| kinds.contains(k))
                .map(|k| k.name());
            why.push(format!("kind {}", join(shown)));
        }
        if let Some(globs) = &self.tables {
            let hits: Vec<String> = stmt
                .tables
                .iter()
                .filter(|t| globs.iter().any(|g| g.matches(t, default_schema)))
                .map(TableAccess::qualified)
                .collect();
            let ok = if covering {
                !stmt.tables.is_empty() && hits.len() == stmt.tables.len()
            } else {
                !hits.is_empty()
            };
            if !ok {
                return None;
            }
            why.push(format!("table {}", hits.join(", ")));
        }
        if let Some(globs) = &self.functions {
            let hits: Vec<&String> = stmt
                .functions
                .iter()
                .filter(|f| {
                    let bare = f.rsplit('.').next().unwrap_or(f);
                    globs.iter().any(|g| g.matches(f) || g.matches(bare))
                })
                .collect();
            let ok = if covering {
                !stmt.functions.is_empty() && hits.len() == stmt.functions.len()
            } else {
                !hits.is_empty()
            };
            if !ok {
                return None;
            }
            why.push(format!(
                "function {}",
                join(hits.iter().map(|s| s.as_str()))
            ));
        }
        if let Some(want) = self.no_where {
            if stmt.no_where != want {
                return None;
            }
            why.push(if want { "no WHERE" } else { "has WHERE" }.to_string());
        }
        if let Some(want) = self.dangerous {
            if stmt.dangerous.is_empty() == want {
                return None;
            }
            if want {
                why.push(format!(
                    "dangerous {}",
                    join(stmt.dangerous.keys().map(|s| s.as_str()))
                ));
            } else {
                why.push("nothing dangerous".to_string());
            }
        }
        if let Some(re) = &self.regex {
            if !re.is_match(sql) {
                return None;
            }
            why.push(format!("regex /{}/", re.as_str()));
        }
        if let Some(n) = self.statements_over {
            if u64::try_from(whole.statement_count).unwrap_or(u64::MAX) <= n {
                return None;
            }
            why.push(format!("{} statements (over {n})", whole.statement_count));
        }
        if why.is_empty() {
            why.push("matches everything".to_string());
        }
        Some(why)
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// The decision on one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementDecision {
    /// Position of the statement in the string (from 0).
    pub statement: usize,
    /// The verdict.
    pub verdict: Verdict,
    /// The deciding rule id (or `default` / `unknown-statement`).
    pub rule: String,
    /// What matched.
    pub reason: String,
}

fn strictness(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Review => 1,
        Verdict::Deny => 2,
    }
}

/// A validated policy for one target, ready to decide.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    rules: Vec<Rule>,
    ssh_rules: Vec<crate::ssh::SshRule>,
    default: DefaultAction,
    default_schema: String,
    cache: Arc<ClassificationCache>,
}

impl CompiledPolicy {
    /// Validates `config` and compiles its globs and regular expressions. Errors name the
    /// rule (index and id), the key and why.
    pub fn compile(config: &PolicyConfig) -> Result<Self, PolicyError> {
        if config.default_schema.trim().is_empty() {
            return Err(PolicyError::Setting {
                key: "default_schema".into(),
                message: "must not be empty".into(),
            });
        }
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (index, cfg) in config.rules.iter().enumerate() {
            let rule = Rule::compile(index, cfg)?;
            if !seen.insert(rule.id.clone()) {
                return Err(PolicyError::Rule {
                    index,
                    id: rule.id,
                    key: "id",
                    message: "duplicate rule id".into(),
                });
            }
            rules.push(rule);
        }
        let mut ssh_rules = Vec::with_capacity(config.ssh_rules.len());
        for (index, cfg) in config.ssh_rules.iter().enumerate() {
            let rule = crate::ssh::compile_rule(index, cfg)?;
            if RESERVED_IDS.contains(&rule.id.as_str()) || !seen.insert(rule.id.clone()) {
                return Err(PolicyError::Setting {
                    key: format!("ssh_rules[{index}] (id `{}`).id", rule.id),
                    message: "duplicate or reserved rule id (ids are shared with `rules`)".into(),
                });
            }
            ssh_rules.push(rule);
        }
        Ok(Self {
            rules,
            ssh_rules,
            default: config.default,
            default_schema: config.default_schema.clone(),
            cache: Arc::new(ClassificationCache::default()),
        })
    }

    /// Uses `cache` for classifications (to share one cache between targets).
    pub fn with_cache(mut self, cache: Arc<ClassificationCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The classification cache in use.
    pub fn cache(&self) -> &Arc<ClassificationCache> {
        &self.cache
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with id `id`.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Who must approve commands that rule `id` (SQL or SSH) sends to review.
    pub fn review_requirement(&self, id: &str) -> Option<&ReviewRequirement> {
        match self.rule(id) {
            Some(r) => r.review.as_ref(),
            None => self
                .ssh_rules
                .iter()
                .find(|r| r.id == id)
                .and_then(|r| r.review.as_ref()),
        }
    }

    /// The SSH rules, in evaluation order.
    pub fn ssh_rules(&self) -> &[crate::ssh::SshRule] {
        &self.ssh_rules
    }

    /// Decides on an SSH request (`Exec`, `Shell`, `FileTransfer`, `Forward`) with the
    /// SSH rules; `None` for other commands. Exec, shell and file transfer fall back to
    /// the policy's default; forwarding is denied unless a rule allows it. Exec command
    /// lines that cannot be read are denied (`unparsable-command`).
    pub fn decide_ssh(
        &self,
        identity: &Identity,
        command: &portcullis_core::Command,
    ) -> Option<Decision> {
        crate::ssh::decide(&self.ssh_rules, self.default, identity, command)
    }

    /// A human-readable account of how an SSH request is read and decided; `None` for
    /// other commands.
    pub fn explain_ssh(
        &self,
        identity: &Identity,
        command: &portcullis_core::Command,
    ) -> Option<String> {
        crate::ssh::explain(&self.ssh_rules, self.default, identity, command)
    }

    /// The action when no rule matches.
    pub fn default_action(&self) -> DefaultAction {
        self.default
    }

    /// Classifies `sql` (through the cache) and decides on it for `identity`.
    ///
    /// Each statement is decided on its own: the first rule (in file order) whose
    /// matchers all match decides; statements of kind `unknown` are only matched by
    /// rules naming kind `unknown` and are otherwise denied (`unknown-statement`);
    /// otherwise the policy's default applies (`default`). The string's decision is the
    /// strictest of its statements' (deny > review > allow; the first such statement).
    pub fn decide(&self, identity: &Identity, sql: &str) -> (Classification, Decision) {
        let (class, decision) = self.decide_shared(identity, sql);
        (Classification::clone(&class), decision)
    }

    /// Like [`CompiledPolicy::decide`], returning the cached classification without copying it.
    pub fn decide_shared(&self, identity: &Identity, sql: &str) -> (Arc<Classification>, Decision) {
        let class = self.cache.classify(sql);
        let decision = self.decide_classified(identity, &class, sql);
        (class, decision)
    }

    /// Decides on an already classified string.
    pub fn decide_classified(
        &self,
        identity: &Identity,
        class: &Classification,
        sql: &str,
    ) -> Decision {
        let per = self.decide_statements(identity, class, sql);
        let count = per.len();
        let Some(worst) = per.into_iter().reduce(|worst, d| {
            if strictness(d.verdict) > strictness(worst.verdict) {
                d
            } else {
                worst
            }
        }) else {
            return self.default_decision("the text holds no statement".to_string());
        };
        let reason = if count > 1 {
            format!(
                "statement {} of {count}: {}",
                worst.statement + 1,
                worst.reason
            )
        } else {
            worst.reason
        };
        let mut decision = Decision::new(worst.verdict, worst.rule, reason);
        if decision.verdict == Verdict::Review {
            decision.review = self.review_requirement(&decision.rule).cloned();
        }
        decision.kinds = class.kinds.iter().map(|k| k.name().to_string()).collect();
        decision
    }

    /// The decision on each statement of an already classified string.
    pub fn decide_statements(
        &self,
        identity: &Identity,
        class: &Classification,
        sql: &str,
    ) -> Vec<StatementDecision> {
        class
            .statements
            .iter()
            .enumerate()
            .map(|(i, stmt)| self.decide_statement(i, identity, stmt, class, sql))
            .collect()
    }

    fn decide_statement(
        &self,
        index: usize,
        identity: &Identity,
        stmt: &StatementClass,
        whole: &Classification,
        sql: &str,
    ) -> StatementDecision {
        let unknown = stmt.is_unknown();
        for rule in &self.rules {
            if unknown && !rule.names_unknown() {
                continue;
            }
            if let Some(why) = rule.matches(identity, stmt, whole, sql, &self.default_schema) {
                let matched = why.join("; ");
                let reason = match &rule.reason {
                    Some(r) => format!("{r} (rule `{}`: {matched})", rule.id),
                    None => format!("rule `{}` matched: {matched}", rule.id),
                };
                return StatementDecision {
                    statement: index,
                    verdict: rule.verdict,
                    rule: rule.id.clone(),
                    reason,
                };
            }
        }
        if unknown {
            let detail = stmt
                .parse_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return StatementDecision {
                statement: index,
                verdict: Verdict::Deny,
                rule: RULE_UNKNOWN.to_string(),
                reason: format!(
                    "statement could not be classified{detail}; no rule allows kind `unknown`"
                ),
            };
        }
        let d = self.default_decision(format!(
            "no rule matched (kinds {})",
            join(stmt.kinds.iter().map(|k| k.name()))
        ));
        StatementDecision {
            statement: index,
            verdict: d.verdict,
            rule: d.rule,
            reason: d.reason,
        }
    }

    pub(crate) fn default_decision(&self, why: String) -> Decision {
        match self.default {
            DefaultAction::Allow => Decision::allow(RULE_DEFAULT, format!("{why}; default allow")),
            DefaultAction::Deny => Decision::deny(RULE_DEFAULT, format!("{why}; default deny")),
        }
    }

    /// A human-readable account of how `sql` is classified and decided for `identity`.
    pub fn explain(&self, identity: &Identity, sql: &str) -> String {
        let class = self.cache.classify(sql);
        let per = self.decide_statements(identity, &class, sql);
        let decision = self.decide_classified(identity, &class, sql);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "identity: {} (groups: {})",
            identity.subject,
            if identity.groups.is_empty() {
                "none".to_string()
            } else {
                identity.groups.join(", ")
            }
        );
        let _ = writeln!(out, "statements: {}", class.statement_count);
        for (stmt, d) in class.statements.iter().zip(&per) {
            let _ = writeln!(out, "statement {}:", d.statement + 1);
            write_class(&mut out, stmt);
            let _ = writeln!(
                out,
                "  decision: {} by `{}`: {}",
                verdict_name(d.verdict),
                d.rule,
                d.reason
            );
        }
        let _ = writeln!(
            out,
            "decision: {} by `{}`: {}",
            verdict_name(decision.verdict),
            decision.rule,
            decision.reason
        );
        if let Some(req) = self.review_requirement(&decision.rule)
            && decision.verdict == Verdict::Review
        {
            let quorum = match req.quorum {
                Quorum::Count(n) => format!("{n} approval(s)"),
                Quorum::EachGroup => "one approval from each group".to_string(),
            };
            let _ = writeln!(out, "approvers: {} ({quorum})", req.approvers.join(", "));
        }
        out
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
        Verdict::Review => "review",
    }
}

fn write_class(out: &mut String, s: &StatementClass) {
    let none = || "-".to_string();
    let kinds = join(s.kinds.iter().map(|k| k.name()));
    let tables = if s.tables.is_empty() {
        none()
    } else {
        s.tables
            .iter()
            .map(|t| format!("{} ({})", t.qualified(), t.access()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let functions = if s.functions.is_empty() {
        none()
    } else {
        join(s.functions.iter().map(|f| f.as_str()))
    };
    let dangerous = if s.dangerous.is_empty() {
        none()
    } else {
        s.dangerous
            .iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let schemas = if s.schemas.is_empty() {
        none()
    } else {
        join(s.schemas.iter().map(|f| f.as_str()))
    };
    let _ = writeln!(out, "  kinds: {kinds}");
    let _ = writeln!(out, "  tables: {tables}");
    let _ = writeln!(out, "  schemas: {schemas}");
    let _ = writeln!(out, "  functions: {functions}");
    let _ = writeln!(out, "  dangerous: {dangerous}");
    let _ = writeln!(out, "  no WHERE: {}", if s.no_where { "yes" } else { "no" });
    if let Some(e) = &s.parse_error {
        let _ = writeln!(out, "  parse error: {e}");
    }
}
