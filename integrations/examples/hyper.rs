//! An HTTP server: hyper 1 behind staunch's accept loop, speaking HTTP/1.1 and HTTP/2 (prior
//! knowledge, "h2c") on the same port.
//!
//! ```text
//! cargo run -p staunch-integrations --example hyper                    # listens on 127.0.0.1:3000
//! cargo run -p staunch-integrations --example hyper -- 127.0.0.1:9000  # or on the address given
//! curl http://127.0.0.1:3000/
//! curl --http2-prior-knowledge http://127.0.0.1:3000/
//! ```
//!
//! Stop it with Ctrl-C (or SIGTERM).

use std::convert::Infallible;
use std::io::{self, ErrorKind, IsTerminal as _};
use std::pin::pin;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use staunch::{listen::Conn, ListenExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tracing_subscriber::EnvFilter;

/// After Ctrl-C, open connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(10);

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("hello from staunch\n")))
}

/// Serve one connection until the client closes it or, once `conn` fires (at the shutdown),
/// until hyper has closed it gracefully: HTTP/1 after the response in progress (an idle
/// keep-alive connection at once), HTTP/2 with GOAWAY.
async fn serve(
    http: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    conn: Conn,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut connection = pin!(http.serve_connection(TokioIo::new(stream), service_fn(hello)));
    tokio::select! {
        // The connection first: a client taken from the backlog as the port closed starts with
        // its request waiting and `conn` already fired; it is answered (then closed), not dropped.
        biased;
        done = connection.as_mut() => return done,
        () = conn.draining() => connection.as_mut().graceful_shutdown(),
    }
    match connection.await {
        // A client closed before its first byte: hyper-util says `Interrupted`; nothing was lost.
        Err(e) if e.downcast_ref().map(io::Error::kind) == Some(ErrorKind::Interrupted) => Ok(()),
        done => done,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let addr = std::env::args().nth(1);
    let addr = addr.as_deref().unwrap_or("127.0.0.1:3000");
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let signal = shutdown_signal()?;
    println!("listening on {}", listener.local_addr()?);

    // Serves HTTP/1.1, and HTTP/2 when the client opens with the HTTP/2 preface. The timer turns
    // on hyper's HTTP/1 header read timeout: a client that trickles its headers is dropped.
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new());

    // At the signal staunch closes the port and fires every connection's `Conn` (hyper then
    // ends each cleanly), gives them `GRACE`, cancels the rest and reports the counts.
    let report = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .spawn_serve(1024, move |stream, conn| serve(http.clone(), stream, conn))
        .with_graceful_shutdown(signal)
        .grace(GRACE)
        .await;

    println!("{report}");
    Ok(())
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
