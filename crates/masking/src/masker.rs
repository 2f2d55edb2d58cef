//! The compiled masker, its one-shot APIs and column plans.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::{MaskingConfig, StrategySpec, ValidatorChoice};
use crate::detectors::{self, Boundary, Builtin, Validator, ValuePart};
use crate::engine::{Engine, Found, Mode, PatternInfo, PatternSource, Scratch, Triggers};
use crate::glob::Glob;
use crate::strategy::{self, Strategy, TokenKey, Use};
use crate::{MaskReport, MaskingError, StreamMasker};

pub(crate) struct DetectorEntry {
    pub name: String,
    pub strategy: Strategy,
}

struct ColumnRule {
    glob: Glob,
    strategy: Strategy,
}

pub(crate) struct Inner {
    pub engine: Option<Engine>,
    pub detectors: Vec<DetectorEntry>,
    columns: Vec<ColumnRule>,
    pub key: Option<TokenKey>,
}

/// The compiled masking engine of one target. Cheap to clone (an `Arc`), `Send + Sync`.
///
/// Every detector runs in one pass: byte-class and literal prefilters find the few
/// places a sensitive value can start, one multi-pattern DFA runs only there, and
/// validators (Luhn, mod-97, SSN ranges...) run only on its candidate matches.
#[derive(Clone)]
pub struct Masker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field(
                "detectors",
                &self
                    .inner
                    .detectors
                    .iter()
                    .map(|d| &d.name)
                    .collect::<Vec<_>>(),
            )
            .field("column_rules", &self.inner.columns.len())
            .finish()
    }
}

/// One value found by [`Masker::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding<'m> {
    /// Start of the match (byte offset).
    pub start: usize,
    /// End of the match (exclusive).
    pub end: usize,
    /// Start of the part that is masked (differs from `start` for `Bearer x`, `aws_secret=x`).
    pub mask_start: usize,
    /// End of the part that is masked.
    pub mask_end: usize,
    /// Detector name.
    pub detector: &'m str,
}

fn escape_literal(word: &str, out: &mut String) {
    for ch in word.chars() {
        if ch.is_ascii() && !ch.is_ascii_alphanumeric() && ch != ' ' && ch != '_' {
            out.push('\\');
        }
        out.push(ch);
    }
}

