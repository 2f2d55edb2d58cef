//! [`serve_connections`]: the accept-and-drain loop shared by the protocol servers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Accepts connections on `listener` and runs `serve(stream, peer, shutdown)` for each on its
/// own task until `shutdown` turns `true` (or its sender is gone). Then it stops accepting and
/// waits up to `drain` for the connections to end (each sees the same `shutdown` signal),
/// after which the rest are aborted.
///
/// A failed `accept` (out of file descriptors and the like) is logged and retried after
/// 50 ms, and a connection task that panics is logged: neither stops the others. `protocol`
/// names the server in those logs.
pub async fn serve_connections<S, F>(
    protocol: &'static str,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    mut serve: S,
) where
    S: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(serve(tcp, peer, shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(protocol, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(protocol, error = %e, "connection task failed");
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            protocol,
            left = connections.len(),
            "connections still open after the grace period; closing them"
        );
        connections.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_until_shutdown_then_drains_within_the_grace_period() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve_connections(
            "test",
            listener,
            stopped,
            Duration::from_millis(300),
            |mut tcp, _peer, mut shutdown| async move {
                // Echo one byte, then hold the connection until shutdown (or forever,
                // for the second client, which sends 's' to ignore shutdown).
                let mut b = [0u8; 1];
                if tcp.read_exact(&mut b).await.is_err() {
                    return;
                }
                let _ = tcp.write_all(&b).await;
                if b[0] == b's' {
                    std::future::pending::<()>().await;
                }
                let _ = shutdown.wait_for(|v| *v).await;
            },
        ));
        let mut polite = TcpStream::connect(addr).await.unwrap();
        let mut stubborn = TcpStream::connect(addr).await.unwrap();
        polite.write_all(b"p").await.unwrap();
        stubborn.write_all(b"s").await.unwrap();
        let mut b = [0u8; 1];
        polite.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"p");
        stubborn.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"s");

        let started = std::time::Instant::now();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops once the grace period is over")
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Both connections are closed: the polite one ended, the stubborn one was aborted.
        assert_eq!(polite.read(&mut b).await.unwrap(), 0);
        assert_eq!(stubborn.read(&mut b).await.unwrap(), 0);
        // And nothing listens any more.
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
