#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Rule evaluation and configuration validation.

use std::sync::Arc;

use portcullis_core::{
    AuthMethod, Command, CommandPolicy, Identity, Protocol, SessionContext, SessionId, SqlVia,
    Target, Timestamp, Verdict,
};
use portcullis_policy::{
    CompiledPolicy, PolicyConfig, PolicyError, PolicySet, Quorum, RULE_DEFAULT, RULE_UNKNOWN,
    RULE_UNSUPPORTED,
};

fn who(groups: &[&str]) -> Identity {
    Identity {
        subject: "tester".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        method: AuthMethod::ApiKey,
        issuer: None,
        expires_at: None,
    }
}

fn policy(toml: &str) -> CompiledPolicy {
    CompiledPolicy::compile(&PolicyConfig::from_toml(toml).unwrap()).unwrap()
}

fn decide(p: &CompiledPolicy, groups: &[&str], sql: &str) -> (Verdict, String) {
    let (_, d) = p.decide(&who(groups), sql);
    (d.verdict, d.rule)
}

fn compile_err(toml: &str) -> PolicyError {
    match PolicyConfig::from_toml(toml) {
        Ok(cfg) => CompiledPolicy::compile(&cfg).unwrap_err(),
        Err(e) => e,
    }
}

#[test]
fn first_match_wins_in_file_order() {
    let deny_first = policy(
        r#"
        [[rules]]
        id = "deny-users"
        tables = ["users"]
        action = "deny"
        [[rules]]
        id = "allow-reads"
        kinds = ["read"]
        action = "allow"
        "#,
    );
    assert_eq!(
        decide(&deny_first, &[], "SELECT * FROM users"),
        (Verdict::Deny, "deny-users".into())
    );
    assert_eq!(
        decide(&deny_first, &[], "SELECT * FROM orders"),
        (Verdict::Allow, "allow-reads".into())
    );

    let allow_first = policy(
        r#"
        [[rules]]
        id = "allow-reads"
        kinds = ["read"]
        action = "allow"
        [[rules]]
        id = "deny-users"
        tables = ["users"]
        action = "deny"
        "#,
    );
    assert_eq!(
        decide(&allow_first, &[], "SELECT * FROM users"),
        (Verdict::Allow, "allow-reads".into())
    );
}

#[test]
fn groups_match_any_listed_group() {
    let p = policy(
        r#"
        [[rules]]
        id = "dba"
        groups = ["dba", "sre"]
        action = "allow"
        "#,
    );
    assert_eq!(decide(&p, &["sre"], "DROP TABLE x").0, Verdict::Allow);
    assert_eq!(
        decide(&p, &["dev", "dba"], "DROP TABLE x").0,
        Verdict::Allow
    );
    assert_eq!(
        decide(&p, &["dev"], "DROP TABLE x"),
        (Verdict::Deny, RULE_DEFAULT.into())
    );
    assert_eq!(decide(&p, &[], "SELECT 1").1, RULE_DEFAULT);
}

