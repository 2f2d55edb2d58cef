//! Per-target policies behind the pipeline's [`CommandPolicy`] trait.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use portcullis_core::{Command, CommandPolicy, Decision, Result, SessionContext};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::cache::ClassificationCache;
use crate::config::{DefaultAction, PolicyConfig};
use crate::rules::{CompiledPolicy, RULE_DEFAULT, RULE_UNSUPPORTED, ReviewRequirement};

/// Policies of several targets, as written in configuration.
///
/// ```toml
/// default = "deny"          # for targets without a policy
///
/// [targets.orders]
/// default = "deny"
/// [[targets.orders.rules]]
/// id = "readers"
/// groups = ["analysts"]
/// kinds = ["read"]
/// action = "allow"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetConfig {
    /// Action for commands on targets that have no policy.
    #[serde(default)]
    pub default: DefaultAction,
    /// Policy per target name.
    #[serde(default)]
    pub targets: BTreeMap<String, PolicyConfig>,
}

/// Compiled policies keyed by target name, sharing one classification cache.
///
/// Implements [`CommandPolicy`]: the session's target must admit the identity
/// (rule `target-access`), then SQL commands are decided by the target's policy's
/// `rules`, SSH requests by its `ssh_rules`. Forwarding is denied unless an SSH rule
/// allows it, also on targets without a policy.
/// A target without a policy gets the set's default (rule `default`).
#[derive(Debug, Clone)]
pub struct PolicySet {
    targets: HashMap<String, CompiledPolicy>,
    default: DefaultAction,
    cache: Arc<ClassificationCache>,
}

impl PolicySet {
    /// An empty set whose targets all get `default`.
    pub fn new(default: DefaultAction) -> Self {
        Self {
            targets: HashMap::new(),
            default,
            cache: Arc::new(ClassificationCache::default()),
        }
    }

    /// Compiles every target's policy; errors name the target.
    pub fn compile(config: &PolicySetConfig) -> Result<Self, PolicyError> {
        let mut set = Self::new(config.default);
        for (name, policy) in &config.targets {
            let compiled = CompiledPolicy::compile(policy).map_err(|e| PolicyError::Setting {
                key: format!("targets.{name}"),
                message: e.to_string(),
            })?;
            set.insert(name.clone(), compiled);
        }
        Ok(set)
    }

    /// Reads and compiles a set from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let config: PolicySetConfig =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        Self::compile(&config)
    }

    /// Adds (or replaces) the policy of target `name`; it shares the set's cache.
    pub fn insert(&mut self, name: impl Into<String>, policy: CompiledPolicy) {
        self.targets
            .insert(name.into(), policy.with_cache(self.cache.clone()));
    }

    /// The policy of target `name`.
    pub fn get(&self, name: &str) -> Option<&CompiledPolicy> {
        self.targets.get(name)
    }

    /// Who must approve a command that rule `rule` of target `target` sent to review.
    pub fn review_requirement(&self, target: &str, rule: &str) -> Option<&ReviewRequirement> {
        self.targets.get(target)?.review_requirement(rule)
    }

    /// The shared classification cache.
    pub fn cache(&self) -> &Arc<ClassificationCache> {
        &self.cache
    }

    fn set_default(&self, why: &str) -> Decision {
        match self.default {
            DefaultAction::Allow => Decision::allow(RULE_DEFAULT, format!("{why}; default allow")),
            DefaultAction::Deny => Decision::deny(RULE_DEFAULT, format!("{why}; default deny")),
        }
    }
}

impl CommandPolicy for PolicySet {
    fn decide(&self, session: &SessionContext, command: &Command) -> Result<Decision> {
        if !session.target.admits(&session.identity) {
            return Ok(Decision::deny(
                "target-access",
                "identity is not in a group allowed on the target",
            ));
        }
        let Some(policy) = self.targets.get(&session.target.name) else {
            if let Command::Forward { .. } = command {
                return Ok(Decision::deny(
                    portcullis_core::RULE_FORWARDING_DEFAULT,
                    format!(
                        "no policy configured for target `{}`; forwarding needs a rule that allows it",
                        session.target.name
                    ),
                ));
            }
            return Ok(self.set_default(&format!(
                "no policy configured for target `{}`",
                session.target.name
            )));
        };
        match command {
            Command::Sql { text, .. } => Ok(policy.decide_shared(&session.identity, text).1),
            other => {
                if let Some(d) = policy.decide_ssh(&session.identity, other) {
                    return Ok(d);
                }
                // Extension point: HTTP commands get their own matchers here. Until then
                // only a target whose default is allow lets them through.
                let what = match other {
                    Command::Http { .. } => "http",
                    _ => "this kind of",
                };
                Ok(match policy.default_action() {
                    DefaultAction::Allow => Decision::allow(
                        RULE_UNSUPPORTED,
                        format!("no rules for {what} commands yet; target default is allow"),
                    ),
                    DefaultAction::Deny => Decision::deny(
                        RULE_UNSUPPORTED,
                        format!("no rules for {what} commands yet; target default is deny"),
                    ),
                })
            }
        }
    }
}
