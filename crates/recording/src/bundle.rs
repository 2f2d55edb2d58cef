//! Evidence bundles: a range of the chain exported to files that an auditor
//! verifies offline with nothing but the gateway's public key.
//!
//! A bundle directory holds
//!
//! | file | content |
//! | --- | --- |
//! | `events.jsonl` | the records, one [`StoredEvent::to_json_line`] per line, in `seq` order |
//! | `checkpoints.jsonl` | the checkpoints with `first_seq - 1 <= seq <= last_seq`, one JSON object per line |
//! | `public-keys.json` | every public key of the store, as a JSON array of [`PublicKeyRecord`] |
//! | `events.ocsf.jsonl` | only with `--format ocsf`: the same events as OCSF 1.1 JSON lines |
//! | `manifest.json` | the [`Manifest`]: range, counts, anchor and head, SHA-256 of every other file |
//!
//! Range rule: the requested time range is widened to whole checkpoints. The
//! first record is the one after the latest checkpoint before the first record
//! with `at >= since` (so the checkpoint at `first_seq - 1` signs the anchor),
//! and the last record is the first checkpoint at or after the last record with
//! `at < until`. When no checkpoint follows, an export with a signing key signs
//! the end itself (reason `export`), after verifying the store; without a key the
//! bundle ends with records that only the chain protects, and verification says so.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use portcullis_core::{SessionId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::evidence::{AnchorKind, FaultAt, WalkInput, key_map, paged, walk};
use crate::record::canonical_value;
use crate::{
    ChainHash, Checkpoint, CheckpointReason, EventStore, EvidenceReport, Fault, FaultKind, Head,
    PublicKeyRecord, RecordIter, RecordingError, Result, SessionSummary, SigningKey, StoredEvent,
    VerifyOptions, verify_store,
};

/// Format name written into every manifest.
pub const BUNDLE_FORMAT: &str = "portcullis-evidence-bundle-v1";
/// `events.jsonl`.
pub const EVENTS_FILE: &str = "events.jsonl";
/// `checkpoints.jsonl`.
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";
/// `public-keys.json`.
pub const KEYS_FILE: &str = "public-keys.json";
/// `events.ocsf.jsonl`.
pub const OCSF_FILE: &str = "events.ocsf.jsonl";
/// `manifest.json`.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// The verifiable bundle only.
    #[default]
    Jsonl,
    /// The bundle plus `events.ocsf.jsonl`.
    Ocsf,
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Records with `at >= since` (widened to a checkpoint; see the module docs).
    pub since: Option<Timestamp>,
    /// Records with `at < until` (widened to a checkpoint).
    pub until: Option<Timestamp>,
    /// Output format.
    pub format: ExportFormat,
}

/// Size and SHA-256 of one bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Its length in bytes.
    pub bytes: u64,
}

/// Counts of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BundleCounts {
    /// Records in `events.jsonl`.
    pub events: u64,
    /// Checkpoints in `checkpoints.jsonl`.
    pub checkpoints: u64,
    /// Keys in `public-keys.json`.
    pub public_keys: u64,
    /// Distinct sessions among the events.
    pub sessions: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The exporting tool and its version.
    pub tool: String,
    /// When the bundle was written.
    pub created_at: Timestamp,
    /// The chain id.
    pub chain: String,
    /// The requested time range (before widening).
    pub since: Option<Timestamp>,
    /// The requested time range (before widening).
    pub until: Option<Timestamp>,
    /// First exported `seq` (0 for an empty bundle).
    pub first_seq: u64,
    /// Last exported `seq` (0 for an empty bundle).
    pub last_seq: u64,
    /// What the first record links to: `first_seq - 1` and its hash.
    pub anchor: Head,
    /// The last record: `last_seq` and its hash.
    pub head: Head,
    /// Highest `seq` in the bundle covered by a checkpoint (0 if none).
    pub signed_through: u64,
    /// Counts.
    pub counts: BundleCounts,
    /// Every other file with its digest.
    pub files: BTreeMap<String, FileDigest>,
}

