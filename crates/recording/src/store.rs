//! The store trait and the query types shared by every backend.

use portcullis_core::{Event, EventKind, Protocol, SessionId, Side, Timestamp, Verdict};
use serde::{Deserialize, Serialize};

use crate::{Checkpoint, Head, PublicKeyRecord, RecordingError, Result, StoredEvent};

/// A lazily read sequence of records; each item is read from the store as the
/// iterator advances.
pub type RecordIter<'a> = Box<dyn Iterator<Item = Result<StoredEvent>> + Send + 'a>;

/// A lazily read sequence of checkpoints in `seq` order.
pub type CheckpointIter<'a> = Box<dyn Iterator<Item = Result<Checkpoint>> + Send + 'a>;

/// What [`EventStore::prune`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PruneStats {
    /// Records deleted.
    pub records: u64,
    /// Session summaries deleted (closed or refused sessions with no record left).
    pub sessions: u64,
    /// Checkpoints deleted (those below the tombstone).
    pub checkpoints: u64,
    /// Record files deleted (sled stores with a directory).
    pub files: u64,
}

fn unsupported<T>(what: &str) -> Result<T> {
    Err(RecordingError::Unsupported(what.into()))
}

/// An append-only, hash-chained event store.
///
/// The store assigns the global sequence number, the session sequence and the
/// hashes, so every backend produces the same chain for the same events.
/// Implementations must be safe to share between threads; appends are serialized
/// by the store.
pub trait EventStore: Send + Sync {
    /// Appends `events` in order, atomically (all or none), and returns where they
    /// landed. The records are durable only after [`EventStore::sync`] returns
    /// (a backend whose append is already durable may make `sync` a no-op).
    fn append(&self, events: &[Event]) -> Result<Appended>;

    /// Makes every appended record durable (flushed and synced to disk).
    fn sync(&self) -> Result<()>;

    /// The end of the chain.
    fn head(&self) -> Result<Head>;

    /// The record with global sequence `seq`.
    fn get(&self, seq: u64) -> Result<Option<StoredEvent>>;

    /// At most `limit` records in chain order, starting at `from_seq` (inclusive).
    fn scan(&self, from_seq: u64, limit: usize) -> Result<RecordIter<'_>>;

    /// The summary of one session.
    fn session(&self, id: SessionId) -> Result<Option<SessionSummary>>;

    /// Sessions matching `filter`, newest (by opening time) first, at most `filter.limit`.
    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>>;

    /// The records of one session, in session order.
    fn session_events(&self, id: SessionId) -> Result<RecordIter<'_>>;

    // Evidence: checkpoints, public keys and pruning. The defaults say the backend
    // does not support them; the recorder then cannot sign and fails at start.

    /// The id of this chain, created with the store and signed into every checkpoint.
    fn chain_id(&self) -> Result<String> {
        unsupported("chain ids")
    }

    /// Stores a signed checkpoint (durable after the next [`EventStore::sync`]).
    fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let _ = checkpoint;
        unsupported("checkpoints")
    }

    /// Checkpoints with `seq >= from_seq`, in `seq` order.
    fn checkpoints(&self, from_seq: u64) -> Result<CheckpointIter<'_>> {
        let _ = from_seq;
        unsupported("checkpoints")
    }

    /// Stores a public key that signs checkpoints; a key already stored is kept as it is.
    fn put_public_key(&self, key: &PublicKeyRecord) -> Result<()> {
        let _ = key;
        unsupported("public keys")
    }

    /// Every public key that has signed checkpoints of this store.
    fn public_keys(&self) -> Result<Vec<PublicKeyRecord>> {
        unsupported("public keys")
    }

    /// The latest tombstone: records up to its `seq` were pruned and verification
    /// starts from it. `None` when nothing was pruned.
    fn base(&self) -> Result<Option<Checkpoint>> {
        Ok(None)
    }

    /// Stores `tombstone` as the new base, then deletes every record with
    /// `seq <= tombstone.seq`, their index entries, the summaries of closed
    /// sessions with no record left, and the checkpoints below the tombstone.
    /// Callers verify the range and sign the tombstone first (see `retention::prune`).
    fn prune(&self, tombstone: &Checkpoint) -> Result<PruneStats> {
        let _ = tombstone;
        unsupported("pruning")
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the first appended record (head + 1 when nothing was appended).
    pub first_seq: u64,
    /// Number of records appended.
    pub count: u64,
    /// The head after the append.
    pub head: Head,
}

