//! A streaming JSON masker: replaces the values at configured paths with `"[masked]"`
//! while the body passes chunk by chunk.
//!
//! The masker is a small incremental tokenizer. Its state is bounded: a stack of at most
//! [`MAX_DEPTH`] containers, each remembering its current key (at most [`MAX_KEY_BYTES`]
//! decoded bytes) or array index, plus a few bytes of escape state. Nothing else of the
//! body is kept, so a value split across chunks (even inside an escape sequence) is still
//! recognised and masked, and memory does not grow with the body. Several top-level values
//! in a row (JSON lines, Kubernetes watch streams) are accepted.
//!
//! Path syntax (a small JSONPath subset): `$` root, `.name` or `['name']` a member,
//! `.*` any member, `[*]` any element, `[3]` one element, `**` (or `..name`) any number of
//! levels. Examples: `$.users[*].email`, `**.password`, `$..token`, `$.items[*].data.*`.
//! A masked object or array is replaced as a whole.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Deepest nesting the masker follows; deeper documents fail (closed) rather than pass unmasked.
pub const MAX_DEPTH: usize = 256;
/// Longest object key compared in full; longer keys never match a named segment.
pub const MAX_KEY_BYTES: usize = 1024;

const MASKED: &[u8] = b"\"[masked]\"";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(Vec<u8>),
    AnyKey,
    Index(u64),
    AnyIndex,
    AnyDepth,
}

/// A compiled list of JSON paths to mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPaths {
    patterns: Vec<(String, Vec<Seg>)>,
}

impl JsonPaths {
    /// Compiles paths; the error names the offending path.
    pub fn parse<S: AsRef<str>>(paths: &[S]) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for p in paths {
            let p = p.as_ref();
            patterns.push((p.to_owned(), parse_path(p)?));
        }
        Ok(Self { patterns })
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

fn parse_path(p: &str) -> Result<Vec<Seg>, String> {
    let bad = |why: &str| format!("bad JSON path `{p}`: {why}");
    let mut segs = Vec::new();
    let mut rest = p.trim();
    if let Some(r) = rest.strip_prefix('$') {
        rest = r;
    } else if let Some(r) = rest.strip_prefix("**") {
        segs.push(Seg::AnyDepth);
        rest = r;
    } else if !rest.is_empty() && !rest.starts_with('.') && !rest.starts_with('[') {
        // A bare `name.sub` is read as `$.name.sub`.
        rest = p.trim();
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (name, r) = rest.split_at(end);
        segs.push(Seg::Key(name.as_bytes().to_vec()));
        rest = r;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            segs.push(Seg::AnyDepth);
            rest = r;
            if rest.starts_with('[') {
                continue;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let (name, r) = rest.split_at(end);
            if name.is_empty() {
                return Err(bad("`..` must be followed by a name"));
            }
            segs.push(if name == "*" {
                Seg::AnyKey
            } else {
                Seg::Key(name.as_bytes().to_vec())
            });
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (name, r2) = r.split_at(end);
            match name {
                "" => return Err(bad("empty member name")),
                "*" => segs.push(Seg::AnyKey),
                "**" => segs.push(Seg::AnyDepth),
                _ => segs.push(Seg::Key(name.as_bytes().to_vec())),
            }
            rest = r2;
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| bad("missing `]`"))?;
            let (inner, r2) = r.split_at(close);
            let inner = inner.trim();
            if inner == "*" {
                segs.push(Seg::AnyIndex);
            } else if let Some(q) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                segs.push(Seg::Key(q.as_bytes().to_vec()));
            } else {
                let n: u64 = inner
                    .parse()
                    .map_err(|_| bad("index must be `*`, a number or a quoted name"))?;
                segs.push(Seg::Index(n));
            }
            rest = r2.get(1..).unwrap_or("");
        } else {
            return Err(bad("expected `.`, `..` or `[`"));
        }
    }
    if segs.is_empty() {
        return Err(bad("the whole document cannot be masked"));
    }
    if segs.iter().all(|s| *s == Seg::AnyDepth) {
        return Err(bad("`**` alone would mask everything"));
    }
    Ok(segs)
}

#[derive(Debug)]
enum Frame {
    Object { key: Vec<u8>, overlong: bool },
    Array { index: u64 },
}