/// Writes a bundle of `store` to `out_dir` (created if needed; existing bundle
/// files are replaced). With `signer`, a range with no checkpoint at or after its
/// end gets one (the store is verified first, and the signer's public key is
/// stored). Returns the manifest.
pub fn export(
    store: &dyn EventStore,
    signer: Option<&SigningKey>,
    options: &ExportOptions,
    out_dir: &Path,
) -> Result<Manifest> {
    let chain = store.chain_id()?;
    let base_seq = store.base()?.map_or(0, |b| b.seq);
    let head = store.head()?;
    let (mut first, mut last) = select_range(store, base_seq, head, options)?;

    // Widen to checkpoints.
    let mut next_cp: Option<Checkpoint> = None;
    if first <= last {
        let mut before: Option<u64> = None;
        for cp in store.checkpoints(base_seq)? {
            let cp = cp?;
            if cp.seq < first {
                before = Some(cp.seq);
            } else if cp.seq >= last {
                next_cp = Some(cp);
                break;
            }
        }
        if let Some(b) = before {
            first = b.saturating_add(1);
        }
        match (&next_cp, signer) {
            (Some(cp), _) => last = cp.seq,
            (None, Some(key)) => {
                let report = verify_store(store, &VerifyOptions::default())?;
                if let Some(f) = report.fault {
                    return Err(RecordingError::Unverified(f.to_string()));
                }
                let at = store.get(last)?.ok_or_else(|| RecordingError::Corrupt {
                    seq: Some(last),
                    reason: "record vanished during export".into(),
                })?;
                store.put_public_key(&PublicKeyRecord::new(key.public_key()))?;
                let cp = Checkpoint::sign(key, &chain, at.head(), CheckpointReason::Export, None);
                store.put_checkpoint(&cp)?;
                store.sync()?;
            }
            (None, None) => {}
        }
    }
    let empty = first > last;

    std::fs::create_dir_all(out_dir)?;
    let mut files = BTreeMap::new();
    let mut counts = BundleCounts::default();
    let mut anchor = Head::GENESIS;
    let mut end = Head::GENESIS;

    // events.jsonl (and OCSF)
    {
        let mut events = HashingWriter::create(&out_dir.join(EVENTS_FILE))?;
        let mut ocsf = match options.format {
            ExportFormat::Ocsf => Some((
                HashingWriter::create(&out_dir.join(OCSF_FILE))?,
                crate::ocsf::OcsfMapper::new(),
            )),
            ExportFormat::Jsonl => None,
        };
        let mut sessions = HashSet::new();
        if !empty {
            for r in paged(store, first) {
                let r = r?;
                if r.seq > last {
                    break;
                }
                if r.seq == first {
                    anchor = Head {
                        seq: first.saturating_sub(1),
                        hash: r.prev_hash,
                    };
                }
                events.line(r.to_json_line().as_bytes())?;
                if let Some((w, mapper)) = ocsf.as_mut() {
                    if !mapper.knows(r.event.session)
                        && let Some(s) = store.session(r.event.session)?
                    {
                        mapper.learn(&s);
                    }
                    for v in mapper.map(&r) {
                        w.line(v.to_string().as_bytes())?;
                    }
                }
                sessions.insert(r.event.session);
                counts.events = counts.events.saturating_add(1);
                end = r.head();
            }
        }
        counts.sessions = sessions.len() as u64;
        files.insert(EVENTS_FILE.to_string(), events.finish()?);
        if let Some((mut w, mapper)) = ocsf {
            for v in mapper.finish() {
                w.line(v.to_string().as_bytes())?;
            }
            files.insert(OCSF_FILE.to_string(), w.finish()?);
        }
    }

    // checkpoints.jsonl
    let mut signed_through = 0;
    {
        let mut w = HashingWriter::create(&out_dir.join(CHECKPOINTS_FILE))?;
        if !empty {
            for cp in store.checkpoints(first.saturating_sub(1))? {
                let cp = cp?;
                if cp.seq > last {
                    break;
                }
                if cp.seq >= first {
                    signed_through = cp.seq;
                }
                w.line(cp.to_json_line()?.as_bytes())?;
                counts.checkpoints = counts.checkpoints.saturating_add(1);
            }
        }
        files.insert(CHECKPOINTS_FILE.to_string(), w.finish()?);
    }

    // public-keys.json
    {
        let keys = store.public_keys()?;
        counts.public_keys = keys.len() as u64;
        let mut w = HashingWriter::create(&out_dir.join(KEYS_FILE))?;
        let text = serde_json::to_string_pretty(&keys)
            .map_err(|e| RecordingError::Encode(e.to_string()))?;
        w.line(text.as_bytes())?;
        files.insert(KEYS_FILE.to_string(), w.finish()?);
    }

    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        tool: format!("portcullis-recording {}", env!("CARGO_PKG_VERSION")),
        created_at: Timestamp::now(),
        chain,
        since: options.since,
        until: options.until,
        first_seq: if empty { 0 } else { first },
        last_seq: if empty { 0 } else { end.seq },
        anchor,
        head: end,
        signed_through,
        counts,
        files,
    };
    let mut w = HashingWriter::create(&out_dir.join(MANIFEST_FILE))?;
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| RecordingError::Encode(e.to_string()))?;
    w.line(text.as_bytes())?;
    w.finish()?;
    File::open(out_dir)?.sync_all()?;
    Ok(manifest)
}

