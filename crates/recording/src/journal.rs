//! The sled store's write-ahead journal.
//!
//! Every write of a [`SledStore`](crate::SledStore) with a directory is first
//! appended to the journal, then applied to sled's tree key by key. Making
//! records durable is one `fdatasync` of the journal segment, which is
//! preallocated, so the sync changes no file metadata; sled's own flush (its log
//! writes, `sync_file_range` and an `fdatasync` of its file) runs on a background
//! thread about once a second. On open, [`replay`] applies every entry still in
//! the journal, so the tree ends up exactly as it was at the last journal sync.
//!
//! # Layout
//!
//! `DIR/journal/NNNNNNNNNNNNNNNN.log` (segment number, 16 decimal digits), read in
//! number order. A segment is a sequence of frames:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `PCJ1` |
//! | 4 | payload length (u32 BE) |
//! | 4 | CRC-32 (IEEE) of the payload (u32 BE) |
//! | n | payload |
//!
//! The payload is the number of the segment the entry was written to (u64 BE),
//! the entry's number (LSN, u64 BE, consecutive within the journal), the number
//! of operations (u32 BE), then per operation a tag (`1` insert, `2` remove), the
//! key length (u32 BE) and key, and for an insert the value length (u32 BE) and
//! value.
//!
//! A segment's entries end at the end of the file, at a zero header (the zeros
//! of a preallocated file, or the terminator written when the writer moves to the
//! next segment), or at a valid frame carrying another segment number (older
//! bytes of a recycled file). A frame cut short or failing its CRC with nothing
//! valid after it is a write the crash interrupted, never acknowledged as
//! durable, and ends the replay; followed by valid entries, or with a gap in the
//! LSNs, it is corruption and the store refuses to open.
//!
//! # Segments
//!
//! The flusher thread keeps a spare segment ready: at first a zero-filled,
//! synced 16 MiB file, later a flushed segment renamed to the next number
//! (recycled: no zero-filling in steady state). The writer moves to the spare
//! when an entry would not fit, writing the terminator and syncing the segment it
//! leaves. About once a second the flusher, holding the journal's lock, syncs the
//! current segment and flushes sled (so the flushed tree never holds part of an
//! entry, nor an entry the journal could still lose), then drops (or recycles) the
//! segments before the current one: all their entries were applied before the
//! flush began.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::numbered_files::{self, sync_dir};
use crate::{RecordingError, Result};

const MAGIC: &[u8; 4] = b"PCJ1";
const HEADER: usize = 12;
/// Largest payload replay accepts (a larger length field is a torn or corrupt frame).
const MAX_PAYLOAD: usize = 1 << 30;
const INSERT: u8 = 1;
const REMOVE: u8 = 2;
/// How often the flusher makes the tree durable and drops applied segments.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Size of a preallocated segment; a switch to the next one happens when an entry
/// would not fit (a larger entry grows the segment).
pub(crate) const SEGMENT_BYTES: u64 = 16 << 20;

/// One write to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Insert(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// The writes of one atomic tree batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Ops(pub(crate) Vec<Op>);

