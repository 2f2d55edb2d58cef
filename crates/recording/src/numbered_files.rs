//! Files named by a number (16 decimal digits) and an extension, kept in one directory:
//! the journal's segments (`.log`) and the record files (`.rec`).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::Result;

/// The path of file `number` with extension `ext` in `dir`.
pub(crate) fn path(dir: &Path, number: u64, ext: &str) -> PathBuf {
    dir.join(format!("{number:016}.{ext}"))
}

/// The numbered files with extension `ext` in `dir`, in number order.
pub(crate) fn list(dir: &Path, ext: &str) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(ext))
            .and_then(|n| n.strip_suffix('.'))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Makes the directory's entries (files created, renamed or deleted) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
