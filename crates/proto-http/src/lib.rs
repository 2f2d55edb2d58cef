//! # portcullis-proto-http
//!
//! The HTTP API gateway adapter of Portcullis.
//!
//! - [`HttpGateway`]: authenticates each request with [`portcullis_identity::AuthLayer`]
//!   (the caller's credential never goes upstream), routes it by host and/or path prefix to a
//!   target, decides it through the core [`portcullis_core::Pipeline`]
//!   (Record → Policy → Approval → Mask), injects the target's own credential (bearer, basic,
//!   a named header or an mTLS client certificate), forwards it over pooled HTTP/1.1 or HTTP/2
//!   connections with timeouts and safe retries, and streams the response back through the
//!   JSON masker and the pipeline's output hooks into the recording. WebSocket and other
//!   upgrades are passed through and recorded as a stream. With `workers = N` it serves on N
//!   threads of its own (a single-threaded runtime and upstream pools each, one shared
//!   listener); without, on the caller's runtime.
//! - [`HttpPolicy`]: method, path (`/api/v1/*/pods/**`, `/users/{id}`), query and header rules
//!   as a [`portcullis_core::CommandPolicy`].
//! - [`JsonMasker`]: a streaming JSON masker with bounded state (`$.users[*].email`, `**.password`).
//! - [`GuardLayer`]: the same flow as a tower layer around an in-process axum service.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use portcullis_core::*;
//! use portcullis_identity::{Authenticator, IdentityConfig};
//! use portcullis_proto_http::{HttpGateway, HttpGatewayConfig};
//!
//! /// Keeps events in memory (the real sink is `portcullis_recording::Recorder`).
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
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! // An upstream API that echoes who it thinks is calling.
//! let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let upstream_addr = upstream.local_addr().unwrap();
//! let app = axum::Router::new().route(
//!     "/users/{id}",
//!     axum::routing::get(|headers: axum::http::HeaderMap| async move {
//!         let auth = headers["authorization"].to_str().unwrap().to_owned();
//!         ([("content-type", "application/json")], format!(r#"{{"auth":"{auth}","email":"a@b.c"}}"#))
//!     }),
//! );
//! tokio::spawn(async move { axum::serve(upstream, app).await });
//!
//! let config = HttpGatewayConfig::from_toml(&format!(r#"
//!     [[routes]]
//!     path_prefix = "/api"
//!     strip_prefix = true
//!     target = "users"
//!
//!     [targets.users]
//!     upstream = "http://{upstream_addr}"
//!     allowed_groups = ["dev"]
//!     credential = {{ type = "bearer", token = {{ value = "upstream-token" }} }}
//!     mask = {{ json = ["$.email"] }}
//!     policy = {{ default = "deny", rules = [
//!         {{ id = "read-users", methods = ["GET"], paths = ["/users/{{id}}"], action = "allow" }},
//!     ] }}
//! "#))?;
//! let identity: IdentityConfig = toml::from_str(r#"
//!     [dev_signer]
//!     issuer = "portcullis-dev"
//!     audience = "portcullis"
//!     secret = "a development secret of 32+ bytes"
//! "#).unwrap();
//! let auth = Authenticator::from_config(&identity).await.unwrap();
//! let token = auth.mint_dev_token("alice", &["dev".into()], std::time::Duration::from_secs(60)).unwrap();
//! let sink = Arc::new(Memory::default());
//! let gateway = HttpGateway::new(config, auth, Pipeline::new(sink.clone()))?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let addr = listener.local_addr().unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(gateway.serve(listener, async { let _ = stopped.await; }));
//!
//! // A plain HTTP/1.1 exchange over a socket.
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
//! s.write_all(format!("GET /api/users/7 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n", token.expose()).as_bytes()).await.unwrap();
//! let mut answer = String::new();
//! s.read_to_string(&mut answer).await.unwrap();
//! assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
//! assert!(answer.contains(r#""auth":"Bearer upstream-token""#)); // the gateway's credential
//! assert!(answer.contains(r#""email":"[masked]""#));
//!
//! stop.send(()).unwrap();
//! server.await.unwrap()?;
//! let kinds: Vec<_> = sink.0.lock().unwrap().iter().map(|e| e.kind.name()).collect();
//! assert_eq!(kinds, ["session_opened", "command", "command_result", "session_closed"]);
//! # Ok::<(), portcullis_proto_http::HttpError>(()) }).unwrap();
//! ```

mod body;
mod config;
mod error;
mod gateway;
mod guard;
pub mod jsonmask;
mod policy;
mod session;
mod upstream;

pub use config::{
    CredentialConfig, HttpGatewayConfig, HttpTargetConfig, ListenerTlsConfig, MaskConfig,
    NEVER_RECORDED, RouteConfig, SecretSource,
};
pub use error::HttpError;
pub use gateway::HttpGateway;
pub use guard::{GuardLayer, GuardService, GuardSettings};
pub use jsonmask::{JsonMasker, JsonPaths};
pub use policy::{
    CompiledHttpPolicy, HttpAction, HttpPolicy, HttpPolicyConfig, HttpRuleConfig, PathPattern,
    path_segments, with_request_headers,
};
pub use session::ConnectionSessions;
