//! The embedded sled backend.
//!
//! Everything lives in one sled tree (`portcullis-v1`) under one-byte key
//! prefixes. One append (records, index entries and the new chain head) is one
//! entry of the write-ahead journal (the `journal` module), so it survives a crash
//! whole or not at all:
//!
//! | key | value |
//! | --- | --- |
//! | `b` first seq (u64 BE) | the records of one append, packed (see [`crate::sled_format`]) |
//! | `s` session id (16 bytes) | the [`SessionSummary`] as JSON; for a session of at most 64 records, followed by a newline and the global seqs of its records (u64 BE each) |
//! | `x` session id, session seq (u64 BE) | for a longer session: the global seqs (u64 BE each) of the session's records in one append, from that session seq on |
//! | `t` opened_at (i64 BE, sign bit flipped), session id | empty (time index) |
//! | `m` `head` | head seq (u64 BE) and hash (32 bytes) |
//! | `m` `format` | `portcullis-recording-v2` |
//! | `m` `chain` | the chain id (a UUID, created with the store) |
//! | `m` `base` | the latest tombstone checkpoint as JSON (after pruning) |
//! | `c` seq (u64 BE), first 8 bytes of SHA-256(signature) | a checkpoint as JSON |
//! | `k` key id | a public key record as JSON |

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::{Event, SessionId, Timestamp};

use sha2::{Digest, Sha256};

use crate::journal::{self, Flusher, Journal, Ops};
use crate::record::{split_hash, split_u64};
use crate::sled_format::{self, BATCH_PREFIX, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, batch_key};
use crate::{
    Appended, Checkpoint, CheckpointIter, EventStore, Head, PruneStats, PublicKeyRecord,
    RecordIter, RecordingError, Result, SessionFilter, SessionOutcome, SessionSummary, StoredEvent,
};

const TREE: &str = "portcullis-v1";
const FORMAT: &[u8] = b"portcullis-recording-v2";
const P_SESSION: u8 = b's';
const P_SESSION_EVENT: u8 = b'x';
const P_TIME: u8 = b't';
const P_CHECKPOINT: u8 = b'c';
const P_KEY: u8 = b'k';
const K_HEAD: &[u8] = b"mhead";
const K_FORMAT: &[u8] = b"mformat";
const K_CHAIN: &[u8] = b"mchain";
const K_BASE: &[u8] = b"mbase";
/// Record batches deleted per sled batch while pruning.
const PRUNE_CHUNK: usize = 64;

/// Most open-session summaries kept in memory between appends; beyond it the cache is
/// emptied and summaries are read back from the tree as sessions show up again.
const OPEN_SUMMARIES: usize = 16_384;

/// Most records of a session indexed inside its summary value; a longer session is
/// indexed by `x` entries instead.
const INLINE_SEQS: usize = 64;

/// What the append path keeps between appends.
struct WriteState {
    head: Head,
    /// Entries of sessions that have not ended, as last written: an append to a long
    /// session does not read and decode its summary back from the tree.
    open: HashMap<SessionId, SessionEntry>,
}

/// A session's `s` value: its summary and, while the session is short, the global seqs
/// of its records (so a short session costs no `x` entry).
struct SessionEntry {
    summary: SessionSummary,
    /// Global seqs (u64 BE each), when indexed inline.
    inline: Vec<u8>,
    /// Whether the session is indexed inline (every record so far is in `inline`).
    inline_mode: bool,
}

impl SessionEntry {
    /// The stored form: the summary's JSON, then, when indexed inline, a newline and the
    /// seqs (JSON text never holds a raw newline).
    fn encode(&self) -> Result<Vec<u8>> {
        let mut v =
            serde_json::to_vec(&self.summary).map_err(|e| RecordingError::Encode(e.to_string()))?;
        if self.inline_mode {
            v.push(b'\n');
            v.extend_from_slice(&self.inline);
        }
        Ok(v)
    }

    fn decode(id: &SessionId, v: &[u8]) -> Result<Self> {
        let (json, inline) = split_session_value(v);
        let summary = serde_json::from_slice(json).map_err(|e| RecordingError::Corrupt {
            seq: None,
            reason: format!("session {id} summary: {e}"),
        })?;
        let inline_mode = inline.is_some();
        let inline = inline.unwrap_or_default().to_vec();
        if inline.len() % 8 != 0 {
            return Err(RecordingError::Corrupt {
                seq: None,
                reason: format!("session {id}: malformed inline index"),
            });
        }
        Ok(Self {
            summary,
            inline,
            inline_mode,
        })
    }
}

