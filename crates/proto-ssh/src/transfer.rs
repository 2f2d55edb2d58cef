//! File transfer channels: what kind of transfer a request starts, and the record of
//! each file operation observed in it (`file_operation` events).

use std::sync::{Arc, Mutex};

use portcullis_core::{Event, EventKind, EventSink, SessionId};

use crate::scp::ScpWatch;
use crate::sftp::SftpWatch;

/// One file operation seen in a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileOp {
    pub op: String,
    pub path: String,
    pub to: Option<String>,
    pub direction: Option<String>,
    pub bytes: u64,
    pub size: Option<u64>,
    pub error: Option<String>,
}

/// A file transfer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransferKind {
    /// `sftp`, `scp` or `rsync`.
    pub protocol: &'static str,
    /// `upload` / `download`, if the request says.
    pub direction: Option<&'static str>,
    /// For scp: the path argument and whether it names a directory to copy into.
    scp: Option<(bool, String, bool)>,
}

impl TransferKind {
    /// The sftp subsystem.
    pub fn sftp() -> Self {
        Self {
            protocol: "sftp",
            direction: None,
            scp: None,
        }
    }

    /// Whether an exec command line starts a file transfer (`scp`, `sftp-server`,
    /// `rsync --server`), and which.
    pub fn of_exec(command: &str) -> Option<Self> {
        let words = split_words(command);
        let first = words.first()?;
        let base = first.rsplit('/').next().unwrap_or(first);
        match base {
            "scp" => {
                let mut upload = None;
                let mut into_dir = false;
                let mut path = None;
                let mut options = true;
                for w in &words[1..] {
                    if options && w == "--" {
                        options = false;
                    } else if options && w.starts_with('-') && w.len() > 1 {
                        for c in w.chars().skip(1) {
                            match c {
                                't' => upload = Some(true),
                                'f' => upload = Some(false),
                                'd' | 'r' => into_dir = true,
                                _ => {}
                            }
                        }
                    } else {
                        path = Some(w.clone());
                    }
                }
                Some(Self {
                    protocol: "scp",
                    direction: upload.map(|u| if u { "upload" } else { "download" }),
                    scp: upload.map(|u| (u, path.unwrap_or_else(|| ".".into()), into_dir)),
                })
            }
            "sftp-server" => Some(Self::sftp()),
            "rsync" => Some(Self {
                protocol: "rsync",
                direction: Some(if words.iter().any(|w| w == "--sender") {
                    "download"
                } else {
                    "upload"
                }),
                scp: None,
            }),
            _ => None,
        }
    }
}

/// Splits a command line into words, removing single and double quotes and
/// backslash escapes (enough for the command lines scp and sftp clients send).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

enum Watch {
    Sftp(SftpWatch),
    /// scp, with the side that sends files: true = the client (upload).
    Scp(ScpWatch, bool),
}

/// Observes a transfer channel in both directions and records its file operations.
pub(crate) struct TransferLog {
    protocol: &'static str,
    watch: Mutex<Option<Watch>>,
    sink: Arc<dyn EventSink>,
    session: SessionId,
    seq: u64,
}

impl TransferLog {
    /// A log for a transfer of `kind`, or `None` when its protocol is not parsed (rsync).
    pub fn new(
        kind: &TransferKind,
        sink: Arc<dyn EventSink>,
        session: SessionId,
        seq: u64,
    ) -> Option<Arc<Self>> {
        let watch = match (kind.protocol, &kind.scp) {
            ("sftp", _) => Watch::Sftp(SftpWatch::default()),
            ("scp", Some((upload, path, into_dir))) => {
                Watch::Scp(ScpWatch::new(*upload, path, *into_dir), *upload)
            }
            _ => return None,
        };
        Some(Arc::new(Self {
            protocol: kind.protocol,
            watch: Mutex::new(Some(watch)),
            sink,
            session,
            seq,
        }))
    }

    /// Client → host bytes.
    pub fn client_data(&self, data: &[u8]) {
        self.with(|w, out| match w {
            Watch::Sftp(s) => s.client_data(data, out),
            Watch::Scp(s, true) => s.data(data, out),
            Watch::Scp(_, false) => {}
        });
    }

    /// Host → client bytes.
    pub fn host_data(&self, data: &[u8]) {
        self.with(|w, out| match w {
            Watch::Sftp(s) => s.host_data(data, out),
            Watch::Scp(s, false) => s.data(data, out),
            Watch::Scp(_, true) => {}
        });
    }

    /// The channel ended (`why`: how); what was still in flight is recorded.
    pub fn finish(&self, why: &str) {
        self.with(|w, out| match w {
            Watch::Sftp(s) => s.finish(why, out),
            Watch::Scp(s, _) => s.finish(why, out),
        });
        if let Ok(mut slot) = self.watch.lock() {
            *slot = None;
        }
    }

    fn with(&self, f: impl FnOnce(&mut Watch, &mut Vec<FileOp>)) {
        let mut out = Vec::new();
        if let Ok(mut slot) = self.watch.lock()
            && let Some(w) = slot.as_mut()
        {
            f(w, &mut out);
        }
        for op in out {
            self.record(op);
        }
    }

    fn record(&self, op: FileOp) {
        tracing::info!(session = %self.session, seq = self.seq, op = %op.op, path = %op.path, bytes = op.bytes, "file operation");
        let event = Event::now(
            self.session,
            EventKind::FileOperation {
                seq: self.seq,
                protocol: self.protocol.into(),
                op: op.op,
                path: op.path,
                to: op.to,
                direction: op.direction,
                bytes: op.bytes,
                size: op.size,
                error: op.error,
            },
        );
        if let Err(e) = self.sink.submit(event) {
            tracing::error!(session = %self.session, seq = self.seq, error = %e, "file operation not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exec_lines_are_classified() {
        let k = TransferKind::of_exec("scp -t -- '/tmp/a b'").unwrap();
        assert_eq!((k.protocol, k.direction), ("scp", Some("upload")));
        assert_eq!(k.scp, Some((true, "/tmp/a b".into(), false)));
        let k = TransferKind::of_exec("scp -r -f /var/log").unwrap();
        assert_eq!(k.direction, Some("download"));
        assert_eq!(
            TransferKind::of_exec("/usr/lib/openssh/sftp-server")
                .unwrap()
                .protocol,
            "sftp"
        );
        assert_eq!(
            TransferKind::of_exec("rsync --server --sender -logDtpre.iLsfxC . /x")
                .unwrap()
                .direction,
            Some("download")
        );
        assert!(TransferKind::of_exec("ls -l").is_none());
    }
}
