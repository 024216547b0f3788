//! `Reconnecting` over real loopback TCP (127.0.0.1 only), on the real clock; every test is bounded
//! by a timeout.

use crate::support::*;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use staunch::backoff::Constant;
use staunch::reconnect::{
    ConnState, Decision, EofPolicy, ReadMode, Reason, Reconnecting, TcpConnector,
};
use staunch::SocketOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(128).unwrap()
}

fn any_port() -> TcpListener {
    listen("127.0.0.1:0".parse().unwrap())
}

fn quick() -> Constant {
    Constant::new(Duration::from_millis(20))
}

/// Echo every byte of one connection.
async fn echo_one(listener: &TcpListener) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let (mut r, mut w) = stream.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
}

#[tokio::test]
async fn survives_a_server_restart_on_the_same_port() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { echo_one(&listener).await });

        let mut conn = Reconnecting::builder(nodelay(addr))
            .eof_policy(EofPolicy::Reconnect)
            .policy(quick())
            .build();
        let mut buf = [0; 2];
        conn.write_all(b"a\n").await.unwrap();
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"a\n");

        // Kill the server: the task (with its listener and connection) is dropped.
        server.abort();
        let _ = server.await;
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(disconnected(&err).generation(), 1);

        // Restart on the same port.
        let listener = listen(addr);
        let _server = tokio::spawn(async move { echo_one(&listener).await });
        // One handle, one report: the read above was it; the write is not told again.
        conn.write_all(b"b\n").await.unwrap();
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"b\n");
        assert_eq!(conn.generation(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_reset_mid_write_is_reported_with_every_unconfirmed_byte() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            first.read_exact(&mut buf).await.unwrap();
            socket2::SockRef::from(&first)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(first); // RST
            let (mut second, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            second.read_to_end(&mut got).await.unwrap();
            got
        });

        let mut conn = Reconnecting::builder(TcpConnector::new(addr.to_string()))
            .policy(quick())
            .build();
        let chunk = vec![7u8; 64 * 1024];
        let mut accepted = 0u64;
        let err = loop {
            match conn.write(&chunk).await {
                Ok(n) => accepted += n as u64,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{err:?}"
        );
        let d = disconnected(&err);
        assert_eq!(d.generation(), 1);
        assert!(accepted >= 4096);
        assert_eq!(
            d.unconfirmed_bytes(),
            accepted,
            "every byte reported written is counted"
        );

        // The failed chunk is not replayed: the new connection gets only what is written next.
        conn.write_all(b"fresh").await.unwrap();
        conn.shutdown().await.unwrap();
        assert_eq!(server.await.unwrap(), b"fresh");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn half_close_reads_the_reply_without_reconnecting() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).await.unwrap(); // until the client's FIN
            stream.write_all(&request).await.unwrap();
            stream.write_all(b" done").await.unwrap();
            // Dropping the stream closes the server side too.
        });

        let mut conn = Reconnecting::new(TcpConnector::new(addr.to_string()));
        let state = conn.watch();
        conn.write_all(b"request").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"request done");
        server.await.unwrap();
        assert_eq!(conn.read(&mut [0; 8]).await.unwrap(), 0);
        assert!(matches!(
            *state.borrow(),
            ConnState::Connected { generation: 1 }
        ));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_idle_timeout_notices_a_peer_that_accepts_then_hangs() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<TcpStream>();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = held_tx.send(stream); // keep it open, never write
        });
        let mut conn = Reconnecting::builder(TcpConnector::new(addr.to_string()))
            .idle_timeout(Duration::from_millis(300))
            .policy(quick())
            .build();
        let started = tokio::time::Instant::now();
        let err = conn.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(matches!(
            disconnected(&err).reason(),
            Reason::IdleTimeout(_)
        ));
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(held_rx);
    })
    .await
    .unwrap();
}