impl Ops {
    pub(crate) fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.0.push(Op::Insert(key.into(), value.into()));
    }

    pub(crate) fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.0.push(Op::Remove(key.into()));
    }

    /// One atomic sled batch (stores without a journal).
    pub(crate) fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for op in self.0 {
            match op {
                Op::Insert(k, v) => batch.insert(k, v),
                Op::Remove(k) => batch.remove(k),
            }
        }
        batch
    }

    /// Applies the writes one by one, in order. sled seals and writes its log
    /// buffer (`pwrite` + `sync_file_range`) twice for every `apply_batch`, and
    /// journaled writes do not need that: replay restores whatever a crash cut.
    pub(crate) fn apply_to(self, tree: &sled::Tree) -> Result<()> {
        for op in self.0 {
            match op {
                Op::Insert(k, v) => {
                    tree.insert(k, v)?;
                }
                Op::Remove(k) => {
                    tree.remove(k)?;
                }
            }
        }
        Ok(())
    }

    fn encode(&self, segment: u64, lsn: u64, out: &mut Vec<u8>) -> Result<()> {
        let len = |n: usize| {
            u32::try_from(n)
                .map(u32::to_be_bytes)
                .map_err(|_| RecordingError::Encode("journal entry larger than 4 GiB".into()))
        };
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&segment.to_be_bytes());
        out.extend_from_slice(&lsn.to_be_bytes());
        out.extend_from_slice(&len(self.0.len())?);
        for op in &self.0 {
            match op {
                Op::Insert(k, v) => {
                    out.push(INSERT);
                    out.extend_from_slice(&len(k.len())?);
                    out.extend_from_slice(k);
                    out.extend_from_slice(&len(v.len())?);
                    out.extend_from_slice(v);
                }
                Op::Remove(k) => {
                    out.push(REMOVE);
                    out.extend_from_slice(&len(k.len())?);
                    out.extend_from_slice(k);
                }
            }
        }
        let payload = out.get(start + HEADER..).unwrap_or_default();
        let crc = crc32fast::hash(payload).to_be_bytes();
        let plen = len(payload.len())?;
        if let Some(h) = out.get_mut(start + 4..start + HEADER) {
            h[..4].copy_from_slice(&plen);
            h[4..].copy_from_slice(&crc);
        }
        Ok(())
    }

    /// The segment number the entry was written to, its LSN and its writes.
    fn decode(payload: &[u8]) -> Option<(u64, u64, Ops)> {
        let mut r = payload;
        let segment = u64::from_be_bytes(take(&mut r, 8)?.try_into().ok()?);
        let lsn = u64::from_be_bytes(take(&mut r, 8)?.try_into().ok()?);
        let n = take_u32(&mut r)?;
        let mut ops = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let tag = *take(&mut r, 1)?.first()?;
            let klen = take_u32(&mut r)?;
            let key = take(&mut r, klen)?.to_vec();
            match tag {
                INSERT => {
                    let vlen = take_u32(&mut r)?;
                    ops.push(Op::Insert(key, take(&mut r, vlen)?.to_vec()));
                }
                REMOVE => ops.push(Op::Remove(key)),
                _ => return None,
            }
        }
        r.is_empty().then_some((segment, lsn, Ops(ops)))
    }
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Some(head)
}

fn take_u32(r: &mut &[u8]) -> Option<usize> {
    let b: [u8; 4] = take(r, 4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(b)).ok()
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    numbered_files::path(dir, number, "log")
}

/// The segments in `dir`, in number order.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    numbered_files::list(dir, "log")
}

/// What the reader found at an offset.
enum Frame {
    /// A valid frame; the next one starts at this offset.
    Next(u64),
    /// The end of the segment's entries: end of file, or the zeros of a
    /// preallocated segment.
    End,
    /// A frame cut short or failing its check.
    Bad,
}

fn next_frame(reader: &mut impl Read, offset: u64, buf: &mut Vec<u8>) -> Frame {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Frame::End,
            Ok(0) | Err(_) => return Frame::Bad,
            Ok(n) => got += n,
        }
    }
    if header == [0; HEADER] {
        return Frame::End;
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if &header[..4] != MAGIC || len > MAX_PAYLOAD {
        return Frame::Bad;
    }
    buf.clear();
    buf.resize(len, 0);
    if reader.read_exact(buf).is_err() || crc32fast::hash(buf) != crc {
        return Frame::Bad;
    }
    Frame::Next(offset + (HEADER + len) as u64)
}