fn seg_matches(pattern: &[Seg], path: &[Frame]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Seg::AnyDepth, rest)) => {
            (0..=path.len()).any(|i| path.get(i..).is_some_and(|p| seg_matches(rest, p)))
        }
        Some((seg, rest)) => match path.split_first() {
            None => false,
            Some((frame, prest)) => {
                let one = match (seg, frame) {
                    (Seg::AnyKey, Frame::Object { .. }) => true,
                    (Seg::Key(k), Frame::Object { key, overlong }) => !overlong && k == key,
                    (Seg::AnyIndex, Frame::Array { .. }) => true,
                    (Seg::Index(n), Frame::Array { index }) => n == index,
                    _ => false,
                };
                one && seg_matches(rest, prest)
            }
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    Unicode { n: u8, acc: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Value,
    ArrayStart,
    ObjectStart,
    ObjectKey,
    Key(Esc),
    Colon,
    After,
    Str { esc: bool, skip: bool },
    Literal { skip: bool },
    Skip { depth: u32, in_str: bool, esc: bool },
}

/// Masks one JSON body incrementally. Feed every chunk to [`JsonMasker::feed`] in order.
#[derive(Debug)]
pub struct JsonMasker {
    paths: Arc<JsonPaths>,
    state: State,
    stack: Vec<Frame>,
    key: Vec<u8>,
    key_overlong: bool,
    high_surrogate: Option<u32>,
    counts: Vec<u64>,
    failed: Option<String>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

impl JsonMasker {
    /// A masker for one body.
    pub fn new(paths: Arc<JsonPaths>) -> Self {
        let n = paths.patterns.len();
        Self {
            paths,
            state: State::Value,
            stack: Vec::new(),
            key: Vec::new(),
            key_overlong: false,
            high_surrogate: None,
            counts: vec![0; n],
            failed: None,
        }
    }

    /// Masks `input`, appending the result to `out`. After an error the masker stays failed:
    /// the body is not valid JSON (or too deep) and the caller must withhold the rest.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        out.reserve(input.len());
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match self.step(b, out) {
                Ok(true) => i += 1,
                Ok(false) => {}
                Err(e) => {
                    let msg = format!("{e} (JSON body)");
                    self.failed = Some(msg.clone());
                    return Err(msg);
                }
            }
        }
        Ok(())
    }

    /// Checks that the body ended between values.
    pub fn finish(&self) -> Result<(), String> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        match self.state {
            State::After | State::Literal { .. } | State::Value if self.stack.is_empty() => Ok(()),
            _ => Err("JSON body ended inside a value".into()),
        }
    }

    /// Values masked so far, by path.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.paths
            .patterns
            .iter()
            .zip(&self.counts)
            .filter(|(_, n)| **n > 0)
            .map(|((p, _), n)| (format!("json:{p}"), *n))
            .collect()
    }

    /// Total values masked so far.
    pub fn masked_total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn matching_pattern(&self) -> Option<usize> {
        self.paths
            .patterns
            .iter()
            .position(|(_, segs)| seg_matches(segs, &self.stack))
    }

    fn push_key_byte(&mut self, b: u8) {
        if self.key.len() < MAX_KEY_BYTES {
            self.key.push(b);
        } else {
            self.key_overlong = true;
        }
    }

    fn push_key_char(&mut self, c: u32) {
        let ch = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0u8; 4];
        for &b in ch.encode_utf8(&mut buf).as_bytes() {
            self.push_key_byte(b);
        }
    }

    fn push_frame(&mut self, frame: Frame) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Processes one byte. `Ok(false)` means: state changed, process the same byte again.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> Result<bool, String> {
        match self.state {
            State::Value => {
                if is_ws(b) {
                    out.push(b);
                    return Ok(true);
                }
                if let Some(p) = self.matching_pattern() {
                    if let Some(c) = self.counts.get_mut(p) {
                        *c += 1;
                    }
                    out.extend_from_slice(MASKED);
                    self.state = match b {
                        b'"' => State::Str {
                            esc: false,
                            skip: true,
                        },
                        b'{' | b'[' => State::Skip {
                            depth: 1,
                            in_str: false,
                            esc: false,
                        },
                        _ if is_literal(b) => State::Literal { skip: true },
                        _ => return Err(format!("unexpected byte 0x{b:02x} where a value starts")),
                    };
                    return Ok(true);
                }
                match b {
                    b'"' => {
                        self.state = State::Str {
                            esc: false,
                            skip: false,
                        }
                    }
                    b'{' => {
                        self.push_frame(Frame::Object {
                            key: Vec::new(),
                            overlong: false,
                        })?;
                        self.state = State::ObjectStart;
                    }
                    b'[' => {
                        self.push_frame(Frame::Array { index: 0 })?;
                        self.state = State::ArrayStart;
                    }
                    _ if is_literal(b) => self.state = State::Literal { skip: false },
                    _ => return Err(format!("unexpected byte 0x{b:02x} where a value starts")),
                }
                out.push(b);
                Ok(true)
            }
            State::ArrayStart => {
                if is_ws(b) {
                    out.push(b);
                    return Ok(true);
                }
                if b == b']' {
                    self.stack.pop();
                    out.push(b);
                    self.state = State::After;
                    return Ok(true);
                }
                self.state = State::Value;
                Ok(false)
            }
            State::ObjectStart | State::ObjectKey => {
                out.push(b);
                if is_ws(b) {
                    return Ok(true);
                }
                match b {
                    b'}' if self.state == State::ObjectStart => {
                        self.stack.pop();
                        self.state = State::After;
                    }
                    b'"' => {
                        self.key.clear();
                        self.key_overlong = false;
                        self.high_surrogate = None;
                        self.state = State::Key(Esc::None);
                    }
                    _ => return Err(format!("unexpected byte 0x{b:02x} where a key starts")),
                }
                Ok(true)
            }
            State::Key(esc) => {
                out.push(b);
                match esc {
                    Esc::None => match b {
                        b'"' => {
                            if let Some(Frame::Object { key, overlong }) = self.stack.last_mut() {
                                std::mem::swap(key, &mut self.key);
                                *overlong = self.key_overlong;
                            }
                            self.state = State::Colon;
                        }
                        b'\\' => self.state = State::Key(Esc::Backslash),
                        _ => {
                            self.high_surrogate = None;
                            self.push_key_byte(b)
                        }
                    },
                    Esc::Backslash => {
                        let decoded = match b {
                            b'n' => Some(b'\n'),
                            b't' => Some(b'\t'),
                            b'r' => Some(b'\r'),
                            b'b' => Some(0x08),
                            b'f' => Some(0x0c),
                            b'u' => None,
                            other => Some(other),
                        };
                        match decoded {
                            Some(d) => {
                                self.push_key_byte(d);
                                self.state = State::Key(Esc::None);
                            }
                            None => self.state = State::Key(Esc::Unicode { n: 0, acc: 0 }),
                        }
                    }
                    Esc::Unicode { n, acc } => {
                        let digit = (b as char)
                            .to_digit(16)
                            .ok_or_else(|| "bad \\u escape in a key".to_string())?;
                        let acc = (acc << 4) | digit;
                        if n < 3 {
                            self.state = State::Key(Esc::Unicode { n: n + 1, acc });
                        } else {
                            match (acc, self.high_surrogate.take()) {
                                (0xD800..=0xDBFF, _) => self.high_surrogate = Some(acc),
                                (0xDC00..=0xDFFF, Some(hi)) => self.push_key_char(
                                    0x10000 + ((hi - 0xD800) << 10) + (acc - 0xDC00),
                                ),
                                (c, _) => self.push_key_char(c),
                            }
                            self.state = State::Key(Esc::None);
                        }
                    }
                }
                Ok(true)
            }
            State::Colon => {
                out.push(b);
                if is_ws(b) {
                    return Ok(true);
                }
                if b != b':' {
                    return Err(format!("unexpected byte 0x{b:02x} where `:` belongs"));
                }
                self.state = State::Value;
                Ok(true)
            }
            State::After => {
                if is_ws(b) {
                    out.push(b);
                    return Ok(true);
                }
                match (b, self.stack.last_mut()) {
                    (_, None) => {
                        // Another top-level value (JSON lines).
                        self.state = State::Value;
                        return Ok(false);
                    }
                    (b',', Some(Frame::Object { .. })) => self.state = State::ObjectKey,
                    (b',', Some(Frame::Array { index })) => {
                        *index += 1;
                        self.state = State::Value;
                    }
                    (b'}', Some(Frame::Object { .. })) | (b']', Some(Frame::Array { .. })) => {
                        self.stack.pop();
                    }
                    _ => return Err(format!("unexpected byte 0x{b:02x} after a value")),
                }
                out.push(b);
                Ok(true)
            }
            State::Str { esc, skip } => {
                if !skip {
                    out.push(b);
                }
                self.state = match (esc, b) {
                    (true, _) => State::Str { esc: false, skip },
                    (false, b'\\') => State::Str { esc: true, skip },
                    (false, b'"') => State::After,
                    (false, _) => State::Str { esc: false, skip },
                };
                Ok(true)
            }
            State::Literal { skip } => {
                if is_literal(b) {
                    if !skip {
                        out.push(b);
                    }
                    return Ok(true);
                }
                self.state = State::After;
                Ok(false)
            }
            State::Skip { depth, in_str, esc } => {
                self.state = if in_str {
                    match (esc, b) {
                        (true, _) => State::Skip {
                            depth,
                            in_str,
                            esc: false,
                        },
                        (false, b'\\') => State::Skip {
                            depth,
                            in_str,
                            esc: true,
                        },
                        (false, b'"') => State::Skip {
                            depth,
                            in_str: false,
                            esc: false,
                        },
                        _ => self.state,
                    }
                } else {
                    match b {
                        b'"' => State::Skip {
                            depth,
                            in_str: true,
                            esc: false,
                        },
                        b'{' | b'[' => {
                            if depth as usize >= MAX_DEPTH {
                                return Err(format!("nesting deeper than {MAX_DEPTH}"));
                            }
                            State::Skip {
                                depth: depth + 1,
                                in_str,
                                esc,
                            }
                        }
                        b'}' | b']' if depth <= 1 => State::After,
                        b'}' | b']' => State::Skip {
                            depth: depth - 1,
                            in_str,
                            esc,
                        },
                        _ => self.state,
                    }
                };
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_in_chunks(paths: &[&str], body: &str, chunk: usize) -> String {
        let paths = Arc::new(JsonPaths::parse(paths).unwrap());
        let mut m = JsonMasker::new(paths);
        let mut out = Vec::new();
        for c in body.as_bytes().chunks(chunk) {
            m.feed(c, &mut out).unwrap();
        }
        m.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn masks_paths_in_every_chunking() {
        let body = r#"{"users":[{"name":"a","email":"a@x.io","tags":[1,2]},{"email":"b\"@x.io","name":"b"}],"meta":{"password":"p\u0041ss","n":-1.5e3,"deep":{"password":{"x":[1,{"y":"}"}]}}},"email":"top"}"#;
        let want = r#"{"users":[{"name":"a","email":"[masked]","tags":[1,2]},{"email":"[masked]","name":"b"}],"meta":{"password":"[masked]","n":-1.5e3,"deep":{"password":"[masked]"}},"email":"top"}"#;
        for chunk in 1..body.len() + 1 {
            assert_eq!(
                mask_in_chunks(&["$.users[*].email", "**.password"], body, chunk),
                want,
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn escaped_keys_and_indices() {
        let body = r#"[{"pass\u0077ord":1,"a":[[10,20],[30,40]]}]"#;
        let got = mask_in_chunks(&["$..password", "$[0].a[*][1]"], body, 3);
        assert_eq!(
            got,
            r#"[{"pass\u0077ord":"[masked]","a":[[10,"[masked]"],[30,"[masked]"]]}]"#
        );
    }

    #[test]
    fn json_lines_and_literals() {
        let body = "{\"token\":true}\n{\"token\":null,\"k\":false}\n";
        let got = mask_in_chunks(&["$.token"], body, 2);
        assert_eq!(
            got,
            "{\"token\":\"[masked]\"}\n{\"token\":\"[masked]\",\"k\":false}\n"
        );
    }

    #[test]
    fn rejects_bad_json_and_bad_paths() {
        let paths = Arc::new(JsonPaths::parse(&["$.a"]).unwrap());
        let mut m = JsonMasker::new(paths);
        let mut out = Vec::new();
        assert!(m.feed(b"{\"a\" 1}", &mut out).is_err());
        assert!(m.feed(b"{}", &mut out).is_err(), "stays failed");
        assert!(JsonPaths::parse(&["$"]).is_err());
        assert!(JsonPaths::parse(&["**"]).is_err());
        assert!(JsonPaths::parse(&["$.a[x]"]).is_err());
        let deep = "[".repeat(MAX_DEPTH + 1);
        let mut m = JsonMasker::new(Arc::new(JsonPaths::parse(&["$.a"]).unwrap()));
        assert!(m.feed(deep.as_bytes(), &mut out).is_err());
    }

    #[test]
    fn counts_by_path() {
        let paths = Arc::new(JsonPaths::parse(&["**.email"]).unwrap());
        let mut m = JsonMasker::new(paths);
        let mut out = Vec::new();
        m.feed(br#"{"a":{"email":1},"b":[{"email":2}]}"#, &mut out)
            .unwrap();
        assert_eq!(m.counts().get("json:**.email"), Some(&2));
    }
}
