//! Verifying the evidence: the chain, its signed checkpoints and the keys, in a
//! store ([`verify_store`]) or an exported bundle ([`crate::verify_bundle`]).
//!
//! Verification walks the records from an anchor (the genesis, the latest
//! tombstone, or the start of an exported range) and the checkpoints merged by
//! `seq`. It stops at the first fault and names it:
//!
//! | kind | found when |
//! | --- | --- |
//! | `missing` | a sequence number is skipped (deleted records, a deleted session) |
//! | `reordered` | a record sits at another record's place (its hash only matches another `seq`), or a `seq` goes backwards |
//! | `altered` | a stored hash does not match the record, a record does not link to its predecessor, a record differs from the signed checkpoint at its `seq`, bundle file digests differ |
//! | `truncated` | the chain ends below a valid checkpoint or below the stored head |
//! | `bad_signature` | a checkpoint's signature does not verify, its key is unknown or not trusted, or it names another chain |

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::canonicalize;
use crate::{
    ChainHash, Checkpoint, EventStore, Head, PublicKey, PublicKeyRecord, RecordingError, Result,
    StoredEvent, record_hash,
};

/// Records read per store call while verifying.
const PAGE: usize = 1024;
/// How far around a misplaced record verification looks for the place it belongs.
const REORDER_WINDOW: u64 = 1024;

/// The kind of the first fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Bytes of a record, a checkpoint's subject or a bundle file were changed.
    Altered,
    /// Records are missing from the middle of the chain.
    Missing,
    /// Records are out of order.
    Reordered,
    /// The end of the chain is missing.
    Truncated,
    /// A checkpoint signature is invalid, forged, or by an unknown key.
    BadSignature,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Altered => "altered",
            FaultKind::Missing => "missing",
            FaultKind::Reordered => "reordered",
            FaultKind::Truncated => "truncated",
            FaultKind::BadSignature => "bad signature",
        })
    }
}

/// What a fault was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAt {
    /// The record with this `seq`.
    Record,
    /// The checkpoint at this `seq`.
    Checkpoint,
    /// A bundle file or the manifest.
    Bundle,
}

/// The first fault verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The kind.
    pub kind: FaultKind,
    /// Whether it is a record, a checkpoint or a bundle file.
    pub at: FaultAt,
    /// The `seq` of the record or checkpoint (0 for bundle files).
    pub seq: u64,
    /// What exactly is wrong.
    pub detail: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            FaultAt::Record => write!(f, "record {}: {}: {}", self.seq, self.kind, self.detail),
            FaultAt::Checkpoint => write!(
                f,
                "checkpoint at seq {}: {}: {}",
                self.seq, self.kind, self.detail
            ),
            FaultAt::Bundle => write!(f, "bundle: {}: {}", self.kind, self.detail),
        }
    }
}

/// Where verification started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorKind {
    /// Record 1, linking to the zero hash.
    Genesis,
    /// The latest tombstone (records before it were pruned).
    Tombstone,
    /// The first record of an exported range, trusted through its `prev_hash`
    /// (and through the checkpoint at `seq - 1` when the bundle has it).
    RangeStart,
}

/// Which public keys were trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// Keys given by the verifier (`--key`): the strong form.
    Pinned,
    /// Keys found next to the evidence (store or bundle): proves integrity against
    /// anyone who could not also replace the keys.
    Embedded,
}

/// Options of verification.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Only checkpoints by these keys count; empty means the keys stored with the
    /// evidence are trusted.
    pub trusted_keys: Vec<PublicKey>,
    /// Stop after this `seq` (for pruning while the recorder appends); the head and
    /// checkpoints beyond it are not checked.
    pub until_seq: Option<u64>,
}

/// The result of verifying a store or a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceReport {
    /// The chain id, if known.
    pub chain: Option<String>,
    /// Where verification started.
    pub anchor_kind: AnchorKind,
    /// The anchor: the `seq` and hash the first record links to.
    pub anchor: Head,
    /// Whether a valid signature covers the anchor (genesis, a tombstone, or a
    /// checkpoint at the anchor `seq`).
    pub anchor_signed: bool,
    /// Records that verified.
    pub records: u64,
    /// The last verified record.
    pub head: Head,
    /// Checkpoints whose signatures verified and that matched the chain.
    pub checkpoints: u64,
    /// Highest `seq` covered by a valid checkpoint (0 if none).
    pub signed_through: u64,
    /// Key ids of the valid checkpoints.
    pub keys_used: Vec<String>,
    /// Whose keys were trusted.
    pub key_source: KeySource,
    /// The first fault, if any; verification stops there.
    pub fault: Option<Fault>,
    /// Things that are not faults but limit what the evidence proves.
    pub warnings: Vec<String>,
}

