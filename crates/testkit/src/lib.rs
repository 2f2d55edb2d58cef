//! # portcullis-testkit
//!
//! Real services for Portcullis integration tests and benches, started on
//! `127.0.0.1` and cleaned up on drop. Use it from `[dev-dependencies]`.
//!
//! - [`PgCluster`]: a private PostgreSQL cluster (`initdb` into a temp dir, a free port,
//!   SCRAM by default, per-user `md5` / `password` / `trust` for testing each upstream
//!   auth method, every statement logged with its `application_name`). ~1–2 s to start.
//! - [`PgBouncer`]: Debian's `pgbouncer` in front of a cluster, transaction pooling by default.
//! - [`Psql`]: the real `psql` client, against a cluster or anything that speaks PostgreSQL.
//! - [`ScratchDb`]: a fresh database on the machine's shared server (`127.0.0.1:5432`).
//! - [`Sshd`]: the real OpenSSH server with its own host key and authorized keys
//!   ([`generate_keypair`] makes client keys with `ssh-keygen`).
//! - [`Process`]: a child process guard that kills on drop; [`free_port`], [`wait_for_tcp`].
//!
//! PostgreSQL binaries are taken from `$PG_BIN` or the highest version under
//! `/usr/lib/postgresql/*/bin`; PgBouncer from `$PGBOUNCER` or `/usr/sbin/pgbouncer`
//! (`apt-get install -y postgresql pgbouncer`). Both refuse to run as root, so when the tests
//! run as root they run as the `postgres` OS user ([`RunAs`]).
//!
//! Starting is blocking (a few seconds at most): call it at the start of a test, or in
//! `spawn_blocking` if the runtime must keep serving meanwhile. A process killed with
//! SIGKILL cannot run `Drop`, so an aborted test run may leave a server behind in `/tmp`.
//!
//! ```
//! use portcullis_testkit::{PgAuth, PgBouncer, PgBouncerOptions, PgCluster, PgOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pg = PgCluster::start(
//!     PgOptions::default()
//!         .user("legacy", "legacy-pw", PgAuth::Md5)
//!         .user("plain", "plain-pw", PgAuth::Password),
//! )?;
//! // The default user `portcullis_app` authenticates with SCRAM.
//! let url = pg.url("portcullis_app").ok_or("no such user")?;
//! println!("connect to {url} (or {})", pg.addr());
//! assert_eq!(pg.psql("SELECT 1")?, "1\n");
//!
//! let offset = pg.log_len();
//! pg.psql_client().application_name("portcullis-test-42").run("SELECT 2")?;
//! let log = pg.read_log_from(offset);
//! assert!(log.contains("app=portcullis-test-42") && log.contains("SELECT 2"));
//!
//! let bouncer = PgBouncer::start(&pg, PgBouncerOptions::default())?;
//! let through = pg.psql_client().port(bouncer.port()).run("SELECT 3")?;
//! assert_eq!(through, "3\n");
//! # Ok(()) }
//! // Dropping `bouncer` and `pg` stops both and removes their directories.
//! ```

mod error;
mod net;
mod pg;
mod pgbouncer;
mod process;
mod psql;
mod scratch_db;
mod sshd;

pub use error::{Result, TestkitError};
pub use net::{free_port, wait_for_tcp};
pub use pg::{ADMIN_USER, PgAuth, PgCluster, PgOptions, PgUser, pg_bin_dir};
pub use pgbouncer::{BouncerAuth, PgBouncer, PgBouncerOptions, PoolMode};
pub use process::{Process, RunAs, pid_alive};
pub use psql::Psql;
pub use scratch_db::{SHARED_PG_HOST, SHARED_PG_PORT, ScratchDb};
pub use sshd::{SshKeyPair, Sshd, SshdOptions, generate_keypair};
