//! Recording configuration.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::Secret;
use serde::{Deserialize, Serialize};

use crate::pg_store::{parse_url, redacted_url, validate_chain_name};
use crate::{RecordingError, Result};

/// When `record()` resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Once the batch holding the event is flushed and synced to disk.
    #[default]
    Strict,
    /// Once the event is queued; the writer syncs within `flush_interval`
    /// and after at most `flush_events` events.
    Batched,
}

/// The scheduling priority of the recorder's writer thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriterPriority {
    /// The same priority as the threads that serve connections.
    #[default]
    Normal,
    /// Linux `SCHED_IDLE`: the writer runs when a core would otherwise be idle, so it
    /// does not take a core from a connection at the wrong moment. Under full CPU load
    /// it gets little time until its queue fills and `record()` waits for room; in
    /// batched mode `flush_interval` then becomes a target rather than a bound. Ignored,
    /// with a warning, where the platform does not support it.
    Idle,
}

/// The `[recording]` section of the gateway configuration.
///
/// The store is either the embedded sled directory `path` or a shared
/// PostgreSQL database `store` (`postgres://user@host/db`), never both; with
/// `store` the gateway writes its own chain `chain` (default: the host name) and
/// `signing_key` is required.
///
/// ```toml
/// path = "/var/lib/portcullis/recording"
/// durability = "batched"    # or "strict" (default)
/// flush_interval = "50ms"   # batched: longest time an acknowledged event stays unsynced
/// flush_events = 1000       # batched: most events between two syncs
/// queue_capacity = 4096     # events admitted by record() and not yet written
/// writer_priority = "normal"  # or "idle": the writer runs only on otherwise idle CPU
/// signing_key = "/etc/portcullis/signing-key.pem"  # default: <path>/signing-key.pem
/// checkpoint_events = 1000  # sign the chain head at least every this many events
/// checkpoint_interval = "10s"  # ... and this often while events arrive
///
/// [recording.retention]     # optional; nothing is pruned without it
/// max_age = "400days"
/// max_records = 50000000
/// interval = "1h"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Directory of the sled store (empty when `store` is set).
    #[serde(default, skip_serializing_if = "path_is_empty")]
    pub path: PathBuf,
    /// A shared PostgreSQL store (`postgres://user[:password]@host[:port]/db`);
    /// the URL is a secret (it may carry a password) and is never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Secret<String>>,
    /// The name of this gateway's chain in a shared store (default: the host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// When `record()` resolves.
    #[serde(default)]
    pub durability: Durability,
    /// Batched mode: the writer syncs at the latest this long after an event was queued.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Batched mode: the writer syncs at the latest after this many unsynced events.
    #[serde(default = "default_flush_events")]
    pub flush_events: usize,
    /// Events admitted by `record()` (and completions) that are not yet written;
    /// `record()` waits for room beyond this.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// The writer thread's scheduling priority.
    #[serde(default)]
    pub writer_priority: WriterPriority,
    /// Ed25519 key that signs checkpoints (PKCS#8 PEM, created with mode 0600 on first
    /// start); default `signing-key.pem` inside `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// The recorder signs the chain head after at most this many events.
    #[serde(default = "default_checkpoint_events")]
    pub checkpoint_events: u64,
    /// The recorder signs the chain head at least this often while events arrive.
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// What to prune, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionConfig>,
}

/// The `[recording.retention]` section: records older than `max_age` and records
/// beyond the newest `max_records` are pruned, behind a signed tombstone checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Prune records whose event time is older than this.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
    /// Keep at most this many records (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records: Option<u64>,
    /// How often the recorder applies the policy.
    #[serde(default = "default_retention_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn path_is_empty(p: &std::path::Path) -> bool {
    p.as_os_str().is_empty()
}

/// Where the records of a configuration go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded sled store in this directory.
    Sled(PathBuf),
    /// Chain `chain` of a shared PostgreSQL store.
    Postgres {
        /// The connection URL (secret: it may hold a password).
        url: Secret<String>,
        /// This gateway's chain.
        chain: String,
    },
}

/// The host name, as the default chain name of a shared store.
fn host_name() -> Option<String> {
    let from_file = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
}