// Relies on Linux dropping SYNs to a listener whose accept queue is full.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_connect_that_never_completes_times_out() {
    timeout(LIMIT, async {
        // A listener with a backlog of 0 that never accepts: once its queue is full, the kernel
        // drops further SYNs and a connect hangs.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(0).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let socket = TcpSocket::new_v4().unwrap();
            match timeout(Duration::from_millis(200), socket.connect(addr)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break, // the queue is full
            }
        }

        let mut conn = Reconnecting::builder(TcpConnector::new(addr.to_string()))
            .connect_timeout(Duration::from_millis(200))
            .policy(quick().take(1))
            .build();
        let err = conn.wait_connected().await.unwrap_err();
        let gave_up = staunch::reconnect::GaveUp::from_io_error(&err).unwrap();
        assert!(
            matches!(gave_up.last_reason(), Some(Reason::ConnectTimeout(_))),
            "{gave_up:?}"
        );
        assert_eq!(gave_up.attempts(), 2);
        drop((fillers, socket));
    })
    .await
    .unwrap();
}

/// io-tether's README example: `read_exact` of 6 bytes gets "foo" from one server and "bar" from
/// another, after the disconnect hook moved the connector to the second port.
#[tokio::test]
async fn splice_mode_reproduces_the_io_tether_example() {
    timeout(LIMIT, async {
        let first = any_port();
        let second = any_port();
        let first_addr = first.local_addr().unwrap();
        let second_addr = second.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = first.accept().await.unwrap();
            s.write_all(b"foo").await.unwrap();
        });
        tokio::spawn(async move {
            let (mut s, _) = second.accept().await.unwrap();
            s.write_all(b"bar").await.unwrap();
            let _ = s.read(&mut [0; 1]).await;
        });

        let mut conn = Reconnecting::builder(TcpConnector::new(first_addr.to_string()))
            .eof_policy(EofPolicy::Reconnect)
            .read_mode(ReadMode::Splice)
            .policy(quick())
            .on_disconnect(move |_, connector| {
                connector.set_addr(second_addr.to_string());
                Box::pin(async { Decision::Retry })
            })
            .build();
        let mut buf = [0; 6];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"foobar");
        assert_eq!(conn.generation(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn keepalive_nodelay_and_user_timeout_are_set_on_the_socket() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { echo_one(&listener).await });
        let connector = TcpConnector::new(addr.to_string()).socket_options(
            SocketOptions::new()
                .nodelay(true)
                .keepalive(Duration::from_secs(30))
                .keepalive_interval(Duration::from_secs(5))
                .keepalive_retries(3)
                .user_timeout(Duration::from_secs(15)),
        );
        let mut conn = Reconnecting::new(connector);
        conn.wait_connected().await.unwrap();
        let stream = conn.get_mut().unwrap();
        assert!(stream.nodelay().unwrap());
        let sock = socket2::SockRef::from(&*stream);
        assert!(sock.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        {
            assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
            assert_eq!(
                sock.tcp_keepalive_interval().unwrap(),
                Duration::from_secs(5)
            );
            assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
            assert_eq!(
                sock.tcp_user_timeout().unwrap(),
                Some(Duration::from_secs(15))
            );
        }
    })
    .await
    .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_unix_connector_reconnects() {
    use staunch::reconnect::UnixConnector;
    timeout(LIMIT, async {
        let dir = std::env::temp_dir().join(format!("staunch-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            for reply in [&b"one"[..], b"two"] {
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(reply).await.unwrap();
            }
        });
        let mut conn = Reconnecting::builder(UnixConnector::new(&path))
            .eof_policy(EofPolicy::Reconnect)
            .read_mode(ReadMode::Splice)
            .policy(quick())
            .build();
        let mut buf = [0; 6];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"onetwo");
        server.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

/// Accept one connection, read `n` bytes, then close with `SO_LINGER` 0: the client gets a reset.
async fn read_then_reset(listener: &TcpListener, n: usize) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut got = vec![0; n];
    stream.read_exact(&mut got).await.unwrap();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

#[tokio::test]
async fn shutdown_after_an_unnoticed_reset_reports_the_loss() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { read_then_reset(&listener, 5).await });
        let mut conn = Reconnecting::builder(TcpConnector::new(addr.to_string()))
            .policy(quick())
            .build();
        conn.write_all(b"hello").await.unwrap();
        server.await.unwrap();
        // Wait until the reset has arrived, without reading: the adapter has not noticed it.
        conn.get_mut().unwrap().readable().await.unwrap();
        // write -> shutdown -> drop: the shutdown is the last chance to learn of the loss.
        let err = conn.shutdown().await.unwrap_err();
        let lost = disconnected(&err);
        assert_eq!(
            (lost.generation(), lost.unconfirmed_bytes()),
            (1, 5),
            "{lost}"
        );
        assert!(matches!(conn.state(), ConnState::ShutDown));
        drop(conn);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn tokio_hides_the_reset_from_shutdown_control() {
    // Control: the same sequence on a plain TcpStream ends in `Ok`, so the test above checks
    // something tokio alone does not give.
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { read_then_reset(&listener, 5).await });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        server.await.unwrap();
        stream.readable().await.unwrap();
        stream.shutdown().await.unwrap();
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn connect_errors_name_the_problem() {
    let mut conn = Reconnecting::new(TcpConnector::new("localhost"));
    let err = conn.wait_connected().await.unwrap_err();
    let gave_up = staunch::reconnect::GaveUp::from_io_error(&err).unwrap();
    assert_eq!(gave_up.attempts(), 1);
    let text = gave_up.to_string();
    assert!(text.contains("missing port"), "{text}");
    assert!(text.contains("after 1 attempt;"), "{text}");

    let mut conn = Reconnecting::builder(TcpConnector::new("no-such-host.invalid:80"))
        .policy(Constant::new(Duration::from_millis(1)).take(0))
        .build();
    let err = conn.wait_connected().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot resolve host"), "{text}");
}

