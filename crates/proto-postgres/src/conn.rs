//! Message-at-a-time I/O used during startup and login, before the relay takes over.

use bytes::{BufMut, BytesMut};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::PgError;
use crate::frame;
use crate::stream::Stream;

/// A connection read and written one message at a time.
pub(crate) struct MessageConn {
    /// The stream.
    pub stream: Stream,
    /// Bytes read but not yet decoded.
    pub buf: BytesMut,
}

impl MessageConn {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(8192),
        }
    }

    /// Reads more bytes; `Ok(false)` on end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads the next startup-phase packet from a client.
    pub(crate) async fn read_startup_packet(&mut self) -> Result<BytesMut, PgError> {
        loop {
            if let Some(packet) =
                frame::split_startup(&mut self.buf).map_err(PgError::ClientProtocol)?
            {
                return Ok(packet);
            }
            if !self.fill().await.map_err(PgError::ClientIo)? {
                return Err(PgError::ClientGone(" during startup"));
            }
        }
    }

    /// Reads the next typed message from a client.
    pub(crate) async fn read_frontend(
        &mut self,
        max: usize,
    ) -> Result<PgWireFrontendMessage, PgError> {
        loop {
            if let Some(f) =
                frame::split_typed(&mut self.buf, max).map_err(PgError::ClientProtocol)?
            {
                return frame::decode_frontend(f, &frame::frontend_context())
                    .map_err(PgError::ClientProtocol);
            }
            if !self.fill().await.map_err(PgError::ClientIo)? {
                return Err(PgError::ClientGone(" during login"));
            }
        }
    }

    /// Reads the next message from an upstream.
    pub(crate) async fn read_backend(&mut self) -> Result<PgWireBackendMessage, PgError> {
        loop {
            if let Some(f) = frame::split_typed(&mut self.buf, usize::MAX >> 2)
                .map_err(PgError::UpstreamProtocol)?
            {
                return frame::decode_backend(f, &frame::backend_context())
                    .map_err(PgError::UpstreamProtocol);
            }
            if !self.fill().await.map_err(PgError::UpstreamIo)? {
                return Err(PgError::UpstreamProtocol(
                    "server closed the connection during login".into(),
                ));
            }
        }
    }

    /// Writes backend messages to a client.
    pub(crate) async fn send_backend(
        &mut self,
        msgs: &[PgWireBackendMessage],
    ) -> Result<(), PgError> {
        let mut out = BytesMut::new();
        for m in msgs {
            m.encode(&mut out)
                .map_err(|e| PgError::Config(format!("encoding a message: {e}")))?;
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(PgError::ClientIo)?;
        self.stream.flush().await.map_err(PgError::ClientIo)
    }

    /// Writes a frontend message to an upstream.
    pub(crate) async fn send_frontend(
        &mut self,
        msg: &PgWireFrontendMessage,
    ) -> Result<(), PgError> {
        let mut out = BytesMut::new();
        msg.encode(&mut out)
            .map_err(|e| PgError::Config(format!("encoding a message: {e}")))?;
        self.stream
            .write_all(&out)
            .await
            .map_err(PgError::UpstreamIo)?;
        self.stream.flush().await.map_err(PgError::UpstreamIo)
    }

    /// Writes one raw byte (SSL negotiation answers).
    pub(crate) async fn send_byte(&mut self, b: u8) -> Result<(), PgError> {
        let mut out = BytesMut::with_capacity(1);
        out.put_u8(b);
        self.stream
            .write_all(&out)
            .await
            .map_err(PgError::ClientIo)?;
        self.stream.flush().await.map_err(PgError::ClientIo)
    }
}
