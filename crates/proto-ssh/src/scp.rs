//! Watching a legacy scp transfer (`scp -t` / `scp -f`, what `scp -O` runs) as it
//! passes: the sending side's `C` (file), `D` (directory), `E` (end of directory) and
//! `T` (times) lines and the file data that follows each `C` line. Only the current
//! control line (at most [`MAX_LINE`] bytes) is kept; data is counted, never stored.

use crate::transfer::FileOp;

/// Longest control line kept; longer lines are cut (the name is then truncated).
const MAX_LINE: usize = 4096;

enum State {
    /// Reading a control line.
    Line(Vec<u8>),
    /// File data: `left` bytes of `size` to go.
    Data { path: String, size: u64, left: u64 },
    /// The status byte the sender writes after a file's data.
    Status,
    /// An error line from the sender (after 0x01 / 0x02).
    Error(Vec<u8>),
}

/// The state of one scp transfer, seen from the side that sends files.
pub(crate) struct ScpWatch {
    direction: &'static str,
    root: String,
    single_target: Option<String>,
    dirs: Vec<String>,
    state: State,
}

impl ScpWatch {
    /// A watch for `scp -t ARGS` (`upload`) or `scp -f ARGS` (`download`); `path` is the
    /// path argument, `into_dir` whether files go into it as a directory (`-d`, `-r`).
    pub fn new(upload: bool, path: &str, into_dir: bool) -> Self {
        let (root, single_target) = if upload {
            if into_dir || path.ends_with('/') || path == "." {
                (path.trim_end_matches('/').to_string(), None)
            } else {
                (path.to_string(), Some(path.to_string()))
            }
        } else if path.ends_with('/') {
            (path.trim_end_matches('/').to_string(), None)
        } else {
            let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let parent = if parent.is_empty() && path.starts_with('/') {
                "/"
            } else {
                parent
            };
            (parent.to_string(), None)
        };
        Self {
            direction: if upload { "upload" } else { "download" },
            root,
            single_target,
            dirs: Vec::new(),
            state: State::Line(Vec::new()),
        }
    }

    fn path_of(&self, name: &str) -> String {
        if self.dirs.is_empty()
            && let Some(t) = &self.single_target
        {
            return t.clone();
        }
        let mut p = self.root.clone();
        for part in self.dirs.iter().map(String::as_str).chain([name]) {
            if !p.is_empty() && !p.ends_with('/') {
                p.push('/');
            }
            p.push_str(part);
        }
        p
    }