/// Write without waiting until the kernel's buffers are full; the bytes accepted.
async fn fill_send_queue<W: tokio::io::AsyncWrite + Unpin>(conn: &mut W) -> u64 {
    use futures_util::FutureExt;
    let chunk = vec![7u8; 64 * 1024];
    let mut total = 0;
    // Bounded: the peer's receive buffer and our send buffer hold a few MB at most.
    for _ in 0..10_000 {
        match conn.write(&chunk).now_or_never() {
            Some(Ok(n)) => total += n as u64,
            Some(Err(e)) => panic!("write failed before the reset: {e}"),
            None => return total,
        }
    }
    panic!("the send queue never filled");
}

/// A peer that stops reading, then resets: the loss report's kernel count (the send queue) is
/// positive and within the unconfirmed count with `TcpConnector` on Linux; a closure connector
/// (the control) cannot say.
#[tokio::test]
async fn a_lost_connection_reports_the_bytes_the_peer_never_acknowledged() {
    timeout(LIMIT, async {
        for kernel_counted in [true, false] {
            let listener = any_port();
            let addr = listener.local_addr().unwrap();
            let mut conn: Box<dyn tokio::io::AsyncWrite + Unpin> = if kernel_counted {
                let mut c = Reconnecting::builder(TcpConnector::new(addr.to_string()))
                    .policy(quick())
                    .build();
                c.wait_connected().await.unwrap();
                Box::new(c)
            } else {
                let mut c = Reconnecting::builder(move || TcpStream::connect(addr))
                    .policy(quick())
                    .build();
                c.wait_connected().await.unwrap();
                Box::new(c)
            };
            let (peer, _) = listener.accept().await.unwrap();
            let written = fill_send_queue(&mut conn).await;
            assert!(written > 0);
            // Reset with the data unread.
            socket2::SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(peer);
            let chunk = [7u8; 1024];
            let err = loop {
                match conn.write(&chunk).await {
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            };
            let lost = staunch::reconnect::Disconnected::from_io_error(&err)
                .unwrap_or_else(|| panic!("not a loss report: {err}"));
            let unconfirmed = lost.unconfirmed_bytes();
            assert!(unconfirmed >= written, "{lost}");
            match (kernel_counted, lost.kernel_unacked_bytes()) {
                (true, Some(kernel)) if cfg!(target_os = "linux") => {
                    assert!(kernel > 0 && kernel <= unconfirmed, "{lost}");
                    assert!(lost.to_string().contains("never acknowledged"), "{lost}");
                }
                (true, None) if cfg!(target_os = "linux") => panic!("no kernel count: {lost}"),
                (true, None) => {}
                (false, None) => {}
                (_, other) => panic!("kernel count {other:?} ({lost})"),
            }
        }
    })
    .await
    .unwrap();
}

fn nodelay(addr: std::net::SocketAddr) -> TcpConnector {
    TcpConnector::new(addr.to_string()).socket_options(SocketOptions::new().nodelay(true))
}

/// Accept one connection, read it to its end, answer `reply` and close.
async fn reply_after_eof(listener: &TcpListener, reply: &[u8]) -> Vec<u8> {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    stream.write_all(reply).await.unwrap();
    got
}

/// Write, shut down twice, read the reply: what a plain `TcpStream` allows (see the control).
async fn write_shut_twice_read<S>(stream: &mut S) -> io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(b"request").await?;
    stream.shutdown().await?;
    stream.shutdown().await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    Ok(reply)
}

