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
use std::io::IsTerminal as _;
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
use staunch::{listen::Drain, ListenExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{wrappers::TcpListenerStream, StreamExt as _};
use tracing_subscriber::EnvFilter;

/// After Ctrl-C, open connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(10);

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("hello from staunch\n")))
}

/// Serve one connection until the client closes it or, once the drain starts, until hyper has
/// closed it gracefully.
async fn serve(
    http: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    drain: Drain,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut conn = pin!(http.serve_connection(TokioIo::new(stream), service_fn(hello)));
    tokio::select! {
        // The connection first: one taken from the backlog as the port closed has its request
        // waiting while the drain has already started; polled first, it is answered (and then
        // closed) instead of closed unread.
        biased;
        done = conn.as_mut() => return done,
        () = drain.draining() => conn.as_mut().graceful_shutdown(),
    }
    match conn.await {
        // A client that had connected but not sent a byte when the signal came is closed at
        // once; hyper-util reports that as an `Interrupted` error, though nothing was lost.
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
                == Some(std::io::ErrorKind::Interrupted) =>
        {
            Ok(())
        }
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

    // Serves HTTP/1.1, and HTTP/2 when the client opens with the HTTP/2 preface.
    let mut http = auto::Builder::new(TokioExecutor::new());
    // A timer turns on hyper's HTTP/1 header read timeout (30 s): a client that trickles its
    // request headers (Slowloris) is dropped.
    http.http1().timer(TokioTimer::new());

    // Shutdown has two layers, one signal:
    // - staunch's `with_graceful_shutdown` closes the listening socket at once, gives connections
    //   `GRACE` to finish, then cancels the rest and reports the counts. hyper-util's
    //   `GracefulShutdown` has no deadline and does not own the accept loop.
    // - hyper's per-connection `graceful_shutdown` makes "finish" quick and clean: HTTP/1 ends
    //   after the response in progress (idle keep-alive connections close at once), HTTP/2 sends
    //   GOAWAY. Without it an idle keep-alive connection would sit until `GRACE` and be cut.
    //   staunch's `Drain`, started at the signal, tells every connection. (hyper-util's
    //   `GracefulShutdown` watcher does this too, but `shutdown(self)` consumes it while the
    //   accept closure below still holds it.)
    let drain = Drain::new();
    let report = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .map({
            let drain = drain.clone();
            move |stream| serve(http.clone(), stream, drain.clone())
        })
        .spawn_listen(1024)
        .with_graceful_shutdown(signal, GRACE)
        .with_drain(drain)
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
