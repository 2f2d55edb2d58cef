//! Classification of SQL text by parsing it and walking the whole syntax tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    CopySource, CopyTarget, Expr, FromTable, GrantObjects, Ident, ObjectName, ObjectNamePart,
    ObjectType, Query, SchemaName, Set, SetExpr, Statement, TableFactor, TableObject, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

use crate::fallback;
use crate::functions::danger_of;

/// What a statement does, coarsely. A statement can have several kinds
/// (`INSERT ... SELECT` is `write` and `read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Reads data: a query with a `FROM`/`TABLE` source, `COPY ... TO STDOUT`.
    Read,
    /// Changes data: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`, `COPY ... FROM`,
    /// `SELECT ... INTO`, `CALL`.
    Write,
    /// Changes the schema: `CREATE`/`ALTER`/`DROP` of tables, views, indexes, functions, ...
    Ddl,
    /// Changes who may do what: `GRANT`, `REVOKE`, roles and users, default privileges.
    Privileges,
    /// Server administration: `ALTER SYSTEM`, `COPY` to/from a server file or program,
    /// `LOAD`, extensions, maintenance, `SET ROLE`, `SET SESSION AUTHORIZATION`.
    Admin,
    /// Takes explicit row or table locks: `SELECT ... FOR UPDATE/SHARE`, `LOCK TABLE`.
    Lock,
    /// Transaction control: `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints, two-phase commit.
    Transaction,
    /// Session settings: `SET`, `RESET`, `SHOW`, `DISCARD`.
    Session,
    /// Utilities: `EXPLAIN`, `LISTEN`/`NOTIFY`, `PREPARE`/`EXECUTE`/`DEALLOCATE`, cursors.
    Utility,
    /// Not understood: the statement did not parse or is not a PostgreSQL statement
    /// the classifier knows. Denied unless a rule names this kind.
    Unknown,
}

impl Kind {
    /// All kinds, in order.
    pub const ALL: [Kind; 10] = [
        Kind::Read,
        Kind::Write,
        Kind::Ddl,
        Kind::Privileges,
        Kind::Admin,
        Kind::Lock,
        Kind::Transaction,
        Kind::Session,
        Kind::Utility,
        Kind::Unknown,
    ];

    /// The configuration name of the kind (`read`, `write`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Ddl => "ddl",
            Kind::Privileges => "privileges",
            Kind::Admin => "admin",
            Kind::Lock => "lock",
            Kind::Transaction => "transaction",
            Kind::Session => "session",
            Kind::Utility => "utility",
            Kind::Unknown => "unknown",
        }
    }

    /// The kind with configuration name `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A table (or view, sequence, index) a statement touches, with how it is touched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableAccess {
    /// Schema, when the statement names one (normalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Object name (normalized: unquoted identifiers folded to lower case).
    pub name: String,
    /// Read by the statement.
    pub read: bool,
    /// Written by the statement (data change target, DDL object, privilege object).
    pub write: bool,
}

impl TableAccess {
    /// `schema.name` or `name`.
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// `r`, `w` or `rw`.
    pub fn access(&self) -> &'static str {
        match (self.read, self.write) {
            (true, true) => "rw",
            (false, true) => "w",
            _ => "r",
        }
    }
}

/// The classification of one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementClass {
    /// Kinds of the statement.
    pub kinds: BTreeSet<Kind>,
    /// Tables touched, sorted by schema and name.
    pub tables: Vec<TableAccess>,
    /// Schemas named: those qualifying tables, and schemas that are themselves the object
    /// of the statement (`CREATE`/`ALTER`/`DROP SCHEMA`, `GRANT ... ON SCHEMA`).
    pub schemas: BTreeSet<String>,
    /// Functions called anywhere in the statement (normalized, schema-qualified when written so).
    pub functions: BTreeSet<String>,
    /// Dangerous functions and operations, with why each is flagged.
    pub dangerous: BTreeMap<String, String>,
    /// An `UPDATE`/`DELETE` without a `WHERE` (or with a constant one), or a `TRUNCATE`.
    pub no_where: bool,
    /// Why the statement could not be parsed, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

