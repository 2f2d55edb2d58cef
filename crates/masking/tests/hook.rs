#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `MaskHook` and `MaskingEngine` against real PostgreSQL result sets (text and binary
//! format), notices, byte streams and the pipeline's command redaction.

use std::sync::Arc;

use portcullis_core::{
    AuthMethod, Column, Command, CommandRequest, Completion, FieldFormat, Identity, Masking,
    OutputHook, Protocol, SessionContext, SessionId, SqlVia, Target, TextKind, Timestamp,
};
use portcullis_masking::{MaskHook, Masker, MaskingConfig, MaskingEngine};
use tokio_postgres::types::{FromSql, Type};

/// Raw wire bytes of any column in binary format.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn masker() -> Masker {
    let config: MaskingConfig = toml::from_str(
        r#"
        token_key = "0123456789abcdef0123456789abcdef"
        [[columns]]
        pattern = "*ssn*"
        strategy = "null"
        [[columns]]
        pattern = "card_*"
        strategy = { strategy = "partial", keep_last = 4 }
        [[columns]]
        pattern = "secret_*"
        strategy = "redact"
        [[columns]]
        pattern = "id"
        strategy = "keep"
        "#,
    )
    .unwrap();
    Masker::new(&config).unwrap()
}

const SQL: &str = "SELECT 7::int4 AS id, 'mail bob@example.com'::text AS note, \
    '123-45-6789'::varchar AS customer_ssn, '4111 1111 1111 1111'::text AS card_number, \
    '{\"email\": \"bob@example.com\", \"n\": 1}'::jsonb AS doc, \
    42::int8 AS secret_n, 'bob@example.com'::name AS who, NULL::text AS empty, \
    '{\"k\": 1}'::json AS secret_doc";

async fn client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(conn);
    client
}

fn run(
    hook: &mut MaskHook,
    columns: Vec<Column>,
    mut fields: Vec<Option<Vec<u8>>>,
) -> Vec<Option<String>> {
    hook.columns(&columns).unwrap();
    hook.row(&mut fields).unwrap();
    fields
        .into_iter()
        .map(|f| f.map(|v| String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

#[tokio::test]
async fn binary_format_rows_from_postgres() {
    let client = client().await;
    let rows = client.query(SQL, &[]).await.unwrap();
    let row = &rows[0];
    let columns: Vec<Column> = row
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            table_oid: 0,
            column_id: 0,
            type_oid: c.type_().oid(),
            format: FieldFormat::Binary,
        })
        .collect();
    let fields: Vec<Option<Vec<u8>>> = (0..row.len())
        .map(|i| row.get::<_, Option<Raw>>(i).map(|r| r.0))
        .collect();
    let mut hook = MaskHook::new(masker());
    let out = run(&mut hook, columns, fields);
    // int4 7 in binary, kept (rule `keep`).
    assert_eq!(
        out[0].as_deref().map(str::as_bytes),
        Some(&[0u8, 0, 0, 7][..])
    );
    assert_eq!(out[1].as_deref(), Some("mail [EMAIL]"));
    assert_eq!(out[2], None); // ssn column -> NULL
    assert_eq!(out[3].as_deref(), Some("**** **** **** 1111"));
    // jsonb binary: version byte 1 kept, e-mail inside masked.
    let doc = out[4].as_deref().unwrap();
    assert!(
        doc.starts_with('\u{1}') && doc.contains("[EMAIL]") && !doc.contains("bob@"),
        "{doc:?}"
    );
    // int8 in a column masked whole cannot be rewritten as text: NULL.
    assert_eq!(out[5], None);
    assert_eq!(out[6].as_deref(), Some("[EMAIL]"));
    assert_eq!(out[7], None);
    // json column masked whole stays valid JSON.
    let secret_doc = out[8].as_deref().unwrap();
    assert_eq!(secret_doc, "\"[REDACTED]\"");

    let mut completion = Completion::default();
    hook.finish(&mut completion);
    assert_eq!(completion.masked["email"], 3);
    assert_eq!(completion.masked["column:customer_ssn"], 1);
    assert_eq!(completion.masked["column:card_number"], 1);
    assert_eq!(completion.masked["column:secret_n"], 1);
    assert!(!completion.masked.contains_key("column:id"));
}

#[tokio::test]
async fn text_format_rows_from_postgres() {
    let client = client().await;
    let messages = client.simple_query(SQL).await.unwrap();
    let mut columns = Vec::new();
    let mut fields = Vec::new();
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            columns = r
                .columns()
                .iter()
                .map(|c| Column {
                    name: c.name().to_string(),
                    table_oid: 0,
                    column_id: 0,
                    type_oid: 0,
                    format: FieldFormat::Text,
                })
                .collect();
            fields = (0..r.len())
                .map(|i| r.get(i).map(|s| s.as_bytes().to_vec()))
                .collect();
        }
    }
    let mut hook = MaskHook::new(masker());
    let out = run(&mut hook, columns, fields);
    assert_eq!(out[0].as_deref(), Some("7"));
    assert_eq!(out[1].as_deref(), Some("mail [EMAIL]"));
    assert_eq!(out[2], None);
    assert_eq!(out[3].as_deref(), Some("**** **** **** 1111"));
    assert_eq!(out[4].as_deref(), Some(r#"{"n": 1, "email": "[EMAIL]"}"#));
    assert_eq!(out[5].as_deref(), Some("[REDACTED]"));
}

#[tokio::test]
async fn notices_and_errors_are_masked() {
    let client = client().await;
    let err = client
        .simple_query("SELECT 'x' FROM no_such_table_for bob@example.com")
        .await
        .unwrap_err();
    let mut text = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    text.push_str(" (user bob@example.com, card 4111111111111111)");
    let mut hook = MaskHook::new(masker());
    hook.text(TextKind::Error, &mut text).unwrap();
    assert!(
        !text.contains("bob@example.com") && !text.contains("4111111111111111"),
        "{text}"
    );
    assert!(text.contains("[EMAIL]") && text.contains("[CARD]"));
}

#[test]
fn chunks_are_streamed_and_flushed() {
    let mut hook = MaskHook::new(masker());
    let mut out = Vec::new();
    for part in ["user bob@exa", "mple.com logged in from 10.1.", "2.3\n$ "] {
        let mut chunk = part.as_bytes().to_vec();
        hook.chunk(&mut chunk).unwrap();
        out.extend_from_slice(&chunk);
    }
    let mut flush = Vec::new();
    hook.chunk(&mut flush).unwrap();
    out.extend_from_slice(&flush);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "user [EMAIL] logged in from [IP]\n$ "
    );
    let mut c = Completion::default();
    hook.finish(&mut c);
    assert_eq!((c.masked["email"], c.masked["ipv4"]), (1, 1));
}