impl Masker {
    /// Compiles a configuration. Errors name the offending key and say why.
    pub fn new(config: &MaskingConfig) -> Result<Masker, MaskingError> {
        let mut detectors = Vec::new();
        let mut sources = Vec::new();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut triggers = Triggers::default();
        let mut token_users: Vec<String> = Vec::new();

        if config.enabled {
            // Built-in detectors, in priority order.
            let default_spec = StrategySpec::default();
            let chosen: Vec<(Builtin, &StrategySpec)> = match &config.detectors {
                None => Builtin::ALL.iter().map(|b| (*b, &default_spec)).collect(),
                Some(map) => {
                    for k in map.keys() {
                        if Builtin::from_name(k).is_none() {
                            return Err(MaskingError::config(
                                format!("detectors.{k}"),
                                format!("unknown detector (known: {})", detectors::known_names()),
                            ));
                        }
                    }
                    Builtin::ALL
                        .iter()
                        .filter_map(|b| map.get(b.name()).map(|s| (*b, s)))
                        .collect()
                }
            };
            for (b, spec) in chosen {
                let key = format!("detectors.{}", b.name());
                let usage = if b == Builtin::PrivateKey {
                    Use::PrivateKey
                } else {
                    Use::Detector
                };
                let Some(strategy) = Strategy::compile(spec, &key, b.label(), usage)? else {
                    continue;
                };
                if strategy == Strategy::Token {
                    token_users.push(key);
                }
                let idx = u16::try_from(detectors.len())
                    .map_err(|_| MaskingError::config("detectors", "too many detectors"))?;
                detectors.push(DetectorEntry {
                    name: b.name().to_string(),
                    strategy,
                });
                for p in b.patterns() {
                    sources.push(PatternSource {
                        regex: (*p).to_string(),
                        info: PatternInfo {
                            detector: idx,
                            validator: b.validator(),
                            boundary: b.boundary(),
                            value: b.value_part(),
                            pem: b == Builtin::PrivateKey,
                        },
                        custom_trigger: None,
                    });
                }
                literals.extend(b.literals().iter().map(|l| l.as_bytes().to_vec()));
                match b {
                    Builtin::Card | Builtin::Ssn | Builtin::Phone | Builtin::Ipv4 => {
                        triggers.digits = true;
                    }
                    Builtin::Iban => triggers.iban = true,
                    Builtin::Email => triggers.at = true,
                    Builtin::Ipv6 => triggers.colon = true,
                    _ => {}
                }
            }

            // Custom detectors.
            let mut names: BTreeSet<String> =
                Builtin::ALL.iter().map(|b| b.name().to_string()).collect();
            for (n, c) in config.custom.iter().enumerate() {
                let key = format!("custom[{n}]");
                if c.name.is_empty()
                    || !c
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(MaskingError::config(
                        format!("{key}.name"),
                        "a name is 1 or more ASCII letters, digits, `_` or `-`",
                    ));
                }
                if !names.insert(c.name.clone()) {
                    return Err(MaskingError::config(
                        format!("{key}.name"),
                        format!("`{}` is already the name of another detector", c.name),
                    ));
                }
                let (regex, boundary, word) = match (&c.regex, c.words.is_empty()) {
                    (Some(_), false) => {
                        return Err(MaskingError::config(
                            key,
                            "set either `regex` or `words`, not both",
                        ));
                    }
                    (None, true) => {
                        return Err(MaskingError::config(key, "set `regex` or `words`"));
                    }
                    (Some(r), true) => {
                        let (_, empty) = crate::engine::first_bytes(r)
                            .map_err(|e| MaskingError::config(format!("{key}.regex"), e))?;
                        if empty {
                            return Err(MaskingError::config(
                                format!("{key}.regex"),
                                "matches the empty string",
                            ));
                        }
                        (r.clone(), Boundary::None, false)
                    }
                    (None, false) => {
                        let mut r = String::from("(?i:");
                        for (i, w) in c.words.iter().enumerate() {
                            let trimmed = w.trim();
                            if trimmed.is_empty() {
                                return Err(MaskingError::config(
                                    format!("{key}.words[{i}]"),
                                    "empty word",
                                ));
                            }
                            if i > 0 {
                                r.push('|');
                            }
                            escape_literal(trimmed, &mut r);
                        }
                        r.push(')');
                        (r, Boundary::Word, true)
                    }
                };
                let label = c.name.to_ascii_uppercase();
                let Some(strategy) = Strategy::compile(
                    &c.strategy,
                    &format!("{key}.strategy"),
                    &label,
                    Use::Detector,
                )?
                else {
                    continue;
                };
                if strategy == Strategy::Token {
                    token_users.push(format!("{key}.strategy"));
                }
                let idx = u16::try_from(detectors.len())
                    .map_err(|_| MaskingError::config("custom", "too many detectors"))?;
                detectors.push(DetectorEntry {
                    name: c.name.clone(),
                    strategy,
                });
                sources.push(PatternSource {
                    regex,
                    info: PatternInfo {
                        detector: idx,
                        validator: match c.validator {
                            ValidatorChoice::None => Validator::None,
                            ValidatorChoice::Luhn => Validator::Luhn,
                            ValidatorChoice::Mod97 => Validator::Mod97,
                        },
                        boundary,
                        value: ValuePart::Whole,
                        pem: false,
                    },
                    custom_trigger: Some(word),
                });
            }
        }

        let mut columns = Vec::new();
        if config.enabled {
            for (n, rule) in config.columns.iter().enumerate() {
                let key = format!("columns[{n}]");
                let glob = Glob::new(&rule.pattern)
                    .map_err(|e| MaskingError::config(format!("{key}.pattern"), e))?;
                let strategy = Strategy::compile(
                    &rule.strategy,
                    &format!("{key}.strategy"),
                    "REDACTED",
                    Use::Column,
                )?
                .unwrap_or(Strategy::Keep);
                if strategy == Strategy::Token {
                    token_users.push(format!("{key}.strategy"));
                }
                columns.push(ColumnRule { glob, strategy });
            }
        }

        let key = match (&config.token_key, token_users.first()) {
            (Some(k), _) => Some(TokenKey::new(k)?),
            (None, Some(user)) => {
                return Err(MaskingError::config(
                    "token_key",
                    format!("required because `{user}` uses the token strategy"),
                ));
            }
            (None, None) => None,
        };