impl StatementClass {
    /// Whether the statement is of kind `unknown`.
    pub fn is_unknown(&self) -> bool {
        self.kinds.contains(&Kind::Unknown)
    }

    fn unknown(parse_error: String) -> Self {
        Self {
            kinds: BTreeSet::from([Kind::Unknown]),
            parse_error: Some(parse_error),
            ..Self::default()
        }
    }
}

/// The classification of a SQL string: the union over its statements, and each statement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// Union of the statements' kinds.
    pub kinds: BTreeSet<Kind>,
    /// Union of the statements' tables (access flags merged).
    pub tables: Vec<TableAccess>,
    /// Union of the statements' schemas.
    pub schemas: BTreeSet<String>,
    /// Union of the functions called.
    pub functions: BTreeSet<String>,
    /// Union of the dangerous functions and operations.
    pub dangerous: BTreeMap<String, String>,
    /// Whether any statement is DML without `WHERE` (see [`StatementClass::no_where`]).
    pub no_where: bool,
    /// Number of statements in the string.
    pub statement_count: usize,
    /// The first parse error, if any statement did not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// Each statement's own classification, in order.
    pub statements: Vec<StatementClass>,
}

impl Classification {
    /// Whether any statement is of kind `unknown`.
    pub fn is_unknown(&self) -> bool {
        self.kinds.contains(&Kind::Unknown)
    }

    /// Whether the string calls a dangerous function or does a dangerous operation.
    pub fn has_dangerous(&self) -> bool {
        !self.dangerous.is_empty()
    }

    fn from_statements(statements: Vec<StatementClass>) -> Self {
        let mut out = Classification {
            statement_count: statements.len(),
            ..Self::default()
        };
        let mut tables: BTreeMap<(Option<String>, String), (bool, bool)> = BTreeMap::new();
        for s in &statements {
            out.kinds.extend(s.kinds.iter().copied());
            out.functions.extend(s.functions.iter().cloned());
            out.schemas.extend(s.schemas.iter().cloned());
            for (k, v) in &s.dangerous {
                out.dangerous.entry(k.clone()).or_insert_with(|| v.clone());
            }
            out.no_where |= s.no_where;
            if out.parse_error.is_none() {
                out.parse_error.clone_from(&s.parse_error);
            }
            for t in &s.tables {
                let e = tables
                    .entry((t.schema.clone(), t.name.clone()))
                    .or_insert((false, false));
                e.0 |= t.read;
                e.1 |= t.write;
            }
        }
        out.tables = tables
            .into_iter()
            .map(|((schema, name), (read, write))| TableAccess {
                schema,
                name,
                read,
                write,
            })
            .collect();
        out.statements = statements;
        out
    }
}

