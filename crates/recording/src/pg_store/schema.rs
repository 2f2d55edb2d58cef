//! The PostgreSQL schema of the shared store, created on first open and versioned.

use postgres::Client;

use crate::{RecordingError, Result};

/// First key of every advisory lock the store takes (`"PCUS"`); the second key is
/// 0 for schema creation and the chain's numeric id for its writer lock.
pub(crate) const LOCK_NAMESPACE: i32 = 0x5043_5553;

/// The schema version this build reads and writes.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// Version 1. Every table but `portcullis_schema` is keyed by chain.
const SCHEMA_V1: &str = r#"
CREATE TABLE portcullis_schema (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL
);
CREATE TABLE portcullis_chains (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    chain_id text NOT NULL UNIQUE,
    head_seq bigint NOT NULL DEFAULT 0 CHECK (head_seq >= 0),
    head_hash bytea NOT NULL,
    base text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE portcullis_records (
    chain integer NOT NULL REFERENCES portcullis_chains (id),
    seq bigint NOT NULL,
    session_id uuid NOT NULL,
    session_seq bigint NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    event text NOT NULL,
    PRIMARY KEY (chain, seq),
    UNIQUE (chain, session_id, session_seq)
);
CREATE TABLE portcullis_sessions (
    chain integer NOT NULL REFERENCES portcullis_chains (id),
    id uuid NOT NULL,
    opened_at bigint NOT NULL,
    subject text,
    target text,
    last_seq bigint NOT NULL,
    open boolean NOT NULL,
    summary text NOT NULL,
    PRIMARY KEY (chain, id)
);
CREATE INDEX portcullis_sessions_time ON portcullis_sessions (opened_at DESC, id DESC);
CREATE INDEX portcullis_sessions_chain_time ON portcullis_sessions (chain, opened_at DESC, id DESC);
CREATE INDEX portcullis_sessions_id ON portcullis_sessions (id);
CREATE TABLE portcullis_checkpoints (
    chain integer NOT NULL REFERENCES portcullis_chains (id),
    seq bigint NOT NULL,
    signature text NOT NULL,
    checkpoint text NOT NULL,
    PRIMARY KEY (chain, seq, signature)
);
CREATE TABLE portcullis_public_keys (
    chain integer NOT NULL REFERENCES portcullis_chains (id),
    key_id text NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (chain, key_id)
);
INSERT INTO portcullis_schema (version) VALUES (1);
"#;

/// Checks the schema version; with `create`, creates the schema in an empty
/// database first. Concurrent openers serialize on an advisory lock, so two
/// gateways starting at once create it once.
pub(crate) fn ensure(client: &mut Client, create: bool) -> Result<()> {
    let mut tx = client.transaction()?;
    if create {
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_NAMESPACE])?;
    }
    let exists: bool = tx
        .query_one("SELECT to_regclass('portcullis_schema') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        if !create {
            return Err(RecordingError::Config(
                "no Portcullis store in this database (table portcullis_schema is missing)".into(),
            ));
        }
        tx.batch_execute(SCHEMA_V1)?;
    } else {
        let version: i32 = tx
            .query_one("SELECT version FROM portcullis_schema", &[])?
            .try_get(0)?;
        if version != SCHEMA_VERSION {
            return Err(RecordingError::Config(format!(
                "the store's schema version is {version}; this Portcullis reads version {SCHEMA_VERSION}"
            )));
        }
    }
    tx.commit()?;
    Ok(())
}