    /// Bytes from the sending side.
    pub fn data(&mut self, mut data: &[u8], out: &mut Vec<FileOp>) {
        while !data.is_empty() {
            match &mut self.state {
                State::Line(line) => {
                    if line.is_empty() {
                        match data[0] {
                            0 => {
                                data = &data[1..];
                                continue;
                            }
                            1 | 2 => {
                                self.state = State::Error(Vec::new());
                                data = &data[1..];
                                continue;
                            }
                            _ => {}
                        }
                    }
                    match data.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            let room = MAX_LINE.saturating_sub(line.len());
                            line.extend_from_slice(&data[..i.min(room)]);
                            let text = String::from_utf8_lossy(line).into_owned();
                            data = &data[i + 1..];
                            self.state = State::Line(Vec::new());
                            self.control(&text, out);
                        }
                        None => {
                            let room = MAX_LINE.saturating_sub(line.len());
                            line.extend_from_slice(&data[..data.len().min(room)]);
                            data = &[];
                        }
                    }
                }
                State::Data { path, size, left } => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        out.push(FileOp {
                            op: self.direction.into(),
                            path: std::mem::take(path),
                            to: None,
                            direction: Some(self.direction.into()),
                            bytes: *size,
                            size: Some(*size),
                            error: None,
                        });
                        self.state = State::Status;
                    }
                }
                State::Status => {
                    data = &data[1..];
                    self.state = State::Line(Vec::new());
                }
                State::Error(line) => match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        let room = MAX_LINE.saturating_sub(line.len());
                        line.extend_from_slice(&data[..i.min(room)]);
                        let message = String::from_utf8_lossy(line).trim().to_string();
                        data = &data[i + 1..];
                        out.push(FileOp {
                            op: self.direction.into(),
                            path: self.path_of(""),
                            to: None,
                            direction: None,
                            bytes: 0,
                            size: None,
                            error: Some(message),
                        });
                        self.state = State::Line(Vec::new());
                    }
                    None => {
                        let room = MAX_LINE.saturating_sub(line.len());
                        line.extend_from_slice(&data[..data.len().min(room)]);
                        data = &[];
                    }
                },
            }
        }
    }

    fn control(&mut self, line: &str, out: &mut Vec<FileOp>) {
        let mut parts = line.splitn(3, ' ');
        let head = parts.next().unwrap_or_default();
        match head.chars().next() {
            Some('C') => {
                let size = parts.next().and_then(|s| s.parse::<u64>().ok());
                let name = parts.next().unwrap_or_default().to_string();
                let Some(size) = size else { return };
                let path = self.path_of(&name);
                if size == 0 {
                    out.push(FileOp {
                        op: self.direction.into(),
                        path,
                        to: None,
                        direction: Some(self.direction.into()),
                        bytes: 0,
                        size: Some(0),
                        error: None,
                    });
                    self.state = State::Status;
                } else {
                    self.state = State::Data {
                        path,
                        size,
                        left: size,
                    };
                }
            }
            Some('D') => {
                let _ = parts.next();
                let name = parts.next().unwrap_or_default().to_string();
                let path = self.path_of(&name);
                if self.dirs.len() < 256 {
                    self.dirs.push(name);
                }
                out.push(FileOp {
                    op: "mkdir".into(),
                    path,
                    to: None,
                    direction: Some(self.direction.into()),
                    bytes: 0,
                    size: None,
                    error: None,
                });
            }
            Some('E') => {
                self.dirs.pop();
            }
            _ => {}
        }
    }

    /// The transfer ended: a file cut off in the middle is reported with what passed.
    pub fn finish(&mut self, why: &str, out: &mut Vec<FileOp>) {
        if let State::Data { path, size, left } = &mut self.state {
            out.push(FileOp {
                op: self.direction.into(),
                path: std::mem::take(path),
                to: None,
                direction: Some(self.direction.into()),
                bytes: *size - *left,
                size: Some(*size),
                error: Some(format!("{why} after {} of {size} bytes", *size - *left)),
            });
        }
        self.state = State::Line(Vec::new());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn files_and_directories_in_any_chunking() {
        let mut stream = b"D0755 0 app\nC0644 5 a.txt\nhello\0C0644 0 empty\n\0E\n".to_vec();
        stream.extend_from_slice(b"C0600 3 top\nabc\0");
        for chunk in [1usize, 3, 100] {
            let mut w = ScpWatch::new(true, "/srv", true);
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                w.data(c, &mut out);
            }
            let got: Vec<(String, String, u64)> = out
                .iter()
                .map(|o| (o.op.clone(), o.path.clone(), o.bytes))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("mkdir".into(), "/srv/app".into(), 0),
                    ("upload".into(), "/srv/app/a.txt".into(), 5),
                    ("upload".into(), "/srv/app/empty".into(), 0),
                    ("upload".into(), "/srv/top".into(), 3),
                ]
            );
        }
    }

    #[test]
    fn a_cut_transfer_reports_what_passed() {
        let mut w = ScpWatch::new(false, "/etc/big", false);
        let mut out = Vec::new();
        w.data(b"C0644 100 big\n0123456789", &mut out);
        assert!(out.is_empty());
        w.finish("client disconnected", &mut out);
        assert_eq!(out[0].path, "/etc/big");
        assert_eq!(out[0].bytes, 10);
        assert!(out[0].error.as_deref().unwrap().contains("10 of 100"));
    }
}
