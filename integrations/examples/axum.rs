//! An axum `Router` behind staunch's accept loop, served connection by connection with
//! hyper-util's HTTP/1.1 + HTTP/2 builder, with a graceful shutdown that drains requests in flight.
//!
//! ```text
//! cargo run -p staunch-integrations --example axum                    # listens on 127.0.0.1:3000
//! cargo run -p staunch-integrations --example axum -- 127.0.0.1:9000  # or on the address given
//! curl http://127.0.0.1:3000/
//! curl http://127.0.0.1:3000/slow/5000         # answers after 5 s; Ctrl-C meanwhile: it still does
//! ```
//!
//! `axum::serve` owns its accept loop (it sleeps 1 s on `EMFILE`, has no connection limit and no
//! shutdown deadline); serving the `Router` yourself, as here, puts staunch's loop in its place.
//! Stop it with Ctrl-C (or SIGTERM): new connections are refused at once, requests in flight
//! finish, idle keep-alive connections close, and whatever is still running after `GRACE` is cut.

use std::io::{self, ErrorKind, IsTerminal as _};
use std::pin::pin;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use staunch::{listen::Conn, ListenExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tracing_subscriber::EnvFilter;

/// After the signal, connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(10);
/// Connections served at once; more clients wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from axum behind staunch\n" }))
        .route("/slow/{ms}", get(slow))
}

/// Answers after `ms` milliseconds (at most a minute): a request that is in flight when the
/// shutdown signal comes.
async fn slow(Path(ms): Path<u64>) -> String {
    let ms = ms.min(60_000);
    tracing::info!(ms, "slow request started");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slow request done after {ms} ms\n")
}

/// Serve one connection until the client closes it or, once `conn` fires (at the shutdown),
/// until hyper has closed it gracefully: HTTP/1 after the response in progress (an idle
/// keep-alive connection at once), HTTP/2 with GOAWAY.
async fn serve(
    http: auto::Builder<TokioExecutor>,
    app: Router,
    stream: TcpStream,
    conn: Conn,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // `Router` is a tower `Service`; hyper wants its own `Service` trait: the glue adapts it.
    let service = TowerToHyperService::new(app);
    let mut connection = pin!(http.serve_connection_with_upgrades(TokioIo::new(stream), service));
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

    // HTTP/1.1 and HTTP/2. The timer turns on hyper's HTTP/1 header read timeout: a client
    // that trickles its request headers (Slowloris) is dropped.
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new());

    // At the signal staunch closes the port and fires every connection's `Conn` (hyper then
    // ends each cleanly), gives them `GRACE`, cancels the rest and reports the counts.
    let app = app();
    let report = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .spawn_serve(MAX_CONNECTIONS, move |stream, conn| {
            serve(http.clone(), app.clone(), stream, conn)
        })
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