/// Applies, in order, every entry in `dir`. Entries the tree already holds are
/// applied again, which leaves the same state: each write sets or removes a whole
/// value, and replay goes through to the last entry. A damaged frame ends the
/// replay if nothing valid follows it (a write the crash interrupted, never
/// acknowledged as durable). `apply` returning `false` ends the replay before that
/// entry (its data did not all reach the disk: neither it nor anything after it was
/// acknowledged as durable). Returns the last LSN applied (0 for an empty journal) and
/// the highest segment number.
pub(crate) fn replay(
    dir: &Path,
    mut apply: impl FnMut(u64, Ops) -> Result<bool>,
) -> Result<(u64, u64)> {
    let segs = segments(dir)?;
    let mut prev: Option<u64> = None;
    let mut damaged: Option<(PathBuf, u64)> = None;
    let mut buf = Vec::new();
    'segments: for (number, path) in &segs {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
        let mut offset = 0u64;
        loop {
            match next_frame(&mut reader, offset, &mut buf) {
                Frame::End => break,
                Frame::Bad => {
                    damaged.get_or_insert((path.clone(), offset));
                    break;
                }
                Frame::Next(next) => {
                    let Some((segment, lsn, ops)) = Ops::decode(&buf) else {
                        return Err(corrupt(path, offset, "entry does not decode"));
                    };
                    if segment != *number {
                        // Left from the file's earlier use as another segment.
                        break;
                    }
                    if let Some((at, off)) = &damaged {
                        return Err(corrupt(at, *off, "damaged entry followed by valid ones"));
                    }
                    if let Some(p) = prev
                        && lsn != p.saturating_add(1)
                    {
                        return Err(corrupt(
                            path,
                            offset,
                            &format!("entry {lsn} follows entry {p}"),
                        ));
                    }
                    if !apply(lsn, ops)? {
                        break 'segments;
                    }
                    prev = Some(lsn);
                    offset = next;
                }
            }
        }
    }
    if let Some((path, offset)) = damaged {
        tracing::warn!(
            segment = %path.display(),
            offset,
            "journal: ignoring an interrupted write at the end"
        );
    }
    Ok((prev.unwrap_or(0), segs.last().map_or(0, |(n, _)| *n)))
}

fn corrupt(path: &Path, offset: u64, what: &str) -> RecordingError {
    RecordingError::Corrupt {
        seq: None,
        reason: format!("journal {} at byte {offset}: {what}", path.display()),
    }
}

/// The open journal: the segment being written and the next LSN.
pub(crate) struct Journal {
    dir: PathBuf,
    file: Arc<File>,
    number: u64,
    /// Whether the current segment was preallocated (zero-filled and synced).
    preallocated: bool,
    next_lsn: u64,
    /// Bytes written to the current segment.
    written: u64,
    /// The size of a preallocated segment ([`SEGMENT_BYTES`]; smaller in tests).
    segment_bytes: u64,
    /// Whether anything was written since the flusher last flushed the tree.
    dirty: bool,
    /// A preallocated segment, numbered after the current one, ready to switch to.
    spare: Option<File>,
    /// Set when a write reached the journal but not the tree: later writes would
    /// fork the state replay rebuilds, so every further write is refused.
    broken: Option<String>,
    frame: Vec<u8>,
}

