//! examples/tls.rs with rustls clients: ones that talk, and ones that never finish their
//! handshake.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{crypto::ring, ClientConfig, ClientConnection, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::harness::{Example, IO};

/// `GRACE` in examples/tls.rs.
const GRACE: Duration = Duration::from_secs(5);

/// Start the example with its certificate in a file of its own, and a client config that trusts
/// that certificate only.
fn start(env: &[(&str, &str)]) -> (Example, Arc<ClientConfig>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let cert_file = std::env::temp_dir().join(format!(
        "staunch-tls-test-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let cert_env = cert_file.to_str().unwrap();
    let mut env = env.to_vec();
    env.push(("CERT_FILE", cert_env));
    let mut server = Example::start("tls", &["127.0.0.1:0"], &env);
    server.wait_stdout("certificate in ", IO);
    let cert = CertificateDer::from_pem_file(&cert_file).expect("the certificate");
    let _ = std::fs::remove_file(&cert_file);
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(config))
}

/// A TLS client, its handshake done.
async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake")
}

/// A TLS client: connect, check the echo of two lines, close.
async fn echo(addr: SocketAddr, config: Arc<ClientConfig>, name: String) {
    let (reader, mut writer) = tokio::io::split(connect(addr, config).await);
    let mut reader = BufReader::new(reader);
    for i in 0..2 {
        let line = format!("{name} line {i}\n");
        writer.write_all(line.as_bytes()).await.unwrap();
        let mut echoed = String::new();
        reader.read_line(&mut echoed).await.unwrap();
        assert_eq!(echoed, line);
    }
    writer.shutdown().await.unwrap();
    let mut rest = String::new();
    reader.read_line(&mut rest).await.unwrap();
    assert_eq!(rest, "", "the server closes after the client");
}

/// A rustls client that sends its ClientHello and then never reads the server's reply: the
/// server's half of the handshake waits for a Finished that never comes.
fn stalled_mid_handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> TcpStream {
    let mut tcp = TcpStream::connect_timeout(&addr, IO).unwrap();
    let server_name = ServerName::try_from("localhost").unwrap();
    let mut tls = ClientConnection::new(config, server_name).unwrap();
    while tls.wants_write() {
        tls.write_tls(&mut tcp).unwrap();
    }
    tcp.flush().unwrap();
    tcp
}

/// Wait until the server closes `tcp` (end of stream or reset), reading and dropping whatever it
/// sent; returns when that happened.
fn wait_closed_by_server(mut tcp: TcpStream, within: Duration) -> Instant {
    tcp.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return Instant::now(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Instant::now(),
            Err(e) => panic!("the server did not close the stalled connection: {e}"),
        }
    }
}

#[test]
fn tls_echoes_to_rustls_clients_with_a_runtime_certificate() {
    let (server, config) = start(&[]);
    let addr = server.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let clients: Vec<_> = (0..8)
            .map(|i| tokio::spawn(echo(addr, config.clone(), format!("client {i}"))))
            .collect();
        for client in clients {
            tokio::time::timeout(IO, client).await.unwrap().unwrap();
        }
    });

    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(GRACE * 2);
    exit.assert_success();
    let t = exit.report().totals;
    assert_eq!(
        (t["accepted"], t["finished"], t["failed"]),
        (8, 8, 0),
        "{exit:?}"
    );
}

