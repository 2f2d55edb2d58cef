//! Output of a command as it streams back, and the hooks that watch or rewrite it.
//!
//! Adapters do not buffer results: they call the hooks of a command as each part of
//! its output passes (column descriptions, one row, one byte chunk, the completion).
//! Masking rewrites parts in place; recording observes the completion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Result;

/// Encoding of a field value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldFormat {
    /// Text representation.
    Text,
    /// Binary representation of the column's type.
    Binary,
}

/// One column of a result set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name or alias as the client will see it.
    pub name: String,
    /// Source table OID (0 when not a plain column reference).
    pub table_oid: u32,
    /// Attribute number in the source table (0 when not a plain column reference).
    pub column_id: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Wire format of the values.
    pub format: FieldFormat,
}

/// Kind of free text a target sends alongside results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// An error message or detail.
    Error,
    /// A notice, warning or informational message.
    Notice,
}

/// How a command ended, as seen by the gateway.
///
/// Fields are declared in the byte order of their names, the order of the recorder's
/// canonical JSON, so that the recorder writes them as they come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// Bytes of output passed to the client.
    pub bytes: u64,
    /// Protocol-specific details of the outcome, already masked (HTTP: an excerpt of the
    /// response body; an upgraded stream's byte counts per direction).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Error code and message if the command failed (already masked).
    pub error: Option<String>,
    /// Masking counts by detector or column rule; never values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub masked: BTreeMap<String, u64>,
    /// Rows affected as reported by the target (INSERT/UPDATE/DELETE/COPY...).
    pub rows_affected: Option<u64>,
    /// Rows returned to the client.
    pub rows_returned: u64,
    /// Whether the command was skipped by the target (for example after an earlier error in a pipeline).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// The target's completion tag (`SELECT 3`, `UPDATE 1`), or HTTP status, or exit status.
    pub tag: Option<String>,
}

/// Watches or rewrites one command's output. Every method has a no-op default.
pub trait OutputHook: Send {
    /// Whether the hook needs rows field by field. Adapters skip splitting rows when no hook does.
    fn inspects_rows(&self) -> bool {
        false
    }

    /// A result set starts with these columns.
    fn columns(&mut self, _columns: &[Column]) -> Result<()> {
        Ok(())
    }

    /// One row; fields may be rewritten in place (`None` is SQL NULL).
    fn row(&mut self, _fields: &mut [Option<Vec<u8>>]) -> Result<()> {
        Ok(())
    }

    /// Free text (errors, notices); may be rewritten in place.
    fn text(&mut self, _kind: TextKind, _text: &mut String) -> Result<()> {
        Ok(())
    }

    /// Whether [`OutputHook::chunk`] may change bytes. Adapters that can pass a byte stream
    /// through untouched (keeping its length) do so when no hook rewrites chunks.
    fn rewrites_chunks(&self) -> bool {
        false
    }

    /// A chunk of a byte stream (terminal output, a body); may be rewritten in place.
    fn chunk(&mut self, _bytes: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }

    /// A byte stream starts. `tabular` when it carries rows whose columns are not
    /// described (PostgreSQL `COPY ... TO STDOUT`). An error refuses the stream.
    fn begin_stream(&mut self, _tabular: bool) -> Result<()> {
        Ok(())
    }

    /// The command ended. Inner hooks finish first and may add to `completion.masked`.
    fn finish(&mut self, _completion: &mut Completion) {}
}

/// The hooks of one command, innermost first.
#[derive(Default)]
pub struct OutputHooks {
    hooks: Vec<Box<dyn OutputHook>>,
    inspects_rows: bool,
    rewrites_chunks: bool,
}

impl std::fmt::Debug for OutputHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputHooks")
            .field("hooks", &self.hooks.len())
            .field("inspects_rows", &self.inspects_rows)
            .field("rewrites_chunks", &self.rewrites_chunks)
            .finish()
    }
}

impl OutputHooks {
    /// Adds an outer hook: it sees what the hooks added before it produced.
    pub fn push(&mut self, hook: Box<dyn OutputHook>) {
        self.inspects_rows |= hook.inspects_rows();
        self.rewrites_chunks |= hook.rewrites_chunks();
        self.hooks.push(hook);
    }

    /// Whether any hook needs rows split into fields.
    pub fn inspects_rows(&self) -> bool {
        self.inspects_rows
    }

    /// Whether any hook may rewrite byte chunks.
    pub fn rewrites_chunks(&self) -> bool {
        self.rewrites_chunks
    }

    /// Whether there are no hooks at all.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Passes column descriptions to every hook.
    pub fn columns(&mut self, columns: &[Column]) -> Result<()> {
        self.hooks.iter_mut().try_for_each(|h| h.columns(columns))
    }

    /// Passes a row through every hook, innermost first.
    pub fn row(&mut self, fields: &mut [Option<Vec<u8>>]) -> Result<()> {
        self.hooks.iter_mut().try_for_each(|h| h.row(fields))
    }

    /// Passes text through every hook, innermost first.
    pub fn text(&mut self, kind: TextKind, text: &mut String) -> Result<()> {
        self.hooks.iter_mut().try_for_each(|h| h.text(kind, text))
    }

    /// Passes a byte chunk through every hook, innermost first.
    pub fn chunk(&mut self, bytes: &mut Vec<u8>) -> Result<()> {
        self.hooks.iter_mut().try_for_each(|h| h.chunk(bytes))
    }

    /// Tells every hook a byte stream starts.
    pub fn begin_stream(&mut self, tabular: bool) -> Result<()> {
        self.hooks
            .iter_mut()
            .try_for_each(|h| h.begin_stream(tabular))
    }

    /// Finishes every hook, innermost first.
    pub fn finish(&mut self, completion: &mut Completion) {
        for h in &mut self.hooks {
            h.finish(completion);
        }
    }
}
