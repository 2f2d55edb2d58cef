//! Ports and readiness on the loopback interface.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and closing the listener, so another process
/// may take it before the caller binds it; services started by this kit retry on a
/// new port when that happens.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(TestkitError::io("binding 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(TestkitError::io("reading the bound address"))?
        .port();
    Ok(port)
}

/// Waits until a TCP connection to `addr` succeeds, retrying every 20 ms.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(10))) {
            // A connection to a port in the ephemeral range can be the kernel connecting
            // the socket to itself (TCP simultaneous open); that is not a listener.
            Ok(stream) if stream.local_addr().ok() != Some(addr) => return Ok(()),
            Ok(_) if Instant::now() >= deadline => {
                return Err(TestkitError::StartTimeout {
                    service: addr.to_string(),
                    after: timeout,
                    log: "only self-connections succeeded".to_owned(),
                });
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if Instant::now() >= deadline => {
                return Err(TestkitError::StartTimeout {
                    service: addr.to_string(),
                    after: timeout,
                    log: format!("last connection error: {e}"),
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
