//! Output hooks and the `portcullis_core::Masking` implementation.

use std::collections::BTreeMap;

use portcullis_core::{
    Column, Command, CommandRequest, Completion, FieldFormat, Masking, OutputHook, Result, TextKind,
};

use crate::{ColumnAction, ColumnPlan, FieldAction, MaskReport, Masker, StreamMasker};

/// PostgreSQL type OIDs whose binary format is their text (jsonb: after a version byte).
pub mod oid {
    /// `bytea`: binary format is the raw bytes, scanned as text.
    pub const BYTEA: u32 = 17;
    /// `name`.
    pub const NAME: u32 = 19;
    /// `text`.
    pub const TEXT: u32 = 25;
    /// `json`.
    pub const JSON: u32 = 114;
    /// `bpchar` (`char(n)`).
    pub const BPCHAR: u32 = 1042;
    /// `varchar`.
    pub const VARCHAR: u32 = 1043;
    /// `jsonb` (binary: version byte 1, then the JSON text).
    pub const JSONB: u32 = 3802;
    /// `int8`: binary format is 8 bytes big-endian; decoded to digits to be scanned.
    pub const INT8: u32 = 20;
}

fn text_like(type_oid: u32) -> bool {
    matches!(
        type_oid,
        oid::NAME | oid::TEXT | oid::JSON | oid::BPCHAR | oid::VARCHAR | oid::JSONB | oid::BYTEA
    )
}

fn quote_json(value: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(value).into_owned();
    *value = serde_json::Value::String(text).to_string().into_bytes();
}

/// Masks one field given its column's type and wire format.
///
/// Text format, and binary format of text-like types (`text`, `varchar`, `bpchar`,
/// `name`, `json`, `jsonb` after its version byte, `bytea`), are masked as text. Binary
/// values of other types cannot be scanned: they pass in scanned columns (numbers, dates
/// and the like cannot hold the detected kinds of text) and become NULL in columns
/// masked whole, so clear data never passes. A whole-column mask of a `json`/`jsonb`
/// column is written as a JSON string so the value stays valid JSON.
pub fn mask_typed(
    plan: &ColumnPlan,
    idx: usize,
    type_oid: u32,
    format: FieldFormat,
    value: &mut Vec<u8>,
    report: &mut MaskReport,
) -> FieldAction {
    let json = matches!(type_oid, oid::JSON | oid::JSONB);
    let whole = matches!(plan.action(idx), ColumnAction::Mask(_));
    if format == FieldFormat::Binary && !text_like(type_oid) {
        if whole {
            report.add(plan.report_key(idx), 1);
            value.clear();
            return FieldAction::Null;
        }
        if matches!(plan.action(idx), ColumnAction::Keep) {
            return FieldAction::Keep;
        }
        // Binary values cannot be rewritten in place, but they can hold text: arrays and
        // records embed their elements' bytes, and an int8 can be a card or phone number.
        // Scan them; a finding turns the whole value into NULL.
        let mut probe = match (type_oid, <[u8; 8]>::try_from(value.as_slice())) {
            (oid::INT8, Ok(bytes)) => i64::from_be_bytes(bytes).to_string().into_bytes(),
            _ => value.clone(),
        };
        let mut found = MaskReport::default();
        if plan.mask_field(idx, &mut probe, &mut found) == FieldAction::Keep {
            return FieldAction::Keep;
        }
        report.merge(&found);
        value.clear();
        return FieldAction::Null;
    }
    if format == FieldFormat::Binary && type_oid == oid::JSONB {
        if value.first() != Some(&1) {
            // Unknown jsonb version: cannot be read, so it cannot pass.
            if matches!(plan.action(idx), ColumnAction::Keep) {
                return FieldAction::Keep;
            }
            report.add(plan.report_key(idx), 1);
            value.clear();
            return FieldAction::Null;
        }
        let mut body = value.get(1..).unwrap_or_default().to_vec();
        let action = plan.mask_field(idx, &mut body, report);
        if action == FieldAction::Replaced {
            if whole {
                quote_json(&mut body);
            }
            value.truncate(1);
            value.extend_from_slice(&body);
        }
        return action;
    }
    let action = plan.mask_field(idx, value, report);
    if action == FieldAction::Replaced && whole && json {
        quote_json(value);
    }
    action
}

/// Masks one command's output: builds a [`ColumnPlan`] for each result set, masks
/// rows field by field, masks notice and error text, streams byte chunks through a
/// [`StreamMasker`], and adds its counts to `completion.masked` on finish.
///
/// Byte streams: an adapter calls `chunk` with an empty `Vec` to flush (for example
/// when an interactive session goes idle); the hook then emits what it was holding
/// back. Bytes still held back when `finish` is called are withheld, never passed.
pub struct MaskHook {
    masker: Masker,
    plan: Option<ColumnPlan>,
    types: Vec<(u32, FieldFormat)>,
    stream: Option<StreamMasker>,
    report: MaskReport,
}

impl std::fmt::Debug for MaskHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskHook")
            .field("columns", &self.types.len())
            .field("report", &self.report)
            .finish()
    }
}

impl MaskHook {
    /// A hook for one command.
    pub fn new(masker: Masker) -> Self {
        Self {
            masker,
            plan: None,
            types: Vec::new(),
            stream: None,
            report: MaskReport::new(),
        }
    }