/// The `seq` range `[first, last]` of the records in the time range (`first > last`
/// when there is none).
fn select_range(
    store: &dyn EventStore,
    base_seq: u64,
    head: Head,
    options: &ExportOptions,
) -> Result<(u64, u64)> {
    let start = base_seq.saturating_add(1);
    let mut first = None;
    let mut last = head.seq;
    for r in paged(store, start) {
        let r = r?;
        if first.is_none() {
            if options.since.is_none_or(|s| r.event.at >= s) {
                first = Some(r.seq);
            } else {
                continue;
            }
        }
        match options.until {
            Some(u) if r.event.at >= u => {
                last = r.seq.saturating_sub(1);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    Ok(match first {
        Some(f) => (f, last),
        None => (1, 0),
    })
}

/// A file written line by line while its SHA-256 is computed.
struct HashingWriter {
    file: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
}

impl HashingWriter {
    fn create(path: &Path) -> Result<Self> {
        Ok(Self {
            file: BufWriter::new(File::create(path)?),
            hash: Sha256::new(),
            bytes: 0,
        })
    }

    fn line(&mut self, bytes: &[u8]) -> Result<()> {
        for part in [bytes, b"\n"] {
            self.file.write_all(part)?;
            self.hash.update(part);
            self.bytes = self.bytes.saturating_add(part.len() as u64);
        }
        Ok(())
    }

    fn finish(self) -> Result<FileDigest> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| RecordingError::Storage(e.to_string()))?;
        file.sync_all()?;
        Ok(FileDigest {
            sha256: hex::encode(self.hash.finalize()),
            bytes: self.bytes,
        })
    }
}

/// An exported bundle, opened for reading.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
}

impl Bundle {
    /// Opens the bundle in `dir` (reads the manifest only).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RecordingError::Bundle(format!("{}: {e}", path.display())))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| RecordingError::Bundle(format!("{}: {e}", path.display())))?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(RecordingError::Bundle(format!(
                "unknown bundle format {:?}",
                manifest.format
            )));
        }
        Ok(Self { dir, manifest })
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The records of `events.jsonl`, in file order, read lazily. A line that does
    /// not parse is a [`RecordingError::Corrupt`] item.
    pub fn records(&self) -> Result<RecordIter<'static>> {
        read_records(&self.dir)
    }

    /// The records of one session, in order.
    pub fn session_records(&self, id: SessionId) -> Result<RecordIter<'static>> {
        Ok(Box::new(self.records()?.filter(move |r| {
            r.as_ref().map_or(true, |r| r.event.session == id)
        })))
    }

    /// A summary of one session, folded from the bundle's records.
    pub fn session(&self, id: SessionId) -> Result<Option<SessionSummary>> {
        let mut summary: Option<SessionSummary> = None;
        for r in self.session_records(id)? {
            let r = r?;
            match summary.as_mut() {
                Some(s) => {
                    s.apply(&r.event, r.seq);
                }
                None => summary = Some(SessionSummary::start(&r.event, r.seq)),
            }
        }
        Ok(summary)
    }

    /// The checkpoints of `checkpoints.jsonl`.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let path = self.dir.join(CHECKPOINTS_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RecordingError::Bundle(format!("{}: {e}", path.display())))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    RecordingError::Bundle(format!("checkpoints.jsonl line {}: {e}", i + 1))
                })
            })
            .collect()
    }

    /// The keys of `public-keys.json`.
    pub fn public_keys(&self) -> Result<Vec<PublicKeyRecord>> {
        let path = self.dir.join(KEYS_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RecordingError::Bundle(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| RecordingError::Bundle(format!("{}: {e}", path.display())))
    }

    fn file_fault(&self) -> Result<Option<Fault>> {
        for (name, want) in &self.manifest.files {
            let path = self.dir.join(name);
            let bytes = std::fs::read(&path)
                .map_err(|e| RecordingError::Bundle(format!("{}: {e}", path.display())))?;
            let got = hex::encode(Sha256::digest(&bytes));
            if got != want.sha256 || bytes.len() as u64 != want.bytes {
                return Ok(Some(Fault {
                    kind: FaultKind::Altered,
                    at: FaultAt::Bundle,
                    seq: 0,
                    detail: format!(
                        "{name}: SHA-256 {got} ({} bytes) differs from the manifest's {} ({} bytes)",
                        bytes.len(),
                        want.sha256,
                        want.bytes
                    ),
                }));
            }
        }
        Ok(None)
    }
}

