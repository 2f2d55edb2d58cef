//! # portcullis-recording
//!
//! The append-only, tamper-evident session record of Portcullis.
//!
//! - [`EventStore`]: the store trait (object safe); [`SledStore`] is the embedded backend,
//!   [`PgStore`] the shared PostgreSQL backend (one chain per gateway).
//! - [`StoredEvent`]: a stored event with its global sequence number, its session
//!   sequence, the previous record's hash and its own SHA-256 hash
//!   (see [`record`] for the exact encoding).
//! - [`Recorder`]: the gateway's [`portcullis_core::EventSink`]; a bounded queue
//!   into one writer thread that chains, batches and syncs events (group commit),
//!   in `strict` or `batched` [`Durability`], and fails closed.
//! - Queries: [`EventStore::list_sessions`], [`EventStore::session_events`],
//!   [`EventStore::scan`], [`EventStore::head`]; [`verify_chain`] checks every link.
//! - Evidence (see `docs/evidence.md`): [`Recorder::open`] signs the chain head
//!   with an Ed25519 [`SigningKey`] ([`Checkpoint`]s); [`verify_store`] and
//!   [`verify_bundle`] check the chain, the checkpoints and their signatures and
//!   name the first [`Fault`]; [`export`] writes an offline-verifiable bundle
//!   (optionally with [`ocsf`] events); [`report()`] builds the NIST SP 800-53
//!   evidence report; [`search::search`] finds commands; [`prune`] applies
//!   retention behind a signed tombstone.
//!
//! ```
//! use portcullis_core::{Event, EventKind, SessionId};
//! use portcullis_recording::{
//!     ChainHash, Durability, ExportOptions, Recorder, RecordingConfig, RecordingError,
//!     StoredEvent, VerifyOptions, export, verify_bundle, verify_chain,
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("portcullis-doc-{}", std::process::id()));
//! let mut config = RecordingConfig::new(&dir);
//! config.durability = Durability::Strict;
//! let recorder = Recorder::open(&config)?;
//!
//! let session = SessionId::new();
//! recorder
//!     .record(Event::now(session, EventKind::SessionClosed { reason: "done".into(), commands: 0 }))
//!     .await?; // on disk when this returns
//!
//! let store = recorder.store().clone();
//! let records: Vec<StoredEvent> = store.session_events(session)?.collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 1);
//! assert_eq!(records[0].prev_hash, ChainHash::ZERO);
//! assert!(verify_chain(store.as_ref())?.is_intact());
//!
//! recorder.shutdown().await?; // signs the head (reason `shutdown`)
//!
//! // Export a bundle and verify it offline with the gateway's public key.
//! let key = recorder.public_key().cloned().expect("Recorder::open signs");
//! let bundle = dir.join("bundle");
//! let manifest = export(store.as_ref(), None, &ExportOptions::default(), &bundle)?;
//! assert_eq!(manifest.signed_through, manifest.last_seq);
//! let options = VerifyOptions { trusted_keys: vec![key], until_seq: None };
//! assert!(verify_bundle(&bundle, &options)?.is_intact());
//! # drop(store);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), RecordingError>(()) }).unwrap();
//! ```

mod backend;
mod canonical;
mod config;
#[cfg(feature = "discard-store")]
pub mod discard;
mod error;
mod journal;
mod numbered_files;
pub mod pg_store;
pub mod record;
mod record_log;
mod recorder;
pub mod sled_format;
mod sled_store;
mod store;
#[cfg(test)]
mod test_events;
mod verify;

// Evidence: signed checkpoints, verification, bundles, OCSF, reports, retention.
pub mod bundle;
pub mod checkpoint;
pub mod evidence;
pub mod ocsf;
pub mod report;
pub mod retention;
pub mod search;
pub mod signing;

pub use backend::open_store;
pub use config::{
    Durability, MAX_FLUSH_INTERVAL, MAX_QUEUE_CAPACITY, RecordingConfig, RetentionConfig,
    StoreLocation, WriterPriority,
};
pub use error::{RecordingError, Result};
pub use pg_store::{ChainInfo, PgStore};
pub use record::{ChainHash, Head, StoredEvent, canonical_json, record_hash};
pub use recorder::{Recorder, RecorderOptions, RecorderStats};
pub use sled_store::SledStore;
pub use store::{
    Appended, CheckpointIter, EventStore, PruneStats, RecordIter, SessionFilter, SessionOutcome,
    SessionSummary,
};
pub use verify::{BadRecord, ChainProblem, VerifyReport, verify_chain};

pub use bundle::{Bundle, ExportFormat, ExportOptions, Manifest, export, verify_bundle};
pub use checkpoint::{Checkpoint, CheckpointReason};
pub use evidence::{EvidenceReport, Fault, FaultKind, VerifyOptions, verify_store};
pub use recorder::CheckpointPolicy;
pub use report::{Report, report};
pub use retention::{RetentionPolicy, prune};
pub use signing::{PublicKey, PublicKeyRecord, SigningKey, public_key_info};
