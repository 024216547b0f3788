//! A TLS echo server: tokio-rustls (with the `ring` provider) behind staunch's accept loop, a
//! certificate for `localhost` generated at start (rcgen), and a handshake timeout.
//!
//! ```text
//! cargo run -p staunch-integrations --example tls                    # listens on 127.0.0.1:8443
//! cargo run -p staunch-integrations --example tls -- 127.0.0.1:9443  # or on the address given
//! # from another terminal, trusting the certificate it wrote:
//! openssl s_client -quiet -connect 127.0.0.1:8443 -CAfile /tmp/staunch-tls-example.pem
//! ```
//!
//! The certificate is written (PEM) to `CERT_FILE`, by default `staunch-tls-example.pem` in the
//! temporary directory, for clients to trust. `MAX_CONNECTIONS` (default 1024) and
//! `HANDSHAKE_TIMEOUT_MS` (default 10000) tune the server.
//!
//! Stop it with Ctrl-C (or SIGTERM): the port closes, idle clients are closed at once (after a
//! TLS `close_notify`), what a client has sent is echoed first, and a handshake in progress may
//! finish within its timeout; whatever is still running after `GRACE` is cut.
//!
//! **Why the handshake timeout.** The handshake runs inside the connection future, so a slot of
//! `spawn_serve(n, ..)` is taken from the TCP accept on. A client that connects and never finishes
//! its handshake (sends nothing, or stops after its ClientHello) would hold that slot forever,
//! and `n` of them stop the server (the tls-listener Slowloris advisory). The timeout frees the
//! slot; the failed handshake is logged and counted as a failed connection.
//! `connection_time_limit` bounds whole connections on top of that.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use staunch::{listen::Conn, ListenExt};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::TcpListenerStream;
use tracing_subscriber::EnvFilter;

/// After the signal, connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(5);
/// No connection lives longer than this.
const CONNECTION_LIMIT: Duration = Duration::from_secs(300);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Complete the handshake within `handshake_timeout`, then echo until the client closes or
/// `conn` fires (at the shutdown): an idle connection closes at once, a busy one after the
/// echo in progress.
async fn serve(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    conn: Conn,
    handshake_timeout: Duration,
) -> Result<(), Error> {
    let peer = stream.peer_addr()?;
    let mut tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(handshake) => handshake.map_err(|e| format!("TLS handshake with {peer}: {e}"))?,
        Err(_) => {
            return Err(format!(
                "TLS handshake with {peer} did not finish within {handshake_timeout:?}"
            )
            .into())
        }
    };
    let mut buf = vec![0; 4096];
    loop {
        let n = tokio::select! {
            // The read first: a client taken from the backlog at shutdown gets its echo.
            biased;
            n = tls.read(&mut buf) => n?,
            () = conn.draining() => break,
        };
        if n == 0 {
            break; // the client closed its side
        }
        tls.write_all(&buf[..n]).await?;
        tls.flush().await?; // rustls may hold what the socket did not take yet
        if conn.is_draining() {
            break;
        }
    }
    tls.shutdown().await?; // close_notify
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let cert_file = std::env::var_os("CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("staunch-tls-example.pem"));
    let arg = std::env::args().nth(1);
    let max_connections = env_number("MAX_CONNECTIONS", 1024)?;
    let handshake_timeout = Duration::from_millis(env_number("HANDSHAKE_TIMEOUT_MS", 10_000)?);

    // A fresh self-signed certificate for localhost, 127.0.0.1 and ::1.
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let generated = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(&cert_file, generated.cert.pem())
        .with_context(|| format!("cannot write {}", cert_file.display()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let addr = arg.as_deref().unwrap_or("127.0.0.1:8443");
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let signal = shutdown_signal()?;
    println!("certificate in {}", cert_file.display());
    println!("listening on {}", listener.local_addr()?);

    let report = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .spawn_serve(max_connections, move |stream, conn| {
            serve(acceptor.clone(), stream, conn, handshake_timeout)
        })
        .connection_time_limit(CONNECTION_LIMIT)
        .with_graceful_shutdown(signal)
        .grace(GRACE)
        .await;

    println!("{report}");
    Ok(())
}

/// A positive integer from the environment, or `default`.
fn env_number<T: std::str::FromStr + PartialOrd + Default>(
    name: &str,
    default: T,
) -> anyhow::Result<T> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => match value.parse() {
            Ok(n) if n > T::default() => Ok(n),
            _ => anyhow::bail!("{name} must be a positive integer, not {value:?}"),
        },
    }
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, before the
/// server announces itself, so a signal sent right after "listening on" cannot kill the process
/// by default action (`tokio::signal::ctrl_c()` would install its handler only when first polled).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
        Ok(async move {
            ctrl_c.recv().await;
        })
    }
}