/// Classifies `sql` (PostgreSQL dialect). Never fails: what cannot be parsed is `unknown`.
///
/// The text is tokenized once by the SQL tokenizer (which knows comments, quoted
/// identifiers, string literals and dollar quoting), split into statements at top-level
/// semicolons, and each statement is parsed and walked on its own. So one unparsable
/// statement does not hide the others, and no statement can swallow the ones after it
/// (the parser reads inline data after `COPY ... FROM STDIN`, which PostgreSQL does not).
pub fn classify(sql: &str) -> Classification {
    let dialect = PostgreSqlDialect {};
    let tokens = match Tokenizer::new(&dialect, sql).tokenize_with_location() {
        Ok(t) => t,
        Err(e) => {
            return Classification::from_statements(vec![StatementClass::unknown(e.to_string())]);
        }
    };
    let pieces = split_statements(tokens);
    let mut out = Vec::with_capacity(pieces.len());
    // The token pieces are moved into the parser; on the (rare) parse failure they are
    // rebuilt from the text for keyword recognition.
    let mut reparsed: Option<Vec<Vec<TokenWithSpan>>> = None;
    for (index, mut piece) in pieces.into_iter().enumerate() {
        if starts_with_copy(&piece) {
            // The parser wants a `;` (then inline data) after `COPY ... FROM STDIN`.
            let end = piece.last().map(|t| t.span).unwrap_or(Span::empty());
            piece.push(TokenWithSpan::new(Token::SemiColon, end));
        }
        let operators = operator_count(&piece);
        let parsed = if operators > MAX_OPERATORS {
            out.push(StatementClass::unknown(format!(
                "statement too complex to classify ({operators} operators, limit {MAX_OPERATORS})"
            )));
            continue;
        } else if operators > INLINE_OPERATORS {
            match classify_on_big_stack(piece, operators) {
                Ok(parsed) => parsed,
                Err(why) => {
                    out.push(StatementClass::unknown(why));
                    continue;
                }
            }
        } else {
            parse_and_walk(piece)
        };
        match parsed {
            Ok(statements) if !statements.is_empty() => out.extend(statements),
            Ok(_) => out.push(StatementClass::unknown("empty statement".to_string())),
            Err(e) => {
                let all = reparsed.get_or_insert_with(|| {
                    Tokenizer::new(&dialect, sql)
                        .tokenize_with_location()
                        .map(split_statements)
                        .unwrap_or_default()
                });
                let words: Vec<Token> = all
                    .get(index)
                    .map(|p| {
                        p.iter()
                            .map(|t| t.token.clone())
                            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
                            .collect()
                    })
                    .unwrap_or_default();
                match fallback::recognize(&words) {
                    Some(class) => out.push(class),
                    None => out.push(StatementClass::unknown(e.to_string())),
                }
            }
        }
    }
    Classification::from_statements(out)
}

/// Statements with more operators than this are `unknown` (too deep to walk safely).
pub const MAX_OPERATORS: usize = 10_000;

/// Statements with at most this many operators are walked on the caller's stack.
const INLINE_OPERATORS: usize = 128;

/// Stack reserved per operator when walking a large statement on its own thread.
const STACK_PER_OPERATOR: usize = 8 * 1024;

/// Parses one statement's tokens and walks the resulting trees.
fn parse_and_walk(piece: Vec<TokenWithSpan>) -> Result<Vec<StatementClass>, ParserError> {
    let statements = Parser::new(&PostgreSqlDialect {})
        .with_tokens_with_locations(piece)
        .parse_statements()?;
    Ok(statements.iter().map(classify_statement).collect())
}

/// Chains of infix operators parse into trees as deep as the chain is long, and walking
/// (and dropping) such a tree recurses that deep. Statements with many operators are
/// therefore parsed, walked and dropped on a thread whose stack fits them.
fn classify_on_big_stack(
    piece: Vec<TokenWithSpan>,
    operators: usize,
) -> Result<Result<Vec<StatementClass>, ParserError>, String> {
    let stack = (1 << 20) + operators.saturating_mul(STACK_PER_OPERATOR);
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("sql-classify".into())
            .stack_size(stack)
            .spawn_scoped(scope, move || parse_and_walk(piece))
            .map_err(|e| format!("could not start classification thread: {e}"))?;
        handle
            .join()
            .map_err(|_| "classification failed".to_string())
    })
}

/// An upper bound on the infix operators of a statement: every token that is not a
/// name, literal, comma, parenthesis or period, plus operator keywords.
fn operator_count(piece: &[TokenWithSpan]) -> usize {
    piece
        .iter()
        .filter(|t| match &t.token {
            Token::Whitespace(_)
            | Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::Period
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::Placeholder(_)
            | Token::SemiColon
            | Token::EOF => false,
            Token::Word(w) => matches!(
                w.keyword,
                Keyword::AND
                    | Keyword::OR
                    | Keyword::IS
                    | Keyword::NOT
                    | Keyword::LIKE
                    | Keyword::ILIKE
                    | Keyword::SIMILAR
                    | Keyword::BETWEEN
                    | Keyword::IN
                    | Keyword::COLLATE
                    | Keyword::AT
                    | Keyword::OVERLAPS
                    | Keyword::ESCAPE
                    | Keyword::UNION
                    | Keyword::EXCEPT
                    | Keyword::INTERSECT
                    | Keyword::MINUS
            ),
            _ => true,
        })
        .count()
}