#[test]
fn table_globs_with_schema_and_default_schema() {
    let p = policy(
        r#"
        default_schema = "app"
        [[rules]]
        id = "no-secrets"
        tables = ["vault.*", "*.credit_card?"]
        action = "deny"
        [[rules]]
        id = "app-reads"
        kinds = ["read"]
        tables = ["app.*"]
        action = "allow"
        "#,
    );
    // Unqualified names are matched as if in the default schema.
    assert_eq!(decide(&p, &[], "SELECT * FROM orders").1, "app-reads");
    assert_eq!(decide(&p, &[], "SELECT * FROM app.orders").1, "app-reads");
    assert_eq!(decide(&p, &[], "SELECT * FROM Vault.keys").1, "no-secrets");
    assert_eq!(
        decide(&p, &[], "SELECT * FROM public.credit_cards").1,
        "no-secrets"
    );
    assert_eq!(
        decide(&p, &[], "SELECT * FROM credit_cards").1,
        "no-secrets"
    );
    // Allow rules must cover every table: one outside app.* spoils it.
    assert_eq!(
        decide(
            &p,
            &[],
            "SELECT * FROM orders o JOIN public.users u ON u.id = o.uid"
        ),
        (Verdict::Deny, RULE_DEFAULT.into())
    );
    // Deny rules trigger on any table, however deep.
    assert_eq!(
        decide(
            &p,
            &[],
            "SELECT * FROM orders WHERE id IN (SELECT oid FROM vault.keys)"
        )
        .1,
        "no-secrets"
    );
    // Quoted names keep their case: "Vault" is not vault.
    assert_eq!(
        decide(&p, &[], r#"SELECT * FROM "Vault".keys"#),
        (Verdict::Deny, RULE_DEFAULT.into())
    );
}

#[test]
fn function_globs_and_dangerous_functions() {
    let p = policy(
        r#"
        [[rules]]
        id = "no-lo"
        functions = ["lo_*"]
        action = "deny"
        [[rules]]
        id = "no-danger"
        dangerous_functions = true
        action = "deny"
        [[rules]]
        id = "reads"
        kinds = ["read"]
        action = "allow"
        "#,
    );
    assert_eq!(
        decide(&p, &[], "SELECT pg_catalog.lo_import('/x')").1,
        "no-lo"
    );
    assert_eq!(
        decide(&p, &[], "SELECT * FROM t ORDER BY (SELECT pg_sleep(3))").1,
        "no-danger"
    );
    assert_eq!(decide(&p, &[], "SELECT lower(name) FROM t").1, "reads");
}

#[test]
fn allow_kinds_must_cover_the_statement() {
    let p = policy(
        r#"
        [[rules]]
        id = "reads"
        kinds = ["read"]
        action = "allow"
        "#,
    );
    assert_eq!(decide(&p, &[], "SELECT * FROM t").0, Verdict::Allow);
    assert_eq!(
        decide(&p, &[], "INSERT INTO t SELECT * FROM u"),
        (Verdict::Deny, RULE_DEFAULT.into())
    );
    assert_eq!(
        decide(
            &p,
            &[],
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"
        )
        .0,
        Verdict::Deny
    );
    assert_eq!(
        decide(&p, &[], "SELECT * FROM t FOR UPDATE").0,
        Verdict::Deny
    );
}

#[test]
fn no_where_rule() {
    let p = policy(
        r#"
        [[rules]]
        id = "no-unbounded"
        no_where = true
        action = "deny"
        reason = "add a WHERE clause"
        [[rules]]
        id = "writers"
        kinds = ["write", "read"]
        action = "allow"
        "#,
    );
    let (_, d) = p.decide(&who(&[]), "UPDATE accounts SET balance = 0");
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Deny, "no-unbounded")
    );
    assert!(d.reason.contains("add a WHERE clause"), "{}", d.reason);
    assert!(d.reason.contains("no WHERE"), "{}", d.reason);
    assert_eq!(decide(&p, &[], "TRUNCATE accounts").1, "no-unbounded");
    assert_eq!(
        decide(
            &p,
            &[],
            "WITH x AS (DELETE FROM a RETURNING 1) SELECT * FROM x"
        )
        .1,
        "no-unbounded"
    );
    assert_eq!(
        decide(&p, &[], "UPDATE accounts SET balance = 0 WHERE id = $1").1,
        "writers"
    );
}

