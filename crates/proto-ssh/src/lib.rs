//! # portcullis-proto-ssh
//!
//! The SSH adapter of Portcullis, built on russh: a server towards clients (OpenSSH
//! `ssh`, `scp`, CI jobs) and a client towards the target host.
//!
//! - **Login**: `ssh -p 2222 TARGET@gateway` (or `SUBJECT+TARGET@gateway`). Clients
//!   authenticate with an SSH public key mapped to an identity in configuration, an
//!   OpenSSH user certificate from a trusted CA (key id = subject, principals must name
//!   the target or the subject), or a JWT / API key typed as the password
//!   (keyboard-interactive or password), checked by a [`portcullis_core::CredentialVerifier`].
//! - **Upstream**: the gateway logs in with its own key or password for the target
//!   (the client never sees it) and checks the host key against pinned keys or
//!   fingerprints; a mismatch disconnects the client with a message naming both.
//! - **exec**: each command is a `Command::Exec` through the pipeline; a denied command
//!   never reaches the host: the client gets the rule on stderr and exit status 126.
//!   stdout and stderr stream back through the command's masking hooks chunk by chunk
//!   (held-back bytes are flushed when output goes idle and at EOF); the exit status is
//!   passed back and recorded as the completion tag (`exit-status 3`).
//! - **shell**: `Command::Shell { pty }` through the pipeline (policies can deny or ask
//!   for approval); PTY size, window changes and signals are forwarded; terminals are
//!   written as asciicast v2 files under `recordings_dir`, whose name and SHA-256 are
//!   recorded in the command's completion tag.
//! - **File transfer** (`sftp`, `scp`, `rsync`), when the target allows it, is a
//!   `Command::FileTransfer` through the pipeline; sftp (v3) and legacy scp streams are
//!   read as they pass and each file operation is recorded as a `file_operation` event.
//! - **Forwarding**: each `direct-tcpip` channel (`ssh -L`, `-W`, `-D`) is a
//!   `Command::Forward` decided with its destination, opened from the host and relayed
//!   with byte counts; denied unless a policy rule allows it.
//! - **Refused**: remote forwarding, agent and X11 forwarding, other subsystems.
//!
//! ```no_run
//! use std::sync::Arc;
//! use portcullis_core::{Pipeline, Protocol, Target};
//! use portcullis_proto_ssh::{SshGateway, SshSettings, SshUpstreamConfig};
//! # async fn run(sink: Arc<dyn portcullis_core::EventSink>) -> Result<(), Box<dyn std::error::Error>> {
//! let settings: SshSettings = toml::from_str(r#"
//!     host_key_file = "/etc/portcullis/ssh_host_ed25519_key"
//!     recordings_dir = "/var/lib/portcullis/casts"
//!     [[keys]]
//!     subject = "alice"
//!     groups = ["ops"]
//!     public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA0/y26KBsAOgNq+jlLYqHV3pbatz1DjDOsuaIvWnG/g alice"
//! "#)?;
//! let upstream: SshUpstreamConfig = toml::from_str(r#"
//!     address = "10.0.0.5:22"
//!     user = "deploy"
//!     private_key_file = "/etc/portcullis/keys/web1"
//!     host_keys = ["SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"]
//! "#)?;
//! let target = Target {
//!     name: "web1".into(),
//!     protocol: Protocol::Ssh,
//!     upstream: upstream.address.clone(),
//!     allowed_groups: vec!["ops".into()],
//! };
//! let gateway = SshGateway::builder(settings, None, Pipeline::new(sink))
//!     .target(target, upstream)?
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:2222").await?;
//! let (_stop, stop_rx) = tokio::sync::watch::channel(false);
//! gateway.serve(listener, stop_rx).await?;
//! # Ok(()) }
//! ```
//!
//! A runnable check of the configuration types:
//!
//! ```
//! use portcullis_proto_ssh::HostKeyPin;
//! let pin = HostKeyPin::parse(
//!     "web1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA0/y26KBsAOgNq+jlLYqHV3pbatz1DjDOsuaIvWnG/g",
//! )?;
//! assert!(pin.fingerprint.starts_with("SHA256:"));
//! assert_eq!(HostKeyPin::parse(&pin.fingerprint)?, pin);
//! # Ok::<(), portcullis_proto_ssh::SshError>(())
//! ```

mod cast;
mod channel;
mod config;
mod conn;
mod error;
mod forward;
mod scp;
mod server;
mod sftp;
mod transfer;
mod upstream;

pub use cast::CastFile;
pub use channel::{EXIT_DENIED, EXIT_FAILED};
pub use config::{HostKeyPin, KeyIdentityConfig, SshSettings, SshUpstreamConfig, UserCaConfig};
pub use error::SshError;
pub use server::{SshGateway, SshGatewayBuilder};

/// The ciphers the gateway offers on both hops, most preferred first: russh's defaults plus
/// `aes128-gcm@openssh.com`, which OpenSSH offers and some hardened hosts require.
pub const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// russh's default algorithm preferences with [`CIPHERS`].
fn preferred() -> russh::Preferred {
    russh::Preferred {
        cipher: std::borrow::Cow::Borrowed(CIPHERS),
        ..russh::Preferred::default()
    }
}