fn request(target: &str, command: Command) -> CommandRequest {
    let session = Arc::new(SessionContext {
        id: SessionId::new(),
        identity: Identity {
            subject: "alice".into(),
            groups: vec!["dba".into()],
            method: AuthMethod::Jwt,
            issuer: None,
            expires_at: None,
        },
        target: Arc::new(Target {
            name: target.into(),
            protocol: Protocol::Postgres,
            upstream: "127.0.0.1:5432".into(),
            allowed_groups: vec!["dba".into()],
        }),
        client_addr: None,
        opened_at: Timestamp::now(),
    });
    CommandRequest::new(session, 1, command)
}

#[test]
fn engine_hooks_per_target_and_redacts_commands() {
    let mut targets = std::collections::BTreeMap::new();
    targets.insert("orders".to_string(), masker());
    let engine = MaskingEngine::by_target(targets, None).unwrap();
    let cmd = Command::Sql {
        text:
            "UPDATE users SET email = 'bob@example.com', card = '4111-1111-1111-1111' WHERE id = 7"
                .into(),
        via: SqlVia::Simple,
    };
    assert!(
        engine
            .output_hook(&request("orders", cmd.clone()))
            .is_some()
    );
    assert!(engine.output_hook(&request("other", cmd.clone())).is_none());
    match engine.redact_command(&cmd) {
        Command::Sql { text, .. } => assert_eq!(
            text,
            "UPDATE users SET email = '[EMAIL]', card = '[CARD]' WHERE id = 7"
        ),
        other => panic!("{other:?}"),
    }
    let exec = Command::Exec {
        command: "curl -H 'Authorization: Bearer abcdefghijklmnop0123' https://x".into(),
    };
    match engine.redact_command(&exec) {
        Command::Exec { command } => assert!(command.contains("Bearer [TOKEN]"), "{command}"),
        other => panic!("{other:?}"),
    }
    let http = Command::Http {
        method: "GET".into(),
        path: "/users/bob@example.com".into(),
        query: Some("ssn=123-45-6789".into()),
        details: [(
            "request_body".to_owned(),
            r#"{"to":"ann@example.com"}"#.to_owned(),
        )]
        .into(),
    };
    assert_eq!(
        engine.redact_command(&http),
        Command::Http {
            method: "GET".into(),
            path: "/users/[EMAIL]".into(),
            query: Some("ssn=[SSN]".into()),
            details: [("request_body".to_owned(), r#"{"to":"[EMAIL]"}"#.to_owned())].into(),
        }
    );
}

#[test]
fn masking_errors_map_to_core_masking_errors() {
    let c: MaskingConfig = toml::from_str("[detectors]\nnope = \"redact\"").unwrap();
    let e: portcullis_core::Error = Masker::new(&c).unwrap_err().into();
    assert!(matches!(e, portcullis_core::Error::Masking(ref m) if m.contains("detectors.nope")));
    assert_eq!(e.side(), portcullis_core::Side::Internal);
}
