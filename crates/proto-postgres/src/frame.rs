//! Framing and decoding of PostgreSQL messages with pgwire's codecs.
//!
//! Framing is done here so that each message is decoded from a buffer holding
//! exactly that message: a malformed message can never read into the next one, and
//! a decoder that trips over one is contained (it fails the session, never the gateway).

use std::panic::AssertUnwindSafe;

use bytes::{Buf, BytesMut};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
};

/// Largest startup-phase packet accepted (PostgreSQL uses the same limit).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// Splits one startup-phase packet (length-prefixed, no type byte) off `buf`.
pub(crate) fn split_startup(buf: &mut BytesMut) -> Result<Option<BytesMut>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(format!("invalid startup packet length {len}"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(buf.split_to(len)))
}

/// Splits one typed message (type byte + length + body) off `buf`.
pub(crate) fn split_typed(buf: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(format!("invalid message length {len}"));
    }
    if len > max_len {
        return Err(format!(
            "message of {len} bytes is larger than the limit of {max_len} bytes"
        ));
    }
    let total = len + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(total)))
}

/// The decode context for a frontend connection after startup.
pub(crate) fn frontend_context() -> DecodeContext {
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    ctx
}

/// The decode context for the startup packet (after any SSL negotiation).
pub(crate) fn startup_context() -> DecodeContext {
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = true;
    ctx
}

/// The decode context for an upstream connection.
pub(crate) fn backend_context() -> DecodeContext {
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    ctx
}

/// Decodes one framed frontend message.
pub(crate) fn decode_frontend(
    mut frame: BytesMut,
    ctx: &DecodeContext,
) -> Result<PgWireFrontendMessage, String> {
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        PgWireFrontendMessage::decode(&mut frame, ctx)
    }));
    match decoded {
        Ok(Ok(Some(msg))) if !frame.has_remaining() => Ok(msg),
        Ok(Ok(Some(_))) => Err("message longer than its content".to_string()),
        Ok(Ok(None)) => Err("truncated message".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("malformed message".to_string()),
    }
}

/// Decodes one framed backend message.
pub(crate) fn decode_backend(
    mut frame: BytesMut,
    ctx: &DecodeContext,
) -> Result<PgWireBackendMessage, String> {
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        PgWireBackendMessage::decode(&mut frame, ctx)
    }));
    match decoded {
        Ok(Ok(Some(msg))) => Ok(msg),
        Ok(Ok(None)) => Err("truncated message".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("malformed message".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A Bind whose parameter count claims more than the message holds.
        let mut buf = BytesMut::new();
        buf.put_u8(b'B');
        buf.put_u32(10);
        buf.put_slice(b"\0\0\x00\x05\xff\xff");
        let frame = split_typed(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(decode_frontend(frame, &frontend_context()).is_err());
    }

    #[test]
    fn oversized_and_short_lengths_are_refused() {
        let mut buf = BytesMut::new();
        buf.put_u8(b'Q');
        buf.put_u32(2);
        assert!(split_typed(&mut buf, 100).is_err());
        let mut buf = BytesMut::new();
        buf.put_u8(b'Q');
        buf.put_u32(1000);
        assert!(split_typed(&mut buf, 100).is_err());
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        assert!(split_startup(&mut buf).is_err());
    }

    #[test]
    fn splits_exactly_one_message() {
        let mut buf = BytesMut::new();
        buf.put_u8(b'Q');
        buf.put_u32(13);
        buf.put_slice(b"SELECT 1\0");
        buf.put_u8(b'S');
        buf.put_u32(4);
        let q = split_typed(&mut buf, 1 << 20).unwrap().unwrap();
        match decode_frontend(q, &frontend_context()).unwrap() {
            PgWireFrontendMessage::Query(q) => assert_eq!(q.query, "SELECT 1"),
            other => panic!("{other:?}"),
        }
        let s = split_typed(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(matches!(
            decode_frontend(s, &frontend_context()).unwrap(),
            PgWireFrontendMessage::Sync(_)
        ));
        assert!(buf.is_empty());
    }
}
