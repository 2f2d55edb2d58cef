//! Serde-deserializable masking configuration.

use std::collections::BTreeMap;

use portcullis_core::Secret;
use serde::Deserialize;

/// Masking configuration of one target (`[targets.<name>.masking]` in the gateway's TOML).
///
/// ```
/// # use portcullis_masking::MaskingConfig;
/// let config: MaskingConfig = serde_json::from_str(r#"{
///     "detectors": { "email": "token", "card": { "strategy": "partial", "keep_last": 4 } },
///     "columns": [ { "pattern": "*ssn*", "strategy": "null" } ],
///     "token_key": "0123456789abcdef0123456789abcdef"
/// }"#).unwrap();
/// assert!(config.enabled);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Whether masking applies at all (default `true`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Built-in detectors to run, by name, with their strategy. When absent, every
    /// built-in detector runs with `redact`. A strategy of `"off"` disables one.
    #[serde(default)]
    pub detectors: Option<BTreeMap<String, StrategySpec>>,
    /// Custom detectors (a regex or a word list).
    #[serde(default)]
    pub custom: Vec<CustomDetectorConfig>,
    /// Column rules, first match wins: whole columns masked by name, whatever they hold.
    #[serde(default)]
    pub columns: Vec<ColumnRuleConfig>,
    /// Key of the `token` strategy (HMAC-SHA256); at least 16 bytes. Required when any
    /// detector or column uses `token`.
    #[serde(default)]
    pub token_key: Option<Secret<String>>,
}

fn default_true() -> bool {
    true
}

impl Default for MaskingConfig {
    /// Every built-in detector with `redact`, no custom detectors, no column rules.
    fn default() -> Self {
        Self {
            enabled: true,
            detectors: None,
            custom: Vec::new(),
            columns: Vec::new(),
            token_key: None,
        }
    }
}

/// A strategy as written in configuration: a bare name (`"redact"`, `"partial"`,
/// `"token"`, `"null"`, `"off"` for detectors, `"keep"` for columns) or a table with options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StrategySpec {
    /// Just the strategy name, default options.
    Name(String),
    /// The strategy with options.
    Detailed(StrategyTable),
}

impl Default for StrategySpec {
    fn default() -> Self {
        StrategySpec::Name("redact".into())
    }
}

/// A strategy with options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyTable {
    /// Strategy name.
    pub strategy: String,
    /// For `partial`: how many trailing letters/digits stay visible (default 4).
    #[serde(default)]
    pub keep_last: Option<usize>,
    /// For `redact`: the label written between brackets (default: the detector's, or `REDACTED`).
    #[serde(default)]
    pub label: Option<String>,
}

/// Validator a custom detector's candidates must pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidatorChoice {
    /// No validation.
    #[default]
    None,
    /// Luhn checksum over the digits.
    Luhn,
    /// ISO 7064 mod-97 (IBAN-style).
    Mod97,
}

/// A custom detector: exactly one of `regex` or `words`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorConfig {
    /// Name used in reports and in the default label.
    pub name: String,
    /// Byte-oriented regex (ASCII classes, no look-around); matched wherever it occurs.
    #[serde(default)]
    pub regex: Option<String>,
    /// Words or phrases matched case-insensitively as whole words.
    #[serde(default)]
    pub words: Vec<String>,
    /// Validator for candidates.
    #[serde(default)]
    pub validator: ValidatorChoice,
    /// Strategy (default `redact`).
    #[serde(default)]
    pub strategy: StrategySpec,
}

/// A column rule: columns whose name matches `pattern` are masked whole.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRuleConfig {
    /// Case-insensitive glob over the column name: `*` any run, `?` one character.
    pub pattern: String,
    /// Strategy (default `redact`); `keep` passes the column through unscanned.
    #[serde(default)]
    pub strategy: StrategySpec,
}