/// Splits an `s` value into the summary JSON and the inline seqs, if any.
fn split_session_value(v: &[u8]) -> (&[u8], Option<&[u8]>) {
    match v.iter().position(|b| *b == b'\n') {
        Some(i) => (v.get(..i).unwrap_or_default(), v.get(i + 1..)),
        None => (v, None),
    }
}

/// The sled-backed [`EventStore`].
///
/// A store with a directory writes through a write-ahead journal in
/// `DIR/journal`: `sync` is one `fdatasync` of the journal, sled itself is flushed
/// in the background about once a second, and opening the store replays what the
/// journal holds. A temporary store applies each write as one sled batch and
/// syncs with sled's flush.
pub struct SledStore {
    /// Stops (after a last flush) before the rest is dropped.
    flusher: Option<Flusher>,
    /// The write-ahead journal (stores with a directory): every write goes through it.
    journal: Option<Arc<Mutex<Journal>>>,
    db: sled::Db,
    tree: sled::Tree,
    /// The chain head and the summaries of open sessions; the lock serializes appends.
    state: Mutex<WriteState>,
    chain: String,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// sled locks the directory; a store that was just dropped in this process
    /// may hold the lock for a moment while its background threads finish, so a
    /// lock conflict is retried for up to two seconds.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let deadline = Instant::now() + Duration::from_secs(2);
        let db = loop {
            match sled::Config::new().path(path).flush_every_ms(None).open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other?,
            }
        };
        // Make the directory entries of sled's files durable once.
        File::open(path)?.sync_all()?;
        // sled's log file, synced with `fdatasync` after sled's own flush (on Linux sled
        // flushes with `sync_file_range`, which does not reach stable storage by itself).
        let log_file = File::open(path.join("db"))?;
        let journal = Self::recover(&db, &log_file, &path.join("journal"))?;
        let flush_tree = {
            let db = db.clone();
            move || {
                db.flush()?;
                log_file.sync_data()?;
                Ok(())
            }
        };
        let journal = Arc::new(Mutex::new(journal));
        let flusher = Flusher::start(journal.clone(), journal::FLUSH_EVERY, flush_tree)?;
        let mut store = Self::from_db(db, Some(path.to_path_buf()))?;
        store.journal = Some(journal);
        store.flusher = Some(flusher);
        Ok(store)
    }

    /// Replays the journal (the writes since the tree's last flush), makes the tree
    /// durable and starts a fresh journal segment.
    fn recover(db: &sled::Db, log_file: &File, dir: &Path) -> Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let tree = db.open_tree(TREE)?;
        let mut replayed = 0u64;
        let (last_lsn, last_segment) = journal::replay(dir, |_, ops| {
            ops.apply_to(&tree)?;
            replayed += 1;
            Ok(())
        })?;
        if replayed > 0 {
            tracing::info!(
                entries = replayed,
                "journal: replayed the writes since the last flush"
            );
        }
        db.flush()?;
        log_file.sync_data()?;
        let journal = Journal::create(dir, last_segment, last_lsn)?;
        journal::delete_segments_before(dir, last_segment.saturating_add(1))?;
        Ok(journal)
    }

    /// A store in a temporary location that is removed when dropped (tests, examples).
    pub fn temporary() -> Result<Self> {
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(None)
            .open()?;
        Self::from_db(db, None)
    }

    fn from_db(db: sled::Db, path: Option<PathBuf>) -> Result<Self> {
        let tree = db.open_tree(TREE)?;
        match tree.get(K_FORMAT)? {
            Some(v) if v.as_ref() == FORMAT => {}
            Some(v) => {
                return Err(RecordingError::Corrupt {
                    seq: None,
                    reason: format!("unknown store format {:?}", String::from_utf8_lossy(&v)),
                });
            }
            None => {
                tree.insert(K_FORMAT, FORMAT)?;
                db.flush()?;
            }
        }
        let chain = match tree.get(K_CHAIN)? {
            Some(v) => String::from_utf8(v.to_vec()).map_err(|_| RecordingError::Corrupt {
                seq: None,
                reason: "chain id is not UTF-8".into(),
            })?,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                tree.insert(K_CHAIN, id.as_bytes())?;
                db.flush()?;
                id
            }
        };
        let head = read_head(&tree)?;
        // The head and the last record are written in the same batch; check they agree.
        let last = tree.scan_prefix([BATCH_PREFIX]).next_back().transpose()?;
        let mut last_seq = 0;
        if let Some((_, v)) = &last {
            for item in sled_format::records(v) {
                last_seq = last_seq.max(item?.0);
            }
        }
        if last_seq != head.seq {
            return Err(RecordingError::Corrupt {
                seq: Some(last_seq),
                reason: format!(
                    "chain head says seq {}, last record is {last_seq}",
                    head.seq
                ),
            });
        }
        Ok(Self {
            flusher: None,
            journal: None,
            db,
            tree,
            state: Mutex::new(WriteState {
                head,
                open: HashMap::new(),
            }),
            chain,
            path,
        })
    }

    /// Writes `ops` atomically: journaled first when the store has a journal.
    fn commit(&self, ops: Ops) -> Result<()> {
        let Some(journal) = &self.journal else {
            self.tree.apply_batch(ops.into_batch())?;
            return Ok(());
        };
        let mut j = journal
            .lock()
            .map_err(|_| RecordingError::Storage("journal lock poisoned".into()))?;
        let lsn = j.write(&ops)?;
        if let Err(e) = ops.apply_to(&self.tree) {
            j.break_with(format!(
                "journal entry {lsn} was written but not applied: {e}"
            ));
            return Err(e);
        }
        Ok(())
    }

    /// The directory of the store (`None` for a temporary store).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn load_summary(&self, id: &SessionId) -> Result<Option<SessionSummary>> {
        Ok(self.load_entry(id)?.map(|e| e.summary))
    }

    fn load_entry(&self, id: &SessionId) -> Result<Option<SessionEntry>> {
        match self.tree.get(session_key(id))? {
            Some(v) => SessionEntry::decode(id, &v).map(Some),
            None => Ok(None),
        }
    }

    fn decode_json<T: serde::de::DeserializeOwned>(what: &str, v: &[u8]) -> Result<T> {
        serde_json::from_slice(v).map_err(|e| RecordingError::Corrupt {
            seq: None,
            reason: format!("{what}: {e}"),
        })
    }

    fn record_at(tree: &sled::Tree, seq: u64) -> Result<Option<StoredEvent>> {
        match sled_format::batch_holding(tree, seq)? {
            Some((_, v)) => match sled_format::find(&v, seq)? {
                Some(bytes) => StoredEvent::decode_value(seq, bytes).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }
}

impl EventStore for SledStore {
    fn append(&self, events: &[Event]) -> Result<Appended> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| RecordingError::Storage("store lock poisoned".into()))?;
        let start = state.head;
        let first_seq = start.seq.saturating_add(1);
        if events.is_empty() {
            return Ok(Appended {
                first_seq,
                count: 0,
                head: start,
            });
        }
        let mut batch = Ops::default();
        let mut entries: HashMap<SessionId, SessionEntry> = HashMap::new();
        // Per session: the session seq of its first record in this append, and the global
        // seqs of its records in this append (u64 BE each).
        let mut appended: HashMap<SessionId, (u64, Vec<u8>)> = HashMap::new();
        let mut packed = Vec::new();
        let mut packed_first = 0u64;
        let mut packed_count = 0usize;
        let mut head = start;
        for event in events {
            let seq = head.seq.saturating_add(1);
            let session_seq = match entries.get_mut(&event.session) {
                Some(e) => e.summary.apply(event, seq),
                None => {
                    let known = match state.open.remove(&event.session) {
                        Some(e) => Some(e),
                        None => self.load_entry(&event.session)?,
                    };
                    let entry = match known {
                        Some(mut e) => {
                            e.summary.apply(event, seq);
                            e
                        }
                        None => {
                            let summary = SessionSummary::start(event, seq);
                            batch.insert(time_key(summary.opened_at, &summary.id), Vec::new());
                            SessionEntry {
                                summary,
                                inline: Vec::new(),
                                inline_mode: true,
                            }
                        }
                    };
                    let n = entry.summary.events;
                    entries.insert(event.session, entry);
                    n
                }
            };
            if packed_count == 0 {
                packed_first = seq;
            }
            let next = sled_format::push_record_with(&mut packed, seq, |out| {
                crate::record::encode_chained(head, session_seq, event, out)
            })?;
            packed_count += 1;
            if packed_count == MAX_BATCH_RECORDS || packed.len() >= MAX_BATCH_BYTES {
                batch.insert(batch_key(packed_first), std::mem::take(&mut packed));
                packed_count = 0;
            }
            appended
                .entry(event.session)
                .or_insert_with(|| (session_seq, Vec::new()))
                .1
                .extend_from_slice(&seq.to_be_bytes());
            head = next;
        }
        if packed_count > 0 {
            batch.insert(batch_key(packed_first), packed);
        }
        for (id, (first_session_seq, seqs)) in appended {
            let Some(entry) = entries.get_mut(&id) else {
                continue;
            };
            if !entry.inline_mode {
                batch.insert(session_event_key(&id, first_session_seq), seqs);
            } else if entry.inline.len().saturating_add(seqs.len()) <= INLINE_SEQS * 8 {
                entry.inline.extend_from_slice(&seqs);
            } else {
                // The session outgrew its inline list: from now on it is indexed by `x`
                // entries, the first holding the inline seqs and this append's.
                let inline_first = first_session_seq
                    .saturating_sub((entry.inline.len() / 8) as u64)
                    .max(1);
                let mut all = std::mem::take(&mut entry.inline);
                all.extend_from_slice(&seqs);
                batch.insert(session_event_key(&id, inline_first), all);
                entry.inline_mode = false;
            }
        }
        for (id, entry) in &entries {
            batch.insert(session_key(id), entry.encode()?);
        }
        let mut head_value = Vec::with_capacity(40);
        head_value.extend_from_slice(&head.seq.to_be_bytes());
        head_value.extend_from_slice(&head.hash.0);
        batch.insert(K_HEAD, head_value);
        self.commit(batch)?;
        state.head = head;
        if state.open.len().saturating_add(entries.len()) > OPEN_SUMMARIES {
            state.open.clear();
        }
        for (id, entry) in entries {
            if entry.summary.outcome == SessionOutcome::Open {
                state.open.insert(id, entry);
            }
        }
        Ok(Appended {
            first_seq,
            count: head.seq.saturating_sub(start.seq),
            head,
        })
    }

    fn sync(&self) -> Result<()> {
        match &self.journal {
            Some(j) => {
                let file = j
                    .lock()
                    .map_err(|_| RecordingError::Storage("journal lock poisoned".into()))?
                    .current();
                file.sync_data()?;
            }
            None => {
                self.db.flush()?;
            }
        }
        Ok(())
    }

    fn head(&self) -> Result<Head> {
        self.state
            .lock()
            .map(|s| s.head)
            .map_err(|_| RecordingError::Storage("store lock poisoned".into()))
    }

    fn get(&self, seq: u64) -> Result<Option<StoredEvent>> {
        Self::record_at(&self.tree, seq)
    }

    fn scan(&self, from_seq: u64, limit: usize) -> Result<RecordIter<'_>> {
        // Start at the batch holding `from_seq` (or the first batch after it).
        let start = match sled_format::batch_holding(&self.tree, from_seq)? {
            Some((k, _)) => k.to_vec(),
            None => batch_key(0).to_vec(),
        };
        let iter = self
            .tree
            .range(start..=batch_key(u64::MAX).to_vec())
            .flat_map(|item| -> Vec<Result<StoredEvent>> {
                let v = match item {
                    Ok((_, v)) => v,
                    Err(e) => return vec![Err(e.into())],
                };
                sled_format::records(&v)
                    .map(|r| r.and_then(|(seq, bytes)| StoredEvent::decode_value(seq, bytes)))
                    .collect()
            })
            .filter(move |r| r.as_ref().map_or(true, |e| e.seq >= from_seq))
            .take(limit);
        Ok(Box::new(iter))
    }

    fn session(&self, id: SessionId) -> Result<Option<SessionSummary>> {
        self.load_summary(&id)
    }

    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>> {
        let lower = time_prefix(filter.since.unwrap_or(Timestamp(i64::MIN)));
        let upper = match filter.until {
            Some(u) => time_prefix(u),
            None => vec![P_TIME.saturating_add(1)],
        };
        let mut out = Vec::new();
        if filter.limit == 0 || lower >= upper {
            return Ok(out);
        }
        for item in self.tree.range(lower..upper).rev() {
            let (k, _) = item?;
            let id = k
                .get(9..25)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(|b| SessionId(uuid::Uuid::from_bytes(b)))
                .ok_or_else(|| RecordingError::Corrupt {
                    seq: None,
                    reason: "malformed time index key".into(),
                })?;
            let Some(summary) = self.load_summary(&id)? else {
                return Err(RecordingError::Corrupt {
                    seq: None,
                    reason: format!("time index names session {id} without a summary"),
                });
            };
            if summary.matches(filter) {
                out.push(summary);
                if out.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn session_events(&self, id: SessionId) -> Result<RecordIter<'_>> {
        let mut prefix = Vec::with_capacity(17);
        prefix.push(P_SESSION_EVENT);
        prefix.extend_from_slice(id.as_bytes());
        let tree = self.tree.clone();
        // A short session's seqs are inline in its summary value; seqs at or below the
        // base were pruned (pruning leaves inline lists as they are).
        let pruned_through = self.base()?.map_or(0, |b| b.seq);
        let value = self.tree.get(session_key(&id))?;
        let inline = value
            .as_deref()
            .and_then(|v| split_session_value(v).1)
            .unwrap_or_default();
        if inline.len() % 8 != 0 {
            return Err(RecordingError::Corrupt {
                seq: None,
                reason: format!("session {id}: malformed inline index"),
            });
        }
        let inline: Vec<Result<u64>> = inline
            .chunks_exact(8)
            .filter_map(|c| split_u64(c).map(|(s, _)| s))
            .filter(|s| *s > pruned_through)
            .map(Ok)
            .collect();
        let indexed = self
            .tree
            .scan_prefix(prefix)
            .flat_map(|item| -> Vec<Result<u64>> {
                let v = match item {
                    Ok((_, v)) => v,
                    Err(e) => return vec![Err(e.into())],
                };
                if v.len() % 8 != 0 {
                    return vec![Err(RecordingError::Corrupt {
                        seq: None,
                        reason: "malformed session index entry".into(),
                    })];
                }
                v.chunks_exact(8)
                    .filter_map(|c| split_u64(c).map(|(s, _)| Ok(s)))
                    .collect()
            });
        let iter = inline.into_iter().chain(indexed).map(move |seq| {
            let seq = seq?;
            Self::record_at(&tree, seq)?.ok_or_else(|| RecordingError::Corrupt {
                seq: Some(seq),
                reason: "session index names a missing record".into(),
            })
        });
        Ok(Box::new(iter))
    }

    fn chain_id(&self) -> Result<String> {
        Ok(self.chain.clone())
    }

    fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let v =
            serde_json::to_vec(checkpoint).map_err(|e| RecordingError::Encode(e.to_string()))?;
        let mut ops = Ops::default();
        ops.insert(checkpoint_key(checkpoint), v);
        self.commit(ops)
    }

    fn checkpoints(&self, from_seq: u64) -> Result<CheckpointIter<'_>> {
        let mut lower = Vec::with_capacity(9);
        lower.push(P_CHECKPOINT);
        lower.extend_from_slice(&from_seq.to_be_bytes());
        let iter = self
            .tree
            .range(lower..vec![P_CHECKPOINT.saturating_add(1)])
            .map(|item| {
                let (_, v) = item?;
                Self::decode_json("checkpoint", &v)
            });
        Ok(Box::new(iter))
    }

    fn put_public_key(&self, key: &PublicKeyRecord) -> Result<()> {
        let mut k = vec![P_KEY];
        k.extend_from_slice(key.key_id.as_bytes());
        let v = serde_json::to_vec(key).map_err(|e| RecordingError::Encode(e.to_string()))?;
        // Keep the first record of a key (its `added_at`). Keys are added at start,
        // by one recorder per store, so the check and the write do not race.
        if self.tree.get(&k)?.is_none() {
            let mut ops = Ops::default();
            ops.insert(k, v);
            self.commit(ops)?;
        }
        Ok(())
    }

    fn public_keys(&self) -> Result<Vec<PublicKeyRecord>> {
        self.tree
            .scan_prefix([P_KEY])
            .map(|item| {
                let (_, v) = item?;
                Self::decode_json("public key", &v)
            })
            .collect()
    }

    fn base(&self) -> Result<Option<Checkpoint>> {
        match self.tree.get(K_BASE)? {
            Some(v) => Self::decode_json("base", &v).map(Some),
            None => Ok(None),
        }
    }

    fn prune(&self, tombstone: &Checkpoint) -> Result<PruneStats> {
        let head = self.head()?;
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
        // 1. The tombstone becomes the base: from here on verification starts at it,
        //    whether or not the deletions below complete.
        let v = serde_json::to_vec(tombstone).map_err(|e| RecordingError::Encode(e.to_string()))?;
        let mut batch = Ops::default();
        batch.insert(checkpoint_key(tombstone), v.clone());
        batch.insert(K_BASE, v);
        self.commit(batch)?;
        self.sync()?;
        // 2. Records (whole batches, or the pruned front of the batch that straddles
        //    the tombstone), their session index entries, and emptied closed sessions.
        let mut stats = PruneStats::default();
        let mut touched: HashSet<SessionId> = HashSet::new();
        loop {
            let chunk: Vec<(sled::IVec, sled::IVec)> = self
                .tree
                .range(batch_key(0)..=batch_key(tombstone.seq))
                .take(PRUNE_CHUNK)
                .collect::<std::result::Result<_, _>>()?;
            if chunk.is_empty() {
                break;
            }
            let mut batch = Ops::default();
            for (k, v) in &chunk {
                let mut kept = Vec::new();
                let mut kept_first = None;
                for item in sled_format::records(v) {
                    // A batch that does not decode is deleted all the same: it is behind
                    // the signed tombstone, which the pruning caller verified.
                    let Ok((seq, bytes)) = item else { break };
                    if seq > tombstone.seq {
                        kept_first.get_or_insert(seq);
                        sled_format::push_record(&mut kept, seq, bytes)?;
                        continue;
                    }
                    if let Ok(r) = StoredEvent::decode_value(seq, bytes) {
                        touched.insert(r.event.session);
                    }
                    stats.records = stats.records.saturating_add(1);
                }
                batch.remove(k.to_vec());
                if let Some(first) = kept_first {
                    batch.insert(batch_key(first), kept);
                }
            }
            self.commit(batch)?;
        }
        // Index entries: drop the pruned seqs of every touched session.
        let mut batch = Ops::default();
        for id in &touched {
            let mut prefix = Vec::with_capacity(17);
            prefix.push(P_SESSION_EVENT);
            prefix.extend_from_slice(id.as_bytes());
            for item in self.tree.scan_prefix(prefix) {
                let (k, v) = item?;
                let kept: Vec<u8> = v
                    .chunks_exact(8)
                    .filter(|c| split_u64(c).is_some_and(|(s, _)| s > tombstone.seq))
                    .flatten()
                    .copied()
                    .collect();
                if kept.is_empty() {
                    batch.remove(k.to_vec());
                } else if kept.len() != v.len() {
                    batch.insert(k.to_vec(), kept);
                }
            }
        }
        self.commit(batch)?;
        let mut batch = Ops::default();
        for id in &touched {
            if let Some(s) = self.load_summary(id)?
                && s.last_seq <= tombstone.seq
                && s.outcome != SessionOutcome::Open
            {
                batch.remove(session_key(id));
                batch.remove(time_key(s.opened_at, id));
                stats.sessions = stats.sessions.saturating_add(1);
            }
        }
        // 3. Checkpoints below the tombstone (their records are gone).
        let mut upper = vec![P_CHECKPOINT];
        upper.extend_from_slice(&tombstone.seq.to_be_bytes());
        for item in self.tree.range(vec![P_CHECKPOINT]..upper) {
            let (k, _) = item?;
            batch.remove(k.to_vec());
            stats.checkpoints = stats.checkpoints.saturating_add(1);
        }
        self.commit(batch)?;
        self.sync()?;
        Ok(stats)
    }
}

