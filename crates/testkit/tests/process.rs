#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Process guards, ports and readiness.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_testkit::{Process, TestkitError, free_port, pid_alive, wait_for_tcp};

#[test]
fn process_guard_kills_on_drop() {
    let p = Process::spawn("sleeper", Command::new("sleep").arg("300")).unwrap();
    let pid = p.pid().unwrap();
    assert!(pid_alive(pid));
    drop(p);
    assert!(!pid_alive(pid));
}

#[test]
fn process_stop_signals_then_reaps() {
    let mut p = Process::spawn("sleeper", Command::new("sleep").arg("300")).unwrap();
    assert!(p.is_running());
    let status = p.stop("TERM", Duration::from_secs(5)).unwrap().unwrap();
    assert!(!status.success());
    assert!(!p.is_running());
    assert_eq!(p.pid(), None);

    let mut done = Process::spawn("true", &mut Command::new("true")).unwrap();
    let status = done.wait_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert!(status.success());
}

#[test]
fn free_port_and_wait_for_tcp() {
    // Nothing listens on port 1; wait_for_tcp gives up after its timeout. (A port from
    // free_port is not used here: the machine is shared, and another process may bind
    // it while we wait.)
    let closed = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let started = Instant::now();
    let err = wait_for_tcp(closed, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, TestkitError::StartTimeout { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));

    let port = free_port().unwrap();
    assert_ne!(port, 0);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr).unwrap();
    wait_for_tcp(addr, Duration::from_secs(1)).unwrap();
    drop(listener);
}