        let engine = if sources.is_empty() {
            None
        } else {
            Some(Engine::build(sources, triggers, literals)?)
        };
        Ok(Masker {
            inner: Arc::new(Inner {
                engine,
                detectors,
                columns,
                key,
            }),
        })
    }

    /// A masker with every built-in detector on `redact` and no column rules.
    pub fn with_defaults() -> Result<Masker, MaskingError> {
        Masker::new(&MaskingConfig::default())
    }

    /// Whether this masker can change anything at all (some detector or column rule).
    pub fn is_active(&self) -> bool {
        self.inner.engine.is_some() || !self.inner.columns.is_empty()
    }

    /// Names of the active detectors, in priority order.
    pub fn detector_names(&self) -> Vec<&str> {
        self.inner
            .detectors
            .iter()
            .map(|d| d.name.as_str())
            .collect()
    }

    pub(crate) fn scan_final(&self, input: &[u8], scratch: &mut Scratch) {
        scratch.found.clear();
        if let Some(engine) = &self.inner.engine {
            engine.scan(input, 0, Mode::Final, scratch);
        }
    }

    /// Masks `input`. When something was found, appends the masked text to `out` and
    /// returns `true`; otherwise leaves `out` untouched and returns `false` (the input
    /// can be used as is: nothing was copied).
    pub fn mask_text(&self, input: &[u8], out: &mut Vec<u8>, report: &mut MaskReport) -> bool {
        let mut scratch = Scratch::default();
        self.scan_final(input, &mut scratch);
        if scratch.found.is_empty() {
            return false;
        }
        self.render(input, 0, input.len(), &scratch.found, out, report);
        true
    }

    /// Masks bytes, borrowing the input when nothing is found.
    pub fn mask_bytes<'a>(&self, input: &'a [u8], report: &mut MaskReport) -> Cow<'a, [u8]> {
        let mut out = Vec::new();
        if self.mask_text(input, &mut out, report) {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(input)
        }
    }

    /// Masks a string, borrowing it when nothing is found.
    pub fn mask_str<'a>(&self, input: &'a str, report: &mut MaskReport) -> Cow<'a, str> {
        let mut out = Vec::new();
        if self.mask_text(input.as_bytes(), &mut out, report) {
            Cow::Owned(match String::from_utf8(out) {
                Ok(s) => s,
                // A custom byte pattern may cut a character; never return invalid UTF-8.
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })
        } else {
            Cow::Borrowed(input)
        }
    }

    /// The values the detectors find in `input` (what `mask_text` would replace).
    pub fn find(&self, input: &[u8]) -> Vec<Finding<'_>> {
        let mut scratch = Scratch::default();
        self.scan_final(input, &mut scratch);
        scratch
            .found
            .iter()
            .map(|f| Finding {
                start: f.start,
                end: f.end,
                mask_start: f.mask_start,
                mask_end: f.mask_end,
                detector: self
                    .inner
                    .detectors
                    .get(usize::from(f.detector))
                    .map_or("unknown", |d| d.name.as_str()),
            })
            .collect()
    }

    /// Writes `hay[from..to]` to `out` with the found values replaced.
    pub(crate) fn render(
        &self,
        hay: &[u8],
        from: usize,
        to: usize,
        found: &[Found],
        out: &mut Vec<u8>,
        report: &mut MaskReport,
    ) {
        let mut pos = from;
        let slice = |a: usize, b: usize| hay.get(a..b).unwrap_or_default();
        let mut counts = [0u64; 32];
        for f in found {
            out.extend_from_slice(slice(pos, f.start));
            out.extend_from_slice(slice(f.start, f.mask_start));
            match self.inner.detectors.get(usize::from(f.detector)) {
                Some(d) => {
                    strategy::render(
                        &d.strategy,
                        slice(f.mask_start, f.mask_end),
                        self.inner.key.as_ref(),
                        out,
                    );
                    match counts.get_mut(usize::from(f.detector)) {
                        Some(c) => *c += 1,
                        None => report.add(&d.name, 1),
                    }
                }
                None => out.extend_from_slice(b"[REDACTED]"),
            }
            out.extend_from_slice(slice(f.mask_end, f.end));
            pos = f.end;
        }
        out.extend_from_slice(slice(pos, to));
        for (d, n) in self.inner.detectors.iter().zip(counts) {
            report.add(&d.name, n);
        }
    }

    /// Decides, per column name, whether the column is masked whole (and how), passed
    /// through, or scanned by the detectors. The first matching column rule wins.
    pub fn plan_columns(&self, names: &[&str]) -> ColumnPlan {
        let actions = names
            .iter()
            .map(
                |name| match self.inner.columns.iter().find(|r| r.glob.matches(name)) {
                    Some(r) if r.strategy == Strategy::Keep => ColumnAction::Keep,
                    Some(r) => ColumnAction::Mask(r.strategy.clone()),
                    None => ColumnAction::Scan,
                },
            )
            .collect();
        ColumnPlan {
            masker: self.clone(),
            actions,
            report_keys: names.iter().map(|n| format!("column:{n}")).collect(),
        }
    }

    /// Masks the values of JSON object keys that match a column rule, anywhere in a
    /// JSON document (`{"ssn": "..."}` from `row_to_json`). Returns whether anything
    /// changed; text that is not a JSON object or array is left alone.
    pub fn mask_json_keys(&self, value: &mut Vec<u8>, report: &mut MaskReport) -> bool {
        if self.inner.columns.is_empty() {
            return false;
        }
        match value.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => {}
            _ => return false,
        }
        let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(value) else {
            return false;
        };
        if !self.mask_json_value(&mut doc, report) {
            return false;
        }
        match serde_json::to_vec(&doc) {
            Ok(bytes) => {
                *value = bytes;
                true
            }
            Err(_) => false,
        }
    }

    fn mask_json_value(&self, doc: &mut serde_json::Value, report: &mut MaskReport) -> bool {
        let mut changed = false;
        match doc {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let rule = self.inner.columns.iter().find(|r| r.glob.matches(key));
                    match rule {
                        Some(r) if r.strategy == Strategy::Keep => {}
                        Some(r) => {
                            report.add(&format!("column:{key}"), 1);
                            *v = if r.strategy == Strategy::Null {
                                serde_json::Value::Null
                            } else {
                                let text = match &*v {
                                    serde_json::Value::String(s) => s.clone().into_bytes(),
                                    other => other.to_string().into_bytes(),
                                };
                                let mut out = Vec::new();
                                strategy::render(
                                    &r.strategy,
                                    &text,
                                    self.inner.key.as_ref(),
                                    &mut out,
                                );
                                serde_json::Value::String(
                                    String::from_utf8_lossy(&out).into_owned(),
                                )
                            };
                            changed = true;
                        }
                        None => changed |= self.mask_json_value(v, report),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    changed |= self.mask_json_value(v, report);
                }
            }
            _ => {}
        }
        changed
    }

    /// Whether column rules are configured (they need column names to apply).
    pub fn has_column_rules(&self) -> bool {
        !self.inner.columns.is_empty()
    }

    /// A streaming masker for a byte stream cut into arbitrary chunks.
    pub fn stream(&self) -> StreamMasker {
        StreamMasker::new(self.clone())
    }
}

