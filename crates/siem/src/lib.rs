//! # portcullis-siem
//!
//! Streaming export of the Portcullis record to SIEMs (see `docs/siem.md`).
//!
//! Each configured sink ([`SinkConfig`], `[[sinks]]` in the gateway
//! configuration) runs as a background task of a [`SinkSet`]. The task tails
//! the event store from its persisted [`Cursor`] (the last delivered global
//! sequence, in a small file replaced atomically), sends bounded batches and
//! advances the cursor only after the sink acknowledged them:
//!
//! - `file`: JSON lines appended and synced (`fdatasync`); rotation by size and
//!   reopen when the file was renamed or removed by an external rotation.
//! - `syslog`: RFC 5424 messages with octet-counting framing (RFC 6587) over TCP
//!   or TLS; acknowledged when written and flushed to the connection.
//! - `http`: a POST per batch (JSON lines or one JSON array); acknowledged by a 2xx status.
//!
//! Lines are in the Portcullis export form ([`Format::Portcullis`], the record
//! with its hashes) or OCSF 1.1 ([`Format::Ocsf`], mapped by
//! [`portcullis_recording::ocsf`]). Delivery is at-least-once, in chain order,
//! without gaps; recording never waits on a sink. Records that retention pruned
//! before a sink delivered them are counted in [`SinkStatus::missed_pruned`] and
//! logged as a warning.

mod config;
mod cursor;
mod error;
mod file;
pub mod format;
mod http;
mod runner;
pub mod syslog;
mod tls;

pub use config::{Format, HttpBody, MAX_BATCH_SIZE, SinkConfig, SinkKind, Transport, validate_all};
pub use cursor::{Cursor, CursorFile};
pub use error::{Result, SiemError};
pub use runner::{SinkMonitor, SinkSet, SinkState, SinkStatus};
