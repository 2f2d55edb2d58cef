//! # portcullis-identity
//!
//! Turns a credential into a verified [`portcullis_core::Identity`].
//!
//! - **JWTs** from configured issuers: algorithms pinned per issuer (never taken from the token;
//!   `none` is never accepted), `iss`/`aud`/`exp`/`nbf` checked with a small leeway, keys from an
//!   HMAC secret, PEM public keys (RSA, EC P-256/P-384, Ed25519) or a JWKS file or URL with
//!   `kid` lookup, periodic refresh and rate-limited refresh on unknown `kid`s.
//! - **API keys** `pk_<id>_<secret>`, stored only as salted HMAC-SHA256 hashes
//!   ([`generate_api_key`], [`hash_api_key`]).
//! - **Development tokens** minted by a local [`DevSigner`] whose issuer is verified like any other.
//! - [`AuthLayer`], a tower layer that authenticates HTTP requests.
//!
//! [`Authenticator::authenticate`] is the single entry point; every failure is an
//! [`IdentityError`] that says what was wrong without repeating the credential.
//!
//! ```
//! use std::time::Duration;
//! use portcullis_identity::{Authenticator, DevSignerConfig, IdentityConfig, IdentityError, generate_api_key};
//! use portcullis_core::AuthMethod;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let key = generate_api_key("ci")?;
//! let config: IdentityConfig = toml::from_str(&format!(r#"
//!     [dev_signer]
//!     issuer = "portcullis-dev"
//!     audience = "portcullis"
//!     secret = "a development secret of 32+ bytes"
//!
//!     [[api_keys]]
//!     id = "ci"
//!     hash = "{}"
//!     subject = "ci-bot"
//!     groups = ["deployers"]
//! "#, key.hash)).unwrap();
//! let auth = Authenticator::from_config(&config).await?;
//!
//! let token = auth.mint_dev_token("alice", &["dba".into()], Duration::from_secs(600))?;
//! let alice = auth.authenticate(token.expose()).await?;
//! assert_eq!((alice.subject.as_str(), alice.method), ("alice", AuthMethod::Jwt));
//! assert!(alice.in_group("dba"));
//!
//! let bot = auth.authenticate(key.key.expose()).await?;
//! assert_eq!((bot.subject.as_str(), bot.method), ("ci-bot", AuthMethod::ApiKey));
//!
//! let err = auth.authenticate("pk_ci_wrong").await.unwrap_err();
//! assert!(matches!(err, IdentityError::UnknownApiKey));
//! # Ok::<(), IdentityError>(()) }).unwrap();
//! ```

mod apikey;
mod authenticator;
mod config;
mod dev;
mod error;
mod jwt;
mod keys;
mod layer;
pub mod verified;

pub use apikey::{
    API_KEY_PREFIX, GeneratedApiKey, generate_api_key, hash_api_key, verify_api_key_hash,
};
pub use authenticator::Authenticator;
pub use config::{ApiKeyConfig, DevSignerConfig, IdentityConfig, IssuerConfig, PublicKeyConfig};
pub use dev::DevSigner;
pub use error::IdentityError;
pub use jsonwebtoken::Algorithm;
pub use keys::JwksStatus;
pub use layer::{AuthLayer, AuthService, RefusalHook};
