//! Watching an sftp (version 3) session as it passes: which files are opened, how many
//! bytes are written and read per handle, removals, renames, directories. Packets are
//! never altered and at most a packet's first [`PREFIX_CAP`] bytes are kept.

use std::collections::HashMap;

use crate::transfer::FileOp;

/// Bytes of a packet kept to read its fields (paths are shorter; data is only counted).
pub(crate) const PREFIX_CAP: usize = 8 * 1024;
/// Requests awaiting an answer, and open handles, tracked at most.
const MAX_TRACKED: usize = 4096;

const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_SETSTAT: u8 = 9;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_SYMLINK: u8 = 20;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;
const FXP_EXTENDED: u8 = 200;

const FXF_WRITE: u32 = 0x02;

/// Splits a byte stream into sftp packets: `(length, first bytes)` per complete packet.
#[derive(Default)]
pub(crate) struct PacketReader {
    len_buf: [u8; 4],
    len_have: usize,
    total: u32,
    remaining: u32,
    prefix: Vec<u8>,
}

impl PacketReader {
    /// Feeds bytes; calls `packet(total_length, prefix)` for each packet that completes.
    pub fn feed(&mut self, mut data: &[u8], mut packet: impl FnMut(u32, &[u8])) {
        while !data.is_empty() {
            if self.len_have < 4 {
                let n = (4 - self.len_have).min(data.len());
                self.len_buf[self.len_have..self.len_have + n].copy_from_slice(&data[..n]);
                self.len_have += n;
                data = &data[n..];
                if self.len_have == 4 {
                    self.total = u32::from_be_bytes(self.len_buf);
                    self.remaining = self.total;
                    self.prefix.clear();
                    if self.total == 0 {
                        packet(0, &[]);
                        self.len_have = 0;
                    }
                }
                continue;
            }
            let n = (self.remaining as usize).min(data.len());
            let keep = n.min(PREFIX_CAP.saturating_sub(self.prefix.len()));
            self.prefix.extend_from_slice(&data[..keep]);
            self.remaining -= n as u32;
            data = &data[n..];
            if self.remaining == 0 {
                packet(self.total, &self.prefix);
                self.len_have = 0;
            }
        }
    }
}