fn default_retention_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_checkpoint_events() -> u64 {
    1000
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_flush_interval() -> Duration {
    Duration::from_millis(50)
}

fn default_flush_events() -> usize {
    1000
}

fn default_queue_capacity() -> usize {
    4096
}

/// Largest accepted `queue_capacity`.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// Largest accepted `flush_interval`.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

impl RecordingConfig {
    /// The defaults, storing under `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            store: None,
            chain: None,
            durability: Durability::default(),
            flush_interval: default_flush_interval(),
            flush_events: default_flush_events(),
            queue_capacity: default_queue_capacity(),
            writer_priority: WriterPriority::default(),
            signing_key: None,
            checkpoint_events: default_checkpoint_events(),
            checkpoint_interval: default_checkpoint_interval(),
            retention: None,
        }
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RecordingError::Config(m));
        match &self.store {
            None => {
                if self.path.as_os_str().is_empty() {
                    return bad(
                        "set path (the embedded store's directory) or store (a postgres:// URL)"
                            .into(),
                    );
                }
                if self.chain.is_some() {
                    return bad("chain names a chain of a PostgreSQL store; set store too".into());
                }
            }
            #[cfg(feature = "discard-store")]
            Some(url) if url.expose() == crate::discard::DISCARD_URL => {}
            Some(url) => {
                let url = url.expose();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return bad("store must be a postgres:// or postgresql:// URL (use path for the embedded store)".into());
                }
                parse_url(url).map_err(|e| RecordingError::Config(format!("store: {e}")))?;
                if !self.path.as_os_str().is_empty() {
                    return bad(
                        "set either path (embedded store) or store (PostgreSQL), not both".into(),
                    );
                }
                if self.signing_key.is_none() {
                    return bad("signing_key is required with a PostgreSQL store: each gateway signs its own chain with a key kept on its own host".into());
                }
                self.location()?;
            }
        }
        if self.flush_interval < Duration::from_millis(1)
            || self.flush_interval > MAX_FLUSH_INTERVAL
        {
            return bad(format!(
                "flush_interval must be between 1ms and {}, not {}",
                humantime_serde::re::humantime::format_duration(MAX_FLUSH_INTERVAL),
                humantime_serde::re::humantime::format_duration(self.flush_interval)
            ));
        }
        if self.flush_events == 0 || self.flush_events > MAX_QUEUE_CAPACITY {
            return bad(format!(
                "flush_events must be between 1 and {MAX_QUEUE_CAPACITY}, not {}",
                self.flush_events
            ));
        }
        if self.queue_capacity == 0 || self.queue_capacity > MAX_QUEUE_CAPACITY {
            return bad(format!(
                "queue_capacity must be between 1 and {MAX_QUEUE_CAPACITY}, not {}",
                self.queue_capacity
            ));
        }
        if self.checkpoint_events == 0 {
            return bad("checkpoint_events must be at least 1".into());
        }
        if self.checkpoint_interval < Duration::from_millis(10) {
            return bad("checkpoint_interval must be at least 10ms".into());
        }
        if let Some(r) = &self.retention {
            if r.max_age.is_none() && r.max_records.is_none() {
                return bad("retention needs max_age or max_records".into());
            }
            if r.max_records == Some(0) {
                return bad("retention.max_records must be at least 1".into());
            }
            if r.interval < Duration::from_secs(1) {
                return bad("retention.interval must be at least 1s".into());
            }
        }
        Ok(())
    }
}

impl RecordingConfig {
    /// Where the records go; for a PostgreSQL store with no `chain`, the chain is
    /// named after the host.
    pub fn location(&self) -> Result<StoreLocation> {
        let Some(url) = &self.store else {
            return Ok(StoreLocation::Sled(self.path.clone()));
        };
        let chain = match &self.chain {
            Some(c) => c.clone(),
            None => host_name().ok_or_else(|| {
                RecordingError::Config("chain: the host name is unknown; set chain".into())
            })?,
        };
        validate_chain_name(&chain).map_err(|e| RecordingError::Config(format!("chain: {e}")))?;
        Ok(StoreLocation::Postgres {
            url: url.clone(),
            chain,
        })
    }