/// Parses one `events.jsonl` line. The hash is computed over the canonical form
/// of the `event` object, so any JSON-equivalent spelling of a line verifies.
fn parse_line(line: &str) -> std::result::Result<StoredEvent, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("no {k}"))
    };
    let hash = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no {k}"))
            .and_then(|s| ChainHash::from_hex(s).map_err(|e| e.to_string()))
    };
    let event_value = v.get("event").ok_or("no event")?;
    let canonical = canonical_value(event_value).map_err(|e| e.to_string())?;
    let event = serde_json::from_value(event_value.clone()).map_err(|e| format!("event: {e}"))?;
    Ok(StoredEvent {
        seq: num("seq")?,
        session_seq: num("session_seq")?,
        prev_hash: hash("prev_hash")?,
        hash: hash("hash")?,
        event,
        canonical,
    })
}

/// Verifies a bundle offline: the records from the anchor the manifest names (a
/// range that starts mid-chain starts from its first record's `prev_hash`), every
/// checkpoint's signature and its match with the records, truncation against the
/// checkpoints and the manifest, and the SHA-256 of every file in the manifest.
pub fn verify_bundle(dir: impl AsRef<Path>, options: &VerifyOptions) -> Result<EvidenceReport> {
    let bundle = Bundle::open(dir)?;
    let m = &bundle.manifest;
    let mut warnings = Vec::new();
    let embedded = bundle.public_keys()?;
    let (keys, key_source) = key_map(options, &embedded, &mut warnings);
    let checkpoints = bundle.checkpoints()?;
    let mut sorted = checkpoints;
    sorted.sort_by_key(|c| c.seq);

    // The anchor: what the first record links to.
    let first_line = bundle.records()?.next().transpose();
    let (anchor_kind, anchor) = match first_line {
        Ok(Some(r)) => {
            let a = Head {
                seq: r.seq.saturating_sub(1),
                hash: r.prev_hash,
            };
            if a.seq == 0 {
                (AnchorKind::Genesis, a)
            } else {
                (AnchorKind::RangeStart, a)
            }
        }
        Ok(None) | Err(_) => (AnchorKind::RangeStart, m.anchor),
    };
    let dir = bundle.dir.clone();
    let exists = move |seq: u64| -> Result<bool> {
        for r in read_records(&dir)? {
            if let Ok(r) = r
                && r.seq == seq
            {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let genesis_ok = anchor_kind != AnchorKind::Genesis || anchor.hash == ChainHash::ZERO;
    let input = WalkInput {
        chain: Some(m.chain.clone()),
        anchor_kind,
        anchor,
        anchor_signed: anchor_kind == AnchorKind::Genesis && genesis_ok,
        keys,
        key_source,
        declared_head: (m.counts.events > 0).then_some(m.head),
        until_seq: None,
        exists_elsewhere: &exists,
    };
    let mut report = walk(
        input,
        bundle.records()?,
        sorted.into_iter().map(Ok),
        warnings,
    )?;
    if report.fault.is_none() && !genesis_ok {
        report.fault = Some(Fault {
            kind: FaultKind::Altered,
            at: FaultAt::Record,
            seq: 1,
            detail: "record 1 does not link to the zero hash".into(),
        });
    }
    if report.fault.is_none() && m.counts.events > 0 && anchor != m.anchor {
        report.fault = Some(if anchor.seq > m.anchor.seq {
            Fault {
                kind: FaultKind::Missing,
                at: FaultAt::Record,
                seq: m.first_seq,
                detail: format!(
                    "the manifest starts at seq {} but events.jsonl starts at seq {}",
                    m.first_seq,
                    anchor.seq.saturating_add(1)
                ),
            }
        } else {
            Fault {
                kind: FaultKind::Altered,
                at: FaultAt::Record,
                seq: anchor.seq.saturating_add(1),
                detail: "the first record's prev_hash differs from the manifest's anchor".into(),
            }
        });
    }
    if report.fault.is_none() {
        report.fault = bundle.file_fault()?;
    }
    if report.fault.is_none()
        && report.anchor_kind == AnchorKind::RangeStart
        && !report.anchor_signed
    {
        report.warnings.push(format!(
            "no checkpoint at seq {} signs the start of the range",
            report.anchor.seq
        ));
    }
    Ok(report)
}

fn read_records(dir: &Path) -> Result<RecordIter<'static>> {
    let path = dir.join(EVENTS_FILE);
    let file = File::open(&path)
        .map_err(|e| RecordingError::Bundle(format!("{}: {e}", path.display())))?;
    let mut line_no = 0u64;
    let iter = BufReader::new(file).lines().map(move |line| {
        line_no = line_no.saturating_add(1);
        let line = line.map_err(|e| RecordingError::Bundle(format!("events.jsonl: {e}")))?;
        parse_line(&line).map_err(|reason| RecordingError::Corrupt {
            seq: None,
            reason: format!("events.jsonl line {line_no}: {reason}"),
        })
    });
    Ok(Box::new(iter))
}
