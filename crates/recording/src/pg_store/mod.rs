//! The PostgreSQL backend: several gateways share one database, each writing
//! its own chain (own chain id, sequence, hashes and signing key).
//!
//! A handle is one of:
//!
//! - a **writer** of one chain ([`PgStore::open`]): creates the schema and the
//!   chain if needed and holds the chain's advisory lock for as long as it lives,
//!   so a second process opening the same chain for writing is refused
//!   ([`RecordingError::ChainInUse`]). Each append also locks the chain's head row
//!   and checks it is the head this writer holds, so even without the advisory
//!   lock (a pooler in transaction mode) two writers cannot fork the chain;
//! - a **reader** of one chain ([`PgStore::open_chain`]): every query, no
//!   appends (it may add checkpoints and public keys, which do not change the
//!   chain);
//! - a **reader over every chain** ([`PgStore::open_all`]): sessions, session
//!   summaries and session records of all gateways; chain-level calls (head,
//!   scan, checkpoints) need a one-chain handle ([`PgStore::chains`] lists them).
//!
//! The schema is described in `schema.rs` and docs/recording.md.

mod schema;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::{Event, SessionId};
use postgres::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Appended, ChainHash, Checkpoint, CheckpointIter, EventStore, Head, PruneStats, PublicKeyRecord,
    RecordIter, RecordingError, Result, SessionFilter, SessionSummary, StoredEvent,
};
use schema::LOCK_NAMESPACE;
use worker::{Conn, Worker, prepare_cached};

/// Rows read per query by the lazy iterators.
const PAGE: usize = 512;
/// Records deleted per statement while pruning.
const PRUNE_CHUNK: i64 = 10_000;
/// How long [`PgStore::open`] waits for a chain lock that was just released
/// (a restarted gateway whose old connection is still closing).
const LOCK_WAIT: Duration = Duration::from_secs(2);

impl From<postgres::Error> for RecordingError {
    fn from(e: postgres::Error) -> Self {
        // The top-level message ("error connecting to server") says little; add the
        // cause (refused, timed out, authentication failed …). Neither carries the URL.
        match std::error::Error::source(&e) {
            Some(cause) if !e.to_string().contains(&cause.to_string()) => {
                RecordingError::Storage(format!("PostgreSQL: {e}: {cause}"))
            }
            _ => RecordingError::Storage(format!("PostgreSQL: {e}")),
        }
    }
}

/// Longest chain name.
pub const MAX_CHAIN_NAME: usize = 63;

/// Checks a chain name: 1 to 63 bytes of ASCII letters, digits, `-`, `_` and `.`.
pub fn validate_chain_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CHAIN_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RecordingError::Config(format!(
            "chain name {name:?} must be 1 to {MAX_CHAIN_NAME} ASCII letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Parses a connection string (`postgres://…` URL or `key=value` pairs). The
/// error never repeats the input, which may hold a password.
pub fn parse_url(url: &str) -> Result<postgres::Config> {
    postgres::Config::from_str(url).map_err(|_| {
        RecordingError::Config(
            "not a valid PostgreSQL connection URL (the value is not shown: it may hold a password)"
                .into(),
        )
    })
}

/// The connection target without credentials, for logs and messages:
/// `postgres://user@host:port/dbname`.
pub fn redacted_url(url: &str) -> String {
    match parse_url(url) {
        Ok(c) => redact(&c),
        Err(_) => "postgres://[invalid]".into(),
    }
}

fn redact(c: &postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            match c.get_ports().get(i).or_else(|| c.get_ports().first()) {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}{}/{}",
        c.get_user().map(|u| format!("{u}@")).unwrap_or_default(),
        hosts.join(","),
        c.get_dbname().unwrap_or("")
    )
}

/// One chain of a shared store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// The chain's name (one per gateway, `[recording] chain`).
    pub name: String,
    /// The chain id signed into its checkpoints (a UUID).
    pub chain_id: String,
    /// Its head.
    pub head: Head,
}

#[derive(Debug, Clone)]
struct ChainRow {
    id: i32,
    name: String,
    chain_id: String,
}

enum Scope {
    Chain(ChainRow),
    All,
}

