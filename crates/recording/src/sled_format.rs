//! The byte layout of records in the sled store, for readers of the raw database.
//!
//! The records of one append are packed into one sled value (at most
//! [`MAX_BATCH_RECORDS`] records and about [`MAX_BATCH_BYTES`] per value), so a batch of N events costs sled a couple of
//! key writes instead of 2·N. The key is [`BATCH_PREFIX`] followed by the sequence
//! number of the batch's first record (u64 big-endian); the value is the records one
//! after the other, each as
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | global sequence number (u64 big-endian) |
//! | 4 | length L of the record (u32 big-endian) |
//! | L | the record: format byte `1`, session sequence (u64 BE), previous hash (32), hash (32), canonical event JSON |
//!
//! Each record names its own sequence number, so a record removed from or moved
//! inside a batch shows up as missing or reordered when the chain is verified,
//! exactly as it would with one key per record.
//!
//! In a store with a directory, a batch value is usually not the records themselves
//! but a pointer to where they are in the store's record files (`DIR/records`, see the
//! [`crate::SledStore`] docs): 32 bytes, eight `0xff` bytes, the file number (u64 BE),
//! the offset (u64 BE), the length (u32 BE) and the CRC-32 of the pointed bytes (u32
//! BE). The bytes pointed to are records exactly as above. A store accepts both forms
//! for any batch (an inline value can never start with eight `0xff` bytes: that would
//! be sequence number `u64::MAX`).
//!
//! The functions below give raw access to single records of an open tree,
//! bypassing the chain: that is what anyone with write access to the files can do,
//! and what verification must catch (the tamper tests use them).

use std::path::Path;

use crate::record_log::{self, Pointer};
use crate::{RecordingError, Result};

/// The directory of a store's record files, inside the store's directory.
pub const RECORDS_DIR: &str = "records";

/// First byte of every batch key.
pub const BATCH_PREFIX: u8 = b'b';

/// Most records packed into one sled value.
pub const MAX_BATCH_RECORDS: usize = 256;

/// A batch value is closed once it reaches this size. sled writes a page larger than a
/// quarter of its 512 KiB segment as a separate blob file, and it rewrites a whole leaf
/// (up to 17 values before it splits) as the tail of the chain grows: with 16 KiB values
/// every rewrite of the tail leaf became a new file (file creation and page zeroing were
/// half of the writer's CPU under HTTP load). At about 6 KiB, plus the record that closes
/// the value, a full leaf stays under 128 KiB while records are under about 1.5 KiB (SQL
/// statements, HTTP requests with 1 KiB body excerpts); larger records can still make it
/// a blob.
pub const MAX_BATCH_BYTES: usize = 6 * 1024;

/// A batch kept in the record files (a pointer in the tree) is closed at this size
/// or at [`MAX_POINTED_BATCH_RECORDS`]: one append is usually one batch, and reading
/// one record reads at most about this much.
pub const MAX_POINTED_BATCH_BYTES: usize = 256 * 1024;

/// Most records in a batch kept in the record files.
pub const MAX_POINTED_BATCH_RECORDS: usize = 1024;

/// The key of the batch whose first record has sequence `first_seq`.
pub fn batch_key(first_seq: u64) -> [u8; 9] {
    let mut k = [BATCH_PREFIX; 9];
    k[1..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

/// Appends one record (sequence number and bytes) to a batch value under construction.
pub fn push_record(batch: &mut Vec<u8>, seq: u64, record: &[u8]) -> Result<()> {
    let len = u32::try_from(record.len())
        .map_err(|_| RecordingError::Encode(format!("record {seq} is larger than 4 GiB")))?;
    batch.extend_from_slice(&seq.to_be_bytes());
    batch.extend_from_slice(&len.to_be_bytes());
    batch.extend_from_slice(record);
    Ok(())
}

/// Appends one record to a batch value under construction, the record being written by
/// `write` straight into the value (after the sequence number and a length placeholder).
pub(crate) fn push_record_with<T>(
    batch: &mut Vec<u8>,
    seq: u64,
    write: impl FnOnce(&mut Vec<u8>) -> Result<T>,
) -> Result<T> {
    let start = batch.len();
    batch.extend_from_slice(&seq.to_be_bytes());
    batch.extend_from_slice(&[0u8; 4]);
    let body = batch.len();
    let out = match write(batch) {
        Ok(out) => out,
        Err(e) => {
            batch.truncate(start);
            return Err(e);
        }
    };
    let Ok(len) = u32::try_from(batch.len().saturating_sub(body)) else {
        batch.truncate(start);
        return Err(RecordingError::Encode(format!(
            "record {seq} is larger than 4 GiB"
        )));
    };
    if let Some(slot) = batch.get_mut(body.saturating_sub(4)..body) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    Ok(out)
}

/// The records of a batch value, in stored order, as `(seq, record bytes)`.
pub fn records(value: &[u8]) -> Records<'_> {
    Records { rest: value }
}

/// Iterator over the records of a batch value (see [`records`]).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u64, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = self.rest.split_first_chunk::<8>().and_then(|(seq, rest)| {
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
            (rest.len() >= len).then(|| (u64::from_be_bytes(*seq), rest.split_at(len)))
        });
        match parsed {
            Some((seq, (record, rest))) => {
                self.rest = rest;
                Some(Ok((seq, record)))
            }
            None => {
                self.rest = &[];
                Some(Err(RecordingError::Corrupt {
                    seq: None,
                    reason: "truncated record batch".into(),
                }))
            }
        }
    }
}