    /// Counts so far (the stream's included once it finished).
    pub fn report(&self) -> &MaskReport {
        &self.report
    }
}

impl OutputHook for MaskHook {
    fn inspects_rows(&self) -> bool {
        true
    }

    fn rewrites_chunks(&self) -> bool {
        true
    }

    fn columns(&mut self, columns: &[Column]) -> Result<()> {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        self.plan = Some(self.masker.plan_columns(&names));
        self.types = columns.iter().map(|c| (c.type_oid, c.format)).collect();
        Ok(())
    }

    fn row(&mut self, fields: &mut [Option<Vec<u8>>]) -> Result<()> {
        let plan = match &self.plan {
            Some(p) => p,
            None => {
                // A row without a description: scan every field as text.
                self.plan = Some(self.masker.plan_columns(&[]));
                match &self.plan {
                    Some(p) => p,
                    None => return Err(portcullis_core::Error::Masking("no column plan".into())),
                }
            }
        };
        for (idx, field) in fields.iter_mut().enumerate() {
            let Some(value) = field else { continue };
            let (type_oid, format) = self
                .types
                .get(idx)
                .copied()
                .unwrap_or((oid::TEXT, FieldFormat::Text));
            if mask_typed(plan, idx, type_oid, format, value, &mut self.report) == FieldAction::Null
            {
                *field = None;
            }
        }
        Ok(())
    }

    fn text(&mut self, _kind: TextKind, text: &mut String) -> Result<()> {
        if let std::borrow::Cow::Owned(masked) = self.masker.mask_str(text, &mut self.report) {
            *text = masked;
        }
        Ok(())
    }

    fn begin_stream(&mut self, tabular: bool) -> Result<()> {
        if tabular && self.masker.has_column_rules() {
            return Err(portcullis_core::Error::Masking(
                "column masking rules cannot be applied to an undescribed row stream \
                 (COPY ... TO STDOUT); use SELECT"
                    .into(),
            ));
        }
        Ok(())
    }

    fn chunk(&mut self, bytes: &mut Vec<u8>) -> Result<()> {
        let stream = self.stream.get_or_insert_with(|| self.masker.stream());
        let mut out = Vec::with_capacity(bytes.len() + 64);
        if bytes.is_empty() {
            stream.flush(&mut out);
        } else {
            stream.push(bytes, &mut out);
        }
        *bytes = out;
        Ok(())
    }

    fn finish(&mut self, completion: &mut Completion) {
        if let Some(mut stream) = self.stream.take() {
            // No way to emit bytes here: whatever is still held back is withheld.
            let mut discard = Vec::new();
            stream.finish(&mut discard);
            self.report.merge(stream.report());
        }
        self.report.merge_into(&mut completion.masked);
        self.report = MaskReport::new();
    }
}

/// The gateway's [`Masking`]: attaches a [`MaskHook`] to each forwarded command's output
/// and masks literal values in the recorded form of commands.
#[derive(Debug, Clone)]
pub struct MaskingEngine {
    default: Option<Masker>,
    targets: BTreeMap<String, Masker>,
    commands: Masker,
}

impl MaskingEngine {
    /// One masker for every target.
    pub fn new(masker: Masker) -> Self {
        Self {
            default: Some(masker.clone()),
            targets: BTreeMap::new(),
            commands: masker,
        }
    }

    /// A masker per target name, and one for targets not in the map (none: no masking).
    /// Recorded commands are masked with `default`, or with every built-in detector
    /// (`redact`) when there is no default.
    pub fn by_target(
        targets: BTreeMap<String, Masker>,
        default: Option<Masker>,
    ) -> std::result::Result<Self, crate::MaskingError> {
        let commands = match &default {
            Some(m) => m.clone(),
            None => Masker::with_defaults()?,
        };
        Ok(Self {
            default,
            targets,
            commands,
        })
    }

    /// The masker used for a target's output.
    pub fn masker_for(&self, target: &str) -> Option<&Masker> {
        self.targets.get(target).or(self.default.as_ref())
    }

    /// Masks literal values (e-mails, cards, tokens...) inside a command's text.
    pub fn redact(&self, command: &Command) -> Command {
        let mut report = MaskReport::new();
        let m = &self.commands;
        let mut mask = |s: &str| m.mask_str(s, &mut report).into_owned();
        match command {
            Command::Sql { text, via } => Command::Sql {
                text: mask(text),
                via: via.clone(),
            },
            Command::Exec { command } => Command::Exec {
                command: mask(command),
            },
            Command::Http {
                method,
                path,
                query,
                details,
            } => Command::Http {
                method: method.clone(),
                path: mask(path),
                query: query.as_deref().map(&mut mask),
                details: details.iter().map(|(k, v)| (k.clone(), mask(v))).collect(),
            },
            other => other.clone(),
        }
    }
}

impl Masking for MaskingEngine {
    fn output_hook(&self, request: &CommandRequest) -> Option<Box<dyn OutputHook>> {
        let masker = self.masker_for(&request.session.target.name)?;
        if !masker.is_active() {
            return None;
        }
        Some(Box::new(MaskHook::new(masker.clone())))
    }

    fn redact_command(&self, command: &Command) -> Command {
        self.redact(command)
    }
}