impl EvidenceReport {
    /// Whether nothing was found wrong.
    pub fn is_intact(&self) -> bool {
        self.fault.is_none()
    }

    /// Records after the last valid checkpoint (protected by the chain only).
    pub fn unsigned_tail(&self) -> u64 {
        self.head
            .seq
            .saturating_sub(self.signed_through.max(self.anchor.seq))
    }
}

/// Inputs of one walk, from a store or a bundle.
pub(crate) struct WalkInput<'a> {
    pub chain: Option<String>,
    pub anchor_kind: AnchorKind,
    pub anchor: Head,
    pub anchor_signed: bool,
    pub keys: HashMap<String, PublicKey>,
    pub key_source: KeySource,
    /// The head the container claims (store head, manifest head).
    pub declared_head: Option<Head>,
    pub until_seq: Option<u64>,
    /// Whether a record with this `seq` exists later on (told apart: reordered vs missing).
    pub exists_elsewhere: &'a dyn Fn(u64) -> Result<bool>,
}

/// The keys verification trusts, by id.
pub(crate) fn key_map(
    options: &VerifyOptions,
    embedded: &[PublicKeyRecord],
    warnings: &mut Vec<String>,
) -> (HashMap<String, PublicKey>, KeySource) {
    if !options.trusted_keys.is_empty() {
        let keys = options
            .trusted_keys
            .iter()
            .map(|k| (k.key_id(), k.clone()))
            .collect();
        return (keys, KeySource::Pinned);
    }
    let mut keys = HashMap::new();
    for rec in embedded {
        match rec.key() {
            Ok(k) => {
                keys.insert(k.key_id(), k);
            }
            Err(e) => warnings.push(format!("stored public key ignored: {e}")),
        }
    }
    (keys, KeySource::Embedded)
}

