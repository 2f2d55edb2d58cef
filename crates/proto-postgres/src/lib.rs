//! # portcullis-proto-postgres
//!
//! The PostgreSQL adapter of Portcullis. Clients (psql, pgbench, drivers) connect to
//! the gateway as if it were their database:
//!
//! - the **database name** selects the target, the **password** carries a JWT or API
//!   key, checked by a [`portcullis_core::CredentialVerifier`];
//! - the gateway opens the upstream with the target's own credential (SCRAM-SHA-256,
//!   MD5 or cleartext, optionally over TLS), which the client never sees;
//! - every statement execution (simple `Query`, extended `Execute`) goes through the
//!   shared pipeline (record, policy, approval, mask) before it is forwarded; refused
//!   statements never reach the database and the client gets an `ErrorResponse`
//!   (SQLSTATE 42501) naming the rule;
//! - results stream back through the command's output hooks; nothing is buffered
//!   beyond one message;
//! - cancel requests use gateway-issued keys mapped to the upstream's;
//! - the upstream session carries `application_name = "portcullis <session> <subject>"`
//!   and the settings `portcullis.session_id` / `portcullis.subject`, so the
//!   database's own logs match gateway sessions.
//!
//! Messages are framed by this crate and decoded/encoded with pgwire's codecs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use portcullis_core::{Pipeline, Protocol, Target};
//! use portcullis_proto_postgres::{ListenerSettings, PostgresGateway, UpstreamConfig};
//! # async fn run(verifier: Arc<dyn portcullis_core::CredentialVerifier>,
//! #              sink: Arc<dyn portcullis_core::EventSink>) -> Result<(), Box<dyn std::error::Error>> {
//! let upstream: UpstreamConfig = toml::from_str(r#"
//!     address = "127.0.0.1:5432"
//!     database = "orders"
//!     user = "app"
//!     password_env = "ORDERS_PASSWORD"
//! "#)?;
//! let target = Target {
//!     name: "orders".into(),
//!     protocol: Protocol::Postgres,
//!     upstream: upstream.address.clone(),
//!     allowed_groups: vec!["dba".into()],
//! };
//! let gateway = PostgresGateway::builder(ListenerSettings::default(), verifier, Pipeline::new(sink))
//!     .target(target, upstream)?
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6432").await?;
//! let (_stop, stop_rx) = tokio::sync::watch::channel(false);
//! gateway.serve(listener, stop_rx).await?;
//! # Ok(()) }
//! ```

mod cancel;
mod config;
mod conn;
mod error;
mod frame;
mod messages;
mod relay;
mod server;
mod session;
mod stream;
pub mod tls;
mod upstream;

pub use config::{ListenerSettings, UpstreamConfig, UpstreamTlsMode};
pub use error::PgError;
pub use frame::MAX_STARTUP_PACKET;
pub use messages::error_fields;
pub use server::{PostgresGateway, PostgresGatewayBuilder};
pub use stream::Stream;