fn starts_with_copy(piece: &[TokenWithSpan]) -> bool {
    piece
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .is_some_and(|t| {
            matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("copy"))
        })
}

/// Splits a token stream at top-level semicolons, dropping pieces that hold only
/// whitespace and comments.
fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut pieces = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    let mut substantive = false;
    for t in tokens {
        match t.token {
            Token::SemiColon => {
                if substantive {
                    pieces.push(std::mem::take(&mut current));
                } else {
                    current.clear();
                }
                substantive = false;
            }
            Token::EOF => {}
            Token::Whitespace(_) => current.push(t),
            _ => {
                substantive = true;
                current.push(t);
            }
        }
    }
    if substantive {
        pieces.push(current);
    }
    pieces
}

/// Normalizes an identifier per PostgreSQL rules: unquoted folded to lower case.
pub(crate) fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => normalize_ident(i),
            ObjectNamePart::Function(f) => normalize_ident(&f.name),
        })
        .collect()
}

/// A normalized, dot-joined name (for functions).
fn joined_name(name: &ObjectName) -> String {
    name_parts(name).join(".")
}

/// Whether an expression is constant: no column, subquery, function or parameter in it.
fn is_constant(expr: &Expr) -> bool {
    let flow = sqlparser::ast::visit_expressions(expr, |e| match e {
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::CompoundFieldAccess { .. }
        | Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::InSubquery { .. }
        | Expr::Function(_) => ControlFlow::Break(()),
        Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Placeholder(_)) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    flow.is_continue()
}

fn classify_statement(stmt: &Statement) -> StatementClass {
    let mut walker = Walker::default();
    // The walker never breaks; the flow result carries nothing.
    let _ = stmt.visit(&mut walker);
    walker.finish()
}

/// One `WITH` clause in scope while walking.
struct CteFrame {
    names: Vec<String>,
    queries: Vec<usize>,
    visible: usize,
    recursive: bool,
}

#[derive(Default)]
struct Walker {
    kinds: BTreeSet<Kind>,
    tables: BTreeMap<(Option<String>, String), (bool, bool)>,
    schemas: BTreeSet<String>,
    functions: BTreeSet<String>,
    dangerous: BTreeMap<String, String>,
    no_where: bool,
    /// Table factors that are the target of an enclosing UPDATE/DELETE/MERGE.
    write_factors: Vec<usize>,
    /// Per statement being visited: whether its effects are only planned, not executed
    /// (inside `EXPLAIN` without `ANALYZE`).
    planned_only: Vec<bool>,
    ctes: Vec<CteFrame>,
}

impl Walker {
    fn finish(self) -> StatementClass {
        let mut kinds = self.kinds;
        if kinds.is_empty() {
            kinds.insert(Kind::Unknown);
        }
        let mut schemas = self.schemas;
        schemas.extend(self.tables.keys().filter_map(|(schema, _)| schema.clone()));
        StatementClass {
            kinds,
            schemas,
            tables: self
                .tables
                .into_iter()
                .map(|((schema, name), (read, write))| TableAccess {
                    schema,
                    name,
                    read,
                    write,
                })
                .collect(),
            functions: self.functions,
            dangerous: self.dangerous,
            no_where: self.no_where,
            parse_error: None,
        }
    }

    fn planned(&self) -> bool {
        self.planned_only.last().copied().unwrap_or(false)
    }

    fn kind(&mut self, kind: Kind) {
        if !self.planned() {
            self.kinds.insert(kind);
        }
    }

    fn table(&mut self, name: &ObjectName, write: bool) {
        let mut parts = name_parts(name);
        let Some(table) = parts.pop() else { return };
        let schema = parts.pop();
        let write = write && !self.planned();
        let e = self.tables.entry((schema, table)).or_insert((false, false));
        if write {
            e.1 = true;
        } else {
            e.0 = true;
        }
    }

    fn schema(&mut self, name: &ObjectName) {
        if let Some(last) = name_parts(name).pop() {
            self.schemas.insert(last);
        }
    }

    fn table_ident(&mut self, ident: &Ident, write: bool) {
        self.table(&ObjectName::from(vec![ident.clone()]), write);
    }

    fn function(&mut self, name: &ObjectName) {
        let full = joined_name(name);
        let bare = name_parts(name).pop().unwrap_or_default();
        if let Some(why) = danger_of(&bare) {
            self.dangerous.insert(full.clone(), why.to_string());
        }
        self.functions.insert(full);
    }

    fn flag(&mut self, what: &str, why: &str) {
        self.dangerous.insert(what.to_string(), why.to_string());
    }

    fn no_where(&mut self, selection: Option<&Expr>) {
        if self.planned() {
            return;
        }
        match selection {
            None => self.no_where = true,
            Some(e) if is_constant(e) => self.no_where = true,
            Some(_) => {}
        }
    }

    fn is_cte_reference(&self, name: &ObjectName) -> bool {
        let parts = name_parts(name);
        let [single] = parts.as_slice() else {
            return false;
        };
        self.ctes.iter().rev().any(|f| {
            let visible = if f.recursive {
                f.names.len()
            } else {
                f.visible
            };
            f.names.iter().take(visible).any(|n| n == single)
        })
    }

    fn statement(&mut self, stmt: &Statement) {
        use Statement as S;
        match stmt {
            S::Query(_) => {
                // Lock and INTO are found when the query itself is visited.
                self.kind(Kind::Read);
            }
            S::Insert(insert) => {
                self.kind(Kind::Write);
                match &insert.table {
                    TableObject::TableName(name) => self.table(name, true),
                    TableObject::TableFunction(f) => self.function(&f.name),
                }
            }
            S::Update {
                table, selection, ..
            } => {
                self.kind(Kind::Write);
                self.write_factors.push(ptr(&table.relation));
                self.no_where(selection.as_ref());
            }
            S::Delete(delete) => {
                self.kind(Kind::Write);
                for name in &delete.tables {
                    self.table(name, true);
                }
                let from = match &delete.from {
                    FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
                };
                for t in from {
                    self.write_factors.push(ptr(&t.relation));
                }
                self.no_where(delete.selection.as_ref());
            }
            S::Merge { table, .. } => {
                self.kind(Kind::Write);
                self.write_factors.push(ptr(table));
            }
            S::Truncate { table_names, .. } => {
                self.kind(Kind::Write);
                for t in table_names {
                    self.table(&t.name, true);
                }
                if !self.planned() {
                    self.no_where = true;
                }
            }
            S::Copy {
                source, to, target, ..
            } => {
                match source {
                    CopySource::Table { table_name, .. } => {
                        if *to {
                            self.kind(Kind::Read);
                            self.table(table_name, false);
                        } else {
                            self.kind(Kind::Write);
                            self.table(table_name, true);
                        }
                    }
                    CopySource::Query(_) => self.kind(Kind::Read),
                }
                match target {
                    CopyTarget::Stdin | CopyTarget::Stdout => {}
                    CopyTarget::File { .. } => {
                        self.kind(Kind::Admin);
                        let what = if *to {
                            "copy to file"
                        } else {
                            "copy from file"
                        };
                        self.flag(what, "reads or writes a file on the database server");
                    }
                    CopyTarget::Program { .. } => {
                        self.kind(Kind::Admin);
                        self.flag(
                            "copy program",
                            "runs a shell command on the database server",
                        );
                    }
                }
            }
            S::Call(f) => {
                self.kind(Kind::Write);
                self.function(&f.name);
            }
            S::CreateView { name, .. } => {
                self.kind(Kind::Ddl);
                self.table(name, true);
            }
            S::CreateTable(ct) => {
                self.kind(Kind::Ddl);
                self.table(&ct.name, true);
            }
            S::CreateVirtualTable { name, .. } => {
                self.kind(Kind::Ddl);
                self.table(name, true);
            }
            S::CreateIndex(ci) => {
                self.kind(Kind::Ddl);
                self.table(&ci.table_name, true);
            }
            S::AlterTable { name, .. } | S::AlterIndex { name, .. } => {
                self.kind(Kind::Ddl);
                self.table(name, true);
            }
            S::AlterView { name, .. } => {
                self.kind(Kind::Ddl);
                self.table(name, true);
            }
            S::RenameTable(renames) => {
                self.kind(Kind::Ddl);
                for r in renames {
                    self.table(&r.old_name, true);
                    self.table(&r.new_name, true);
                }
            }
            S::CreateSequence { name, .. } => {
                self.kind(Kind::Ddl);
                self.table(name, true);
            }
            S::CreatePolicy { table_name, .. }
            | S::AlterPolicy { table_name, .. }
            | S::DropPolicy { table_name, .. } => {
                // Row-level security policies decide who sees which rows.
                self.kind(Kind::Ddl);
                self.kind(Kind::Privileges);
                self.table(table_name, true);
            }
            S::Drop {
                object_type, names, ..
            } => match object_type {
                ObjectType::Role | ObjectType::User => self.kind(Kind::Privileges),
                ObjectType::Schema => {
                    self.kind(Kind::Ddl);
                    for n in names {
                        self.schema(n);
                    }
                }
                ObjectType::Table
                | ObjectType::View
                | ObjectType::MaterializedView
                | ObjectType::Index
                | ObjectType::Sequence => {
                    self.kind(Kind::Ddl);
                    for n in names {
                        self.table(n, true);
                    }
                }
                _ => self.kind(Kind::Ddl),
            },
            S::CreateSchema { schema_name, .. } => {
                self.kind(Kind::Ddl);
                match schema_name {
                    SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => self.schema(n),
                    SchemaName::UnnamedAuthorization(user) => {
                        self.schemas.insert(normalize_ident(user));
                    }
                }
            }
            S::AlterSchema(a) => {
                self.kind(Kind::Ddl);
                self.schema(&a.name);
            }
            S::Comment { .. }
            | S::AlterType(_)
            | S::CreateDatabase { .. }
            | S::CreateFunction(_)
            | S::CreateTrigger(_)
            | S::DropTrigger(_)
            | S::CreateProcedure { .. }
            | S::CreateDomain(_)
            | S::CreateType { .. }
            | S::DropFunction { .. }
            | S::DropDomain(_)
            | S::DropProcedure { .. } => self.kind(Kind::Ddl),
            S::CreateExtension { .. } | S::DropExtension { .. } | S::CreateServer(_) => {
                self.kind(Kind::Ddl);
                self.kind(Kind::Admin);
            }
            S::CreateRole { .. } | S::AlterRole { .. } | S::CreateUser(_) => {
                self.kind(Kind::Privileges)
            }
            S::Grant { objects, .. } | S::Revoke { objects, .. } => {
                self.kind(Kind::Privileges);
                match objects {
                    Some(GrantObjects::Tables(names) | GrantObjects::Sequences(names)) => {
                        for n in names {
                            self.table(n, true);
                        }
                    }
                    Some(
                        GrantObjects::Schemas(names)
                        | GrantObjects::AllTablesInSchema { schemas: names }
                        | GrantObjects::AllSequencesInSchema { schemas: names }
                        | GrantObjects::AllFunctionsInSchema { schemas: names }
                        | GrantObjects::AllViewsInSchema { schemas: names },
                    ) => {
                        for n in names {
                            self.schema(n);
                        }
                    }
                    _ => {}
                }
            }
            S::Deny(_) => self.kind(Kind::Privileges),
            S::Load { .. } | S::LoadData { .. } | S::Install { .. } | S::Kill { .. } => {
                self.kind(Kind::Admin)
            }
            S::Vacuum(v) => {
                self.kind(Kind::Admin);
                if let Some(t) = &v.table_name {
                    self.table(t, true);
                }
            }
            S::Analyze { table_name, .. } => {
                self.kind(Kind::Admin);
                if !table_name.0.is_empty() {
                    self.table(table_name, false);
                }
            }
            S::Set(set) => self.set(set),
            S::ShowVariable { .. }
            | S::ShowVariables { .. }
            | S::ShowStatus { .. }
            | S::ShowFunctions { .. }
            | S::ShowCreate { .. }
            | S::ShowColumns { .. }
            | S::ShowDatabases { .. }
            | S::ShowSchemas { .. }
            | S::ShowObjects(_)
            | S::ShowTables { .. }
            | S::ShowViews { .. }
            | S::ShowCollation { .. }
            | S::ShowCharset(_)
            | S::Discard { .. } => self.kind(Kind::Session),
            S::StartTransaction { .. }
            | S::Commit { .. }
            | S::Rollback { .. }
            | S::Savepoint { .. }
            | S::ReleaseSavepoint { .. } => self.kind(Kind::Transaction),
            S::Explain { .. }
            | S::ExplainTable { .. }
            | S::Prepare { .. }
            | S::Execute { .. }
            | S::Deallocate { .. }
            | S::LISTEN { .. }
            | S::UNLISTEN { .. }
            | S::NOTIFY { .. }
            | S::Declare { .. }
            | S::Fetch { .. }
            | S::Close { .. } => self.kind(Kind::Utility),
            S::LockTables { tables } => {
                self.kind(Kind::Lock);
                for t in tables {
                    self.table_ident(&t.table, false);
                }
            }
            // Anything else is a statement of another dialect or one this classifier
            // does not know: unknown, denied unless a rule allows unknown statements.
            _ => self.kind(Kind::Unknown),
        }
    }

    fn set(&mut self, set: &Set) {
        let is_identity_var = |name: &ObjectName| {
            let n = joined_name(name);
            n == "role" || n == "session_authorization" || n == "session.authorization"
        };
        match set {
            Set::SetRole { .. } => self.kind(Kind::Admin),
            Set::SingleAssignment { variable, .. } if is_identity_var(variable) => {
                self.kind(Kind::Admin)
            }
            Set::ParenthesizedAssignments { variables, .. }
                if variables.iter().any(is_identity_var) =>
            {
                self.kind(Kind::Admin)
            }
            Set::MultipleAssignments { assignments }
                if assignments.iter().any(|a| is_identity_var(&a.name)) =>
            {
                self.kind(Kind::Admin)
            }
            _ => self.kind(Kind::Session),
        }
    }

    fn query(&mut self, query: &Query) {
        if !query.locks.is_empty() {
            self.kind(Kind::Lock);
        }
        if reads_relation(&query.body) || query.with.is_some() {
            self.kind(Kind::Read);
        }
        self.body_extras(&query.body);
    }

    /// `SELECT ... INTO` targets and `TABLE name` sources, which the visitor does not
    /// report as relations.
    fn body_extras(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(s) => {
                if let Some(into) = &s.into {
                    self.kind(Kind::Write);
                    self.kind(Kind::Ddl);
                    self.table(&into.name, true);
                }
            }
            SetExpr::Table(t) => {
                if let Some(name) = &t.table_name {
                    let mut parts = Vec::new();
                    if let Some(schema) = &t.schema_name {
                        parts.push(Ident::new(schema.to_ascii_lowercase()));
                    }
                    parts.push(Ident::new(name.to_ascii_lowercase()));
                    self.table(&ObjectName::from(parts), false);
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.body_extras(left);
                self.body_extras(right);
            }
            _ => {}
        }
    }
}

/// Whether an `EXPLAIN` runs its statement: `ANALYZE` as a keyword or as an option
/// not explicitly turned off.
fn explain_analyzes(stmt: &Statement) -> bool {
    let Statement::Explain {
        analyze, options, ..
    } = stmt
    else {
        return false;
    };
    *analyze
        || options.iter().flatten().any(|o| {
            o.name.value.eq_ignore_ascii_case("analyze")
                && !o.arg.as_ref().is_some_and(|a| {
                    let text = a.to_string().to_ascii_lowercase();
                    matches!(text.as_str(), "false" | "off" | "0" | "'false'" | "'off'")
                })
        })
}

/// Whether a query body is more than a `VALUES` list (a `SELECT`, `TABLE`, set operation).
fn reads_relation(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(_) | SetExpr::Table(_) | SetExpr::Query(_) => true,
        SetExpr::SetOperation { left, right, .. } => reads_relation(left) || reads_relation(right),
        SetExpr::Values(_)
        | SetExpr::Insert(_)
        | SetExpr::Update(_)
        | SetExpr::Delete(_)
        | SetExpr::Merge(_) => false,
    }
}

