//! Recognition of PostgreSQL statements the SQL parser does not support.
//!
//! Some PostgreSQL statements (`CHECKPOINT`, `ALTER SYSTEM`, `RESET`, `LOCK`,
//! `SET SESSION AUTHORIZATION`, two-phase commit, ...) are rejected by the parser. They
//! are recognized here from the tokenizer's output (so comments, quoting and case
//! cannot disguise them), and only when the statement holds no parenthesis at all:
//! without parentheses a PostgreSQL statement cannot contain a function call or a
//! subquery, so nothing can hide inside the words that are not looked at. Everything
//! else stays `unknown`.

use std::collections::BTreeSet;

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::tokenizer::{Token, Word};

use crate::classify::{Kind, StatementClass, TableAccess, normalize_ident};

/// The upper-cased keyword text of an unquoted word.
fn keyword(t: &Token) -> Option<String> {
    match t {
        Token::Word(Word {
            value,
            quote_style: None,
            ..
        }) => Some(value.to_ascii_uppercase()),
        _ => None,
    }
}

fn ident(w: &Word) -> Ident {
    Ident {
        value: w.value.clone(),
        quote_style: w.quote_style,
        span: sqlparser::tokenizer::Span::empty(),
    }
}

/// Reads a possibly qualified name starting at `tokens[i]`; returns it and the index after it.
fn read_name(tokens: &[Token], mut i: usize) -> Option<(ObjectName, usize)> {
    let mut parts = Vec::new();
    loop {
        match tokens.get(i) {
            Some(Token::Word(w)) => parts.push(ident(w)),
            _ => return None,
        }
        i += 1;
        if matches!(tokens.get(i), Some(Token::Period)) {
            i += 1;
        } else {
            return Some((ObjectName::from(parts), i));
        }
    }
}

fn access(name: &ObjectName, read: bool, write: bool) -> TableAccess {
    let mut parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(normalize_ident))
        .collect();
    let table = parts.pop().unwrap_or_default();
    TableAccess {
        schema: parts.pop(),
        name: table,
        read,
        write,
    }
}

fn class(kinds: &[Kind], tables: Vec<TableAccess>) -> StatementClass {
    StatementClass {
        kinds: kinds.iter().copied().collect::<BTreeSet<_>>(),
        schemas: tables.iter().filter_map(|t| t.schema.clone()).collect(),
        tables,
        ..StatementClass::default()
    }
}

/// Recognizes one statement (tokens without whitespace or semicolons), or `None`.
pub(crate) fn recognize(tokens: &[Token]) -> Option<StatementClass> {
    if tokens
        .iter()
        .any(|t| matches!(t, Token::LParen | Token::RParen | Token::LBracket))
    {
        return None;
    }
    let words: Vec<Option<String>> = tokens.iter().map(keyword).collect();
    let kw = |i: usize| words.get(i).and_then(|w| w.as_deref());
    let first = kw(0)?;
    match (first, kw(1)) {
        ("CHECKPOINT", None) => Some(class(&[Kind::Admin], vec![])),
        ("ALTER", Some("SYSTEM")) => Some(class(&[Kind::Admin], vec![])),
        ("ALTER", Some("DEFAULT")) if kw(2) == Some("PRIVILEGES") => {
            Some(class(&[Kind::Privileges], vec![]))
        }
        ("ALTER", Some("USER" | "ROLE" | "GROUP")) => Some(class(&[Kind::Privileges], vec![])),
        ("CREATE", Some("GROUP")) => Some(class(&[Kind::Privileges], vec![])),
        ("DROP" | "REASSIGN", Some("OWNED")) => Some(class(&[Kind::Privileges], vec![])),
        ("GRANT" | "REVOKE", _) => {
            // Role membership (`GRANT admin TO bob`) and other forms the parser lacks.
            Some(class(&[Kind::Privileges], vec![]))
        }
        ("SET", Some("SESSION")) if kw(2) == Some("AUTHORIZATION") => {
            Some(class(&[Kind::Admin], vec![]))
        }
        ("SET", Some("SESSION" | "LOCAL")) if kw(2) == Some("ROLE") => {
            Some(class(&[Kind::Admin], vec![]))
        }
        ("RESET", Some("ROLE")) => Some(class(&[Kind::Admin], vec![])),
        ("RESET", Some("SESSION")) if kw(2) == Some("AUTHORIZATION") => {
            Some(class(&[Kind::Admin], vec![]))
        }
        ("RESET", Some(_)) if tokens.len() <= 4 => Some(class(&[Kind::Session], vec![])),
        ("ABORT", _) => Some(class(&[Kind::Transaction], vec![])),
        ("PREPARE", Some("TRANSACTION")) => Some(class(&[Kind::Transaction], vec![])),
        ("COMMIT" | "ROLLBACK", Some("PREPARED")) => Some(class(&[Kind::Transaction], vec![])),
        ("REINDEX", _) => {
            let mut tables = vec![];
            if let Some(i) = words.iter().position(|w| w.as_deref() == Some("TABLE"))
                && let Some((name, _)) = read_name(tokens, i + 1)
            {
                tables.push(access(&name, false, true));
            }
            Some(class(&[Kind::Admin], tables))
        }
        ("CLUSTER", _) => {
            let mut i = 1;
            if kw(i) == Some("VERBOSE") {
                i += 1;
            }
            let mut tables = vec![];
            if let Some((name, _)) = read_name(tokens, i) {
                tables.push(access(&name, false, true));
            }
            Some(class(&[Kind::Admin], tables))
        }
        ("LOCK", _) => {
            let mut i = 1;
            if kw(i) == Some("TABLE") {
                i += 1;
            }
            let mut tables = vec![];
            loop {
                if kw(i) == Some("ONLY") {
                    i += 1;
                }
                let (name, next) = read_name(tokens, i)?;
                tables.push(access(&name, true, false));
                i = next;
                if matches!(tokens.get(i), Some(Token::Mul)) {
                    i += 1;
                }
                if matches!(tokens.get(i), Some(Token::Comma)) {
                    i += 1;
                } else {
                    break;
                }
            }
            Some(class(&[Kind::Lock], tables))
        }
        ("TABLE", Some(_)) => {
            let i = if kw(1) == Some("ONLY") { 2 } else { 1 };
            let (name, next) = read_name(tokens, i)?;
            if next != tokens.len() {
                return None;
            }
            Some(class(&[Kind::Read], vec![access(&name, true, false)]))
        }
        ("REFRESH", Some("MATERIALIZED")) => {
            let mut i = 3;
            if kw(i) == Some("CONCURRENTLY") {
                i += 1;
            }
            let (name, _) = read_name(tokens, i)?;
            Some(class(&[Kind::Write], vec![access(&name, false, true)]))
        }
        _ => None,
    }
}
