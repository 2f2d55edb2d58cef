//! `direct-tcpip` channels (`ssh -L`, `-W`, `-D`): decided per channel through the
//! pipeline with their destination, opened from the host's side, relayed byte for
//! byte and recorded with the bytes in both directions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_core::{Command, CommandRequest, Completion, Verdict};
use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::{Service, ServiceExt};

use crate::conn::{ConnState, OpenSession};
use crate::server::GatewayInner;

/// Size of the copy buffer per direction.
const COPY_BUFFER: usize = 32 * 1024;

/// Where a `direct-tcpip` channel wants to go, and where it comes from.
pub(crate) struct Destination {
    pub host: String,
    pub port: u32,
    pub originator: String,
    pub originator_port: u32,
}

/// Decides, opens and relays one `direct-tcpip` channel; answers the client's open.
pub(crate) async fn run(
    gw: Arc<GatewayInner>,
    state: Arc<ConnState>,
    open: Arc<OpenSession>,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    dest: Destination,
) {
    let seq = state.next_seq();
    let command = Command::Forward {
        mode: "direct-tcpip".into(),
        host: dest.host.clone(),
        port: dest.port,
    };
    let request = CommandRequest::new(open.context.clone(), seq, command);
    let mut pipeline = gw.pipeline.build();
    let decided = match pipeline.ready().await {
        Ok(svc) => svc.call(request).await,
        Err(e) => Err(e),
    };
    let mut response = match decided {
        Ok(r) => r,
        Err(e) => {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 1,
                    reason: format!("Portcullis: forwarding refused: {e}"),
                })
                .await;
            return;
        }
    };
    if !response.forward() {
        let d = &response.decision;
        let what = if d.verdict == Verdict::Review {
            "not approved"
        } else {
            "denied"
        };
        tracing::info!(session = %state.id, seq, rule = %d.rule, host = %dest.host, port = dest.port, "forwarding denied");
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: format!("Portcullis: {what} by policy rule {}: {}", d.rule, d.reason),
            })
            .await;
        return;
    }
    let mut completion = Completion::default();
    let up = match open
        .upstream
        .channel_open_direct_tcpip(
            dest.host.clone(),
            dest.port,
            dest.originator.clone(),
            dest.originator_port,
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let message = format!("the host could not open {}:{}: {e}", dest.host, dest.port);
            completion.error = Some(message.clone());
            completion.tag = Some("not connected".into());
            response.hooks.finish(&mut completion);
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 2,
                    reason: format!("Portcullis: {message}"),
                })
                .await;
            return;
        }
    };
    reply.accept().await;
    tracing::info!(session = %state.id, seq, host = %dest.host, port = dest.port, "forwarding opened");

    let to_host = Arc::new(AtomicU64::new(0));
    let to_client = Arc::new(AtomicU64::new(0));
    let (client_rx, client_tx) = tokio::io::split(channel.into_stream());
    let (host_rx, host_tx) = tokio::io::split(up.into_stream());
    let mut upward = tokio::spawn(copy_counted(client_rx, host_tx, to_host.clone()));
    let mut downward = tokio::spawn(copy_counted(host_rx, client_tx, to_client.clone()));
    let mut closed = state.closed.subscribe();
    let (mut up_done, mut down_done) = (false, false);
    let mut error: Option<String> = None;
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut upward, if !up_done => {
                up_done = true;
                if let Ok(Err(e)) = r {
                    error.get_or_insert(format!("client side: {e}"));
                    downward.abort();
                    down_done = true;
                }
            }
            r = &mut downward, if !down_done => {
                down_done = true;
                if let Ok(Err(e)) = r {
                    error.get_or_insert(format!("host side: {e}"));
                    upward.abort();
                    up_done = true;
                }
            }
            _ = closed.wait_for(|c| *c) => {
                error.get_or_insert_with(|| "client disconnected".into());
                upward.abort();
                downward.abort();
                break;
            }
        }
    }
    let (sent, received) = (
        to_host.load(Ordering::Relaxed),
        to_client.load(Ordering::Relaxed),
    );
    completion.bytes = received;
    completion.tag = Some(format!(
        "forwarded {}:{} sent {sent} received {received}",
        dest.host, dest.port
    ));
    completion.error = error;
    response.hooks.finish(&mut completion);
    tracing::info!(session = %state.id, seq, sent, received, "forwarding closed");
}

/// Copies until EOF, counting bytes as they pass; then sends EOF on.
async fn copy_counted<R, W>(mut from: R, mut to: W, count: Arc<AtomicU64>) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    to.shutdown().await
}
