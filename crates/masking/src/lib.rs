//! # portcullis-masking
//!
//! The masking engine of the Portcullis gateway: finds sensitive values in query
//! results, notices, terminal output and HTTP bodies, and rewrites them before they
//! reach the client or the recording.
//!
//! - **Detectors**: e-mail, payment card (Luhn), US SSN, phone, IBAN (mod-97), IPv4,
//!   IPv6, AWS access key IDs and secret keys, JWTs, PEM private keys, API tokens by
//!   prefix and `Bearer` credentials, plus custom regex and word-list detectors.
//! - **One pass**: byte-class and literal prefilters find candidate starts; one
//!   multi-pattern DFA runs only there; validators run only on candidate matches; the
//!   longest valid match wins, and a failed validation never hides a shorter valid one.
//! - **Strategies**: `redact` (`[EMAIL]`), `partial` (`**** **** **** 1234`), `token`
//!   (keyed HMAC, `tok_…`, equal inputs give equal tokens) and `null`.
//! - **Columns**: glob rules mask whole columns by name ([`Masker::plan_columns`]).
//! - **Streams**: [`StreamMasker`] masks values cut across chunks, with a bounded carry.
//! - **Gateway glue**: [`MaskHook`] (a `portcullis_core::OutputHook`) and
//!   [`MaskingEngine`] (a `portcullis_core::Masking`).
//!
//! ```
//! use portcullis_masking::{FieldAction, MaskReport, Masker, MaskingConfig};
//!
//! let config: MaskingConfig = serde_json::from_value(serde_json::json!({
//!     "detectors": { "email": "redact", "card": { "strategy": "partial", "keep_last": 4 } },
//!     "columns": [ { "pattern": "*ssn*", "strategy": "null" } ],
//! }))?;
//! let masker = Masker::new(&config)?;
//!
//! let mut report = MaskReport::new();
//! let text = masker.mask_str("mail bob@example.com, card 4111 1111 1111 1111", &mut report);
//! assert_eq!(text, "mail [EMAIL], card **** **** **** 1111");
//! assert_eq!(report.get("email"), 1);
//!
//! // Whole columns by name; other columns are scanned.
//! let plan = masker.plan_columns(&["customer_ssn", "note"]);
//! let mut ssn = b"123-45-6789".to_vec();
//! assert_eq!(plan.mask_field(0, &mut ssn, &mut report), FieldAction::Null);
//!
//! // Streams: a value cut between chunks is still masked.
//! let mut stream = masker.stream();
//! let mut out = Vec::new();
//! stream.push(b"contact: alice@exa", &mut out);
//! stream.push(b"mple.org\n", &mut out);
//! stream.finish(&mut out);
//! assert_eq!(out, b"contact: [EMAIL]\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
pub mod corpus;
mod detectors;
mod engine;
mod error;
mod glob;
mod hook;
mod masker;
mod report;
mod strategy;
mod stream;
pub mod validate;

pub use config::{
    ColumnRuleConfig, CustomDetectorConfig, MaskingConfig, StrategySpec, StrategyTable,
    ValidatorChoice,
};
pub use detectors::Builtin;
pub use engine::MAX_MATCH;
pub use error::MaskingError;
pub use hook::{MaskHook, MaskingEngine, mask_typed, oid};
pub use masker::{ColumnAction, ColumnPlan, FieldAction, Finding, Masker};
pub use report::MaskReport;
pub use strategy::Strategy;
pub use stream::StreamMasker;
