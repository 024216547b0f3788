//! Settings that cannot work are rejected at build time with a clear panic (zero timeouts, a
//! sub-second keepalive), with a control showing what the kernel would do otherwise.

use crate::support::*;
use std::io;
use std::time::Duration;

use staunch::reconnect::{Reconnecting, RetryLoop};

#[test]
#[should_panic(expected = "connect_timeout")]
fn a_zero_connect_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = Reconnecting::builder(connector).connect_timeout(Duration::ZERO);
}

#[test]
#[should_panic(expected = "idle_timeout")]
fn a_zero_idle_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = Reconnecting::builder(connector).idle_timeout(Duration::ZERO);
}

#[test]
#[should_panic(expected = "connect_timeout")]
fn a_zero_retry_loop_connect_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = RetryLoop::new(connector).connect_timeout(Duration::ZERO);
}

#[test]
#[should_panic(
    expected = "Builder::connect_timeout_until_next_retry: the timeout must be greater than zero"
)]
fn a_zero_minimum_connect_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = Reconnecting::builder(connector).connect_timeout_until_next_retry(Duration::ZERO);
}

#[test]
#[should_panic(expected = "RetryLoop::connect_timeout_until_next_retry")]
fn a_zero_retry_loop_minimum_connect_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = RetryLoop::new(connector).connect_timeout_until_next_retry(Duration::ZERO);
}

#[test]
#[should_panic(expected = "keepalive")]
fn a_sub_second_keepalive_is_rejected() {
    // The kernel would reject it on every attempt (EINVAL), and the adapter would retry forever.
    let _ = staunch::SocketOptions::new().keepalive(Duration::from_millis(500));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_kernel_rejects_a_zero_keepalive_control() {
    // Control for the test above: a 0 s keepalive makes every connect fail.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let params = socket2::TcpKeepalive::new().with_time(Duration::from_millis(500));
    let err = socket2::SockRef::from(&socket)
        .set_tcp_keepalive(&params)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    drop(listener);
}
