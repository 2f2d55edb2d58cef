//! Retention: pruning old records without losing the ability to verify the rest.
//!
//! [`prune`] never drops unverified history. It picks the last record to prune
//! (older than `max_age`, or beyond the newest `max_records`; the last record of
//! the store is always kept), verifies the chain from its current anchor through
//! that record (checkpoint signatures included), signs a tombstone checkpoint
//! over it (`reason = tombstone`, `pruned_from` = first pruned seq, `seq`/`hash` =
//! the last pruned record), stores it as the store's base, and only then deletes
//! the records. Verification afterwards starts from the tombstone: the first
//! remaining record must link to the tombstone's hash, and the tombstone's
//! signature must verify.

use std::time::Duration;

use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::evidence::paged;
use crate::{
    Checkpoint, CheckpointReason, EventStore, PruneStats, PublicKeyRecord, RecordingError, Result,
    RetentionConfig, SigningKey, VerifyOptions, verify_store,
};

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Prune records whose event time is older than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many records.
    pub max_records: Option<u64>,
}

impl From<&RetentionConfig> for RetentionPolicy {
    fn from(c: &RetentionConfig) -> Self {
        Self {
            max_age: c.max_age,
            max_records: c.max_records,
        }
    }
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneOutcome {
    /// The last pruned `seq` (0 when nothing was pruned).
    pub through_seq: u64,
    /// The tombstone written, if anything was pruned.
    pub tombstone: Option<Checkpoint>,
    /// What was deleted.
    pub stats: PruneStats,
}

/// Applies `policy` to `store` as of `now`; see the [module docs](self).
/// Refuses ([`RecordingError::Unverified`]) when the range to prune fails verification.
pub fn prune(
    store: &dyn EventStore,
    key: &SigningKey,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<PruneOutcome> {
    let nothing = PruneOutcome {
        through_seq: 0,
        tombstone: None,
        stats: PruneStats::default(),
    };
    let head = store.head()?;
    let base = store.base()?.map_or(0, |b| b.seq);
    // Never prune the last record: it carries the head.
    let keep_last = head.seq.saturating_sub(1);
    let mut through = 0u64;
    if let Some(max) = policy.max_records {
        through = through.max(head.seq.saturating_sub(max.max(1)));
    }
    if let Some(age) = policy.max_age {
        let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        let cutoff = Timestamp(now.0.saturating_sub(micros));
        for r in paged(store, base.saturating_add(1)) {
            let r = r?;
            if r.event.at >= cutoff || r.seq > keep_last {
                break;
            }
            through = through.max(r.seq);
        }
    }
    let through = through.min(keep_last);
    if through <= base {
        return Ok(nothing);
    }
    // Verify everything that is about to go (and the checkpoints over it).
    let report = verify_store(
        store,
        &VerifyOptions {
            trusted_keys: Vec::new(),
            until_seq: Some(through),
        },
    )?;
    if let Some(f) = report.fault {
        return Err(RecordingError::Unverified(f.to_string()));
    }
    if report.head.seq != through {
        return Err(RecordingError::Unverified(format!(
            "verification reached seq {} instead of {through}",
            report.head.seq
        )));
    }
    store.put_public_key(&PublicKeyRecord::new(key.public_key()))?;
    let chain = store.chain_id()?;
    let tombstone = Checkpoint::sign(
        key,
        &chain,
        report.head,
        CheckpointReason::Tombstone,
        Some(base.saturating_add(1)),
    );
    let stats = store.prune(&tombstone)?;
    Ok(PruneOutcome {
        through_seq: through,
        tombstone: Some(tombstone),
        stats,
    })
}
