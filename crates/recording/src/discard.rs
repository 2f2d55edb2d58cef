//! A store that keeps nothing, for measuring what recording costs.
//!
//! Compiled only with the `discard-store` feature, which also makes
//! `[recording] store = "discard:"` a valid configuration. A gateway built that way
//! records nothing: it exists so that a benchmark can compare the same gateway with
//! and without its record (see `benches/pg_compare.sh`). Release builds of the gateway
//! never enable it.

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_core::{Event, SessionId};

use crate::{
    Appended, Checkpoint, CheckpointIter, EventStore, Head, PublicKeyRecord, RecordIter, Result,
    SessionFilter, SessionSummary, StoredEvent,
};

/// The `store` value that selects [`DiscardStore`].
pub const DISCARD_URL: &str = "discard:";

/// An [`EventStore`] that counts appended events and drops them: no chain, no hash,
/// no I/O. Queries see an empty store.
#[derive(Debug, Default)]
pub struct DiscardStore {
    seq: AtomicU64,
}

impl EventStore for DiscardStore {
    fn append(&self, events: &[Event]) -> Result<Appended> {
        let n = events.len() as u64;
        let before = self.seq.fetch_add(n, Ordering::Relaxed);
        Ok(Appended {
            first_seq: before.saturating_add(1),
            count: n,
            head: Head {
                seq: before.saturating_add(n),
                hash: crate::ChainHash::ZERO,
            },
        })
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn head(&self) -> Result<Head> {
        Ok(Head {
            seq: self.seq.load(Ordering::Relaxed),
            hash: crate::ChainHash::ZERO,
        })
    }

    fn get(&self, _seq: u64) -> Result<Option<StoredEvent>> {
        Ok(None)
    }

    fn scan(&self, _from_seq: u64, _limit: usize) -> Result<RecordIter<'_>> {
        Ok(Box::new(std::iter::empty()))
    }

    fn session(&self, _id: SessionId) -> Result<Option<SessionSummary>> {
        Ok(None)
    }

    fn list_sessions(&self, _filter: &SessionFilter) -> Result<Vec<SessionSummary>> {
        Ok(Vec::new())
    }

    fn session_events(&self, _id: SessionId) -> Result<RecordIter<'_>> {
        Ok(Box::new(std::iter::empty()))
    }

    fn chain_id(&self) -> Result<String> {
        Ok("discard".into())
    }

    fn put_checkpoint(&self, _checkpoint: &Checkpoint) -> Result<()> {
        Ok(())
    }

    fn checkpoints(&self, _from_seq: u64) -> Result<CheckpointIter<'_>> {
        Ok(Box::new(std::iter::empty()))
    }

    fn put_public_key(&self, _key: &PublicKeyRecord) -> Result<()> {
        Ok(())
    }

    fn public_keys(&self) -> Result<Vec<PublicKeyRecord>> {
        Ok(Vec::new())
    }
}
