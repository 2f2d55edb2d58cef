#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every statement of `tests/corpus.toml` is classified as the file says.

use std::collections::BTreeSet;

use portcullis_policy::classify;
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    sql: String,
    kinds: Vec<String>,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    dangerous: Vec<String>,
    #[serde(default)]
    no_where: bool,
    #[serde(default)]
    statements: Option<usize>,
    /// Checked only when given.
    #[serde(default)]
    schemas: Option<Vec<String>>,
    #[serde(default)]
    note: Option<String>,
}

#[test]
fn corpus_is_classified_as_expected() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus.toml")).unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    assert!(
        corpus.case.len() >= 120,
        "corpus has {} cases",
        corpus.case.len()
    );
    let mut failures = Vec::new();
    for (i, case) in corpus.case.iter().enumerate() {
        let c = classify(&case.sql);
        let kinds: BTreeSet<String> = c.kinds.iter().map(|k| k.name().to_string()).collect();
        let tables: BTreeSet<String> = c
            .tables
            .iter()
            .map(|t| format!("{}:{}", t.qualified(), t.access()))
            .collect();
        let functions: BTreeSet<String> = c.functions.iter().cloned().collect();
        let dangerous: BTreeSet<String> = c.dangerous.keys().cloned().collect();
        let mut problems = Vec::new();
        let want = |v: &Vec<String>| v.iter().cloned().collect::<BTreeSet<String>>();
        if kinds != want(&case.kinds) {
            problems.push(format!("kinds {kinds:?}, expected {:?}", case.kinds));
        }
        if tables != want(&case.tables) {
            problems.push(format!("tables {tables:?}, expected {:?}", case.tables));
        }
        if functions != want(&case.functions) {
            problems.push(format!(
                "functions {functions:?}, expected {:?}",
                case.functions
            ));
        }
        if dangerous != want(&case.dangerous) {
            problems.push(format!(
                "dangerous {dangerous:?}, expected {:?}",
                case.dangerous
            ));
        }
        if c.no_where != case.no_where {
            problems.push(format!(
                "no_where {}, expected {}",
                c.no_where, case.no_where
            ));
        }
        if let Some(want_schemas) = &case.schemas {
            let schemas: BTreeSet<String> = c.schemas.iter().cloned().collect();
            if schemas != want(want_schemas) {
                problems.push(format!("schemas {schemas:?}, expected {want_schemas:?}"));
            }
        }
        if let Some(n) = case.statements
            && c.statement_count != n
        {
            problems.push(format!("statements {}, expected {n}", c.statement_count));
        }
        let unknown_expected = case.kinds.iter().any(|k| k == "unknown");
        if unknown_expected != c.is_unknown() {
            problems.push(format!(
                "unknown {}, parse error {:?}",
                c.is_unknown(),
                c.parse_error
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case {i} {}\n  sql: {}\n  {}",
                case.note.as_deref().unwrap_or(""),
                case.sql.trim(),
                problems.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases misclassified:\n{}",
        failures.len(),
        corpus.case.len(),
        failures.join("\n")
    );
}