#[test]
fn tls_handshake_timeout_frees_the_slots_held_by_stalled_handshakes() {
    const TIMEOUT: Duration = Duration::from_millis(1000);
    // Two slots, two clients that stall: one says nothing at all, one stops after its
    // ClientHello.
    let (mut server, config) = start(&[
        ("MAX_CONNECTIONS", "2"),
        ("HANDSHAKE_TIMEOUT_MS", "1000"),
        ("RUST_LOG", "info,staunch=debug"),
    ]);
    let addr = server.addr();
    let stalled_at = Instant::now();
    let silent = TcpStream::connect_timeout(&addr, IO).unwrap();
    let mid_handshake = stalled_mid_handshake(addr, config.clone());

    // Both slots are taken; a well-behaved client waits in the backlog until the timeout
    // frees them, and is then served. Without the timeout it would wait forever (here: fail
    // at `IO`).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::time::timeout(IO, echo(addr, config.clone(), "patient".into()))
            .await
            .expect("the well-behaved client was never served")
    });
    let served = stalled_at.elapsed();
    assert!(
        served >= TIMEOUT - Duration::from_millis(100),
        "served after {served:?}: the stalled clients did not hold both slots"
    );
    assert!(served < TIMEOUT + Duration::from_secs(4), "{served:?}");

    // The server cut both stalled clients at the timeout.
    for tcp in [silent, mid_handshake] {
        let closed = wait_closed_by_server(tcp, IO);
        let after = closed.duration_since(stalled_at);
        assert!(after >= TIMEOUT - Duration::from_millis(100), "{after:?}");
    }
    server.wait_stderr("did not finish within", IO);

    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(GRACE * 2);
    exit.assert_success();
    let t = exit.report().totals;
    assert_eq!(
        (t["accepted"], t["finished"], t["failed"], t["peak_active"]),
        (3, 1, 2, 2),
        "{exit:?}"
    );
}

#[test]
fn tls_stalled_handshakes_do_not_delay_clients_while_slots_are_free() {
    // A long timeout: the stalled client holds its slot for the whole test...
    let (server, config) = start(&[("MAX_CONNECTIONS", "2"), ("HANDSHAKE_TIMEOUT_MS", "60000")]);
    let addr = server.addr();
    let _stalled = stalled_mid_handshake(addr, config.clone());
    // ...and the other slot serves clients one after another, at once.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    rt.block_on(async {
        for i in 0..3 {
            tokio::time::timeout(IO, echo(addr, config.clone(), format!("client {i}")))
                .await
                .expect("a client was not served while a slot was free");
        }
    });
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // At shutdown the stalled handshake is still running: cut at the end of the grace period.
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(GRACE * 3);
    exit.assert_success();
    let report = exit.report();
    assert_eq!(report.cancelled, 1, "{exit:?}");
    assert_eq!(report.totals["finished"], 3, "{exit:?}");
}

/// At SIGINT the example closes a client that finished its handshake and sent nothing, at once
/// (with a TLS `close_notify`), and exits long before its grace period would end. (An example
/// that ignores its `Conn`, as one echoing with `tokio::io::copy` does, holds the client until
/// the grace period ends and then cuts it without `close_notify`: the client's read returns an
/// error after `GRACE`, and the checks below fail.)
#[test]
fn tls_closes_an_idle_client_at_once_on_sigint() {
    const AT_ONCE: Duration = Duration::from_secs(1);
    let (server, config) = start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (read, signalled, closed) = rt.block_on(async {
        // The handshake done, the server is serving this connection (not holding it in the
        // backlog): it has answered the ClientHello.
        let mut idle = connect(server.addr(), config).await;
        let signalled = Instant::now();
        server.signal(libc::SIGINT);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(IO, idle.read_to_end(&mut rest))
            .await
            .expect("the idle client was not closed within IO");
        (read.map(|_| rest), signalled, signalled.elapsed())
    });
    let exit = server.wait_exit(GRACE * 2);
    let exited = signalled.elapsed();
    exit.assert_success();
    assert!(
        closed < AT_ONCE,
        "closed {closed:?} after SIGINT ({read:?}): {exit:?}"
    );
    assert!(exited < AT_ONCE, "exited {exited:?} after SIGINT: {exit:?}");
    let rest = read.expect("a clean close (close_notify, then end of stream)");
    assert!(rest.is_empty(), "{rest:?}");
    let report = exit.report();
    assert_eq!((report.finished, report.cancelled), (1, 0), "{exit:?}");
    assert_eq!(report.totals["failed"], 0, "{exit:?}");
}