pub(crate) fn walk(
    input: WalkInput<'_>,
    records: impl Iterator<Item = Result<StoredEvent>>,
    checkpoints: impl Iterator<Item = Result<Checkpoint>>,
    mut warnings: Vec<String>,
) -> Result<EvidenceReport> {
    let mut w = Walker {
        keys: &input.keys,
        chain: input.chain.clone(),
        checkpoints: 0,
        signed_through: 0,
        keys_used: BTreeSet::new(),
    };
    let mut head = input.anchor;
    let mut verified = 0u64;
    let mut anchor_signed = input.anchor_signed;
    let mut fault: Option<Fault> = None;
    let mut cps = checkpoints.peekable();
    let limit = input.until_seq.unwrap_or(u64::MAX);

    // Checkpoints at or below the anchor.
    while let Some(cp) = next_cp_upto(&mut cps, input.anchor.seq)? {
        let at_hash = (cp.seq == input.anchor.seq).then_some(input.anchor.hash);
        match w.check(&cp, at_hash) {
            Some(f) => {
                fault = Some(f);
                break;
            }
            None => anchor_signed |= cp.seq == input.anchor.seq,
        }
    }

    if fault.is_none() {
        for item in records {
            let expected = head.seq.saturating_add(1);
            if expected > limit {
                break;
            }
            let record = match item {
                Ok(r) => r,
                Err(RecordingError::Corrupt { seq, reason }) => {
                    fault = Some(record_fault(
                        FaultKind::Altered,
                        seq.unwrap_or(expected),
                        format!("undecodable: {reason}"),
                    ));
                    break;
                }
                Err(e) => return Err(e),
            };
            if let Some(f) = check_record(&record, head, expected, input.exists_elsewhere)? {
                fault = Some(f);
                break;
            }
            head = record.head();
            verified = verified.saturating_add(1);
            while let Some(cp) = next_cp_upto(&mut cps, head.seq)? {
                let at_hash = (cp.seq == head.seq).then_some(head.hash);
                if let Some(f) = w.check(&cp, at_hash) {
                    fault = Some(f);
                    break;
                }
            }
            if fault.is_some() {
                break;
            }
        }
    }

    if fault.is_none() && input.until_seq.is_none() {
        // Checkpoints beyond the end: the chain was cut short (if they are genuine).
        if let Some(cp) = cps.next() {
            let cp = cp?;
            fault = Some(w.check(&cp, None).unwrap_or_else(|| Fault {
                kind: FaultKind::Truncated,
                at: FaultAt::Checkpoint,
                seq: cp.seq,
                detail: format!(
                    "a valid checkpoint signs seq {} but the chain ends at seq {}",
                    cp.seq, head.seq
                ),
            }));
        }
    }
    if fault.is_none()
        && input.until_seq.is_none()
        && let Some(declared) = input.declared_head
        && declared != head
    {
        fault = Some(if declared.seq > head.seq {
            Fault {
                kind: FaultKind::Truncated,
                at: FaultAt::Record,
                seq: head.seq.saturating_add(1),
                detail: format!(
                    "the recorded head is seq {} but the chain ends at seq {}",
                    declared.seq, head.seq
                ),
            }
        } else {
            Fault {
                kind: FaultKind::Altered,
                at: FaultAt::Record,
                seq: declared.seq,
                detail: format!(
                    "the recorded head (seq {}, {}) is not the end of the chain (seq {}, {})",
                    declared.seq, declared.hash, head.seq, head.hash
                ),
            }
        });
    }

    if fault.is_none() {
        if w.checkpoints == 0 && head.seq > input.anchor.seq {
            warnings.push("no valid checkpoint: nothing here is signed".into());
        } else if head.seq > w.signed_through.max(input.anchor.seq) {
            warnings.push(format!(
                "records {}..={} come after the last checkpoint and are protected by the chain only",
                w.signed_through.max(input.anchor.seq).saturating_add(1),
                head.seq
            ));
        }
        if input.key_source == KeySource::Embedded && w.checkpoints > 0 {
            warnings.push(
                "public keys were taken from the evidence itself; pin the gateway's key (--key) \
                 to rule out re-signing by someone who could also replace the keys"
                    .into(),
            );
        }
    }

    Ok(EvidenceReport {
        chain: w.chain.take().or(input.chain),
        anchor_kind: input.anchor_kind,
        anchor: input.anchor,
        anchor_signed,
        records: verified,
        head,
        checkpoints: w.checkpoints,
        signed_through: w.signed_through,
        keys_used: w.keys_used.into_iter().collect(),
        key_source: input.key_source,
        fault,
        warnings,
    })
}

fn next_cp_upto(
    cps: &mut std::iter::Peekable<impl Iterator<Item = Result<Checkpoint>>>,
    seq: u64,
) -> Result<Option<Checkpoint>> {
    match cps.peek() {
        Some(Ok(cp)) if cp.seq <= seq => {}
        Some(Err(_)) => {}
        _ => return Ok(None),
    }
    cps.next().transpose()
}

fn record_fault(kind: FaultKind, seq: u64, detail: String) -> Fault {
    Fault {
        kind,
        at: FaultAt::Record,
        seq,
        detail,
    }
}

/// Checks one record against the chain so far.
fn check_record(
    r: &StoredEvent,
    prev: Head,
    expected: u64,
    exists_elsewhere: &dyn Fn(u64) -> Result<bool>,
) -> Result<Option<Fault>> {
    if r.seq != expected {
        let f = if r.seq < expected {
            record_fault(
                FaultKind::Reordered,
                r.seq,
                format!("seq {} comes after seq {}", r.seq, prev.seq),
            )
        } else if exists_elsewhere(expected)? {
            record_fault(
                FaultKind::Reordered,
                expected,
                format!(
                    "record {expected} is out of place: seq {} came first",
                    r.seq
                ),
            )
        } else if r.seq == expected.saturating_add(1) {
            record_fault(
                FaultKind::Missing,
                expected,
                format!(
                    "record {expected} is missing (the next one present is {})",
                    r.seq
                ),
            )
        } else {
            record_fault(
                FaultKind::Missing,
                expected,
                format!(
                    "records {expected}..={} are missing (the next one present is {})",
                    r.seq.saturating_sub(1),
                    r.seq
                ),
            )
        };
        return Ok(Some(f));
    }
    let computed = r.compute_hash();
    if r.prev_hash != prev.hash || computed != r.hash {
        if let Some(home) = belongs_at(r) {
            return Ok(Some(record_fault(
                FaultKind::Reordered,
                r.seq,
                format!("the record at seq {} belongs at seq {home}", r.seq),
            )));
        }
        let detail = if computed != r.hash {
            format!(
                "stored hash {} does not match its content (computed {computed})",
                r.hash
            )
        } else {
            format!(
                "does not link to record {} (prev_hash {}, expected {})",
                prev.seq, r.prev_hash, prev.hash
            )
        };
        return Ok(Some(record_fault(FaultKind::Altered, r.seq, detail)));
    }
    if canonicalize(&r.canonical).ok().as_deref() != Some(r.canonical.as_str()) {
        return Ok(Some(record_fault(
            FaultKind::Altered,
            r.seq,
            "event bytes are not canonical".into(),
        )));
    }
    Ok(None)
}

