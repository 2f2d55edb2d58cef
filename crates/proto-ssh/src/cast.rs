//! Interactive sessions written as asciicast v2 files, streaming, with a running SHA-256.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::SshError;

/// What a finished cast file is: its name in the recordings directory and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastFile {
    /// File name, relative to the recordings directory.
    pub name: String,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Writes one asciicast v2 file: a JSON header line, then `[time, code, data]` lines
/// (`o` output as the client saw it, `i` input after masking, `r` resize `COLSxROWS`).
pub(crate) struct CastWriter {
    file: BufWriter<tokio::fs::File>,
    hasher: Sha256,
    started: Instant,
    name: String,
    bytes: u64,
    carry_out: Vec<u8>,
    carry_in: Vec<u8>,
}

impl CastWriter {
    /// Creates `dir/name` and writes the header.
    pub async fn create(
        dir: &Path,
        name: String,
        width: u32,
        height: u32,
        term: &str,
        title: &str,
    ) -> Result<Self, SshError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(SshError::io(format!("creating {}", dir.display())))?;
        let path: PathBuf = dir.join(&name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(SshError::io(format!("creating {}", path.display())))?;
        let mut writer = Self {
            file: BufWriter::new(file),
            hasher: Sha256::new(),
            started: Instant::now(),
            name,
            bytes: 0,
            carry_out: Vec::new(),
            carry_in: Vec::new(),
        };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = serde_json::json!({
            "version": 2,
            "width": width.max(1),
            "height": height.max(1),
            "timestamp": timestamp,
            "env": { "TERM": term },
            "title": title,
        });
        writer.line(header.to_string()).await?;
        Ok(writer)
    }

    async fn line(&mut self, mut line: String) -> Result<(), SshError> {
        line.push('\n');
        self.hasher.update(line.as_bytes());
        self.bytes += line.len() as u64;
        self.file
            .write_all(line.as_bytes())
            .await
            .map_err(SshError::io("writing the session recording"))
    }

    fn elapsed(&self) -> f64 {
        (self.started.elapsed().as_micros() as f64) / 1e6
    }

    /// Output as the client saw it.
    pub async fn output(&mut self, data: &[u8]) -> Result<(), SshError> {
        let text = take_utf8(&mut self.carry_out, data);
        if text.is_empty() {
            return Ok(());
        }
        let line = serde_json::json!([self.elapsed(), "o", text]).to_string();
        self.line(line).await
    }

    /// Input as the client typed it (masked).
    pub async fn input(&mut self, data: &[u8]) -> Result<(), SshError> {
        let text = take_utf8(&mut self.carry_in, data);
        if text.is_empty() {
            return Ok(());
        }
        let line = serde_json::json!([self.elapsed(), "i", text]).to_string();
        self.line(line).await
    }

    /// A terminal resize.
    pub async fn resize(&mut self, width: u32, height: u32) -> Result<(), SshError> {
        let line =
            serde_json::json!([self.elapsed(), "r", format!("{width}x{height}")]).to_string();
        self.line(line).await
    }

    /// Flushes, syncs and closes the file; returns its name and hash.
    pub async fn finish(mut self) -> Result<CastFile, SshError> {
        for (code, carry) in [
            ("o", std::mem::take(&mut self.carry_out)),
            ("i", std::mem::take(&mut self.carry_in)),
        ] {
            if !carry.is_empty() {
                let text = String::from_utf8_lossy(&carry).into_owned();
                let line = serde_json::json!([self.elapsed(), code, text]).to_string();
                self.line(line).await?;
            }
        }
        self.file
            .flush()
            .await
            .map_err(SshError::io("flushing the session recording"))?;
        self.file
            .get_ref()
            .sync_all()
            .await
            .map_err(SshError::io("syncing the session recording"))?;
        Ok(CastFile {
            name: self.name,
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
        })
    }
}

/// Appends `data` to `carry` and returns the longest complete UTF-8 text, keeping an
/// incomplete trailing sequence for the next call (invalid bytes become U+FFFD).
fn take_utf8(carry: &mut Vec<u8>, data: &[u8]) -> String {
    carry.extend_from_slice(data);
    let mut out = String::new();
    let mut rest: &[u8] = carry;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(&String::from_utf8_lossy(good));
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = bad.get(n..).unwrap_or_default();
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.to_vec();
    *carry = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let mut carry = Vec::new();
        let euro = "€".as_bytes();
        assert_eq!(take_utf8(&mut carry, &[b'a', euro[0]]), "a");
        assert_eq!(take_utf8(&mut carry, &euro[1..]), "€");
        assert_eq!(take_utf8(&mut carry, &[0xff, b'b']), "\u{FFFD}b");
        assert!(carry.is_empty());
    }

    #[tokio::test]
    async fn writes_a_parseable_cast_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = CastWriter::create(dir.path(), "x.cast".into(), 80, 24, "xterm", "t")
            .await
            .unwrap();
        w.output(b"hello\r\n").await.unwrap();
        w.input(b"ls\r").await.unwrap();
        w.resize(100, 30).await.unwrap();
        let done = w.finish().await.unwrap();
        let bytes = std::fs::read(dir.path().join("x.cast")).unwrap();
        assert_eq!(done.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(done.bytes, bytes.len() as u64);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "hello\r\n");
        assert_eq!(lines[2][1], "i");
        assert_eq!(lines[3][2], "100x30");
    }
}