impl Journal {
    /// Starts a fresh (growing) segment after `last_segment`, continuing from LSN
    /// `last_lsn`; the flusher prepares preallocated ones.
    pub(crate) fn create(dir: &Path, last_segment: u64, last_lsn: u64) -> Result<Self> {
        let number = last_segment.saturating_add(1);
        let file = Arc::new(new_segment(dir, number, 0)?);
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            number,
            preallocated: false,
            next_lsn: last_lsn.saturating_add(1),
            written: 0,
            segment_bytes: SEGMENT_BYTES,
            dirty: false,
            spare: None,
            broken: None,
            frame: Vec::new(),
        })
    }

    /// Writes `ops` as the next entry (not synced) and returns its LSN.
    pub(crate) fn write(&mut self, ops: &Ops) -> Result<u64> {
        if let Some(m) = &self.broken {
            return Err(RecordingError::Storage(m.clone()));
        }
        let lsn = self.next_lsn;
        self.frame.clear();
        ops.encode(self.number, lsn, &mut self.frame)?;
        let full = self.written.saturating_add(self.frame.len() as u64) > self.segment_bytes;
        if self.spare.is_some() && (full || !self.preallocated) {
            self.switch_to_spare()?;
            self.frame.clear();
            ops.encode(self.number, lsn, &mut self.frame)?;
        }
        if let Err(e) = (&*self.file).write_all(&self.frame) {
            // A partial frame may be in the file: nothing may follow it.
            self.broken = Some(format!("journal write failed: {e}"));
            return Err(e.into());
        }
        self.next_lsn = lsn.saturating_add(1);
        self.written = self.written.saturating_add(self.frame.len() as u64);
        self.dirty = true;
        if self.frame.capacity() > 1 << 20 {
            self.frame = Vec::new();
        }
        Ok(lsn)
    }

    fn switch_to_spare(&mut self) -> Result<()> {
        // A zero header ends the old segment (a recycled file holds older bytes
        // after it), and entries of the old segment not synced yet (batched mode)
        // must not be overtaken by synced entries of the new one.
        // After a failure here, later entries could land behind the terminator, where
        // replay does not read: nothing more is written.
        if let Err(e) = (&*self.file)
            .write_all(&[0; HEADER])
            .and_then(|()| self.file.sync_data())
        {
            self.broken = Some(format!("journal segment switch failed: {e}"));
            return Err(e.into());
        }
        if let Some(spare) = self.spare.take() {
            self.file = Arc::new(spare);
            self.number = self.number.saturating_add(1);
            self.preallocated = true;
            self.written = 0;
        }
        Ok(())
    }

    /// Refuses every further write (an entry was journaled but not applied).
    pub(crate) fn break_with(&mut self, message: String) {
        self.broken = Some(message);
    }

    /// The segment being written: syncing it (outside the lock) makes every entry
    /// written so far durable, since a switch syncs the segment it leaves.
    pub(crate) fn current(&self) -> Arc<File> {
        self.file.clone()
    }
}

/// Creates segment `number`, zero-filled to `preallocate` bytes and synced (so
/// that syncing entries written into it later changes no file metadata), and
/// makes its directory entry durable.
fn new_segment(dir: &Path, number: u64, preallocate: u64) -> Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(segment_path(dir, number))?;
    if preallocate > 0 {
        let zeros = vec![0u8; 1 << 20];
        let mut left = preallocate;
        while left > 0 {
            let n = left.min(zeros.len() as u64);
            file.write_all(zeros.get(..n as usize).unwrap_or_default())?;
            left -= n;
        }
        file.sync_all()?;
        file.seek(SeekFrom::Start(0))?;
    }
    sync_dir(dir)?;
    Ok(file)
}

/// The background thread that keeps a spare segment ready and flushes the tree.
pub(crate) struct Flusher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread: every `every`, prepare a spare segment if the journal is
    /// in use and has none, and if anything was written, run `flush_tree` and delete
    /// the segments before the current one. A last flush runs when it stops.
    pub(crate) fn start(
        journal: Arc<Mutex<Journal>>,
        every: Duration,
        flush_tree: impl Fn() -> Result<()> + Send + 'static,
    ) -> Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("portcullis-journal".into())
            .spawn(move || run_flusher(&journal, every, &flush_tree, &stopped))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_flusher(
    journal: &Mutex<Journal>,
    every: Duration,
    flush_tree: &dyn Fn() -> Result<()>,
    stopped: &Receiver<()>,
) {
    loop {
        let last_round = match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        if last_round {
            if let Err(e) = close(journal, flush_tree) {
                tracing::error!(error = %e, "journal: flushing the store at close failed; the journal is kept for replay");
            }
            return;
        }
        if let Err(e) = prepare_spare(journal) {
            tracing::error!(error = %e, "journal: preparing the next segment failed; will retry");
        }
        if let Err(e) = flush_round(journal, flush_tree) {
            // The journal keeps every entry until a round succeeds.
            tracing::error!(error = %e, "journal: flushing the store failed; will retry");
        }
    }
}