#[test]
fn default_deny_and_default_allow() {
    let deny = policy("");
    assert_eq!(
        decide(&deny, &["anyone"], "SELECT 1"),
        (Verdict::Deny, RULE_DEFAULT.into())
    );
    let allow = policy(r#"default = "allow""#);
    assert_eq!(
        decide(&allow, &[], "SELECT 1"),
        (Verdict::Allow, RULE_DEFAULT.into())
    );
    // An empty string has no statement: the default decides.
    assert_eq!(decide(&allow, &[], " -- nothing ").1, RULE_DEFAULT);
}

#[test]
fn unknown_statements_need_an_explicit_rule() {
    let p = policy(
        r#"
        default = "allow"
        [[rules]]
        id = "everything-for-dba"
        groups = ["dba"]
        action = "allow"
        [[rules]]
        id = "do-blocks-for-owner"
        groups = ["owner"]
        kinds = ["unknown"]
        action = "allow"
        "#,
    );
    let do_block = "DO $$ BEGIN PERFORM 1; END $$";
    // Neither a catch-all rule nor a default allow lets an unknown statement through.
    assert_eq!(
        decide(&p, &["dba"], do_block),
        (Verdict::Deny, RULE_UNKNOWN.into())
    );
    assert_eq!(decide(&p, &[], do_block).1, RULE_UNKNOWN);
    assert_eq!(
        decide(&p, &["owner"], do_block),
        (Verdict::Allow, "do-blocks-for-owner".into())
    );
    let (_, d) = p.decide(&who(&[]), "SELEC 1");
    assert!(d.reason.contains("could not be classified"), "{}", d.reason);
}

#[test]
fn review_with_approvers_and_quorum() {
    let p = policy(
        r#"
        [[rules]]
        id = "ddl-review"
        kinds = ["ddl"]
        action = "review"
        approvers = ["dba", "security"]
        quorum = "each-group"
        [[rules]]
        id = "write-review"
        kinds = ["write"]
        action = "review"
        approvers = ["leads"]
        quorum = 2
        [[rules]]
        id = "reads"
        kinds = ["read"]
        action = "allow"
        "#,
    );
    assert_eq!(
        decide(&p, &[], "ALTER TABLE t ADD COLUMN c int"),
        (Verdict::Review, "ddl-review".into())
    );
    let req = p.review_requirement("ddl-review").unwrap();
    assert_eq!(req.approvers, ["dba", "security"]);
    assert_eq!(req.quorum, Quorum::EachGroup);
    assert_eq!(
        p.review_requirement("write-review").unwrap().quorum,
        Quorum::Count(2)
    );
    assert!(p.review_requirement("reads").is_none());
    let text = p.explain(&who(&[]), "DELETE FROM t WHERE id = 1");
    assert!(text.contains("approvers: leads (2 approval(s))"), "{text}");
}

#[test]
fn multi_statement_strings_get_the_strictest_decision() {
    let p = policy(
        r#"
        [[rules]]
        id = "reads"
        kinds = ["read"]
        action = "allow"
        [[rules]]
        id = "writes"
        kinds = ["write"]
        action = "review"
        approvers = ["dba"]
        [[rules]]
        id = "no-ddl"
        kinds = ["ddl"]
        action = "deny"
        "#,
    );
    let (_, d) = p.decide(&who(&[]), "SELECT 1; UPDATE t SET a = 1 WHERE id = 2");
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Review, "writes"));
    assert!(d.reason.starts_with("statement 2 of 2"), "{}", d.reason);
    let (c, d) = p.decide(
        &who(&[]),
        "SELECT 1; DROP TABLE t; UPDATE t SET a = 1 WHERE id = 2; DROP VIEW v",
    );
    assert_eq!(c.statement_count, 4);
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, "no-ddl"));
    assert!(d.reason.starts_with("statement 2 of 4"), "{}", d.reason);
    // An unknown statement among allowed ones denies the whole string.
    let (_, d) = p.decide(&who(&[]), "SELECT 1; DO $$ BEGIN END $$");
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, RULE_UNKNOWN));
}

#[test]
fn regex_and_statements_over() {
    let p = policy(
        r#"
        [[rules]]
        id = "batch-limit"
        statements_over = 2
        action = "deny"
        [[rules]]
        id = "no-pii-comment"
        regex = "(?i)pii"
        action = "deny"
        [[rules]]
        id = "reads"
        kinds = ["read"]
        action = "allow"
        "#,
    );
    assert_eq!(decide(&p, &[], "SELECT 1; SELECT 2").1, "reads");
    assert_eq!(
        decide(&p, &[], "SELECT 1; SELECT 2; SELECT 3").1,
        "batch-limit"
    );
    assert_eq!(
        decide(&p, &[], "SELECT 1 /* PII export */").1,
        "no-pii-comment"
    );
}

