//! The file sink: JSON lines appended to a file and synced (`fdatasync`) before
//! the batch counts as delivered.
//!
//! Rotation: with `max_bytes`, a batch that would grow a non-empty file beyond
//! it first renames `path.N-1` to `path.N` .. `path` to `path.1` (keeping `keep`
//! files) and starts a new `path`. External rotation (logrotate's default
//! rename, or a deletion) is detected before every batch by comparing the open
//! file's device and inode with those at `path`: the sink then reopens `path`
//! (creating it), so no signal is needed. With `copytruncate` the sink keeps
//! appending to the truncated file (opened in append mode).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use crate::format::Line;
use crate::{Result, SiemError, SinkConfig};

/// The file sink.
pub(crate) struct FileSink {
    path: PathBuf,
    max_bytes: Option<u64>,
    keep: usize,
    file: Option<(File, u64, u64)>,
}

fn fail(path: &Path, e: std::io::Error) -> SiemError {
    SiemError::Delivery(format!("file {}: {e}", path.display()))
}

impl FileSink {
    pub(crate) fn new(sink: &SinkConfig) -> Result<Self> {
        let path = sink
            .path
            .clone()
            .ok_or_else(|| SiemError::Config("path: required".into()))?;
        Ok(Self {
            path,
            max_bytes: sink.max_bytes,
            keep: sink.keep.unwrap_or(5).max(1),
            file: None,
        })
    }

    async fn open(&self) -> Result<(File, u64, u64)> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| fail(&self.path, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| fail(&self.path, e))?;
        let meta = file.metadata().await.map_err(|e| fail(&self.path, e))?;
        Ok((file, meta.dev(), meta.ino()))
    }

    /// Whether the open file is still the one at `path`.
    async fn still_current(&self) -> bool {
        let Some((_, dev, ino)) = &self.file else {
            return false;
        };
        match tokio::fs::metadata(&self.path).await {
            Ok(m) => m.dev() == *dev && m.ino() == *ino,
            Err(_) => false,
        }
    }

    async fn rotate(&mut self) -> Result<()> {
        self.file = None;
        for n in (1..self.keep).rev() {
            let from = numbered(&self.path, n);
            if tokio::fs::try_exists(&from).await.unwrap_or(false) {
                tokio::fs::rename(&from, numbered(&self.path, n + 1))
                    .await
                    .map_err(|e| fail(&from, e))?;
            }
        }
        tokio::fs::rename(&self.path, numbered(&self.path, 1))
            .await
            .map_err(|e| fail(&self.path, e))?;
        tracing::info!(path = %self.path.display(), "sink file rotated");
        Ok(())
    }

    /// Appends the batch and syncs it.
    pub(crate) async fn send(&mut self, lines: &[Line]) -> Result<()> {
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.json.len() + 1).sum());
        for line in lines {
            bytes.extend_from_slice(line.json.as_bytes());
            bytes.push(b'\n');
        }
        if !self.still_current().await {
            self.file = Some(self.open().await?);
        }
        if let (Some(max), Some((file, _, _))) = (self.max_bytes, &self.file) {
            let len = file
                .metadata()
                .await
                .map_err(|e| fail(&self.path, e))?
                .len();
            if len > 0 && len.saturating_add(bytes.len() as u64) > max {
                self.rotate().await?;
                self.file = Some(self.open().await?);
            }
        }
        let Some((file, _, _)) = self.file.as_mut() else {
            return Err(SiemError::Delivery("file sink: not open".into()));
        };
        let before = file
            .metadata()
            .await
            .map_err(|e| fail(&self.path, e))?
            .len();
        let result = async {
            file.write_all(&bytes).await?;
            file.flush().await?;
            file.sync_data().await
        }
        .await;
        if let Err(e) = result {
            // Best effort: cut a partly written batch so the retry does not leave a torn line.
            let _ = file.set_len(before).await;
            self.file = None;
            return Err(fail(&self.path, e));
        }
        Ok(())
    }

    pub(crate) fn reset(&mut self) {
        self.file = None;
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}