/// The batch (key and value) that holds `seq`, if any: the batch with the greatest
/// first sequence not above `seq`.
pub fn batch_holding(tree: &sled::Tree, seq: u64) -> Result<Option<(sled::IVec, sled::IVec)>> {
    Ok(tree
        .range(batch_key(0)..=batch_key(seq))
        .next_back()
        .transpose()?)
}

/// Finds record `seq` in a batch value.
pub fn find(value: &[u8], seq: u64) -> Result<Option<&[u8]>> {
    for item in records(value) {
        let (s, bytes) = item?;
        if s == seq {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// The records of a batch value as bytes: the value itself, or, for a pointer, the
/// bytes it points to in the record files of the store in directory `store_dir`.
pub fn batch_bytes(store_dir: &Path, value: &[u8]) -> Result<Vec<u8>> {
    match Pointer::decode(value) {
        Some(ptr) => record_log::read_detached(&store_dir.join(RECORDS_DIR), &ptr),
        None => Ok(value.to_vec()),
    }
}

/// The raw bytes of record `seq` in the tree of the store in directory `store_dir`.
pub fn read_record(tree: &sled::Tree, store_dir: &Path, seq: u64) -> Result<Option<Vec<u8>>> {
    match batch_holding(tree, seq)? {
        Some((_, value)) => {
            let value = batch_bytes(store_dir, &value)?;
            Ok(find(&value, seq)?.map(<[u8]>::to_vec))
        }
        None => Ok(None),
    }
}

/// Replaces (`Some`) or removes (`None`) the bytes of record `seq` in place, without
/// touching the chain head, the indexes or any other record: the batch holding it is
/// written back into the tree with its records inline. Returns whether the record existed.
pub fn write_record(
    tree: &sled::Tree,
    store_dir: &Path,
    seq: u64,
    bytes: Option<&[u8]>,
) -> Result<bool> {
    let Some((key, value)) = batch_holding(tree, seq)? else {
        return Ok(false);
    };
    let value = batch_bytes(store_dir, &value)?;
    let mut out = Vec::with_capacity(value.len());
    let mut found = false;
    for item in records(&value) {
        let (s, old) = item?;
        if s == seq {
            found = true;
            if let Some(new) = bytes {
                push_record(&mut out, s, new)?;
            }
        } else {
            push_record(&mut out, s, old)?;
        }
    }
    if !found {
        return Ok(false);
    }
    if out.is_empty() {
        tree.remove(key)?;
    } else {
        tree.insert(key, out)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_an_error() {
        let mut v = Vec::new();
        push_record(&mut v, 7, b"abc").unwrap();
        push_record(&mut v, 8, b"").unwrap();
        let got: Vec<(u64, Vec<u8>)> = records(&v)
            .map(|r| r.map(|(s, b)| (s, b.to_vec())))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(got, vec![(7, b"abc".to_vec()), (8, Vec::new())]);
        assert_eq!(find(&v, 8).unwrap(), Some(&b""[..]));
        assert_eq!(find(&v, 9).unwrap(), None);
        let cut = &v[..v.len() - 5];
        let r: Vec<_> = records(cut).collect();
        assert_eq!(r.len(), 2);
        assert!(r[1].is_err());
    }
}
