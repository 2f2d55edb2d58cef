//! The response body as it streams to the client: masked, observed and recorded chunk by chunk.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use portcullis_core::{Completion, OutputHooks};

use crate::jsonmask::JsonMasker;
use crate::session::HttpSession;

/// Error type of streamed bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the body of one response is transformed.
pub(crate) struct BodyPlan {
    /// JSON masker, for JSON bodies of targets with JSON paths.
    pub json: Option<JsonMasker>,
    /// Whether the pipeline's hooks see the chunks (textual bodies).
    pub chunk_hooks: bool,
    /// Most bytes kept for the recording.
    pub capture: usize,
}

/// What finishes a forwarded request's record: the pipeline's hooks (they record the
/// `command_result`), the response status, and the session, held until the result is in.
pub(crate) struct Finisher {
    pub hooks: OutputHooks,
    pub status: u16,
    /// Credential values that must never reach the recording, even if an upstream echoes them.
    pub scrub: Scrub,
    /// Held, never read: the session stays open until the result is recorded.
    pub _session: Arc<HttpSession>,
}

/// Credential values replaced by `[credential]` in recorded bodies.
#[derive(Clone, Default)]
pub(crate) struct Scrub(pub Arc<Vec<portcullis_core::Secret<String>>>);

impl Scrub {
    /// `text` with every credential value replaced.
    pub fn apply(&self, text: String) -> String {
        let mut text = text;
        for s in self.0.iter() {
            let v = s.expose();
            if v.len() >= 4 && text.contains(v.as_str()) {
                text = text.replace(v.as_str(), "[credential]");
            }
        }
        text
    }
}

impl Finisher {
    /// Records the request's result: status, `completion`, and the recorded excerpt of the
    /// response body (`captured`: bytes and whether they were cut short).
    pub fn finish(&mut self, mut completion: Completion, captured: Option<(Vec<u8>, bool)>) {
        completion.tag = Some(self.status.to_string());
        if let Some((body, truncated)) = captured {
            completion.details.insert(
                "response_body".into(),
                self.scrub.apply(portcullis_core::text::lossy_string(body)),
            );
            completion
                .details
                .insert("response_body_truncated".into(), truncated.to_string());
        }
        self.hooks.finish(&mut completion);
    }
}

/// A response body that masks and observes each chunk.
pub(crate) struct Observed {
    inner: Body,
    plan: BodyPlan,
    finisher: Finisher,
    bytes: u64,
    captured: Vec<u8>,
    truncated: bool,
    done: bool,
}

impl Observed {
    pub fn new(inner: Body, plan: BodyPlan, finisher: Finisher) -> Self {
        Self {
            inner,
            plan,
            finisher,
            bytes: 0,
            captured: Vec::new(),
            truncated: false,
            done: false,
        }
    }

    /// Whether the body's bytes may differ from the upstream's (so its length is unknown).
    pub fn transforms(&self) -> bool {
        self.plan.json.is_some() || self.plan.chunk_hooks
    }

    fn end(&mut self, error: Option<String>) {
        if self.done {
            return;
        }
        self.done = true;
        let masked = self
            .plan
            .json
            .as_ref()
            .map(JsonMasker::counts)
            .unwrap_or_default();
        let completion = Completion {
            bytes: self.bytes,
            error,
            masked,
            ..Completion::default()
        };
        let captured =
            (self.plan.capture > 0).then(|| (std::mem::take(&mut self.captured), self.truncated));
        self.finisher.finish(completion, captured);
    }

    fn process(&mut self, data: Bytes) -> Result<Bytes, String> {
        let out = if self.transforms() {
            let mut buf = match &mut self.plan.json {
                Some(m) => {
                    let mut out = Vec::with_capacity(data.len() + 16);
                    m.feed(&data, &mut out)?;
                    out
                }
                None => data.to_vec(),
            };
            if self.plan.chunk_hooks {
                self.finisher
                    .hooks
                    .chunk(&mut buf)
                    .map_err(|e| e.to_string())?;
            }
            Bytes::from(buf)
        } else {
            data
        };
        self.bytes += out.len() as u64;
        let room = self.plan.capture.saturating_sub(self.captured.len());
        if room > 0 {
            let take = room.min(out.len());
            self.captured
                .extend_from_slice(out.get(..take).unwrap_or_default());
        }
        if out.len() > room {
            self.truncated = true;
        }
        Ok(out)
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match this.process(data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => {
                            let msg = format!("masking failed, rest of body withheld: {e}");
                            this.end(Some(msg.clone()));
                            return Poll::Ready(Some(Err(msg.into())));
                        }
                    },
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(Some(Err(e))) => {
                    let msg = format!("upstream body failed: {e}");
                    this.end(Some(msg.clone()));
                    return Poll::Ready(Some(Err(msg.into())));
                }
                Poll::Ready(None) => {
                    let check = this.plan.json.as_ref().map(JsonMasker::finish);
                    return match check {
                        Some(Err(e)) => {
                            let msg = format!("masking failed: {e}");
                            this.end(Some(msg.clone()));
                            Poll::Ready(Some(Err(msg.into())))
                        }
                        _ => {
                            this.end(None);
                            Poll::Ready(None)
                        }
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        if self.transforms() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // A body that was empty from the start may be dropped unpolled.
        let clean = self.inner.is_end_stream()
            && self
                .plan
                .json
                .as_ref()
                .is_none_or(|m| m.finish().is_ok() || self.bytes == 0);
        let error = (!clean).then(|| "client went away before the body ended".to_owned());
        self.end(error);
    }
}