fn ptr<T>(t: &T) -> usize {
    std::ptr::from_ref(t) as usize
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        self.statement(stmt);
        let planned = self.planned()
            || matches!(stmt, Statement::Explain { .. } if !explain_analyzes(stmt))
            || matches!(stmt, Statement::ExplainTable { .. });
        self.planned_only.push(planned);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _stmt: &Statement) -> ControlFlow<()> {
        self.planned_only.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // Is this query the body of a CTE of the innermost WITH? Then only the CTEs
        // before it are visible (all of them in a recursive WITH).
        let me = ptr(query);
        if let Some(frame) = self.ctes.last_mut()
            && let Some(i) = frame.queries.iter().position(|q| *q == me)
        {
            frame.visible = i;
        }
        if let Some(with) = &query.with {
            self.ctes.push(CteFrame {
                names: with
                    .cte_tables
                    .iter()
                    .map(|c| normalize_ident(&c.alias.name))
                    .collect(),
                queries: with.cte_tables.iter().map(|c| ptr(&*c.query)).collect(),
                visible: 0,
                recursive: with.recursive,
            });
        }
        self.query(query);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if query.with.is_some() {
            self.ctes.pop();
        }
        let me = ptr(query);
        if let Some(frame) = self.ctes.last_mut()
            && frame.queries.contains(&me)
        {
            // Back in the WITH: after its last CTE, the body sees all of them.
            frame.visible = frame.names.len();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name, args, alias, ..
            } => {
                if args.is_some() {
                    // `FROM f(...)`: a set-returning function, not a table.
                    self.function(name);
                    return ControlFlow::Continue(());
                }
                let write = self.write_factors.contains(&ptr(factor));
                // The parser reads `FROM ONLY t` as table `only` with alias `t`. ONLY
                // is reserved in PostgreSQL, so no table has that unquoted name: the
                // alias is the table.
                if let ([ObjectNamePart::Identifier(only)], Some(alias)) =
                    (name.0.as_slice(), alias)
                    && only.quote_style.is_none()
                    && only.value.eq_ignore_ascii_case("only")
                {
                    self.table_ident(&alias.name, write);
                } else if !self.is_cte_reference(name) {
                    self.table(name, write);
                }
            }
            TableFactor::Function { name, .. } => self.function(name),
            TableFactor::UNNEST { .. } => {
                self.functions.insert("unnest".to_string());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            self.function(&f.name);
        }
        ControlFlow::Continue(())
    }
}