/// The `seq` at which a record's stored hash matches its content, if it is not its own.
fn belongs_at(r: &StoredEvent) -> Option<u64> {
    let lo = r.seq.saturating_sub(REORDER_WINDOW).max(1);
    let hi = r.seq.saturating_add(REORDER_WINDOW);
    (lo..=hi)
        .filter(|s| *s != r.seq)
        .find(|s| record_hash(*s, r.session_seq, &r.prev_hash, r.canonical.as_bytes()) == r.hash)
}

struct Walker<'k> {
    keys: &'k HashMap<String, PublicKey>,
    chain: Option<String>,
    checkpoints: u64,
    signed_through: u64,
    keys_used: BTreeSet<String>,
}

impl Walker<'_> {
    /// Checks one checkpoint; `at_hash` is the chain's hash at its seq when known.
    fn check(&mut self, cp: &Checkpoint, at_hash: Option<ChainHash>) -> Option<Fault> {
        let bad = |kind: FaultKind, detail: String| {
            Some(Fault {
                kind,
                at: FaultAt::Checkpoint,
                seq: cp.seq,
                detail,
            })
        };
        if let Some(chain) = &self.chain
            && *chain != cp.chain
        {
            return bad(
                FaultKind::BadSignature,
                format!("signed for chain {}, not {chain}", cp.chain),
            );
        }
        let Some(key) = self.keys.get(&cp.key_id) else {
            return bad(
                FaultKind::BadSignature,
                format!("signed by key {}, which is not a trusted key", cp.key_id),
            );
        };
        if !cp.verify_with(key) {
            return bad(
                FaultKind::BadSignature,
                format!("the signature does not verify with key {}", cp.key_id),
            );
        }
        if let Some(h) = at_hash
            && h != cp.hash
        {
            return bad(
                FaultKind::Altered,
                format!(
                    "record {} has hash {h} but the checkpoint signed {}: the chain was \
                     rewritten at or before seq {}",
                    cp.seq, cp.hash, cp.seq
                ),
            );
        }
        if self.chain.is_none() {
            self.chain = Some(cp.chain.clone());
        }
        self.checkpoints = self.checkpoints.saturating_add(1);
        if at_hash.is_some() {
            self.signed_through = self.signed_through.max(cp.seq);
        }
        self.keys_used.insert(cp.key_id.clone());
        None
    }
}

/// Verifies a store: the chain from its anchor (genesis or the latest tombstone),
/// every checkpoint's signature and its match with the chain, truncation against
/// the checkpoints and the stored head. Reads in bounded pages.
pub fn verify_store(store: &dyn EventStore, options: &VerifyOptions) -> Result<EvidenceReport> {
    let mut warnings = Vec::new();
    let chain = optional(store.chain_id())?;
    let embedded = optional(store.public_keys())?.unwrap_or_default();
    let (keys, key_source) = key_map(options, &embedded, &mut warnings);
    let base = store.base()?;
    let (anchor_kind, anchor) = match &base {
        Some(t) => (AnchorKind::Tombstone, t.head()),
        None => (AnchorKind::Genesis, Head::GENESIS),
    };
    let exists = |seq: u64| -> Result<bool> {
        // Keys are the seq in the store, so a seq that is not at its place is absent.
        Ok(store.get(seq).ok().flatten().is_some())
    };
    // The base tombstone is checked as stored in the meta entry (the anchor comes
    // from it), and its copy among the checkpoints is skipped.
    let base_cp = base.clone();
    let checkpoints: Box<dyn Iterator<Item = Result<Checkpoint>> + '_> =
        match store.checkpoints(anchor.seq) {
            Ok(it) => Box::new(
                base.clone()
                    .map(Ok)
                    .into_iter()
                    .chain(it.filter(move |c| c.as_ref().ok() != base_cp.as_ref())),
            ),
            Err(RecordingError::Unsupported(_)) => {
                warnings.push("this store keeps no checkpoints".into());
                Box::new(std::iter::empty())
            }
            Err(e) => return Err(e),
        };
    let input = WalkInput {
        chain,
        anchor_kind,
        anchor,
        anchor_signed: base.is_none(),
        keys,
        key_source,
        declared_head: Some(store.head()?),
        until_seq: options.until_seq,
        exists_elsewhere: &exists,
    };
    walk(
        input,
        paged(store, anchor.seq.saturating_add(1)),
        checkpoints,
        warnings,
    )
}

