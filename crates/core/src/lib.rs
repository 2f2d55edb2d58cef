//! # portcullis-core
//!
//! The shared vocabulary of Portcullis and the per-command pipeline that every
//! protocol adapter drives. No I/O happens here.
//!
//! - [`Identity`], [`Target`], [`SessionContext`]: who reaches what.
//! - [`Command`], [`Decision`], [`Completion`], [`Event`]: what is decided and recorded.
//! - [`Secret`]: values that never print themselves.
//! - [`Error`] and [`Side`]: failures that say which side failed.
//! - [`Pipeline`]: `Record → Policy → Approval → Mask → Admit` as tower layers.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use portcullis_core::*;
//! use tower::{Service, ServiceExt};
//!
//! /// Keeps events in memory (the real sink is `portcullis-recording`).
//! #[derive(Default)]
//! struct Memory(Mutex<Vec<Event>>);
//! impl EventSink for Memory {
//!     fn record(&self, e: Event) -> BoxFuture<'static, Result<()>> {
//!         self.0.lock().unwrap().push(e);
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn submit(&self, e: Event) -> Result<()> {
//!         self.0.lock().unwrap().push(e);
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let sink = Arc::new(Memory::default());
//! let mut pipeline = Pipeline::new(sink.clone()).build();
//! let session = Arc::new(SessionContext {
//!     id: SessionId::new(),
//!     identity: Identity {
//!         subject: "alice".into(),
//!         groups: vec!["dba".into()],
//!         method: AuthMethod::Jwt,
//!         issuer: None,
//!         expires_at: None,
//!     },
//!     target: Arc::new(Target {
//!         name: "orders".into(),
//!         protocol: Protocol::Postgres,
//!         upstream: "127.0.0.1:5432".into(),
//!         allowed_groups: vec!["dba".into()],
//!     }),
//!     client_addr: None,
//!     opened_at: Timestamp::now(),
//! });
//! let command = Command::Sql { text: "SELECT 1".into(), via: SqlVia::Simple };
//! let mut response = pipeline
//!     .ready()
//!     .await?
//!     .call(CommandRequest::new(session, 1, command))
//!     .await?;
//! assert!(response.forward());
//! // ... the adapter forwards the command and streams its output through the hooks ...
//! response.hooks.finish(&mut Completion { rows_returned: 1, ..Default::default() });
//! let kinds: Vec<_> = sink.0.lock().unwrap().iter().map(|e| e.kind.name()).collect();
//! assert_eq!(kinds, ["command", "command_result"]);
//! # Ok::<(), Error>(()) }).unwrap();
//! ```

mod auth;
mod command;
mod decision;
mod error;
mod event;
mod identity;
mod listener;
mod output;
mod pipeline;
mod secret;
mod session;
mod target;
pub mod text;
mod time;

pub use auth::CredentialVerifier;
pub use command::{Command, SqlVia};
pub use decision::{Decision, Quorum, ReviewRequirement, Verdict};
pub use error::{Error, Result, Side};
pub use event::{CommandOutcome, Event, EventKind};
pub use identity::{AuthMethod, Identity};
pub use listener::serve_connections;
pub use output::{Column, Completion, FieldFormat, OutputHook, OutputHooks, TextKind};
pub use pipeline::{
    Admit, Approval, ApprovalLayer, Approver, BoxFuture, BoxPipeline, CommandPolicy,
    CommandRequest, CommandResponse, EventSink, Mask, MaskLayer, Masking, NoApprovals, NoMasking,
    Notifier, Pipeline, Policy, PolicyLayer, Record, RecordLayer, TargetAccessOnly,
};
pub use secret::Secret;

/// Rule id of decisions denying forwarding (SSH `direct-tcpip`, `tcpip-forward`, agent,
/// X11) because no policy rule allows it: forwarding is never allowed by a default.
pub const RULE_FORWARDING_DEFAULT: &str = "forwarding-default";
pub use session::{SessionContext, SessionId};
pub use target::{Protocol, Target};
pub use time::Timestamp;
