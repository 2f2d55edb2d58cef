//! Recording configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// The `[recording]` section of the gateway configuration.
///
/// ```toml
/// path = "/var/lib/portcullis/recording"
/// durability = "batched"    # or "strict" (default)
/// flush_interval = "50ms"   # batched: longest time an acknowledged event stays unsynced
/// flush_events = 1000       # batched: most events between two syncs
/// queue_capacity = 4096     # events admitted by record() and not yet written
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
    /// Directory of the sled store.
    pub path: PathBuf,
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
            durability: Durability::default(),
            flush_interval: default_flush_interval(),
            flush_events: default_flush_events(),
            queue_capacity: default_queue_capacity(),
            signing_key: None,
            checkpoint_events: default_checkpoint_events(),
            checkpoint_interval: default_checkpoint_interval(),
            retention: None,
        }
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RecordingError::Config(m));
        if self.path.as_os_str().is_empty() {
            return bad("path must not be empty".into());
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
        c.validate().unwrap();

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