    /// The store for messages and logs, without credentials.
    pub fn describe(&self) -> String {
        match self.location() {
            Ok(StoreLocation::Sled(p)) => p.display().to_string(),
            Ok(StoreLocation::Postgres { url, chain }) => {
                format!("{}, chain {chain}", redacted_url(url.expose()))
            }
            Err(_) => match &self.store {
                Some(url) => redacted_url(url.expose()),
                None => self.path.display().to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_validates() {
        let c: RecordingConfig = toml::from_str(
            r#"
            path = "/tmp/x"
            durability = "batched"
            flush_interval = "20ms"
            "#,
        )
        .unwrap();
        assert_eq!(c.durability, Durability::Batched);
        assert_eq!(c.flush_interval, Duration::from_millis(20));
        assert_eq!(c.queue_capacity, 4096);
        assert_eq!(c.flush_events, 1000);
        assert_eq!(c.writer_priority, WriterPriority::Normal);
        c.validate().unwrap();

        let idle: RecordingConfig =
            toml::from_str("path = \"p\"\nwriter_priority = \"idle\"").unwrap();
        assert_eq!(idle.writer_priority, WriterPriority::Idle);
        let bad = toml::from_str::<RecordingConfig>("path = \"p\"\nwriter_priority = \"low\"")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("unknown variant"), "{bad}");

        let strict: RecordingConfig = toml::from_str(r#"path = "p""#).unwrap();
        assert_eq!(strict, RecordingConfig::new("p"));
        assert_eq!(strict.durability, Durability::Strict);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(
            toml::from_str::<RecordingConfig>(
                r#"path = "p"
durability = "eventually""#
            )
            .is_err()
        );
        assert!(
            toml::from_str::<RecordingConfig>(
                r#"path = "p"
flush_intreval = "1s""#
            )
            .is_err()
        );
        let mut c = RecordingConfig::new("p");
        c.queue_capacity = 0;
        assert!(
            matches!(c.validate(), Err(RecordingError::Config(m)) if m.contains("queue_capacity"))
        );
        let mut c = RecordingConfig::new("p");
        c.flush_interval = Duration::from_secs(60);
        assert!(
            matches!(c.validate(), Err(RecordingError::Config(m)) if m.contains("flush_interval"))
        );
        let mut c = RecordingConfig::new("p");
        c.flush_events = 0;
        assert!(c.validate().is_err());
        assert!(RecordingConfig::new("").validate().is_err());
        let mut c = RecordingConfig::new("p");
        c.checkpoint_events = 0;
        assert!(c.validate().is_err());
        c.checkpoint_events = 1;
        c.retention = Some(RetentionConfig {
            max_age: None,
            max_records: None,
            interval: Duration::from_secs(60),
        });
        assert!(c.validate().is_err());
    }

    #[test]
    fn postgres_store_is_validated_and_never_printed() {
        let c: RecordingConfig = toml::from_str(
            r#"
            store = "postgres://gw:hunter2@db.example:5433/audit"
            chain = "gw-a"
            signing_key = "/etc/portcullis/k.pem"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.location().unwrap(),
            StoreLocation::Postgres {
                url: Secret::new("postgres://gw:hunter2@db.example:5433/audit".into()),
                chain: "gw-a".into()
            }
        );
        assert_eq!(
            c.describe(),
            "postgres://gw@db.example:5433/audit, chain gw-a"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));

        let base = r#"store = "postgres://gw:hunter2@h/db"
signing_key = "k.pem""#;
        let parse = |extra: &str| -> RecordingConfig {
            toml::from_str(&format!("{base}\n{extra}")).unwrap()
        };
        let err = |c: RecordingConfig| c.validate().unwrap_err().to_string();
        assert!(err(parse("path = \"/x\"")).contains("not both"));
        assert!(err(parse("chain = \"a b\"")).contains("chain"));
        let mut no_key = parse("");
        no_key.signing_key = None;
        assert!(err(no_key).contains("signing_key"));
        let mut mysql = parse("");
        mysql.store = Some(Secret::new("mysql://root@h/db".into()));
        assert!(err(mysql).contains("postgres://"));
        let mut broken = parse("");
        broken.store = Some(Secret::new("postgres://gw:hunter2@h:notaport/db".into()));
        let e = err(broken);
        assert!(!e.contains("hunter2"), "{e}");
        // Without a chain, the host name names it.
        if let Ok(StoreLocation::Postgres { chain, .. }) = parse("").location() {
            assert!(!chain.is_empty());
        }
        let mut sled_with_chain = RecordingConfig::new("p");
        sled_with_chain.chain = Some("x".into());
        assert!(sled_with_chain.validate().is_err());
        let empty: RecordingConfig = toml::from_str("durability = \"strict\"").unwrap();
        assert!(err(empty).contains("store"));
    }

    #[test]
    fn evidence_keys_parse() {
        let c: RecordingConfig = toml::from_str(
            r#"
            path = "/tmp/x"
            signing_key = "/etc/k.pem"
            checkpoint_events = 50
            checkpoint_interval = "2s"
            [retention]
            max_age = "30days"
            max_records = 10
            "#,
        )
        .unwrap();
        assert_eq!(c.checkpoint_events, 50);
        assert_eq!(c.checkpoint_interval, Duration::from_secs(2));
        let r = c.retention.clone().unwrap();
        assert_eq!(r.max_age, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(r.max_records, Some(10));
        assert_eq!(r.interval, Duration::from_secs(3600));
        c.validate().unwrap();
    }
}