/// The PostgreSQL-backed [`EventStore`] (see the module docs).
pub struct PgStore {
    scope: Scope,
    /// Present on writer handles: the connection holding the chain lock, and the head.
    writer: Option<(Worker, Mutex<Head>)>,
    /// Queries, on their own connection so they do not wait behind appends.
    reader: Arc<Worker>,
    config: postgres::Config,
    location: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .field("chain", &self.chain_name())
            .field("writer", &self.writer.is_some())
            .finish()
    }
}

fn i64_of(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| RecordingError::Storage(format!("{what} {v} is out of range")))
}

fn u64_of(v: i64, seq: Option<u64>, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| RecordingError::Corrupt {
        seq,
        reason: format!("negative {what} {v}"),
    })
}

fn hash_of(bytes: &[u8], seq: Option<u64>, what: &str) -> Result<ChainHash> {
    <[u8; 32]>::try_from(bytes)
        .map(ChainHash)
        .map_err(|_| RecordingError::Corrupt {
            seq,
            reason: format!("{what} is not 32 bytes"),
        })
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> RecordingError {
    RecordingError::Corrupt {
        seq: None,
        reason: format!("{what}: {e}"),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| RecordingError::Encode(e.to_string()))
}

/// Decodes `seq, session_seq, prev_hash, hash, event` (and optionally the
/// session id column, which must match the event).
fn decode_record(row: &Row) -> Result<StoredEvent> {
    let seq = u64_of(row.try_get(0)?, None, "seq")?;
    let at = Some(seq);
    let session_seq = u64_of(row.try_get(1)?, at, "session_seq")?;
    let prev_hash = hash_of(row.try_get(2)?, at, "prev_hash")?;
    let hash = hash_of(row.try_get(3)?, at, "hash")?;
    let canonical: String = row.try_get(4)?;
    let event: Event = serde_json::from_str(&canonical).map_err(|e| RecordingError::Corrupt {
        seq: at,
        reason: format!("event does not decode: {e}"),
    })?;
    if row.len() > 5 {
        let session: Uuid = row.try_get(5)?;
        if session != event.session.0 {
            return Err(RecordingError::Corrupt {
                seq: at,
                reason: format!(
                    "indexed under session {session}, the event belongs to {}",
                    event.session
                ),
            });
        }
    }
    Ok(StoredEvent {
        seq,
        session_seq,
        prev_hash,
        hash,
        event,
        canonical,
    })
}

fn decode_head(row: &Row) -> Result<Head> {
    let seq = u64_of(row.try_get(0)?, None, "head seq")?;
    let hash = hash_of(row.try_get(1)?, None, "head hash")?;
    Ok(Head { seq, hash })
}

const SELECT_RECORD: &str = "SELECT seq, session_seq, prev_hash, hash, event FROM portcullis_records WHERE chain = $1 AND seq = $2";
const SCAN_RECORDS: &str = "SELECT seq, session_seq, prev_hash, hash, event FROM portcullis_records WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT $3";
const SESSION_RECORDS: &str = "SELECT seq, session_seq, prev_hash, hash, event, session_id FROM portcullis_records WHERE chain = $1 AND session_id = $2 AND session_seq > $3 ORDER BY session_seq LIMIT $4";
const HEAD: &str = "SELECT head_seq, head_hash FROM portcullis_chains WHERE id = $1";
const HEAD_FOR_UPDATE: &str =
    "SELECT head_seq, head_hash FROM portcullis_chains WHERE id = $1 FOR UPDATE";
const LOAD_SUMMARIES: &str =
    "SELECT id, summary FROM portcullis_sessions WHERE chain = $1 AND id = ANY($2)";
const INSERT_RECORDS: &str = "INSERT INTO portcullis_records (chain, seq, session_id, session_seq, prev_hash, hash, event) \
     SELECT $1::integer, r.* FROM unnest($2::bigint[], $3::uuid[], $4::bigint[], $5::bytea[], $6::bytea[], $7::text[]) AS r";
const UPSERT_SESSIONS: &str = "INSERT INTO portcullis_sessions (chain, id, opened_at, subject, target, last_seq, open, summary) \
     SELECT $1::integer, s.* FROM unnest($2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::boolean[], $8::text[]) AS s \
     ON CONFLICT (chain, id) DO UPDATE SET subject = excluded.subject, target = excluded.target, \
     last_seq = excluded.last_seq, open = excluded.open, summary = excluded.summary";
const SET_HEAD: &str = "UPDATE portcullis_chains SET head_seq = $2, head_hash = $3 WHERE id = $1";
const SESSION_IN_CHAIN: &str =
    "SELECT summary FROM portcullis_sessions WHERE chain = $1 AND id = $2";
const SESSION_ANY_CHAIN: &str =
    "SELECT summary, chain FROM portcullis_sessions WHERE id = $1 ORDER BY chain LIMIT 1";
const LIST_SESSIONS: &str = "SELECT s.summary, c.name FROM portcullis_sessions s JOIN portcullis_chains c ON c.id = s.chain \
     WHERE ($1::integer IS NULL OR s.chain = $1) AND s.opened_at >= $2 \
     AND ($3::bigint IS NULL OR s.opened_at < $3) \
     AND ($4::text IS NULL OR s.subject = $4) AND ($5::text IS NULL OR s.target = $5) \
     ORDER BY s.opened_at DESC, s.id DESC LIMIT $6";
const CHECKPOINTS: &str = "SELECT seq, signature, checkpoint FROM portcullis_checkpoints \
     WHERE chain = $1 AND (seq > $2 OR (seq = $2 AND signature > $3)) ORDER BY seq, signature LIMIT $4";
const PUT_CHECKPOINT: &str = "INSERT INTO portcullis_checkpoints (chain, seq, signature, checkpoint) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const PUT_KEY: &str = "INSERT INTO portcullis_public_keys (chain, key_id, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const KEYS: &str = "SELECT record FROM portcullis_public_keys WHERE chain = $1 ORDER BY key_id";
const BASE: &str = "SELECT base FROM portcullis_chains WHERE id = $1";
const CHAINS: &str =
    "SELECT name, chain_id, head_seq, head_hash FROM portcullis_chains ORDER BY name";
const CHAIN_BY_NAME: &str = "SELECT id, name, chain_id FROM portcullis_chains WHERE name = $1";

impl PgStore {
    /// Opens chain `chain` for writing: creates the schema and the chain if they
    /// do not exist, and takes the chain's writer lock, held until the handle is
    /// dropped. Fails with [`RecordingError::ChainInUse`] while another process
    /// writes the chain.
    pub fn open(url: &str, chain: &str) -> Result<Self> {
        validate_chain_name(chain)?;
        let mut config = parse_url(url)?;
        defaults(&mut config, &format!("portcullis recorder {chain}"));
        let name = chain.to_owned();
        let (writer, (row, head)) = Worker::spawn(
            "portcullis-pg-writer",
            config.clone(),
            false,
            move |conn| open_writer(conn, &name),
            Some(release_locks),
        )?;
        let reader = Self::reader(&config)?;
        Ok(Self {
            location: redact(&config),
            scope: Scope::Chain(row),
            writer: Some((writer, Mutex::new(head))),
            reader: Arc::new(reader),
            config,
        })
    }

    /// Opens chain `chain` for reading. The schema must exist.
    pub fn open_chain(url: &str, chain: &str) -> Result<Self> {
        let mut all = Self::open_all(url)?;
        let row = all.chain_row(chain)?;
        all.scope = Scope::Chain(row);
        Ok(all)
    }

    /// Opens every chain of the store for reading (sessions across gateways).
    /// The schema must exist.
    pub fn open_all(url: &str) -> Result<Self> {
        let mut config = parse_url(url)?;
        defaults(&mut config, "portcullis reader");
        let reader = Self::reader(&config)?;
        Ok(Self {
            location: redact(&config),
            scope: Scope::All,
            writer: None,
            reader: Arc::new(reader),
            config,
        })
    }

    fn reader(config: &postgres::Config) -> Result<Worker> {
        let (reader, ()) = Worker::spawn(
            "portcullis-pg-reader",
            config.clone(),
            true,
            |conn| schema::ensure(&mut conn.client, false),
            None,
        )?;
        Ok(reader)
    }

    fn chain_row(&self, chain: &str) -> Result<ChainRow> {
        let name = chain.to_owned();
        self.reader.run(move |conn| {
            let stmt = conn.prepared(CHAIN_BY_NAME)?;
            let row = conn.client.query_opt(&stmt, &[&name])?.ok_or_else(|| {
                RecordingError::Config(format!("the store has no chain named {name:?}"))
            })?;
            Ok(ChainRow {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                chain_id: row.try_get(2)?,
            })
        })
    }

    /// A reader of chain `chain` on the same database (a new connection).
    pub fn chain(&self, chain: &str) -> Result<Self> {
        let row = self.chain_row(chain)?;
        Ok(Self {
            location: self.location.clone(),
            scope: Scope::Chain(row),
            writer: None,
            reader: Arc::new(Self::reader(&self.config)?),
            config: self.config.clone(),
        })
    }

    /// Every chain in the store, by name.
    pub fn chains(&self) -> Result<Vec<ChainInfo>> {
        self.reader.run(|conn| {
            let stmt = conn.prepared(CHAINS)?;
            conn.client
                .query(&stmt, &[])?
                .iter()
                .map(|row| {
                    Ok(ChainInfo {
                        name: row.try_get(0)?,
                        chain_id: row.try_get(1)?,
                        head: Head {
                            seq: u64_of(row.try_get(2)?, None, "head seq")?,
                            hash: hash_of(row.try_get(3)?, None, "head hash")?,
                        },
                    })
                })
                .collect()
        })
    }

    /// The name of the chain this handle reads or writes (`None` over every chain).
    pub fn chain_name(&self) -> Option<&str> {
        match &self.scope {
            Scope::Chain(c) => Some(&c.name),
            Scope::All => None,
        }
    }

    /// Where the store is, without credentials (`postgres://user@host:port/db`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Sessions matching `filter` with the name of the chain (gateway) that
    /// recorded each, newest first.
    pub fn list_sessions_with_chain(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<(String, SessionSummary)>> {
        if filter.limit == 0 {
            return Ok(Vec::new());
        }
        let chain = self.chain_key();
        let since = filter.since.map_or(i64::MIN, |t| t.0);
        let until = filter.until.map(|t| t.0);
        let subject = filter.subject.clone();
        let target = filter.target.clone();
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = self.reader.run(move |conn| {
            let stmt = conn.prepared(LIST_SESSIONS)?;
            let rows = conn
                .client
                .query(&stmt, &[&chain, &since, &until, &subject, &target, &limit])?;
            rows.iter()
                .map(|row| {
                    let json: String = row.try_get(0)?;
                    let name: String = row.try_get(1)?;
                    let s: SessionSummary =
                        serde_json::from_str(&json).map_err(|e| corrupt("session summary", e))?;
                    Ok((name, s))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(rows
            .into_iter()
            .filter(|(_, s)| s.matches(filter))
            .collect())
    }

    /// The chain's numeric key (`None` over every chain).
    fn chain_key(&self) -> Option<i32> {
        match &self.scope {
            Scope::Chain(c) => Some(c.id),
            Scope::All => None,
        }
    }

    fn one_chain(&self, what: &str) -> Result<&ChainRow> {
        match &self.scope {
            Scope::Chain(c) => Ok(c),
            Scope::All => Err(RecordingError::Unsupported(format!(
                "{what} on a handle over every chain (open one chain)"
            ))),
        }
    }

    fn writer(&self, what: &str) -> Result<(&Worker, &Mutex<Head>, &ChainRow)> {
        let chain = self.one_chain(what)?;
        match &self.writer {
            Some((w, head)) => Ok((w, head, chain)),
            None => Err(RecordingError::Unsupported(format!(
                "{what} on a read-only handle"
            ))),
        }
    }
}

/// Sets what the URL leaves open: a connect timeout and an application name.
fn defaults(config: &mut postgres::Config, application: &str) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
}

fn release_locks(conn: &mut Conn) {
    let _ = conn.client.execute("SELECT pg_advisory_unlock_all()", &[]);
}

/// The writer connection's start: schema, chain row, lock, head check.
fn open_writer(conn: &mut Conn, name: &str) -> Result<(ChainRow, Head)> {
    schema::ensure(&mut conn.client, true)?;
    let sync: String = conn
        .client
        .query_one("SHOW synchronous_commit", &[])?
        .try_get(0)?;
    if sync == "off" || sync == "local" {
        // An acknowledged append must be durable: commit waits for the WAL flush.
        conn.client.batch_execute("SET synchronous_commit = on")?;
    }
    let new_id = Uuid::new_v4().to_string();
    conn.client.execute(
        "INSERT INTO portcullis_chains (name, chain_id, head_hash) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        &[&name, &new_id, &ChainHash::ZERO.0.as_slice()],
    )?;
    let row = conn
        .client
        .query_one(CHAIN_BY_NAME, &[&name])
        .map(|r| -> Result<ChainRow> {
            Ok(ChainRow {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                chain_id: r.try_get(2)?,
            })
        })??;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let locked: bool = conn
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LOCK_NAMESPACE, &row.id],
            )?
            .try_get(0)?;
        if locked {
            break;
        }
        if Instant::now() >= deadline {
            return Err(RecordingError::ChainInUse {
                chain: row.name.clone(),
                holder: lock_holder(conn, row.id),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let head = decode_head(&conn.client.query_one(HEAD, &[&row.id])?)?;
    let last: Option<i64> = conn
        .client
        .query_one(
            "SELECT max(seq) FROM portcullis_records WHERE chain = $1",
            &[&row.id],
        )?
        .try_get(0)?;
    let last = u64_of(last.unwrap_or(0), None, "seq")?;
    if last != head.seq {
        return Err(RecordingError::Corrupt {
            seq: Some(last),
            reason: format!(
                "chain {:?}: head says seq {}, last record is {last}",
                row.name, head.seq
            ),
        });
    }
    Ok((row, head))
}

/// Who holds chain `id`'s lock, as PostgreSQL sees it (advisory locks are per database;
/// `pg_locks` shows the whole cluster).
fn lock_holder(conn: &mut Conn, id: i32) -> String {
    let found = conn.client.query_opt(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND l.classid::bigint = $1 AND l.objid::bigint = $2 LIMIT 1",
        &[&i64::from(LOCK_NAMESPACE), &i64::from(id)],
    );
    match found {
        Ok(Some(r)) => {
            let pid: i32 = r.try_get(0).unwrap_or_default();
            let app: String = r.try_get(1).unwrap_or_default();
            let addr: String = r.try_get(2).unwrap_or_default();
            format!("PostgreSQL backend {pid}, application {app:?}, client {addr}")
        }
        _ => "holder unknown".into(),
    }
}

/// The columns of one batch of records, as arrays for one `INSERT … unnest`.
#[derive(Default)]
struct RecordColumns {
    seq: Vec<i64>,
    session: Vec<Uuid>,
    session_seq: Vec<i64>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    event: Vec<String>,
}

/// Appends `events` after `expected` in one transaction.
fn append_batch(
    conn: &mut Conn,
    chain: &ChainRow,
    expected: Head,
    events: &[Event],
) -> Result<Head> {
    let (client, cache) = conn.parts();
    let mut tx = client.transaction()?;
    let stmt = prepare_cached(cache, &mut tx, HEAD_FOR_UPDATE)?;
    let db_head = decode_head(&tx.query_one(&stmt, &[&chain.id])?)?;
    if db_head != expected {
        return Err(RecordingError::Storage(format!(
            "chain {:?}: its head in the database (seq {}) is not the one this writer holds (seq {}): another process wrote to the chain; refusing to fork it",
            chain.name, db_head.seq, expected.seq
        )));
    }
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.session.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let stmt = prepare_cached(cache, &mut tx, LOAD_SUMMARIES)?;
    let mut summaries: HashMap<SessionId, SessionSummary> = HashMap::with_capacity(ids.len());
    for row in tx.query(&stmt, &[&chain.id, &ids])? {
        let id: Uuid = row.try_get(0)?;
        let json: String = row.try_get(1)?;
        let s = serde_json::from_str(&json).map_err(|e| corrupt("session summary", e))?;
        summaries.insert(SessionId(id), s);
    }
    let mut cols = RecordColumns::default();
    let mut head = expected;
    for event in events {
        let seq = head.seq.saturating_add(1);
        let session_seq = match summaries.get_mut(&event.session) {
            Some(s) => s.apply(event, seq),
            None => {
                let s = SessionSummary::start(event, seq);
                let n = s.events;
                summaries.insert(event.session, s);
                n
            }
        };
        let record = StoredEvent::chain(head, session_seq, event.clone())?;
        cols.seq.push(i64_of(record.seq, "seq")?);
        cols.session.push(event.session.0);
        cols.session_seq.push(i64_of(session_seq, "session_seq")?);
        cols.prev_hash.push(record.prev_hash.0.to_vec());
        cols.hash.push(record.hash.0.to_vec());
        head = record.head();
        cols.event.push(record.canonical);
    }
    let stmt = prepare_cached(cache, &mut tx, INSERT_RECORDS)?;
    tx.execute(
        &stmt,
        &[
            &chain.id,
            &cols.seq,
            &cols.session,
            &cols.session_seq,
            &cols.prev_hash,
            &cols.hash,
            &cols.event,
        ],
    )?;
    let mut s_id = Vec::with_capacity(summaries.len());
    let mut s_opened = Vec::with_capacity(summaries.len());
    let mut s_subject = Vec::with_capacity(summaries.len());
    let mut s_target = Vec::with_capacity(summaries.len());
    let mut s_last = Vec::with_capacity(summaries.len());
    let mut s_open = Vec::with_capacity(summaries.len());
    let mut s_json = Vec::with_capacity(summaries.len());
    for s in summaries.values().filter(|s| s.last_seq > expected.seq) {
        s_id.push(s.id.0);
        s_opened.push(s.opened_at.0);
        s_subject.push(s.subject.clone());
        s_target.push(s.target.clone());
        s_last.push(i64_of(s.last_seq, "seq")?);
        s_open.push(s.outcome == crate::SessionOutcome::Open);
        s_json.push(to_json(s)?);
    }
    let stmt = prepare_cached(cache, &mut tx, UPSERT_SESSIONS)?;
    tx.execute(
        &stmt,
        &[
            &chain.id, &s_id, &s_opened, &s_subject, &s_target, &s_last, &s_open, &s_json,
        ],
    )?;
    let stmt = prepare_cached(cache, &mut tx, SET_HEAD)?;
    tx.execute(
        &stmt,
        &[
            &chain.id,
            &i64_of(head.seq, "seq")?,
            &head.hash.0.as_slice(),
        ],
    )?;
    tx.commit()?;
    Ok(head)
}

/// One page: each item with the key the next page starts from (or after).
type Page<T, K> = Vec<(K, Result<T>)>;

/// Reads the page at key `K` of at most `usize` items.
type Fetch<T, K> = Box<dyn FnMut(K, usize) -> Result<Page<T, K>> + Send>;

/// A lazily read sequence: each page is one query on the reader connection.
struct Pager<T, K> {
    fetch: Fetch<T, K>,
    next: K,
    remaining: usize,
    buffer: VecDeque<Result<T>>,
    done: bool,
}

impl<T, K: Clone> Iterator for Pager<T, K> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Some(item);
            }
            if self.done || self.remaining == 0 {
                return None;
            }
            let n = self.remaining.min(PAGE);
            match (self.fetch)(self.next.clone(), n) {
                Ok(rows) => {
                    if rows.len() < n {
                        self.done = true;
                    }
                    self.remaining = self.remaining.saturating_sub(rows.len());
                    if let Some((k, _)) = rows.last() {
                        self.next = k.clone();
                    }
                    self.buffer.extend(rows.into_iter().map(|(_, item)| item));
                    if self.buffer.is_empty() {
                        return None;
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn records_page(
    reader: &Arc<Worker>,
    sql: &'static str,
    chain: i32,
    session: Option<Uuid>,
    after: i64,
    n: usize,
) -> Result<Vec<(i64, Result<StoredEvent>)>> {
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    reader.run(move |conn| {
        let stmt = conn.prepared(sql)?;
        let rows = match session {
            Some(id) => conn.client.query(&stmt, &[&chain, &id, &after, &limit])?,
            None => conn.client.query(&stmt, &[&chain, &after, &limit])?,
        };
        rows.iter()
            .map(|row| {
                // The key column of the page (seq, or session_seq for a session).
                let key: i64 = row.try_get(if session.is_some() { 1 } else { 0 })?;
                Ok((key, decode_record(row)))
            })
            .collect()
    })
}

impl EventStore for PgStore {
    fn append(&self, events: &[Event]) -> Result<Appended> {
        let (worker, head_lock, chain) = self.writer("appends")?;
        let mut head_guard = head_lock
            .lock()
            .map_err(|_| RecordingError::Storage("store lock poisoned".into()))?;
        let start = *head_guard;
        let first_seq = start.seq.saturating_add(1);
        if events.is_empty() {
            return Ok(Appended {
                first_seq,
                count: 0,
                head: start,
            });
        }
        let events = events.to_vec();
        let chain = chain.clone();
        let head = worker.run(move |conn| append_batch(conn, &chain, start, &events))?;
        *head_guard = head;
        Ok(Appended {
            first_seq,
            count: head.seq.saturating_sub(start.seq),
            head,
        })
    }

    /// A no-op: every append is a committed transaction (the writer connection
    /// runs with `synchronous_commit` at least `on`).
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn head(&self) -> Result<Head> {
        if let Some((_, head)) = &self.writer {
            return head
                .lock()
                .map(|h| *h)
                .map_err(|_| RecordingError::Storage("store lock poisoned".into()));
        }
        let id = self.one_chain("the chain head")?.id;
        self.reader.run(move |conn| {
            let stmt = conn.prepared(HEAD)?;
            decode_head(&conn.client.query_one(&stmt, &[&id])?)
        })
    }

    fn get(&self, seq: u64) -> Result<Option<StoredEvent>> {
        let id = self.one_chain("records by seq")?.id;
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        self.reader.run(move |conn| {
            let stmt = conn.prepared(SELECT_RECORD)?;
            conn.client
                .query_opt(&stmt, &[&id, &seq])?
                .map(|row| decode_record(&row))
                .transpose()
        })
    }

    fn scan(&self, from_seq: u64, limit: usize) -> Result<RecordIter<'_>> {
        let id = self.one_chain("scans")?.id;
        let reader = self.reader.clone();
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        Ok(Box::new(Pager {
            fetch: Box::new(move |next: i64, n| {
                records_page(&reader, SCAN_RECORDS, id, None, next, n).map(|rows| {
                    rows.into_iter()
                        .map(|(k, r)| (k.saturating_add(1), r))
                        .collect()
                })
            }),
            next: from,
            remaining: limit,
            buffer: VecDeque::new(),
            done: from_seq > i64::MAX as u64,
        }))
    }

    fn session(&self, id: SessionId) -> Result<Option<SessionSummary>> {
        let chain = self.chain_key();
        self.reader.run(move |conn| {
            let row = match chain {
                Some(c) => {
                    let stmt = conn.prepared(SESSION_IN_CHAIN)?;
                    conn.client.query_opt(&stmt, &[&c, &id.0])?
                }
                None => {
                    let stmt = conn.prepared(SESSION_ANY_CHAIN)?;
                    conn.client.query_opt(&stmt, &[&id.0])?
                }
            };
            match row {
                Some(r) => {
                    let json: String = r.try_get(0)?;
                    serde_json::from_str(&json)
                        .map(Some)
                        .map_err(|e| corrupt(&format!("session {id} summary"), e))
                }
                None => Ok(None),
            }
        })
    }

    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>> {
        Ok(self
            .list_sessions_with_chain(filter)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    fn session_events(&self, id: SessionId) -> Result<RecordIter<'_>> {
        let chain = match self.chain_key() {
            Some(c) => Some(c),
            None => self.reader.run(move |conn| {
                let stmt = conn.prepared(SESSION_ANY_CHAIN)?;
                Ok(match conn.client.query_opt(&stmt, &[&id.0])? {
                    Some(r) => Some(r.try_get::<_, i32>(1)?),
                    None => None,
                })
            })?,
        };
        let Some(chain) = chain else {
            return Ok(Box::new(std::iter::empty()));
        };
        let reader = self.reader.clone();
        Ok(Box::new(Pager {
            fetch: Box::new(move |after: i64, n| {
                records_page(&reader, SESSION_RECORDS, chain, Some(id.0), after, n)
            }),
            next: 0,
            remaining: usize::MAX,
            buffer: VecDeque::new(),
            done: false,
        }))
    }

    fn chain_id(&self) -> Result<String> {
        Ok(self.one_chain("chain ids")?.chain_id.clone())
    }

    fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let id = self.one_chain("checkpoints")?.id;
        let seq = i64_of(checkpoint.seq, "seq")?;
        let signature = checkpoint.signature.clone();
        let json = to_json(checkpoint)?;
        let run = move |conn: &mut Conn| {
            let stmt = conn.prepared(PUT_CHECKPOINT)?;
            conn.client
                .execute(&stmt, &[&id, &seq, &signature, &json])?;
            Ok(())
        };
        match &self.writer {
            Some((w, _)) => w.run(run),
            None => self.reader.run(run),
        }
    }

    fn checkpoints(&self, from_seq: u64) -> Result<CheckpointIter<'_>> {
        let id = self.one_chain("checkpoints")?.id;
        let reader = self.reader.clone();
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        Ok(Box::new(Pager {
            fetch: Box::new(move |(seq, sig): (i64, String), n| {
                let limit = i64::try_from(n).unwrap_or(i64::MAX);
                reader.run(move |conn| {
                    let stmt = conn.prepared(CHECKPOINTS)?;
                    conn.client
                        .query(&stmt, &[&id, &seq, &sig, &limit])?
                        .iter()
                        .map(|row| {
                            let key = (row.try_get(0)?, row.try_get(1)?);
                            let json: String = row.try_get(2)?;
                            let cp =
                                serde_json::from_str(&json).map_err(|e| corrupt("checkpoint", e));
                            Ok((key, cp))
                        })
                        .collect()
                })
            }),
            next: (from, String::new()),
            remaining: usize::MAX,
            buffer: VecDeque::new(),
            done: from_seq > i64::MAX as u64,
        }))
    }

    fn put_public_key(&self, key: &PublicKeyRecord) -> Result<()> {
        let id = self.one_chain("public keys")?.id;
        let key_id = key.key_id.clone();
        let json = to_json(key)?;
        let run = move |conn: &mut Conn| {
            let stmt = conn.prepared(PUT_KEY)?;
            conn.client.execute(&stmt, &[&id, &key_id, &json])?;
            Ok(())
        };
        match &self.writer {
            Some((w, _)) => w.run(run),
            None => self.reader.run(run),
        }
    }

    fn public_keys(&self) -> Result<Vec<PublicKeyRecord>> {
        let id = self.one_chain("public keys")?.id;
        self.reader.run(move |conn| {
            let stmt = conn.prepared(KEYS)?;
            conn.client
                .query(&stmt, &[&id])?
                .iter()
                .map(|row| {
                    let json: String = row.try_get(0)?;
                    serde_json::from_str(&json).map_err(|e| corrupt("public key", e))
                })
                .collect()
        })
    }

    fn base(&self) -> Result<Option<Checkpoint>> {
        let id = self.one_chain("the base")?.id;
        self.reader.run(move |conn| {
            let stmt = conn.prepared(BASE)?;
            let json: Option<String> = conn.client.query_one(&stmt, &[&id])?.try_get(0)?;
            json.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("base", e)))
                .transpose()
        })
    }

    fn prune(&self, tombstone: &Checkpoint) -> Result<PruneStats> {
        let (worker, head_lock, chain) = self.writer("pruning")?;
        let head = *head_lock
            .lock()
            .map_err(|_| RecordingError::Storage("store lock poisoned".into()))?;
        if tombstone.seq >= head.seq {
            return Err(RecordingError::Config(format!(
                "cannot prune through seq {}: the last record ({}) is always kept",
                tombstone.seq, head.seq
            )));
        }
        let old_base = self.base()?.map_or(0, |b| b.seq);
        if tombstone.seq <= old_base {
            return Ok(PruneStats::default());
        }
        let id = chain.id;
        let through = i64_of(tombstone.seq, "seq")?;
        let signature = tombstone.signature.clone();
        let json = to_json(tombstone)?;
        worker.run(move |conn| {
            // 1. The tombstone becomes the base (committed before anything is deleted).
            let mut tx = conn.client.transaction()?;
            tx.execute(
                "UPDATE portcullis_chains SET base = $2 WHERE id = $1",
                &[&id, &json],
            )?;
            tx.execute(PUT_CHECKPOINT, &[&id, &through, &signature, &json])?;
            tx.commit()?;
            // 2. Records, in chunks; then emptied closed sessions and old checkpoints.
            let mut stats = PruneStats::default();
            loop {
                let n = conn.client.execute(
                    "DELETE FROM portcullis_records WHERE chain = $1 AND seq IN \
                     (SELECT seq FROM portcullis_records WHERE chain = $1 AND seq <= $2 ORDER BY seq LIMIT $3)",
                    &[&id, &through, &PRUNE_CHUNK],
                )?;
                stats.records = stats.records.saturating_add(n);
                if n == 0 {
                    break;
                }
            }
            stats.sessions = conn.client.execute(
                "DELETE FROM portcullis_sessions WHERE chain = $1 AND last_seq <= $2 AND NOT open",
                &[&id, &through],
            )?;
            stats.checkpoints = conn.client.execute(
                "DELETE FROM portcullis_checkpoints WHERE chain = $1 AND seq < $2",
                &[&id, &through],
            )?;
            Ok(stats)
        })
    }
}