/// `Ok(None)` for an operation the backend does not support.
fn optional<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(RecordingError::Unsupported(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The store's records from `from`, read page by page.
pub(crate) fn paged(
    store: &dyn EventStore,
    from: u64,
) -> impl Iterator<Item = Result<StoredEvent>> {
    let mut next = from;
    let mut page: std::vec::IntoIter<Result<StoredEvent>> = Vec::new().into_iter();
    let mut done = false;
    std::iter::from_fn(move || {
        loop {
            if let Some(item) = page.next() {
                if let Ok(r) = &item {
                    next = r.seq.saturating_add(1);
                } else {
                    done = true;
                }
                return Some(item);
            }
            if done {
                return None;
            }
            match store.scan(next, PAGE) {
                Ok(it) => {
                    let items: Vec<_> = it.collect();
                    if items.len() < PAGE {
                        done = true;
                    }
                    if items.is_empty() {
                        return None;
                    }
                    page = items.into_iter();
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
    })
}

/// Where evidence is read from: a store or an exported bundle.
#[derive(Clone, Copy)]
pub enum EvidenceSource<'a> {
    /// A store (from its anchor to its head).
    Store(&'a dyn EventStore),
    /// An exported bundle.
    Bundle(&'a crate::Bundle),
}

impl std::fmt::Debug for EvidenceSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceSource::Store(_) => f.write_str("EvidenceSource::Store"),
            EvidenceSource::Bundle(b) => write!(f, "EvidenceSource::Bundle({})", b.dir().display()),
        }
    }
}

impl<'a> EvidenceSource<'a> {
    /// Every available record in chain order, read lazily.
    pub fn records(&self) -> Result<crate::RecordIter<'a>> {
        match *self {
            EvidenceSource::Store(store) => {
                let from = store.base()?.map_or(0, |b| b.seq).saturating_add(1);
                Ok(Box::new(paged(store, from)))
            }
            EvidenceSource::Bundle(b) => b.records(),
        }
    }

    /// The records of one session, in order.
    pub fn session_records(&self, id: portcullis_core::SessionId) -> Result<crate::RecordIter<'a>> {
        match *self {
            EvidenceSource::Store(store) => store.session_events(id),
            EvidenceSource::Bundle(b) => b.session_records(id),
        }
    }

    /// The summary of one session (from the index, or folded from a bundle).
    pub fn session(&self, id: portcullis_core::SessionId) -> Result<Option<crate::SessionSummary>> {
        match *self {
            EvidenceSource::Store(store) => store.session(id),
            EvidenceSource::Bundle(b) => b.session(id),
        }
    }

    /// Verifies the store or the bundle.
    pub fn verify(&self, options: &VerifyOptions) -> Result<EvidenceReport> {
        match *self {
            EvidenceSource::Store(store) => verify_store(store, options),
            EvidenceSource::Bundle(b) => crate::verify_bundle(b.dir(), options),
        }
    }

    /// Every checkpoint available.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        match *self {
            EvidenceSource::Store(store) => {
                let from = store.base()?.map_or(0, |b| b.seq);
                match store.checkpoints(from) {
                    Ok(it) => it.collect(),
                    Err(RecordingError::Unsupported(_)) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            }
            EvidenceSource::Bundle(b) => b.checkpoints(),
        }
    }

    /// The public keys stored with the evidence.
    pub fn public_keys(&self) -> Result<Vec<PublicKeyRecord>> {
        match *self {
            EvidenceSource::Store(store) => Ok(optional(store.public_keys())?.unwrap_or_default()),
            EvidenceSource::Bundle(b) => b.public_keys(),
        }
    }
}
