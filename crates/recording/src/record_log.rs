//! Record files: where a sled store with a directory keeps the bytes of its records.
//!
//! The records of one append are written, one after the other in the packed form of
//! [`crate::sled_format`], to the end of the current file `DIR/records/NNNNNNNNNNNNNNNN.rec`
//! (file number, 16 decimal digits); the tree keeps, under each batch key, a
//! [`Pointer`] to the batch's bytes instead of the bytes themselves. Each record byte is
//! then written once by the store (and once more by the journal sync), where sled would
//! copy a large value into its log with the insert and again with every split and
//! consolidation of the leaf holding it.
//!
//! Files only grow; a new one starts after [`FILE_BYTES`], and the one it follows is
//! synced first, so syncing the current file makes every record written so far durable.
//! Bytes past the last pointer (an append whose journal entry a crash cut off) are never
//! referenced. Files are deleted only by pruning, when no batch points into them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::numbered_files::{self, sync_dir};
use crate::{RecordingError, Result};

/// A file is closed, and the next one started, once it holds this many bytes.
pub(crate) const FILE_BYTES: u64 = 64 << 20;

/// Most record files kept open for reading at once.
const OPEN_READERS: usize = 32;

/// First bytes of a pointer value. An inline batch value starts with its first
/// record's sequence number, which never reaches `u64::MAX`.
const TAG: [u8; 8] = [0xff; 8];
/// Tag, file number (u64 BE), offset (u64 BE), length (u32 BE), CRC-32 (u32 BE).
const POINTER_LEN: usize = 8 + 8 + 8 + 4 + 4;

/// Where a batch's bytes are: file, offset, length, and the CRC-32 of the bytes
/// (checked when the journal is replayed, so a batch whose bytes never reached the
/// disk ends the replay instead of leaving a dangling pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub(crate) file: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

impl Pointer {
    /// The stored form (see the module docs).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(POINTER_LEN);
        v.extend_from_slice(&TAG);
        v.extend_from_slice(&self.file.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.crc.to_be_bytes());
        v
    }

    /// The pointer a batch value holds, or `None` for a value holding the records
    /// themselves.
    pub(crate) fn decode(value: &[u8]) -> Option<Self> {
        let (tag, rest) = value.split_first_chunk::<8>()?;
        if *tag != TAG || value.len() != POINTER_LEN {
            return None;
        }
        let (file, rest) = rest.split_first_chunk::<8>()?;
        let (offset, rest) = rest.split_first_chunk::<8>()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (crc, _) = rest.split_first_chunk::<4>()?;
        Some(Self {
            file: u64::from_be_bytes(*file),
            offset: u64::from_be_bytes(*offset),
            len: u32::from_be_bytes(*len),
            crc: u32::from_be_bytes(*crc),
        })
    }

    /// The pointer to the last `len` bytes of the batch this one points to, whose
    /// bytes are `tail` (what pruning keeps of a batch that straddles the tombstone).
    pub(crate) fn suffix(&self, tail: &[u8]) -> Result<Self> {
        let len = u32::try_from(tail.len())
            .ok()
            .filter(|l| *l <= self.len)
            .ok_or_else(|| RecordingError::Storage("batch suffix longer than its batch".into()))?;
        Ok(Self {
            file: self.file,
            offset: self.offset.saturating_add(u64::from(self.len - len)),
            len,
            crc: crc32fast::hash(tail),
        })
    }
}

/// The record files of one store.
pub(crate) struct RecordLog {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Files opened for reading, by number.
    readers: Mutex<HashMap<u64, Arc<File>>>,
}

struct Writer {
    file: Arc<File>,
    number: u64,
    /// The file's length: where the next append goes.
    written: u64,
    /// Set after a failed write: the file's length is then unknown.
    broken: Option<String>,
}

impl std::fmt::Debug for RecordLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLog").field("dir", &self.dir).finish()
    }
}

fn file_path(dir: &Path, number: u64) -> PathBuf {
    numbered_files::path(dir, number, "rec")
}

/// The record files in `dir`, in number order.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    numbered_files::list(dir, "rec")
}

fn create(dir: &Path, number: u64) -> Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(file_path(dir, number))?;
    sync_dir(dir)?;
    Ok(file)
}

