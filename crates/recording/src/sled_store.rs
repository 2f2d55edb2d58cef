//! The embedded sled backend.
//!
//! Everything lives in one sled tree (`portcullis-v1`) under one-byte key
//! prefixes. One append (records, index entries and the new chain head) is one
//! entry of the write-ahead journal (the `journal` module), so it survives a crash
//! whole or not at all:
//!
//! | key | value |
//! | --- | --- |
//! | `b` first seq (u64 BE) | a pointer to the records of one append in the record files (below), or the records themselves, packed (temporary stores, stores written before version 3; see [`crate::sled_format`]) |
//! | `s` session id (16 bytes) | the [`SessionSummary`] as JSON, then, unless empty, a newline and the session's tail: the global seqs (u64 BE each) of its latest records, those not in an `x` entry (every record of a session of at most 128) |
//! | `x` session id, session seq (u64 BE) | for a longer session: the global seqs (u64 BE each) of a run of the session's records (a tail that outgrew 128), from that session seq on (stores written by earlier versions have one per append, read the same way) |
//! | `t` opened_at (i64 BE, sign bit flipped), session id | empty (time index) |
//! | `m` `head` | head seq (u64 BE) and hash (32 bytes) |
//! | `m` `format` | `portcullis-recording-v4` (a `v2` or `v3` store is accepted and marked `v4` when opened) |
//! | `m` `indexed` | the seq (u64 BE) through which the `s`, `x` and `t` entries are written |
//! | `m` `chain` | the chain id (a UUID, created with the store) |
//! | `m` `base` | the latest tombstone checkpoint as JSON (after pruning) |
//! | `c` seq (u64 BE), first 8 bytes of SHA-256(signature) | a checkpoint as JSON |
//! | `k` key id | a public key record as JSON |
//!
//! The bytes of the records themselves live in `DIR/records` (the `record_log` module):
//! append-only files that each append writes its packed records to, once, before
//! journaling the pointer. sled then handles small values only; with the records in
//! its values, it copied every record into its log with the insert and again with each
//! split and consolidation of the tail leaf (a third of the recording threads' CPU
//! under `pgbench -S`, its I/O threads included). The record files are synced before
//! the journal when the store syncs and before the tree is flushed, so neither an
//! acknowledged entry nor the flushed tree points past what the files hold; a journal
//! sync of its own (a segment switch, the flusher's) can run ahead of them, so replay
//! checks each pointer into the last record file (length and CRC) before applying it
//! and stops at the first entry whose records did not reach the disk.
//!
//! The session index (`s`, `x` and `t` entries) is not rewritten with every append: the
//! entries of the sessions an append touches change in memory, and they are written,
//! with `m indexed`, by an append at most a second (or 65,536 records) after the last
//! time, by anything that reads the index (which therefore always sees every appended
//! record), before pruning, and when the store is dropped. Each append still journals
//! its records and the chain head, so a crash loses no record; opening the store reads
//! the records after `m indexed` again and brings the index up to the head before
//! anything else happens (a store where that fails opens for reading and `verify`, and
//! refuses appends). Writing a session's summary once per append was most of the
//! tree's work under many concurrent sessions.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::{Event, SessionId, Timestamp};

use sha2::{Digest, Sha256};

use crate::journal::{self, Flusher, Journal, Ops};
use crate::record::{split_hash, split_u64};
use crate::record_log::{Pointer, RecordLog};
use crate::sled_format::{
    self, BATCH_PREFIX, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_POINTED_BATCH_BYTES,
    MAX_POINTED_BATCH_RECORDS, batch_key,
};
use crate::{
    Appended, Checkpoint, CheckpointIter, EventStore, Head, PruneStats, PublicKeyRecord,
    RecordIter, RecordingError, Result, SessionFilter, SessionOutcome, SessionSummary, StoredEvent,
};

const TREE: &str = "portcullis-v1";
const FORMAT: &[u8] = b"portcullis-recording-v4";
/// The format before the index was written lazily: every append wrote its sessions'
/// entries (a reader of v3 would trust a v4 index that lags the records).
const FORMAT_V3: &[u8] = b"portcullis-recording-v3";
/// The format before record files: every batch value holds its records.
const FORMAT_V2: &[u8] = b"portcullis-recording-v2";
const P_SESSION: u8 = b's';
const P_SESSION_EVENT: u8 = b'x';
const P_TIME: u8 = b't';
const P_CHECKPOINT: u8 = b'c';
const P_KEY: u8 = b'k';
const K_HEAD: &[u8] = b"mhead";
const K_FORMAT: &[u8] = b"mformat";
const K_CHAIN: &[u8] = b"mchain";
const K_BASE: &[u8] = b"mbase";
const K_INDEXED: &[u8] = b"mindexed";
/// Record batches deleted per sled batch while pruning.
const PRUNE_CHUNK: usize = 64;