fn lock(journal: &Mutex<Journal>) -> Result<std::sync::MutexGuard<'_, Journal>> {
    journal
        .lock()
        .map_err(|_| RecordingError::Storage("journal lock poisoned".into()))
}

/// Zero-fills the next segment outside the lock, once the journal is in use.
pub(crate) fn prepare_spare(journal: &Mutex<Journal>) -> Result<()> {
    let (dir, number, size) = {
        let j = lock(journal)?;
        if j.spare.is_some() || j.broken.is_some() || j.written == 0 {
            return Ok(());
        }
        if j.preallocated && j.written < j.segment_bytes / 2 {
            return Ok(());
        }
        (j.dir.clone(), j.number.saturating_add(1), j.segment_bytes)
    };
    // Only this thread creates segments after the first, and a switch consumes the
    // spare, so `number` is free.
    let file = new_segment(&dir, number, size)?;
    lock(journal)?.spare = Some(file);
    Ok(())
}

/// Makes the tree durable if anything was written, then deletes the segments
/// before the current one (all their entries were applied before the flush).
pub(crate) fn flush_round(
    journal: &Mutex<Journal>,
    flush_tree: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let (dir, current) = {
        let mut j = lock(journal)?;
        if !j.dirty || j.broken.is_some() {
            return Ok(());
        }
        // The tree is flushed under the journal's lock, after a sync of the current
        // segment: a writer holds the lock from journaling an entry until its last write
        // is applied, and the tree takes an entry's writes one by one. Flushed without
        // the lock, the tree could be made durable halfway through an entry that the
        // journal had written but not yet synced; a power loss then would leave records
        // past the chain head that replay cannot complete, and the store would refuse to
        // open. So the flushed tree holds whole entries, all of them in the synced journal.
        // Writers wait for the flush (sled's flush and one `fdatasync`, about once a second).
        j.file.sync_data()?;
        flush_tree()?;
        j.dirty = false;
        (j.dir.clone(), j.number)
    };
    recycle(journal, &dir, current)
}

/// Drops the segments before `current` (all their entries are in the flushed
/// tree), renaming the newest of them to be the next spare when one is needed and
/// it is preallocated, so that steady writing does not zero-fill a file per
/// segment. Its old entries carry their old segment number, which replay reads as
/// the end of the segment.
///
/// What is left on disk must stay a contiguous run of segments: replaying an
/// older segment after a gap would put back values the tree has since replaced.
/// So the older segments go first, in order, and the directory is synced before
/// the newest one is renamed.
fn recycle(journal: &Mutex<Journal>, dir: &Path, current: u64) -> Result<()> {
    let (wanted, size) = {
        let j = lock(journal)?;
        let wanted = j.spare.is_none() && j.broken.is_none() && j.number == current;
        (wanted, j.segment_bytes)
    };
    let mut old: Vec<(u64, PathBuf)> = segments(dir)?
        .into_iter()
        .filter(|(n, _)| *n < current)
        .collect();
    let reuse = match old.last() {
        Some((_, p)) if wanted && std::fs::metadata(p).is_ok_and(|m| m.len() >= size) => old.pop(),
        _ => None,
    };
    if !old.is_empty() {
        for (_, path) in &old {
            std::fs::remove_file(path)?;
        }
        sync_dir(dir)?;
    }
    let Some((_, path)) = reuse else {
        return Ok(());
    };
    // Only this thread creates segments after the first, and a switch needs a
    // spare, so the number after the current segment is free and stays so.
    let target = segment_path(dir, current.saturating_add(1));
    std::fs::rename(&path, &target)?;
    sync_dir(dir)?;
    let file = OpenOptions::new().write(true).open(&target)?;
    lock(journal)?.spare = Some(file);
    Ok(())
}

