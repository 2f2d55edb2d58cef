//! Streaming masking of byte streams cut into arbitrary chunks.

use crate::engine::{CONTEXT, Mode, PemState, PemStep, Scratch};
use crate::{MaskReport, Masker};

/// Masks a byte stream (terminal output, an HTTP body) delivered in chunks cut anywhere.
///
/// The output of any sequence of [`push`](StreamMasker::push) calls followed by
/// [`finish`](StreamMasker::finish) equals the one-shot [`Masker::mask_text`] output of the
/// concatenated input. To get there, a masker holds back the bytes whose fate depends on
/// input not seen yet:
///
/// - the tail from the first candidate that is still undecided (a value that may
///   continue in the next chunk), at most [`MAX_MATCH`](crate::MAX_MATCH) + 2 bytes;
/// - the last letters/digits/`.-_%+:(` (at most 64 bytes) that a later `@` or `:`
///   could make part of an e-mail or IPv6 address, and a trailing prefix of a keyword
///   such as `-----BEGIN `.
///
/// So the carry never exceeds `MAX_MATCH + 66` bytes (plus 66 bytes of already
/// emitted look-behind context). PEM private key blocks are the exception to
/// `MAX_MATCH`: once a `-----BEGIN ... PRIVATE KEY-----` header is seen, the masker
/// enters an "inside PEM" state and drops bytes until the `-----END ...-----` line
/// (or the first byte that cannot be part of a PEM body), however long the block is,
/// without holding it in memory.
///
/// Interactive streams can call [`flush`](StreamMasker::flush) when output goes idle:
/// it decides the pending bytes as if the input ended there (keeping an open PEM block
/// open), at the price of the equality above for values cut by that flush.
pub struct StreamMasker {
    masker: Masker,
    buf: Vec<u8>,
    floor: usize,
    pem: Option<PemState>,
    report: MaskReport,
    scratch: Scratch,
}

impl std::fmt::Debug for StreamMasker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMasker")
            .field("pending", &self.pending())
            .field("inside_pem", &self.pem.is_some())
            .finish()
    }
}

impl StreamMasker {
    /// A streaming masker for `masker`.
    pub fn new(masker: Masker) -> Self {
        Self {
            masker,
            buf: Vec::new(),
            floor: 0,
            pem: None,
            report: MaskReport::new(),
            scratch: Scratch::default(),
        }
    }

    /// Bytes received but not yet emitted.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.floor
    }

    /// Whether the stream is inside a PEM private key block.
    pub fn inside_pem(&self) -> bool {
        self.pem.is_some()
    }

    /// Counts of what was masked so far.
    pub fn report(&self) -> &MaskReport {
        &self.report
    }

    /// Takes the counts so far, leaving them empty.
    pub fn take_report(&mut self) -> MaskReport {
        self.report.take()
    }

    fn keep_context(&mut self, done: usize) {
        let keep_from = done.saturating_sub(CONTEXT);
        self.buf.drain(..keep_from);
        self.floor = done - keep_from;
    }

    /// Feeds a chunk; appends whatever is decided to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.masker.inner.engine.is_none() {
            out.extend_from_slice(chunk);
            return;
        }
        let mut chunk = chunk;
        if let Some(state) = self.pem {
            match state.feed(chunk) {
                PemStep::Ended(n) => {
                    self.pem = None;
                    let (body, rest) = chunk.split_at(n.min(chunk.len()));
                    self.buf.extend_from_slice(body);
                    self.keep_context(self.buf.len());
                    chunk = rest;
                }
                PemStep::Open(state) => {
                    self.pem = Some(state);
                    self.buf.extend_from_slice(chunk);
                    self.keep_context(self.buf.len());
                    return;
                }
            }
        }
        self.buf.extend_from_slice(chunk);
        self.process(Mode::More, out);
    }

    fn process(&mut self, mode: Mode, out: &mut Vec<u8>) {
        let Some(engine) = &self.masker.inner.engine else {
            out.extend_from_slice(self.buf.get(self.floor..).unwrap_or_default());
            self.keep_context(self.buf.len());
            return;
        };
        self.scratch.found.clear();
        let end = engine.scan(&self.buf, self.floor, mode, &mut self.scratch);
        self.masker.render(
            &self.buf,
            self.floor,
            end.done,
            &self.scratch.found,
            out,
            &mut self.report,
        );
        if end.pem.is_some() {
            self.pem = end.pem;
        }
        self.keep_context(end.done);
    }

    /// Decides and emits everything pending, as if the input ended here, but stays
    /// inside an open PEM block. For idle interactive streams.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if self.pem.is_none() {
            self.process(Mode::Flush, out);
        }
    }

    /// Ends the stream: emits the rest. The masker can be reused for a new stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pem.take().is_none() {
            self.process(Mode::Final, out);
        }
        self.buf.clear();
        self.floor = 0;
    }
}