/// Most session entries kept in memory between appends; beyond it the index is written
/// and the cache emptied, and summaries are read back from the tree as sessions show up
/// again.
const OPEN_SUMMARIES: usize = 16_384;

/// Most records of a session indexed inside its summary value (its tail): beyond that,
/// the tail moves into one `x` entry. A session of at most this many records costs no
/// `x` entry at all, and a long one an `x` entry per this many records.
const TAIL_SEQS: usize = 128;

/// The session index (`s`, `x` and `t` entries) is written at most this long after the
/// records it covers, with an append, or at once when something reads it.
const INDEX_EVERY: Duration = Duration::from_secs(1);

/// ... or after at most this many records: what opening the store after a crash reads
/// again to bring the index up to date.
const INDEX_RECORDS: u64 = 65_536;

/// What the append path keeps between appends.
struct WriteState {
    head: Head,
    /// Entries of open sessions, and of every session with records the tree's index does
    /// not cover yet: an append to a long session does not read and decode its summary
    /// back from the tree, and the index is written once a second instead of with every
    /// append.
    sessions: HashMap<SessionId, SessionEntry>,
    /// The seq through which the tree's session index is written (`m indexed`).
    indexed: u64,
    /// When the index was last written.
    indexed_at: Instant,
    /// Set when a write failed after the entries in memory had moved past the tree:
    /// appends are refused until the store is opened again (which rebuilds them).
    broken: Option<String>,
    /// The last append's packed records, emptied: reused so that an append does not grow
    /// a fresh buffer (reallocating and copying it several times) every time.
    packed: Vec<u8>,
}

impl WriteState {
    fn new(head: Head, indexed: u64) -> Self {
        Self {
            head,
            sessions: HashMap::new(),
            indexed,
            indexed_at: Instant::now(),
            broken: None,
            packed: Vec::new(),
        }
    }

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(reason) => Err(RecordingError::Storage(format!(
                "store refuses writes after a failed one ({reason}); open it again"
            ))),
            None => Ok(()),
        }
    }

    /// Adds record `seq`, holding `event`, to its session's entry; returns the record's
    /// session seq.
    fn index_record(&mut self, tree: &sled::Tree, event: &Event, seq: u64) -> Result<u64> {
        let entry = match self.sessions.entry(event.session) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let e = o.into_mut();
                e.summary.apply(event, seq);
                e
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let entry = match read_entry(tree, &event.session)? {
                    Some(mut e) => {
                        e.summary.apply(event, seq);
                        e
                    }
                    None => SessionEntry {
                        summary: SessionSummary::start(event, seq),
                        tail: Vec::new(),
                        runs: Vec::new(),
                        dirty: false,
                        new: true,
                    },
                };
                v.insert(entry)
            }
        };
        entry.dirty = true;
        let session_seq = entry.summary.events;
        entry.tail.extend_from_slice(&seq.to_be_bytes());
        let len = (entry.tail.len() / 8) as u64;
        if len >= TAIL_SEQS as u64 {
            // The tail's records are the session's latest, consecutive in session seq.
            let first = session_seq.saturating_sub(len - 1).max(1);
            entry.runs.push((first, std::mem::take(&mut entry.tail)));
        }
        Ok(session_seq)
    }

    /// Whether the next append should carry the index.
    fn index_due(&self) -> bool {
        self.head.seq.saturating_sub(self.indexed) >= INDEX_RECORDS
            || self.sessions.len() > OPEN_SUMMARIES
            || (self.indexed < self.head.seq && self.indexed_at.elapsed() >= INDEX_EVERY)
    }

    /// Adds the index entries of every changed session, and the `m indexed` marker for
    /// `head_seq`, to `ops`.
    fn index_ops(&mut self, head_seq: u64, ops: &mut Ops) -> Result<()> {
        for (id, e) in &mut self.sessions {
            if !e.dirty {
                continue;
            }
            for (first, seqs) in e.runs.drain(..) {
                ops.insert(session_event_key(id, first), seqs);
            }
            if e.new {
                ops.insert(time_key(e.summary.opened_at, id), Vec::new());
            }
            ops.insert(session_key(id), e.encode()?);
        }
        ops.insert(K_INDEXED, head_seq.to_be_bytes().to_vec());
        Ok(())
    }

    /// After the ops of [`Self::index_ops`] were committed: entries are clean, ended
    /// sessions leave memory.
    fn index_written(&mut self, head_seq: u64) {
        self.sessions.retain(|_, e| {
            e.dirty = false;
            e.new = false;
            e.summary.outcome == SessionOutcome::Open
        });
        if self.sessions.len() > OPEN_SUMMARIES {
            self.sessions.clear();
        }
        self.indexed = head_seq;
        self.indexed_at = Instant::now();
    }
}