/// Reads sftp fields from a packet prefix.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.0.get(..4)?;
        self.0 = &self.0[4..];
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let b = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(b)
    }
    fn string(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

enum Pending {
    Open { path: String, flags: u32 },
    Read { handle: Vec<u8> },
    Op(FileOp),
}

struct OpenFile {
    path: String,
    flags: u32,
    read: u64,
    written: u64,
}

impl OpenFile {
    fn into_op(self, error: Option<String>) -> FileOp {
        let (op, direction) = match (self.written > 0, self.read > 0) {
            (true, false) => ("write", Some("upload")),
            (false, true) => ("read", Some("download")),
            (true, true) => ("read-write", None),
            (false, false) if self.flags & FXF_WRITE != 0 => ("write", Some("upload")),
            (false, false) => ("open", None),
        };
        FileOp {
            op: op.into(),
            path: self.path,
            to: None,
            direction: direction.map(String::from),
            bytes: self.read + self.written,
            size: None,
            error,
        }
    }
}

/// The state of one sftp session.
#[derive(Default)]
pub(crate) struct SftpWatch {
    from_client: PacketReader,
    from_host: PacketReader,
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, OpenFile>,
}

impl SftpWatch {
    /// Client → host bytes; returns the operations that ended.
    pub fn client_data(&mut self, data: &[u8], out: &mut Vec<FileOp>) {
        let mut reader = std::mem::take(&mut self.from_client);
        reader.feed(data, |total, prefix| self.request(total, prefix, out));
        self.from_client = reader;
    }

    /// Host → client bytes; returns the operations that ended.
    pub fn host_data(&mut self, data: &[u8], out: &mut Vec<FileOp>) {
        let mut reader = std::mem::take(&mut self.from_host);
        reader.feed(data, |total, prefix| self.reply(total, prefix, out));
        self.from_host = reader;
    }

    /// The session ended: files still open and unanswered operations are reported.
    pub fn finish(&mut self, why: &str, out: &mut Vec<FileOp>) {
        for (_, file) in self.handles.drain() {
            out.push(file.into_op(Some(format!("{why} before the file was closed"))));
        }
        for (_, p) in self.pending.drain() {
            if let Pending::Op(mut op) = p {
                op.error = Some(format!("{why} before the host answered"));
                out.push(op);
            }
        }
    }

    fn track(&mut self, id: u32, p: Pending) {
        if self.pending.len() < MAX_TRACKED {
            self.pending.insert(id, p);
        }
    }

    fn request(&mut self, total: u32, prefix: &[u8], out: &mut Vec<FileOp>) {
        let mut f = Fields(prefix);
        let Some(kind) = f.u8() else { return };
        let Some(id) = f.u32() else { return };
        let op = |op: &str, path: String, to: Option<String>| {
            Pending::Op(FileOp {
                op: op.into(),
                path,
                to,
                direction: None,
                bytes: 0,
                size: None,
                error: None,
            })
        };
        match kind {
            FXP_OPEN => {
                if let (Some(path), Some(flags)) = (f.string(), f.u32()) {
                    self.track(id, Pending::Open { path, flags });
                }
            }
            FXP_CLOSE => {
                if let Some(handle) = f.bytes()
                    && let Some(file) = self.handles.remove(handle)
                {
                    out.push(file.into_op(None));
                }
            }
            FXP_READ => {
                if let Some(handle) = f.bytes()
                    && self.handles.contains_key(handle)
                {
                    self.track(
                        id,
                        Pending::Read {
                            handle: handle.to_vec(),
                        },
                    );
                }
            }
            FXP_WRITE => {
                if let Some(handle) = f.bytes() {
                    // type, id, handle, offset, data length: the rest is data.
                    let header = 1 + 4 + 4 + handle.len() as u64 + 8 + 4;
                    let data = u64::from(total).saturating_sub(header);
                    if let Some(file) = self.handles.get_mut(handle) {
                        file.written += data;
                    }
                }
            }
            FXP_REMOVE | FXP_RMDIR | FXP_MKDIR | FXP_SETSTAT => {
                if let Some(path) = f.string() {
                    let name = match kind {
                        FXP_REMOVE => "remove",
                        FXP_RMDIR => "rmdir",
                        FXP_MKDIR => "mkdir",
                        _ => "setstat",
                    };
                    self.track(id, op(name, path, None));
                }
            }
            FXP_RENAME | FXP_SYMLINK => {
                if let (Some(a), Some(b)) = (f.string(), f.string()) {
                    let name = if kind == FXP_RENAME {
                        "rename"
                    } else {
                        "symlink"
                    };
                    self.track(id, op(name, a, Some(b)));
                }
            }
            FXP_EXTENDED => {
                if let Some(name) = f.string()
                    && name == "posix-rename@openssh.com"
                    && let (Some(a), Some(b)) = (f.string(), f.string())
                {
                    self.track(id, op("rename", a, Some(b)));
                }
            }
            _ => {}
        }
    }

    fn reply(&mut self, total: u32, prefix: &[u8], out: &mut Vec<FileOp>) {
        let mut f = Fields(prefix);
        let Some(kind) = f.u8() else { return };
        let Some(id) = f.u32() else { return };
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match (kind, pending) {
            (FXP_HANDLE, Pending::Open { path, flags }) => {
                if let Some(handle) = f.bytes()
                    && self.handles.len() < MAX_TRACKED
                {
                    self.handles.insert(
                        handle.to_vec(),
                        OpenFile {
                            path,
                            flags,
                            read: 0,
                            written: 0,
                        },
                    );
                }
            }
            (FXP_DATA, Pending::Read { handle }) => {
                // type, id, data length: the rest is data.
                let data = u64::from(total).saturating_sub(1 + 4 + 4);
                if let Some(file) = self.handles.get_mut(&handle) {
                    file.read += data;
                }
            }
            (FXP_STATUS, Pending::Open { path, flags }) => {
                let code = f.u32().unwrap_or(0);
                let message = f.string().unwrap_or_default();
                let mut op = OpenFile {
                    path,
                    flags,
                    read: 0,
                    written: 0,
                }
                .into_op(None);
                op.op = "open".into();
                op.direction = None;
                op.error = Some(status_text(code, &message));
                out.push(op);
            }
            (FXP_STATUS, Pending::Op(mut op)) => {
                let code = f.u32().unwrap_or(0);
                if code != 0 {
                    let message = f.string().unwrap_or_default();
                    op.error = Some(status_text(code, &message));
                }
                out.push(op);
            }
            (_, Pending::Op(op)) => out.push(op),
            _ => {}
        }
    }
}

fn status_text(code: u32, message: &str) -> String {
    let name = match code {
        1 => "EOF",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        8 => "operation unsupported",
        _ => "error",
    };
    if message.is_empty() {
        format!("host status {code} ({name})")
    } else {
        format!("host status {code} ({name}): {message}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn packet(kind: u8, id: u32, fields: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![kind];
        body.extend_from_slice(&id.to_be_bytes());
        for f in fields {
            body.extend_from_slice(f);
        }
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&body);
        p
    }

    fn s(text: &[u8]) -> Vec<u8> {
        let mut v = (text.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(text);
        v
    }

    #[test]
    fn write_session_is_reported_at_close_whatever_the_chunking() {
        let mut stream = Vec::new();
        stream.extend(packet(
            FXP_OPEN,
            1,
            &[
                &s(b"/tmp/up.bin"),
                &0x1au32.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        ));
        let reply = packet(FXP_HANDLE, 1, &[&s(b"h1")]);
        let write = packet(
            FXP_WRITE,
            2,
            &[&s(b"h1"), &0u64.to_be_bytes(), &s(&[7u8; 3000])],
        );
        let close = packet(FXP_CLOSE, 3, &[&s(b"h1")]);
        for chunk in [1usize, 7, 4096] {
            let mut w = SftpWatch::default();
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                w.client_data(c, &mut out);
            }
            w.host_data(&reply, &mut out);
            for c in write.chunks(chunk).chain(close.chunks(chunk)) {
                w.client_data(c, &mut out);
            }
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].path, "/tmp/up.bin");
            assert_eq!(out[0].op, "write");
            assert_eq!(out[0].bytes, 3000);
            assert_eq!(out[0].direction.as_deref(), Some("upload"));
        }
    }
}