#[test]
fn classification_is_returned_with_the_decision() {
    let p = policy("");
    let (c, _) = p.decide(&who(&[]), "UPDATE T SET x = pg_sleep(1)");
    assert!(c.no_where);
    assert_eq!(c.tables[0].name, "t");
    assert!(c.dangerous.contains_key("pg_sleep"));
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["kinds"], serde_json::json!(["write"]));
    assert_eq!(json["statement_count"], 1);
}

#[test]
fn validation_errors_name_rule_key_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"[[rules]]
            id = "r"
            kinds = ["reads"]
            action = "allow""#,
            "kinds",
            "unknown kind \"reads\"",
        ),
        (
            r#"[[rules]]
            id = "r"
            tables = ["a.b.c"]
            action = "deny""#,
            "tables",
            "must be `table` or `schema.table`",
        ),
        (
            r#"[[rules]]
            id = "r"
            tables = ["public."]
            action = "deny""#,
            "tables",
            "non-empty parts",
        ),
        (
            r#"[[rules]]
            id = "r"
            functions = ["pg read"]
            action = "deny""#,
            "functions",
            "whitespace",
        ),
        (
            r#"[[rules]]
            id = "r"
            regex = "(unclosed"
            action = "deny""#,
            "regex",
            "invalid regular expression",
        ),
        (
            r#"[[rules]]
            id = "r"
            action = "review""#,
            "approvers",
            "needs at least one approver group",
        ),
        (
            r#"[[rules]]
            id = "r"
            action = "allow"
            approvers = ["dba"]"#,
            "approvers",
            "only review rules",
        ),
        (
            r#"[[rules]]
            id = "r"
            action = "review"
            approvers = ["dba"]
            quorum = 0"#,
            "quorum",
            "at least 1",
        ),
        (
            r#"[[rules]]
            id = "r"
            action = "review"
            approvers = ["dba"]
            quorum = "most""#,
            "quorum",
            "each-group",
        ),
        (
            r#"[[rules]]
            id = "r"
            action = "permit""#,
            "action",
            "unknown action \"permit\"",
        ),
        (
            r#"[[rules]]
            id = "r"
            groups = []
            action = "allow""#,
            "groups",
            "empty list",
        ),
        (
            r#"[[rules]]
            id = "default"
            action = "allow""#,
            "id",
            "reserved",
        ),
        (
            r#"[[rules]]
            id = ""
            action = "allow""#,
            "id",
            "must not be empty",
        ),
    ];
    for (toml, key, why) in cases {
        let err = compile_err(toml);
        let text = err.to_string();
        match &err {
            PolicyError::Rule {
                index, key: k, id, ..
            } => {
                assert_eq!(*index, 0, "{text}");
                assert_eq!(k, key, "{text}");
                assert!(text.contains(&format!("(id `{id}`)")), "{text}");
            }
            other => panic!("expected a rule error, got {other:?}"),
        }
        assert!(text.contains(why), "{text} should contain {why}");
        assert!(text.contains("rules[0]"), "{text}");
    }

    // The index points at the offending rule; duplicates are caught.
    let err = compile_err(
        r#"
        [[rules]]
        id = "a"
        action = "allow"
        [[rules]]
        id = "a"
        action = "deny"
        "#,
    );
    assert!(
        matches!(
            &err,
            PolicyError::Rule {
                index: 1,
                key: "id",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("duplicate"), "{err}");

    // Unknown keys and bad values are refused by the reader.
    let err = compile_err(
        r#"
        [[rules]]
        id = "a"
        action = "allow"
        tabels = ["x"]
        "#,
    );
    assert!(matches!(err, PolicyError::Syntax(_)), "{err}");
    assert!(err.to_string().contains("tabels"), "{err}");
    let err = compile_err(r#"default = "review""#);
    assert!(matches!(err, PolicyError::Syntax(_)), "{err}");
    let err = compile_err(r#"default_schema = """#);
    assert!(matches!(err, PolicyError::Setting { .. }), "{err}");
}

fn session(target: &str, groups: &[&str]) -> SessionContext {
    SessionContext {
        id: SessionId::new(),
        identity: who(groups),
        target: Arc::new(Target {
            name: target.into(),
            protocol: Protocol::Postgres,
            upstream: "127.0.0.1:5432".into(),
            allowed_groups: vec!["staff".into()],
        }),
        client_addr: None,
        opened_at: Timestamp::now(),
    }
}

fn sql(text: &str) -> Command {
    Command::Sql {
        text: text.into(),
        via: SqlVia::Simple,
    }
}

#[test]
fn policy_set_implements_command_policy() {
    let set = PolicySet::from_toml(
        r#"
        default = "deny"
        [targets.orders]
        [[targets.orders.rules]]
        id = "reads"
        kinds = ["read"]
        action = "allow"
        [targets.sandbox]
        default = "allow"
        "#,
    )
    .unwrap();
    let staff = session("orders", &["staff"]);
    let d = set.decide(&staff, &sql("SELECT * FROM orders")).unwrap();
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Allow, "reads"));
    let d = set.decide(&staff, &sql("DELETE FROM orders")).unwrap();
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, RULE_DEFAULT));

    // Identity not admitted by the target.
    let outsider = session("orders", &["guests"]);
    let d = set.decide(&outsider, &sql("SELECT 1")).unwrap();
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Deny, "target-access")
    );

    // Target without a policy: the set's default.
    let d = set
        .decide(&session("other", &["staff"]), &sql("SELECT 1"))
        .unwrap();
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, RULE_DEFAULT));

    // SSH exec without SSH rules: the target's default.
    let exec = Command::Exec {
        command: "ls".into(),
    };
    let d = set.decide(&staff, &exec).unwrap();
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, RULE_DEFAULT));
    let d = set.decide(&session("sandbox", &["staff"]), &exec).unwrap();
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Allow, RULE_DEFAULT));
    // HTTP has no rules yet: unsupported, following the target's default.
    let http = Command::Http {
        method: "GET".into(),
        path: "/".into(),
        query: None,
        details: Default::default(),
    };
    let d = set.decide(&session("sandbox", &["staff"]), &http).unwrap();
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Allow, RULE_UNSUPPORTED)
    );

    // Errors name the target.
    let err = PolicySet::from_toml(
        r#"
        [targets.orders]
        [[targets.orders.rules]]
        id = "x"
        action = "maybe"
        "#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("targets.orders"), "{err}");
}