fn checkpoint_key(cp: &Checkpoint) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(P_CHECKPOINT);
    k.extend_from_slice(&cp.seq.to_be_bytes());
    k.extend_from_slice(
        Sha256::digest(cp.signature.as_bytes())
            .get(..8)
            .unwrap_or(&[]),
    );
    k
}

fn read_head(tree: &sled::Tree) -> Result<Head> {
    match tree.get(K_HEAD)? {
        None => Ok(Head::GENESIS),
        Some(v) => {
            let parsed = split_u64(&v)
                .and_then(|(seq, rest)| split_hash(rest).map(|(hash, _)| Head { seq, hash }));
            parsed.ok_or_else(|| RecordingError::Corrupt {
                seq: None,
                reason: "malformed chain head".into(),
            })
        }
    }
}

fn session_key(id: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(P_SESSION);
    k.extend_from_slice(id.as_bytes());
    k
}

fn session_event_key(id: &SessionId, session_seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(P_SESSION_EVENT);
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(&session_seq.to_be_bytes());
    k
}

/// Timestamps as order-preserving bytes: flip the sign bit of the big-endian form.
fn time_prefix(t: Timestamp) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(P_TIME);
    k.extend_from_slice(&(t.0.cast_unsigned() ^ (1 << 63)).to_be_bytes());
    k
}

fn time_key(t: Timestamp, id: &SessionId) -> Vec<u8> {
    let mut k = time_prefix(t);
    k.extend_from_slice(id.as_bytes());
    k
}
