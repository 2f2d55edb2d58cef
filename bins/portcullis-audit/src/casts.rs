//! Terminal recordings: the asciicast v2 files the SSH gateway writes for PTY channels.
//! Each is pinned in the record by the command's completion tag
//! (`exit-status 0 cast=NAME sha256=HEX`); here they are found, checked against that
//! SHA-256 and copied out, streaming.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use portcullis_core::{EventKind, SessionId};
use portcullis_recording::StoredEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::source::AuditError;

/// Directory of the cast files inside an exported bundle.
pub const BUNDLE_CASTS_DIR: &str = "casts";
/// The list of cast files inside an exported bundle.
pub const BUNDLE_CASTS_LIST: &str = "casts.json";

/// A cast file as the record pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CastPin {
    /// File name in the recordings directory.
    pub name: String,
    /// Hex SHA-256 from the completion tag.
    pub sha256: String,
    /// The session.
    pub session: SessionId,
    /// The command's sequence number in the session.
    pub command: u64,
}

/// One entry of `casts.json` in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundledCast {
    /// The pin.
    #[serde(flatten)]
    pub pin: CastPin,
    /// Size in bytes.
    pub bytes: u64,
}

/// Splits a completion tag into its exit part and the pinned cast, if any.
pub fn split_tag(tag: &str) -> (&str, Option<(&str, &str)>) {
    let Some(at) = tag.find(" cast=") else {
        return (tag, None);
    };
    let exit = &tag[..at];
    let mut name = None;
    let mut sha = None;
    for part in tag[at..].split_whitespace() {
        if let Some(v) = part.strip_prefix("cast=") {
            name = Some(v);
        } else if let Some(v) = part.strip_prefix("sha256=") {
            sha = Some(v);
        }
    }
    match (name, sha) {
        (Some(n), Some(s)) => (exit, Some((n, s))),
        _ => (tag, None),
    }
}

/// The cast pinned by a record, if it holds a command result with one (a result record,
/// or a command record with its result folded in).
pub fn pin_of(record: &StoredEvent) -> Option<CastPin> {
    let (seq, completion) = match &record.event.kind {
        EventKind::CommandResult {
            seq, completion, ..
        } => (seq, completion),
        EventKind::Command {
            seq,
            result: Some(o),
            ..
        } => (seq, &o.completion),
        _ => return None,
    };
    let (_, pin) = split_tag(completion.tag.as_deref()?);
    let (name, sha256) = pin?;
    Some(CastPin {
        name: name.to_string(),
        sha256: sha256.to_ascii_lowercase(),
        session: record.event.session,
        command: *seq,
    })
}

fn bad(pin: &CastPin, what: impl std::fmt::Display) -> AuditError {
    AuditError::Recording(format!(
        "{} (session {}, command #{}): {what}",
        pin.name, pin.session, pin.command
    ))
}

/// `dir/name`, refusing names that would leave `dir`.
fn path_in(dir: &Path, pin: &CastPin) -> Result<PathBuf, AuditError> {
    let plain = !pin.name.is_empty()
        && !pin.name.contains(['/', '\\'])
        && pin.name != "."
        && pin.name != "..";
    if !plain {
        return Err(bad(pin, "not a plain file name"));
    }
    Ok(dir.join(&pin.name))
}

/// Streams `from` into `to` while hashing; returns the hex SHA-256 and the size.
fn hash_copy(from: &Path, mut to: impl Write, pin: &CastPin) -> Result<(String, u64), AuditError> {
    let file = File::open(from).map_err(|e| bad(pin, format!("{}: {e}", from.display())))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| bad(pin, format!("reading {}: {e}", from.display())))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        to.write_all(chunk)?;
        bytes += n as u64;
    }
    to.flush()?;
    Ok((hex::encode(hasher.finalize()), bytes))
}

fn mismatch(pin: &CastPin, got: &str) -> AuditError {
    bad(
        pin,
        format!(
            "SHA-256 mismatch: the file hashes to {got}, the record pins {} — the recording was altered or replaced",
            pin.sha256
        ),
    )
}

/// Checks the cast in `dir` against its pin; returns its size.
pub fn check(dir: &Path, pin: &CastPin) -> Result<u64, AuditError> {
    let path = path_in(dir, pin)?;
    let (got, bytes) = hash_copy(&path, std::io::sink(), pin)?;
    if got != pin.sha256 {
        return Err(mismatch(pin, &got));
    }
    Ok(bytes)
}

/// Copies the cast from `dir` to the file `out`, checking it on the way: `out` appears
/// (renamed from a temporary file) only when the bytes match the pin.
pub fn copy_checked(dir: &Path, pin: &CastPin, out: &Path) -> Result<u64, AuditError> {
    let from = path_in(dir, pin)?;
    let tmp = out.with_extension("cast.partial");
    let file = File::create(&tmp)
        .map_err(|e| AuditError::Usage(format!("cannot write {}: {e}", tmp.display())))?;
    let result = hash_copy(&from, std::io::BufWriter::new(file), pin);
    let (got, bytes) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if got != pin.sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(mismatch(pin, &got));
    }
    std::fs::rename(&tmp, out)?;
    Ok(bytes)
}

/// Writes the cast to `out` (stdout): checked first, then streamed and checked again, so
/// a file changed in between is still reported.
pub fn write_checked(dir: &Path, pin: &CastPin, out: impl Write) -> Result<u64, AuditError> {
    check(dir, pin)?;
    let (got, bytes) = hash_copy(&path_in(dir, pin)?, out, pin)?;
    if got != pin.sha256 {
        return Err(mismatch(pin, &got));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_into_exit_and_pin() {
        assert_eq!(split_tag("exit-status 0"), ("exit-status 0", None));
        assert_eq!(
            split_tag("exit-status 3 cast=a-1.cast sha256=ab12"),
            ("exit-status 3", Some(("a-1.cast", "ab12")))
        );
        assert_eq!(
            split_tag("no exit status cast=x.cast"),
            ("no exit status cast=x.cast", None)
        );
    }

    fn pin(name: &str, sha256: &str) -> CastPin {
        CastPin {
            name: name.into(),
            sha256: sha256.into(),
            session: SessionId::new(),
            command: 1,
        }
    }

    #[test]
    fn names_outside_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../x.cast", "a/b.cast", "..", ""] {
            let e = check(dir.path(), &pin(name, "00")).unwrap_err();
            assert!(e.to_string().contains("plain file name"), "{e}");
        }
    }

    #[test]
    fn a_changed_file_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n";
        std::fs::write(dir.path().join("s-1.cast"), body).unwrap();
        let good = pin("s-1.cast", &hex::encode(Sha256::digest(body)));
        let out = dir.path().join("out.cast");
        assert_eq!(
            copy_checked(dir.path(), &good, &out).unwrap(),
            body.len() as u64
        );
        assert_eq!(std::fs::read(&out).unwrap(), body);

        std::fs::write(dir.path().join("s-1.cast"), b"{\"version\":2}\n").unwrap();
        let out2 = dir.path().join("out2.cast");
        let e = copy_checked(dir.path(), &good, &out2).unwrap_err();
        assert!(e.to_string().contains("SHA-256 mismatch"), "{e}");
        assert!(!out2.exists());
        assert!(!dir.path().join("out2.cast.partial").exists());
    }
}