#[test]
fn explain_shows_classification_and_deciding_rule() {
    let p = policy(
        r#"
        [[rules]]
        id = "no-files"
        dangerous_functions = true
        action = "deny"
        reason = "server file access"
        "#,
    );
    let text = p.explain(
        &who(&["dev"]),
        "SELECT * FROM public.users WHERE pg_read_file('/etc/passwd') <> ''",
    );
    for needle in [
        "groups: dev",
        "statements: 1",
        "kinds: read",
        "tables: public.users (r)",
        "functions: pg_read_file",
        "dangerous: pg_read_file (reads a file on the database server)",
        "decision: deny by `no-files`: server file access",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn long_operator_chains_do_not_overflow_the_stack() {
    // Left-deep trees as deep as the chain; walked on a thread sized for them.
    let deep = format!("SELECT 1{} FROM t", "+1".repeat(5_000));
    let c = portcullis_policy::classify(&deep);
    assert!(!c.is_unknown(), "{:?}", c.parse_error);
    assert_eq!(c.tables[0].name, "t");
    let unions = format!("SELECT a FROM t{}", " UNION SELECT a FROM t".repeat(2_000));
    assert!(!portcullis_policy::classify(&unions).is_unknown());
    let ands = format!(
        "DELETE FROM t WHERE {}",
        vec!["id = 1"; 3_000].join(" AND ")
    );
    let c = portcullis_policy::classify(&ands);
    assert!(c.kinds.contains(&portcullis_policy::Kind::Write) && !c.no_where);
    // Beyond the limit: unknown, hence denied.
    let too_deep = format!(
        "SELECT 1{}",
        "+1".repeat(portcullis_policy::MAX_OPERATORS + 1)
    );
    let c = portcullis_policy::classify(&too_deep);
    assert!(c.is_unknown());
    assert!(c.parse_error.unwrap().contains("too complex"));
}