/// The last round, when the store closes: refuse further writes, make the tree
/// durable and delete every segment, so a cleanly closed store has an empty journal.
fn close(journal: &Mutex<Journal>, flush_tree: &dyn Fn() -> Result<()>) -> Result<()> {
    let (dir, current) = {
        let mut j = lock(journal)?;
        if j.broken.is_some() {
            // A write reached the journal but not the tree: leave it for replay.
            return Ok(());
        }
        j.broken = Some("the store is closed".into());
        j.spare = None;
        (j.dir.clone(), j.number)
    };
    flush_tree()?;
    // The spare, if any, is numbered `current + 1`.
    delete_segments_before(&dir, current.saturating_add(2))
}

/// Deletes the segments numbered below `number`.
pub(crate) fn delete_segments_before(dir: &Path, number: u64) -> Result<()> {
    // In order, oldest first (see `recycle`).
    for (n, path) in segments(dir)? {
        if n < number {
            std::fs::remove_file(path)?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn ops(i: u8) -> Ops {
        let mut o = Ops::default();
        o.insert(vec![b'k', i], vec![i; usize::from(i) * 10]);
        o.remove(vec![b'r', i]);
        o
    }

    fn numbers(dir: &Path) -> Vec<u64> {
        segments(dir).unwrap().iter().map(|(n, _)| *n).collect()
    }

    fn collect(dir: &Path) -> Result<(Vec<(u64, Ops)>, u64)> {
        let mut got = Vec::new();
        let (last, _) = replay(dir, |lsn, o| {
            got.push((lsn, o));
            Ok(true)
        })?;
        Ok((got, last))
    }

    #[test]
    fn entries_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 0, 0).unwrap();
        for i in 1..=5 {
            assert_eq!(j.write(&ops(i)).unwrap(), u64::from(i));
        }
        j.current().sync_data().unwrap();
        let (got, last) = collect(dir.path()).unwrap();
        assert_eq!(last, 5);
        assert_eq!(got.len(), 5);
        assert_eq!(got[2], (3, ops(3)));
        assert_eq!(
            got.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn an_interrupted_last_write_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 0, 0).unwrap();
        for i in 1..=3 {
            j.write(&ops(i)).unwrap();
        }
        drop(j);
        let path = segment_path(dir.path(), 1);
        let full = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        let (got, last) = collect(dir.path()).unwrap();
        assert_eq!(last, 2);
        assert_eq!(got.len(), 2);
        // Recovery starts a new segment after the last and drops the old ones.
        let mut j = Journal::create(dir.path(), 1, last).unwrap();
        delete_segments_before(dir.path(), 2).unwrap();
        assert_eq!(j.write(&ops(9)).unwrap(), 3);
        let (got, last) = collect(dir.path()).unwrap();
        assert_eq!(last, 3);
        assert_eq!(got, [(3, ops(9))]);
    }

    #[test]
    fn damage_followed_by_valid_entries_or_a_gap_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 0, 0).unwrap();
        j.write(&ops(1)).unwrap();
        j.write(&ops(2)).unwrap();
        let mut j = Journal::create(dir.path(), 1, 2).unwrap();
        j.write(&ops(3)).unwrap();
        // Flip a byte inside the first segment's second entry.
        let first = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&first).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        std::fs::write(&first, &bytes).unwrap();
        let err = collect(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("damaged entry followed by valid ones"),
            "{err}"
        );

        // A missing entry: segment 2 starts at LSN 4 after LSN 2.
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 0, 0).unwrap();
        j.write(&ops(1)).unwrap();
        j.write(&ops(2)).unwrap();
        let mut j = Journal::create(dir.path(), 1, 3).unwrap();
        j.write(&ops(4)).unwrap();
        let err = collect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("entry 4 follows entry 2"), "{err}");
    }

    #[test]
    fn the_flusher_switches_to_a_preallocated_segment_and_drops_flushed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Mutex::new(Journal::create(dir.path(), 0, 0).unwrap());
        let flushed = std::sync::atomic::AtomicU32::new(0);
        let flush = || {
            flushed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        // Unused: no spare, no flush.
        prepare_spare(&journal).unwrap();
        flush_round(&journal, &flush).unwrap();
        assert_eq!(flushed.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(numbers(dir.path()), [1]);

        journal.lock().unwrap().write(&ops(1)).unwrap();
        prepare_spare(&journal).unwrap();
        let spare = segment_path(dir.path(), 2);
        assert_eq!(std::fs::metadata(&spare).unwrap().len(), SEGMENT_BYTES);
        // The next write goes to the preallocated segment, at its start.
        journal.lock().unwrap().write(&ops(2)).unwrap();
        assert_eq!(journal.lock().unwrap().number, 2);
        assert!(journal.lock().unwrap().preallocated);
        flush_round(&journal, &flush).unwrap();
        assert_eq!(flushed.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(numbers(dir.path()), [2]);
        assert_eq!(std::fs::metadata(&spare).unwrap().len(), SEGMENT_BYTES);
        // The zeros after the last entry read as the end.
        let (got, last) = collect(dir.path()).unwrap();
        assert_eq!((got, last), (vec![(2, ops(2))], 2));

        // The flush runs under the journal's lock: no entry can be written, or half
        // applied, while the tree is made durable.
        journal.lock().unwrap().write(&ops(3)).unwrap();
        let locked = std::sync::atomic::AtomicBool::new(false);
        let probe = || {
            locked.store(
                matches!(journal.try_lock(), Err(std::sync::TryLockError::WouldBlock)),
                std::sync::atomic::Ordering::SeqCst,
            );
            Ok(())
        };
        flush_round(&journal, &probe).unwrap();
        assert!(locked.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!journal.lock().unwrap().dirty);

        // A failing tree flush keeps the segments and retries next round.
        journal.lock().unwrap().write(&ops(4)).unwrap();
        let failing = || Err(RecordingError::Storage("disk full".into()));
        assert!(flush_round(&journal, &failing).is_err());
        assert!(journal.lock().unwrap().dirty);
        flush_round(&journal, &flush).unwrap();
        assert_eq!(flushed.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(collect(dir.path()).unwrap().1, 4);
    }

    #[test]
    fn flushed_segments_are_recycled_and_their_old_entries_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 0, 0).unwrap();
        j.segment_bytes = 4096;
        let journal = Mutex::new(j);
        let flush = || Ok(());
        let write = |i: u8| journal.lock().unwrap().write(&ops(i)).unwrap();
        let number = || journal.lock().unwrap().number;
        // Segment 1 grows; 2 is zero-filled; then 3 is zero-filled when 2 is half full.
        write(1);
        prepare_spare(&journal).unwrap();
        let mut i = 2;
        while number() == 1 || journal.lock().unwrap().written < 2048 {
            write(i);
            i += 1;
        }
        assert_eq!(number(), 2);
        prepare_spare(&journal).unwrap();
        while number() == 2 {
            write(i);
            i += 1;
        }
        // Segment 3 in use: 1 is deleted, 2 (preallocated, full of entries) becomes 4.
        flush_round(&journal, &flush).unwrap();
        assert_eq!(numbers(dir.path()), [3, 4]);
        assert!(journal.lock().unwrap().spare.is_some());
        // Replay: what segment 3 holds, nothing of the stale entries in 4.
        let (got, last) = collect(dir.path()).unwrap();
        let first_in_3 = got.first().unwrap().0;
        assert_eq!(last, u64::from(i) - 1);
        assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        // Filling 3 switches into the recycled 4: its new entries replay, then the
        // older bytes after them end it.
        while number() == 3 {
            write(i);
            i += 1;
        }
        write(i);
        let (got, last) = collect(dir.path()).unwrap();
        assert_eq!(got.first().unwrap().0, first_in_3);
        assert_eq!(last, u64::from(i));
        assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        assert_eq!(got.last().unwrap().1, ops(i));
    }
}