/// A session's `s` value: its summary and the global seqs of its latest records, those
/// not yet in an `x` entry (all of them for a short session).
struct SessionEntry {
    summary: SessionSummary,
    /// Global seqs (u64 BE each) of the session's records after those in `x` entries.
    tail: Vec<u8>,
    /// Runs of seqs that left the tail and are not written as `x` entries yet: the
    /// session seq of each run's first record, and the run.
    runs: Vec<(u64, Vec<u8>)>,
    /// Changed since the index was last written.
    dirty: bool,
    /// A session the tree does not know yet (its time index entry is not written).
    new: bool,
}

impl SessionEntry {
    /// The stored form: the summary's JSON, then, when the tail is not empty, a newline
    /// and the seqs (JSON text never holds a raw newline).
    fn encode(&self) -> Result<Vec<u8>> {
        let mut v =
            serde_json::to_vec(&self.summary).map_err(|e| RecordingError::Encode(e.to_string()))?;
        if !self.tail.is_empty() {
            v.push(b'\n');
            v.extend_from_slice(&self.tail);
        }
        Ok(v)
    }

    fn decode(id: &SessionId, v: &[u8]) -> Result<Self> {
        let (json, inline) = split_session_value(v);
        let summary = serde_json::from_slice(json).map_err(|e| RecordingError::Corrupt {
            seq: None,
            reason: format!("session {id} summary: {e}"),
        })?;
        let tail = inline.unwrap_or_default().to_vec();
        if tail.len() % 8 != 0 {
            return Err(RecordingError::Corrupt {
                seq: None,
                reason: format!("session {id}: malformed inline index"),
            });
        }
        Ok(Self {
            summary,
            tail,
            runs: Vec::new(),
            dirty: false,
            new: false,
        })
    }
}