#[tokio::test]
async fn a_second_shutdown_keeps_the_connection_and_its_reply() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { reply_after_eof(&listener, b"reply").await });
        let mut conn = Reconnecting::builder(TcpConnector::new(addr.to_string()))
            .policy(quick())
            .build();
        let reply = write_shut_twice_read(&mut conn).await.unwrap();
        assert_eq!(reply, b"reply");
        assert_eq!(server.await.unwrap(), b"request");
        assert_eq!(conn.generation(), 1);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn a_second_shutdown_of_the_write_half_keeps_the_reply() {
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { reply_after_eof(&listener, b"reply").await });
        let conn = Reconnecting::builder(TcpConnector::new(addr.to_string()))
            .policy(quick())
            .build();
        let (mut rd, mut wr) = conn.split();
        wr.write_all(b"request").await.unwrap();
        wr.shutdown().await.unwrap();
        wr.shutdown().await.unwrap();
        let mut reply = Vec::new();
        rd.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
        assert_eq!(server.await.unwrap(), b"request");
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn a_second_shutdown_keeps_the_reply_control() {
    // Control: a plain TcpStream allows the same sequence.
    timeout(LIMIT, async {
        let listener = any_port();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { reply_after_eof(&listener, b"reply").await });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(write_shut_twice_read(&mut stream).await.unwrap(), b"reply");
        assert_eq!(server.await.unwrap(), b"request");
    })
    .await
    .expect("timed out");
}

/// The log lines written while `f` runs, at warn and above.
async fn warnings_during<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // A current-thread test: everything `f` does is polled on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let output = f.await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    (output, text)
}

#[tokio::test]
async fn the_readme_client_says_why_it_waits_and_gives_up_when_nothing_listens() {
    use staunch::backoff::{Exponential, Jitter};
    // A port that refuses: bound, so nobody else takes it, and not listening.
    let closed = TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = closed.local_addr().unwrap();
    let options = SocketOptions::new().keepalive(Duration::from_secs(30));
    let connector = TcpConnector::new(addr.to_string()).socket_options(options);
    // The README's client with a budget of 450 ms of delays instead of 60 s: 10, 20, 40, 80 and
    // 160 ms (±20 %: 248 to 372 ms in all), and the next one (320 ms ±20 %) would exceed it.
    let mut conn = Reconnecting::builder(connector)
        .policy(
            Exponential::builder()
                .jitter(Jitter::Proportional(0.2))
                .max_total(Duration::from_millis(450))
                .build()
                .unwrap(),
        )
        .connect_timeout(Duration::from_secs(3))
        .eof_policy(EofPolicy::Reconnect)
        .build();
    let (written, log) = warnings_during(timeout(LIMIT, conn.write_all(b"PING\r\n"))).await;
    let err = written.expect("gave up in time").unwrap_err();
    let gave_up = gave_up(&err);
    assert_eq!(
        gave_up.cause(),
        staunch::reconnect::GiveUpCause::PolicyExhausted
    );
    assert_eq!(gave_up.attempts(), 6, "{gave_up}");
    let text = err.to_string();
    assert!(
        text.starts_with("gave up reconnecting (PolicyExhausted) after 6 attempts; last failure:")
            && text.contains("refused"),
        "{text}"
    );
    // Not silent meanwhile: each refused attempt is a warning, and so is the give-up.
    assert_eq!(log.matches("reconnect: attempt failed").count(), 6, "{log}");
    assert!(log.contains("giving up"), "{log}");
    assert!(log.contains(" WARN "), "{log}");
}