/// What happens to one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAction {
    /// Values are scanned by the detectors.
    Scan,
    /// Values are masked whole with this strategy, whatever they contain.
    Mask(Strategy),
    /// Values pass unscanned (a column rule with strategy `keep`).
    Keep,
}

/// What [`ColumnPlan::mask_field`] did to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAction {
    /// Unchanged.
    Keep,
    /// Rewritten in place.
    Replaced,
    /// Must become SQL NULL.
    Null,
}

/// Per-column masking decisions for one result set.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    masker: Masker,
    actions: Vec<ColumnAction>,
    report_keys: Vec<String>,
}

impl ColumnPlan {
    /// The action of column `idx` (`Scan` beyond the described columns).
    pub fn action(&self, idx: usize) -> &ColumnAction {
        self.actions.get(idx).unwrap_or(&ColumnAction::Scan)
    }

    pub(crate) fn report_key(&self, idx: usize) -> &str {
        self.report_keys.get(idx).map_or("column:?", String::as_str)
    }

    /// Number of planned columns.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether the plan has no columns.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Whether some column is masked whole.
    pub fn masks_any_column(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, ColumnAction::Mask(_)))
    }

    /// Masks the text value of column `idx` in place.
    pub fn mask_field(
        &self,
        idx: usize,
        value: &mut Vec<u8>,
        report: &mut MaskReport,
    ) -> FieldAction {
        match self.action(idx) {
            ColumnAction::Keep => FieldAction::Keep,
            ColumnAction::Scan => {
                // Column rules also apply to the keys of JSON values (row_to_json,
                // json_agg...), so a column is masked when it is reached as a JSON field.
                let keyed = self.masker.mask_json_keys(value, report);
                let mut out = Vec::new();
                if self.masker.mask_text(value, &mut out, report) {
                    *value = out;
                    FieldAction::Replaced
                } else if keyed {
                    FieldAction::Replaced
                } else {
                    FieldAction::Keep
                }
            }
            ColumnAction::Mask(strategy) => {
                let key = self.report_keys.get(idx).map_or("column:?", String::as_str);
                report.add(key, 1);
                if *strategy == Strategy::Null {
                    value.clear();
                    return FieldAction::Null;
                }
                let mut out = Vec::with_capacity(value.len().max(16));
                strategy::render(strategy, value, self.masker.inner.key.as_ref(), &mut out);
                *value = out;
                FieldAction::Replaced
            }
        }
    }
}