impl RecordLog {
    /// Opens the record files in `dir` (created if missing); appends go to the end of
    /// the last one.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (file, number) = match files(dir)?.pop() {
            Some((number, path)) => (OpenOptions::new().append(true).open(path)?, number),
            None => (create(dir, 1)?, 1),
        };
        let written = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                file: Arc::new(file),
                number,
                written,
                broken: None,
            }),
            readers: Mutex::new(HashMap::new()),
        })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.writer
            .lock()
            .map_err(|_| RecordingError::Storage("record file lock poisoned".into()))
    }

    /// Appends `bytes` (not synced) and returns the file number and offset they were
    /// written at.
    pub(crate) fn append(&self, bytes: &[u8]) -> Result<(u64, u64)> {
        let mut w = self.writer()?;
        if let Some(m) = &w.broken {
            return Err(RecordingError::Storage(m.clone()));
        }
        if w.written >= FILE_BYTES {
            // Entries in the next file may be synced before this one's: sync it first.
            let next = w.number.saturating_add(1);
            let started = w
                .file
                .sync_data()
                .map_err(RecordingError::from)
                .and_then(|()| create(&self.dir, next));
            match started {
                Ok(file) => {
                    w.file = Arc::new(file);
                    w.number = next;
                    w.written = 0;
                }
                Err(e) => {
                    w.broken = Some(format!("starting record file {next} failed: {e}"));
                    return Err(e);
                }
            }
        }
        let at = (w.number, w.written);
        if let Err(e) = (&*w.file).write_all(bytes) {
            w.broken = Some(format!("record file write failed: {e}"));
            return Err(e.into());
        }
        w.written = w.written.saturating_add(bytes.len() as u64);
        Ok(at)
    }

    /// Makes every record appended so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        let file = self.writer()?.file.clone();
        file.sync_data()?;
        Ok(())
    }

    fn reader(&self, number: u64) -> Result<Arc<File>> {
        let mut readers = self
            .readers
            .lock()
            .map_err(|_| RecordingError::Storage("record file lock poisoned".into()))?;
        if let Some(f) = readers.get(&number) {
            return Ok(f.clone());
        }
        let file =
            File::open(file_path(&self.dir, number)).map_err(|e| RecordingError::Corrupt {
                seq: None,
                reason: format!("record file {number}: {e}"),
            })?;
        let file = Arc::new(file);
        if readers.len() >= OPEN_READERS {
            // Readers of a large store move through its files in order: keep few open.
            readers.clear();
        }
        readers.insert(number, file.clone());
        Ok(file)
    }

    /// The bytes `ptr` points to (not checked against its CRC: the chain's hashes
    /// say whether a record was altered).
    pub(crate) fn read(&self, ptr: &Pointer) -> Result<Vec<u8>> {
        read_at(&*self.reader(ptr.file)?, ptr)
    }

    /// Whether the bytes `ptr` points to are there, whole (replay's check).
    pub(crate) fn holds(&self, ptr: &Pointer) -> bool {
        self.read(ptr)
            .is_ok_and(|bytes| crc32fast::hash(&bytes) == ptr.crc)
    }

    /// Deletes the files numbered below `number`, never the one being written.
    pub(crate) fn delete_before(&self, number: u64) -> Result<u64> {
        let current = self.writer()?.number;
        let mut readers = self
            .readers
            .lock()
            .map_err(|_| RecordingError::Storage("record file lock poisoned".into()))?;
        let mut deleted = 0;
        for (n, path) in files(&self.dir)? {
            if n < number && n < current {
                readers.remove(&n);
                std::fs::remove_file(path)?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }

    /// The number of the file being written.
    pub(crate) fn current_file(&self) -> Result<u64> {
        Ok(self.writer()?.number)
    }

    /// Makes the next append start a new file (tests of file lifecycle).
    #[cfg(test)]
    pub(crate) fn close_current_file(&self) -> Result<()> {
        self.writer()?.written = FILE_BYTES;
        Ok(())
    }
}

/// Reads the bytes `ptr` points to from the record files in `dir`, without opening
/// the store (raw access, as the tamper helpers have it).
pub(crate) fn read_detached(dir: &Path, ptr: &Pointer) -> Result<Vec<u8>> {
    read_at(&File::open(file_path(dir, ptr.file))?, ptr)
}

/// The bytes `ptr` points to in `file`.
fn read_at(file: &File, ptr: &Pointer) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; ptr.len as usize];
    file.read_exact_at(&mut buf, ptr.offset)
        .map_err(|e| RecordingError::Corrupt {
            seq: None,
            reason: format!(
                "record file {} has no {} bytes at {}: {e}",
                ptr.file, ptr.len, ptr.offset
            ),
        })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn pointer_to(log: &RecordLog, bytes: &[u8]) -> Pointer {
        let (file, offset) = log.append(bytes).unwrap();
        Pointer {
            file,
            offset,
            len: bytes.len() as u32,
            crc: crc32fast::hash(bytes),
        }
    }

    #[test]
    fn appends_read_back_across_files_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = RecordLog::open(dir.path()).unwrap();
        let a = pointer_to(&log, b"first batch");
        log.close_current_file().unwrap();
        let b = pointer_to(&log, b"second");
        assert_eq!((a.file, a.offset), (1, 0));
        assert_eq!((b.file, b.offset), (2, 0));
        log.sync().unwrap();
        drop(log);
        let log = RecordLog::open(dir.path()).unwrap();
        let c = pointer_to(&log, b"third");
        assert_eq!((c.file, c.offset), (2, 6));
        for (p, want) in [(a, &b"first batch"[..]), (b, b"second"), (c, b"third")] {
            assert_eq!(Pointer::decode(&p.encode()), Some(p));
            assert_eq!(log.read(&p).unwrap(), want);
            assert!(log.holds(&p));
        }
        // A pointer past the end, or to bytes that differ, is not held.
        let past = Pointer { offset: 100, ..c };
        assert!(!log.holds(&past));
        assert!(log.read(&past).is_err());
        assert!(!log.holds(&Pointer {
            crc: c.crc ^ 1,
            ..c
        }));
        let tail = a.suffix(b"batch").unwrap();
        assert_eq!(log.read(&tail).unwrap(), b"batch");
        assert!(log.holds(&tail));
        // Pruning deletes whole files, never the current one.
        assert_eq!(log.delete_before(u64::MAX).unwrap(), 1);
        assert!(log.read(&a).is_err());
        assert_eq!(log.read(&c).unwrap(), b"third");
    }

    #[test]
    fn inline_values_are_not_pointers() {
        let mut inline = 7u64.to_be_bytes().to_vec();
        inline.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(Pointer::decode(&inline), None);
    }
}