/// How a session ended, as far as the record shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionOutcome {
    /// No `session_closed` event yet (still open, or the gateway stopped abruptly).
    Open,
    /// Closed normally or by an error.
    Closed {
        /// The recorded reason.
        reason: String,
    },
    /// The connection was refused before a session opened.
    Refused {
        /// Which side failed.
        side: Side,
        /// Why.
        reason: String,
    },
}

/// The index entry of one session, maintained as its events are appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session id.
    pub id: SessionId,
    /// Subject of the identity (claimed subject for refused connections), if known.
    pub subject: Option<String>,
    /// Target name, if known.
    pub target: Option<String>,
    /// Target protocol, if the session opened.
    pub protocol: Option<Protocol>,
    /// Client address, if known.
    pub client_addr: Option<String>,
    /// Time of the session's first event (its opening).
    pub opened_at: Timestamp,
    /// Time of its `session_closed` event.
    pub closed_at: Option<Timestamp>,
    /// Time of its latest event (a result folded into its command's record counts).
    pub last_event_at: Timestamp,
    /// Number of `command` events.
    pub commands: u64,
    /// Number of `command` events whose decision was deny.
    pub denied: u64,
    /// Number of records of the session (a command recorded with its result is one).
    pub events: u64,
    /// Global sequence of its first record.
    pub first_seq: u64,
    /// Global sequence of its latest record.
    pub last_seq: u64,
    /// How it ended.
    pub outcome: SessionOutcome,
}

impl SessionSummary {
    /// The summary of a session whose first event is `event`, stored at `seq`.
    pub fn start(event: &Event, seq: u64) -> Self {
        let mut s = Self {
            id: event.session,
            subject: None,
            target: None,
            protocol: None,
            client_addr: None,
            opened_at: event.at,
            closed_at: None,
            last_event_at: event.at,
            commands: 0,
            denied: 0,
            events: 0,
            first_seq: seq,
            last_seq: seq,
            outcome: SessionOutcome::Open,
        };
        s.apply(event, seq);
        s
    }

    /// Folds one more event of the session into the summary; returns the event's
    /// session sequence.
    pub fn apply(&mut self, event: &Event, seq: u64) -> u64 {
        self.events = self.events.saturating_add(1);
        self.last_seq = seq;
        self.last_event_at = self.last_event_at.max(event.at);
        match &event.kind {
            EventKind::SessionOpened {
                identity,
                target,
                protocol,
                client_addr,
                ..
            } => {
                self.subject = Some(identity.subject.clone());
                self.target = Some(target.clone());
                self.protocol = Some(*protocol);
                self.client_addr = client_addr.clone();
            }
            EventKind::SessionRefused {
                subject,
                target,
                client_addr,
                side,
                reason,
            } => {
                self.subject = self.subject.take().or_else(|| subject.clone());
                self.target = self.target.take().or_else(|| target.clone());
                self.client_addr = self.client_addr.take().or_else(|| client_addr.clone());
                self.outcome = SessionOutcome::Refused {
                    side: *side,
                    reason: reason.clone(),
                };
            }
            EventKind::SessionClosed { reason, .. } => {
                self.closed_at = Some(event.at);
                self.outcome = SessionOutcome::Closed {
                    reason: reason.clone(),
                };
            }
            EventKind::Command {
                decision, result, ..
            } => {
                if let Some(o) = result {
                    self.last_event_at = self.last_event_at.max(o.at);
                }
                self.commands = self.commands.saturating_add(1);
                if decision.verdict == Verdict::Deny {
                    self.denied = self.denied.saturating_add(1);
                }
            }
            EventKind::CommandResult { .. } => {}
            // Future event kinds only count as events.
            _ => {}
        }
        self.events
    }

    /// Whether the summary matches the subject and target parts of a filter
    /// (the time bounds are applied by the index walk).
    pub fn matches(&self, filter: &SessionFilter) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref() == Some(w.as_str()),
        };
        eq(&filter.subject, &self.subject)
            && eq(&filter.target, &self.target)
            && filter.since.is_none_or(|s| self.opened_at >= s)
            && filter.until.is_none_or(|u| self.opened_at < u)
    }
}

/// Which sessions to list. Time bounds apply to the opening time:
/// `since <= opened_at < until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionFilter {
    /// Only sessions of this subject.
    pub subject: Option<String>,
    /// Only sessions to this target.
    pub target: Option<String>,
    /// Only sessions opened at or after this time.
    pub since: Option<Timestamp>,
    /// Only sessions opened before this time.
    pub until: Option<Timestamp>,
    /// At most this many sessions (default 100).
    pub limit: usize,
}

impl Default for SessionFilter {
    fn default() -> Self {
        Self {
            subject: None,
            target: None,
            since: None,
            until: None,
            limit: 100,
        }
    }
}