/// The entry of session `id` as the tree holds it.
fn read_entry(tree: &sled::Tree, id: &SessionId) -> Result<Option<SessionEntry>> {
    match tree.get(session_key(id))? {
        Some(v) => SessionEntry::decode(id, &v).map(Some),
        None => Ok(None),
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
    /// Resolves batch values (stores with a directory keep records in record files).
    batches: Batches,
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

impl Drop for SledStore {
    fn drop(&mut self) {
        // Before the flusher's last flush: the next open then has nothing to catch up.
        if let Err(e) = self.index_now() {
            tracing::warn!(error = %e, "session index not written at close; the next open rebuilds it");
        }
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
        let records = Arc::new(RecordLog::open(&path.join(sled_format::RECORDS_DIR))?);
        let journal = Self::recover(&db, &log_file, &path.join("journal"), &records)?;
        let flush_tree = {
            let db = db.clone();
            let records = records.clone();
            move || {
                // The flushed tree must not point past what the record files hold.
                records.sync()?;
                db.flush()?;
                log_file.sync_data()?;
                Ok(())
            }
        };
        let journal = Arc::new(Mutex::new(journal));
        let flusher = Flusher::start(journal.clone(), journal::FLUSH_EVERY, flush_tree)?;
        let mut store = Self::from_db(db, Some(path.to_path_buf()), Some(records))?;
        store.journal = Some(journal);
        store.flusher = Some(flusher);
        Ok(store)
    }

    /// Replays the journal (the writes since the tree's last flush), makes the tree
    /// durable and starts a fresh journal segment.
    fn recover(db: &sled::Db, log_file: &File, dir: &Path, records: &RecordLog) -> Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let tree = db.open_tree(TREE)?;
        let mut replayed = 0u64;
        // Every record file before the last was synced when the next one started, so
        // only the last can lack records; a pointer into an earlier file that is gone was
        // pruned (a later entry of the journal removes it again).
        let last_file = records.current_file()?;
        let (last_lsn, last_segment) = journal::replay(dir, |lsn, ops| {
            // The record files are synced before the journal, except when the journal
            // moves to its next segment between syncs: an entry whose records are not
            // all there was never acknowledged as durable, nor anything after it.
            let missing = ops.0.iter().find_map(|op| match op {
                journal::Op::Insert(k, v) if k.first() == Some(&BATCH_PREFIX) => {
                    Pointer::decode(v).filter(|p| p.file >= last_file && !records.holds(p))
                }
                _ => None,
            });
            if let Some(p) = missing {
                tracing::warn!(
                    entry = lsn,
                    file = p.file,
                    offset = p.offset,
                    "journal: the records of an entry did not reach the disk; replay ends before it"
                );
                return Ok(false);
            }
            ops.apply_to(&tree)?;
            replayed += 1;
            Ok(true)
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
        Self::from_db(db, None, None)
    }

    fn from_db(
        db: sled::Db,
        path: Option<PathBuf>,
        records: Option<Arc<RecordLog>>,
    ) -> Result<Self> {
        let tree = db.open_tree(TREE)?;
        match tree.get(K_FORMAT)? {
            Some(v) if v.as_ref() == FORMAT => {}
            Some(v) if v.as_ref() == FORMAT_V2 || v.as_ref() == FORMAT_V3 => {
                // Its inline batches stay readable; new ones may be pointers, which a
                // reader of v2 would not understand, and its index may lag the records
                // (`m indexed`), which a reader of v3 would not notice. Its index covers
                // every record.
                let mut batch = sled::Batch::default();
                batch.insert(K_INDEXED, &read_head(&tree)?.seq.to_be_bytes());
                batch.insert(K_FORMAT, FORMAT);
                tree.apply_batch(batch)?;
                db.flush()?;
            }
            Some(v) => {
                return Err(RecordingError::Corrupt {
                    seq: None,
                    reason: format!("unknown store format {:?}", String::from_utf8_lossy(&v)),
                });
            }
            None => {
                let mut batch = sled::Batch::default();
                batch.insert(K_INDEXED, &0u64.to_be_bytes());
                batch.insert(K_FORMAT, FORMAT);
                tree.apply_batch(batch)?;
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
        let batches = Batches { records };
        // The head and the last record are written in the same batch; check they agree.
        let last = tree.scan_prefix([BATCH_PREFIX]).next_back().transpose()?;
        let mut last_seq = 0;
        if let Some((_, v)) = &last {
            for item in sled_format::records(&batches.bytes(v)?) {
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
        let indexed = tree
            .get(K_INDEXED)?
            .and_then(|v| split_u64(&v).map(|(seq, _)| seq))
            .ok_or_else(|| RecordingError::Corrupt {
                seq: None,
                reason: "session index marker missing or malformed".into(),
            })?;
        let indexed = if indexed > head.seq {
            // Records the index covered are gone (a truncated store): it opens all the
            // same, so that `verify` can name what is missing.
            tracing::warn!(
                indexed,
                head = head.seq,
                "session index covers records past the chain head; verify the store"
            );
            head.seq
        } else {
            indexed
        };
        let store = Self {
            flusher: None,
            journal: None,
            db,
            tree,
            batches,
            state: Mutex::new(WriteState::new(head, indexed)),
            chain,
            path,
        };
        store.catch_up_index()?;
        Ok(store)
    }

    /// Brings the session index up to the head after a crash: adds the records written
    /// since the index was last written (at most [`INDEX_RECORDS`], about a second's
    /// worth) to their sessions' entries, then writes the index.
    fn catch_up_index(&self) -> Result<()> {
        let mut state = self.lock_state()?;
        if state.indexed == state.head.seq {
            return Ok(());
        }
        let from = state.indexed.saturating_add(1);
        match self.index_records_from(&mut state, from) {
            Ok(count) => {
                tracing::info!(
                    records = count,
                    from_seq = from,
                    "session index brought up to date"
                );
                self.write_index(&mut state)
            }
            Err(e) => {
                // The store still opens, so that `verify` can name what is wrong; it
                // refuses appends, and readers see the index as the tree has it.
                tracing::error!(error = %e, "session index could not be brought up to date; verify the store");
                state.broken = Some(format!("session index could not be rebuilt: {e}"));
                Ok(())
            }
        }
    }

    /// Adds the records from seq `from` to the head to their sessions' entries.
    fn index_records_from(&self, state: &mut WriteState, from: u64) -> Result<u64> {
        let mut count = 0u64;
        for record in self.scan(from, usize::MAX)? {
            let record = record?;
            let session_seq = state.index_record(&self.tree, &record.event, record.seq)?;
            if session_seq != record.session_seq {
                return Err(RecordingError::Corrupt {
                    seq: Some(record.seq),
                    reason: format!(
                        "record is session seq {} of session {}, the index makes it {session_seq}",
                        record.session_seq, record.event.session
                    ),
                });
            }
            count = count.saturating_add(1);
        }
        Ok(count)
    }

    /// Writes the session index if records were appended since it was last written:
    /// what reads the index calls this first, so that it sees every appended record. A
    /// store that refuses writes is read as its tree is.
    fn index_now(&self) -> Result<()> {
        let mut state = self.lock_state()?;
        if state.broken.is_some() {
            return Ok(());
        }
        self.write_index(&mut state)
    }

    fn write_index(&self, state: &mut WriteState) -> Result<()> {
        state.check()?;
        if state.indexed == state.head.seq {
            return Ok(());
        }
        let head_seq = state.head.seq;
        let mut ops = Ops::default();
        state.index_ops(head_seq, &mut ops)?;
        if let Err(e) = self.commit(ops) {
            state.broken = Some(e.to_string());
            return Err(e);
        }
        state.index_written(head_seq);
        Ok(())
    }

    fn lock_state(&self) -> Result<std::sync::MutexGuard<'_, WriteState>> {
        self.state
            .lock()
            .map_err(|_| RecordingError::Storage("store lock poisoned".into()))
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

    fn reader(&self) -> RecordReader {
        RecordReader {
            tree: self.tree.clone(),
            batches: self.batches.clone(),
            last: None,
        }
    }

    /// The directory of the store (`None` for a temporary store).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The summary of session `id` as the tree holds it (callers write the index first).
    fn load_summary(&self, id: &SessionId) -> Result<Option<SessionSummary>> {
        Ok(read_entry(&self.tree, id)?.map(|e| e.summary))
    }

    /// Appends `events` (not empty) under the state lock: packs and chains the records,
    /// adds them to their sessions' entries, and commits the record pointers and the new
    /// head, with the session index when it is due.
    fn append_locked(&self, state: &mut WriteState, events: &[Event]) -> Result<Appended> {
        let start = state.head;
        let mut batch = Ops::default();
        // The append's records, packed, and where each batch of them starts and ends.
        let mut packed = std::mem::take(&mut state.packed);
        packed.clear();
        let mut cuts: Vec<(u64, usize, usize)> = Vec::new();
        let mut cut_start = 0usize;
        let mut packed_first = 0u64;
        let mut packed_count = 0usize;
        let (max_records, max_bytes) = if self.batches.records.is_some() {
            (MAX_POINTED_BATCH_RECORDS, MAX_POINTED_BATCH_BYTES)
        } else {
            (MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
        };
        let mut head = start;
        for event in events {
            let seq = head.seq.saturating_add(1);
            let session_seq = state.index_record(&self.tree, event, seq)?;
            if packed_count == 0 {
                packed_first = seq;
            }
            let next = sled_format::push_record_with(&mut packed, seq, |out| {
                crate::record::encode_chained(head, session_seq, event, out)
            })?;
            packed_count += 1;
            if packed_count == max_records || packed.len() - cut_start >= max_bytes {
                cuts.push((packed_first, cut_start, packed.len()));
                cut_start = packed.len();
                packed_count = 0;
            }
            head = next;
        }
        if packed_count > 0 {
            cuts.push((packed_first, cut_start, packed.len()));
        }
        self.store_batches(&packed, &cuts, &mut batch)?;
        if packed.capacity() <= 4 * MAX_POINTED_BATCH_BYTES {
            state.packed = packed;
        }
        state.head = head;
        let index = state.index_due();
        if index {
            state.index_ops(head.seq, &mut batch)?;
        }
        let mut head_value = Vec::with_capacity(40);
        head_value.extend_from_slice(&head.seq.to_be_bytes());
        head_value.extend_from_slice(&head.hash.0);
        batch.insert(K_HEAD, head_value);
        if let Err(e) = self.commit(batch) {
            state.head = start;
            return Err(e);
        }
        if index {
            state.index_written(head.seq);
        }
        Ok(Appended {
            first_seq: start.seq.saturating_add(1),
            count: head.seq.saturating_sub(start.seq),
            head,
        })
    }

    fn decode_json<T: serde::de::DeserializeOwned>(what: &str, v: &[u8]) -> Result<T> {
        serde_json::from_slice(v).map_err(|e| RecordingError::Corrupt {
            seq: None,
            reason: format!("{what}: {e}"),
        })
    }

    /// Writes the records packed in `packed` (batch `i` covering `packed[start..end]`,
    /// its first record `first`) and adds their batch values to `ops`: pointers into the
    /// record files when the store has them, the bytes themselves otherwise.
    fn store_batches(
        &self,
        packed: &[u8],
        cuts: &[(u64, usize, usize)],
        ops: &mut Ops,
    ) -> Result<()> {
        let Some(records) = &self.batches.records else {
            for (first, start, end) in cuts {
                let bytes = packed.get(*start..*end).unwrap_or_default();
                ops.insert(batch_key(*first), bytes);
            }
            return Ok(());
        };
        let (file, offset) = records.append(packed)?;
        for (first, start, end) in cuts {
            let bytes = packed.get(*start..*end).unwrap_or_default();
            let ptr = Pointer {
                file,
                offset: offset.saturating_add(*start as u64),
                len: u32::try_from(bytes.len())
                    .map_err(|_| RecordingError::Encode("record batch larger than 4 GiB".into()))?,
                crc: crc32fast::hash(bytes),
            };
            ops.insert(batch_key(*first), ptr.encode());
        }
        Ok(())
    }
}

/// Reads batch values: the records themselves, or a pointer resolved through the
/// record files.
#[derive(Clone)]
struct Batches {
    records: Option<Arc<RecordLog>>,
}

impl Batches {
    fn bytes<'v>(&self, value: &'v [u8]) -> Result<Cow<'v, [u8]>> {
        match Pointer::decode(value) {
            None => Ok(Cow::Borrowed(value)),
            Some(ptr) => match &self.records {
                Some(r) => r.read(&ptr).map(Cow::Owned),
                None => Err(RecordingError::Corrupt {
                    seq: None,
                    reason: "a record pointer in a store without record files".into(),
                }),
            },
        }
    }
}

/// Reads single records, keeping the last batch read: consecutive records of a
/// session are often in the same batch.
struct RecordReader {
    tree: sled::Tree,
    batches: Batches,
    /// The key and bytes of the last batch read.
    last: Option<(sled::IVec, Vec<u8>)>,
}

impl RecordReader {
    fn record(&mut self, seq: u64) -> Result<Option<StoredEvent>> {
        let Some((key, value)) = sled_format::batch_holding(&self.tree, seq)? else {
            return Ok(None);
        };
        let bytes = match &self.last {
            Some((k, b)) if *k == key => b,
            _ => {
                let b = self.batches.bytes(&value)?.into_owned();
                &self.last.insert((key, b)).1
            }
        };
        match sled_format::find(bytes, seq)? {
            Some(bytes) => StoredEvent::decode_value(seq, bytes).map(Some),
            None => Ok(None),
        }
    }
}

impl EventStore for SledStore {
    fn append(&self, events: &[Event]) -> Result<Appended> {
        let mut state = self.lock_state()?;
        state.check()?;
        let start = state.head;
        if events.is_empty() {
            return Ok(Appended {
                first_seq: start.seq.saturating_add(1),
                count: 0,
                head: start,
            });
        }
        // The entries in memory move on with every record: a failure from here on leaves
        // them ahead of the tree, so the store refuses further appends (opening it again
        // rebuilds them from the records).
        match self.append_locked(&mut state, events) {
            Ok(appended) => Ok(appended),
            Err(e) => {
                state.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn sync(&self) -> Result<()> {
        if let Some(records) = &self.batches.records {
            // Records first: a synced journal entry must not point past them.
            records.sync()?;
        }
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
        self.reader().record(seq)
    }

    fn scan(&self, from_seq: u64, limit: usize) -> Result<RecordIter<'_>> {
        // Start at the batch holding `from_seq` (or the first batch after it).
        let start = match sled_format::batch_holding(&self.tree, from_seq)? {
            Some((k, _)) => k.to_vec(),
            None => batch_key(0).to_vec(),
        };
        let batches = self.batches.clone();
        let iter = self
            .tree
            .range(start..=batch_key(u64::MAX).to_vec())
            .flat_map(move |item| -> Vec<Result<StoredEvent>> {
                let v = match item {
                    Ok((_, v)) => v,
                    Err(e) => return vec![Err(e.into())],
                };
                let v = match batches.bytes(&v) {
                    Ok(v) => v,
                    Err(e) => return vec![Err(e)],
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
        self.index_now()?;
        self.load_summary(&id)
    }

    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>> {
        self.index_now()?;
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
        self.index_now()?;
        let mut prefix = Vec::with_capacity(17);
        prefix.push(P_SESSION_EVENT);
        prefix.extend_from_slice(id.as_bytes());
        let mut reader = self.reader();
        // The session's `x` entries come first, in session order, then the tail kept in
        // its summary value (all of a short session's seqs); seqs at or below the base
        // were pruned (pruning leaves tails as they are, and a tail that outgrows its
        // limit later moves into an `x` entry whole).
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
            .flat_map(move |item| -> Vec<Result<u64>> {
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
                    .filter_map(|c| split_u64(c).map(|(s, _)| s))
                    .filter(|s| *s > pruned_through)
                    .map(Ok)
                    .collect()
            });
        let iter = indexed.chain(inline).map(move |seq| {
            let seq = seq?;
            reader.record(seq)?.ok_or_else(|| RecordingError::Corrupt {
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
        // The index covers the head from here on: what is pruned below is behind it.
        self.index_now()?;
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
                let pointer = Pointer::decode(v);
                // A batch whose bytes cannot be read is deleted all the same (behind
                // the signed tombstone, which the pruning caller verified).
                let v = self.batches.bytes(v).unwrap_or_default();
                for item in sled_format::records(&v) {
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
                    // The kept records end the batch: point to them where they are.
                    let value = match pointer {
                        Some(p) => p.suffix(&kept)?.encode(),
                        None => kept,
                    };
                    batch.insert(batch_key(first), value);
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
        // 4. Record files no batch points into any more.
        if let Some(records) = &self.batches.records {
            let first = self.tree.scan_prefix([BATCH_PREFIX]).next().transpose()?;
            let keep_from = match first.as_ref().map(|(_, v)| Pointer::decode(v)) {
                Some(Some(p)) => p.file,
                // An inline first batch (written before record files): keep them all.
                Some(None) => 0,
                None => records.current_file()?,
            };
            // The removals are in the synced journal: after a crash, replay removes
            // the flushed tree's pointers into deleted files again.
            stats.files = records.delete_before(keep_from)?;
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use portcullis_core::EventKind;

    use super::*;
    use crate::test_events::command;
    use crate::{RetentionPolicy, SigningKey, VerifyOptions, verify_store};

    fn closed_events(n: u64) -> Vec<Event> {
        (0..n)
            .map(|i| {
                Event::now(
                    SessionId::new(),
                    EventKind::SessionClosed {
                        reason: format!("event {i}"),
                        commands: i,
                    },
                )
            })
            .collect()
    }

    fn records(store: &SledStore) -> &RecordLog {
        store.batches.records.as_deref().unwrap()
    }

    /// Every session's summary and record seqs, as the store's readers see them.
    fn index_view(store: &SledStore) -> Vec<(SessionSummary, Vec<u64>)> {
        let filter = SessionFilter {
            limit: usize::MAX,
            ..SessionFilter::default()
        };
        store
            .list_sessions(&filter)
            .unwrap()
            .into_iter()
            .map(|s| {
                let seqs = store
                    .session_events(s.id)
                    .unwrap()
                    .map(|r| r.unwrap().seq)
                    .collect();
                (s, seqs)
            })
            .collect()
    }

    #[test]
    fn readers_see_every_appended_record_before_the_index_is_due() {
        let store = SledStore::temporary().unwrap();
        let id = SessionId::new();
        store.append(&[command(id, 1)]).unwrap();
        assert!(store.state.lock().unwrap().indexed < 1, "not written yet");
        let summary = store.session(id).unwrap().unwrap();
        assert_eq!((summary.events, summary.commands), (1, 1));
        assert_eq!(store.state.lock().unwrap().indexed, 1);
        store.append(&[command(id, 2), command(id, 3)]).unwrap();
        assert_eq!(index_view(&store)[0].1, vec![1, 2, 3]);
    }

    #[test]
    fn opening_rebuilds_an_index_that_lags_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let long = SessionId::new();
        let before = {
            let store = SledStore::open(&path).unwrap();
            // A long session (two `x` runs and a tail) between short closed ones.
            for round in 0..3u64 {
                let mut events: Vec<Event> =
                    (1..=100).map(|i| command(long, round * 100 + i)).collect();
                events.extend(closed_events(5));
                store.append(&events).unwrap();
            }
            let before = index_view(&store);
            assert_eq!(before.len(), 16);
            let (summary, seqs) = before.iter().find(|(s, _)| s.id == long).unwrap();
            assert_eq!((summary.events, seqs.len()), (300, 300));
            // What a crash right after the appends leaves: records, no index for them.
            let mut ops = Ops::default();
            for prefix in [P_SESSION, P_SESSION_EVENT, P_TIME] {
                for item in store.tree.scan_prefix([prefix]) {
                    ops.remove(item.unwrap().0.to_vec());
                }
            }
            ops.insert(K_INDEXED, 0u64.to_be_bytes().to_vec());
            store.commit(ops).unwrap();
            store.state.lock().unwrap().sessions.clear();
            assert!(store.tree.scan_prefix([P_SESSION]).next().is_none());
            before
        };
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.state.lock().unwrap().indexed, 315);
        assert_eq!(index_view(&store), before);
        // Appending goes on with the session seqs where they were.
        store.append(&[command(long, 301)]).unwrap();
        let last = store.session_events(long).unwrap().last().unwrap().unwrap();
        assert_eq!((last.seq, last.session_seq), (316, 301));
        assert!(
            verify_store(&store, &VerifyOptions::default())
                .unwrap()
                .is_intact()
        );
    }

    #[test]
    fn records_live_in_record_files_and_pruning_deletes_emptied_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = SledStore::open(&path).unwrap();
        for round in 0..3 {
            store.append(&closed_events(10)).unwrap();
            if round < 2 {
                records(&store).close_current_file().unwrap();
            }
        }
        store.sync().unwrap();
        let files = |p: &Path| std::fs::read_dir(p.join("records")).unwrap().count();
        assert_eq!(files(&path), 3);
        for item in store.tree.scan_prefix([BATCH_PREFIX]) {
            let (_, v) = item.unwrap();
            assert!(Pointer::decode(&v).is_some());
        }
        let key = SigningKey::generate().unwrap();
        let policy = RetentionPolicy {
            max_age: None,
            max_records: Some(5),
        };
        let out = crate::prune(&store, &key, &policy, Timestamp::now()).unwrap();
        assert_eq!(out.through_seq, 25);
        assert_eq!((out.stats.records, out.stats.files), (25, 2));
        assert_eq!(files(&path), 1);
        // What is left of the straddling batch points to its own records.
        let kept: Vec<u64> = store
            .scan(1, usize::MAX)
            .unwrap()
            .map(|r| r.unwrap().seq)
            .collect();
        assert_eq!(kept, vec![26, 27, 28, 29, 30]);
        drop(store);
        let store = SledStore::open(&path).unwrap();
        let report = verify_store(
            &store,
            &VerifyOptions {
                trusted_keys: vec![key.public_key().clone()],
                until_seq: None,
            },
        )
        .unwrap();
        assert!(report.fault.is_none(), "{:?}", report.fault);
        assert_eq!(store.get(28).unwrap().unwrap().seq, 28);
        assert_eq!(store.append(&closed_events(1)).unwrap().first_seq, 31);
    }

    #[test]
    fn an_index_that_disagrees_with_the_records_opens_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let id = SessionId::new();
        {
            let store = SledStore::open(&path).unwrap();
            store.append(&[command(id, 1), command(id, 2)]).unwrap();
            assert_eq!(store.session(id).unwrap().unwrap().events, 2);
            // The marker says the index covers nothing while the entries count both
            // records: catching up would count them twice.
            let mut ops = Ops::default();
            ops.insert(K_INDEXED, 0u64.to_be_bytes().to_vec());
            store.commit(ops).unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.session(id).unwrap().unwrap().events, 2);
        assert_eq!(store.scan(1, 10).unwrap().count(), 2);
        let err = store.append(&[command(id, 3)]).unwrap_err().to_string();
        assert!(err.contains("could not be rebuilt"), "{err}");
    }

    #[test]
    fn a_tail_that_moves_into_an_x_entry_after_pruning_names_no_pruned_record() {
        let store = SledStore::temporary().unwrap();
        let long = SessionId::new();
        let events: Vec<Event> = (1..=100).map(|i| command(long, i)).collect();
        store.append(&events).unwrap();
        let key = SigningKey::generate().unwrap();
        let policy = RetentionPolicy {
            max_age: None,
            max_records: Some(50),
        };
        let out = crate::prune(&store, &key, &policy, Timestamp::now()).unwrap();
        assert_eq!(out.through_seq, 50);
        // The tail (seqs 1..=100, half of them pruned) outgrows its limit and moves into
        // an `x` entry whole.
        let events: Vec<Event> = (101..=200).map(|i| command(long, i)).collect();
        store.append(&events).unwrap();
        let seqs: Vec<u64> = store
            .session_events(long)
            .unwrap()
            .map(|r| r.unwrap().seq)
            .collect();
        assert_eq!(seqs, (51..=200).collect::<Vec<_>>());
        assert!(store.tree.scan_prefix([P_SESSION_EVENT]).next().is_some());
    }

    #[test]
    fn replay_ends_at_an_entry_whose_records_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        std::fs::create_dir_all(&jdir).unwrap();
        let records = RecordLog::open(&dir.path().join("records")).unwrap();
        let mut journal = Journal::create(&jdir, 0, 0).unwrap();
        // An entry pointing into an earlier record file that pruning deleted since (a
        // later entry would remove the pointer) does not end the replay.
        let mut pruned = Ops::default();
        let gone = Pointer {
            file: 0,
            offset: 0,
            len: 5,
            crc: 0,
        };
        pruned.insert(batch_key(0), gone.encode());
        assert_eq!(journal.write(&pruned).unwrap(), 1);
        let mut entry = |key: &[u8], bytes: &[u8]| {
            let (file, offset) = records.append(bytes).unwrap();
            let ptr = Pointer {
                file,
                offset,
                len: bytes.len() as u32,
                crc: crc32fast::hash(bytes),
            };
            let mut ops = Ops::default();
            ops.insert(batch_key(u64::from(key[0])), ptr.encode());
            ops.insert(key.to_vec(), b"x".to_vec());
            journal.write(&ops).unwrap()
        };
        assert_eq!(entry(&[1], b"first records"), 2);
        assert_eq!(entry(&[2], b"second records"), 3);
        assert_eq!(entry(&[3], b"third records"), 4);
        journal.current().sync_data().unwrap();
        drop(journal);
        // The second entry's records never reached the disk (a power loss after the
        // journal moved to its next segment): replay keeps only the first entry.
        let file = std::fs::read_dir(dir.path().join("records"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(20)
            .unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let log_file = File::open(dir.path().join("db").join("db")).unwrap();
        let mut journal = SledStore::recover(&db, &log_file, &jdir, &records).unwrap();
        let tree = db.open_tree(TREE).unwrap();
        assert_eq!(tree.get(batch_key(0)).unwrap().unwrap(), gone.encode());
        assert!(tree.get([1u8]).unwrap().is_some());
        assert!(tree.get(batch_key(1)).unwrap().is_some());
        assert!(tree.get([2u8]).unwrap().is_none());
        assert!(tree.get(batch_key(2)).unwrap().is_none());
        assert!(tree.get([3u8]).unwrap().is_none());
        // The journal goes on after the last entry applied.
        assert_eq!(journal.write(&Ops::default()).unwrap(), 3);
    }
}
