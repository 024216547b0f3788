//! An echo server on a Unix domain socket: `UnixListenerStream` through the same chain as TCP.
//!
//! ```text
//! cargo run -p staunch-integrations --example unix  # listens on $TMPDIR/staunch-echo.sock
//! cargo run -p staunch-integrations --example unix -- /run/user/1000/echo.sock  # or on the path given
//! nc -U /tmp/staunch-echo.sock                          # from another terminal
//! ```
//!
//! A stale socket file left by a previous run is replaced; the socket file is removed on exit.
//! Stop it with Ctrl-C (or SIGTERM): idle clients are closed at once, a busy one after the echo
//! in progress, and whatever is still running after `GRACE` is cut.

#[cfg(unix)]
mod server {
    use std::future::Future;
    use std::io::IsTerminal as _;
    use std::path::PathBuf;
    use std::time::Duration;

    use anyhow::Context as _;
    use staunch::{listen::Conn, ListenExt};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{UnixListener, UnixStream};
    use tokio_stream::wrappers::UnixListenerStream;
    use tracing_subscriber::EnvFilter;

    /// After the signal, connections get this long to finish before they are cut.
    const GRACE: Duration = Duration::from_secs(5);

    /// Echo until the client closes or `conn` fires (at the shutdown): an idle connection
    /// closes at once, a busy one after the echo in progress.
    async fn echo(mut socket: UnixStream, conn: Conn) -> std::io::Result<()> {
        let mut buf = vec![0; 4096];
        loop {
            let n = tokio::select! {
                // The read first: a client taken from the backlog at shutdown gets its echo.
                biased;
                n = socket.read(&mut buf) => n?,
                () = conn.draining() => return Ok(()),
            };
            if n == 0 {
                return Ok(()); // the client closed its side
            }
            socket.write_all(&buf[..n]).await?;
            if conn.is_draining() {
                return Ok(());
            }
        }
    }

    #[tokio::main]
    pub(crate) async fn main() -> anyhow::Result<()> {
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();

        let path = std::env::args_os()
            .nth(1)
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("staunch-echo.sock"));
        // A socket file outlives its listener; binding over it fails with EADDRINUSE.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt as _;
            m.file_type().is_socket()
        }) {
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        let signal = shutdown_signal()?;
        println!("listening on {}", path.display());

        // The chain is the TCP one: only the stream of accepted sockets differs. (Unix sockets
        // hit EMFILE like TCP ones; there is no ECONNABORTED to skip.)
        let report = UnixListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(100))
            .spawn_serve(1024, echo)
            .with_graceful_shutdown(signal)
            .grace(GRACE)
            .await;

        // The listener is closed by now: remove its file so the next run binds cleanly.
        std::fs::remove_file(&path)?;
        println!("{report}");
        Ok(())
    }

    /// Completes on Ctrl-C or SIGTERM. Installed before the server announces itself, so a
    /// signal sent right after "listening on" cannot kill the process by default action.
    fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
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
}

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    server::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("Unix domain sockets need a Unix system");
}
