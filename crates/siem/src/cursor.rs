//! The durable cursor of one sink: a small JSON file replaced atomically
//! (written to a temporary file, synced, renamed over the old one, directory synced).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Result, SiemError};

/// What a sink has delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// Every line produced by records up to this global sequence was acknowledged.
    pub delivered: u64,
    /// Where to start reading after a restart to rebuild the format's state
    /// (`delivered + 1` except for OCSF commands waiting for their result).
    pub replay_from: u64,
    /// The chain the sequence numbers belong to (the store's chain id), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

/// The cursor file of a sink.
#[derive(Debug, Clone)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    /// The cursor of sink `name` in `dir` (`<dir>/<name>.cursor`).
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            path: dir.join(format!("{name}.cursor")),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored cursor; `None` when the sink never delivered.
    pub fn load(&self) -> Result<Option<Cursor>> {
        let fail = |e: String| SiemError::Cursor(format!("{}: {e}", self.path.display()));
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| fail(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Replaces the stored cursor durably.
    pub fn store(&self, cursor: &Cursor) -> Result<()> {
        let fail = |e: std::io::Error| SiemError::Cursor(format!("{}: {e}", self.path.display()));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let tmp = self.path.with_extension("cursor.tmp");
        let json = serde_json::to_vec(cursor)
            .map_err(|e| SiemError::Cursor(format!("cannot encode: {e}")))?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(fail)?;
            f.write_all(&json).map_err(fail)?;
            f.write_all(b"\n").map_err(fail)?;
            f.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let file = CursorFile::new(&dir.path().join("sinks"), "a");
        assert_eq!(file.load().unwrap(), None);
        let c = Cursor {
            delivered: 7,
            replay_from: 5,
            chain: Some("c".into()),
        };
        file.store(&c).unwrap();
        assert_eq!(file.load().unwrap(), Some(c.clone()));
        let d = Cursor {
            delivered: 9,
            replay_from: 10,
            chain: None,
        };
        file.store(&d).unwrap();
        assert_eq!(file.load().unwrap(), Some(d));
        std::fs::write(file.path(), b"garbage").unwrap();
        assert!(file.load().is_err());
    }
}
