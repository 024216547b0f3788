//! What an operator sees during an `EMFILE` storm: staunch's structured `tracing` events, printed
//! by `tracing-subscriber`, and a periodic stats line read from the `Stats` handle.
//!
//! ```text
//! cargo run -p staunch-integrations --example emfile_tracing  # a storm on 127.0.0.1, about a second
//! RUST_LOG=info cargo run -p staunch-integrations --example emfile_tracing  # without the debug events
//! ```
//!
//! The example provokes the storm itself, on loopback only and bounded in time: it lowers its
//! own open-file limit (`RLIMIT_NOFILE`, to `NOFILE`, default 64) and opens `CLIENTS` (default
//! 120) connections to itself, each held for a moment after its echo. The server runs out of
//! descriptors, `accept` fails with `EMFILE`, and you see:
//!
//! - `ERROR ... accept: error, backing off error=... kind=... errno=Some(24) class=Resource
//!   delay_ms=50 consecutive=N active=Some(A)`: the loop sleeps instead of spinning; `active` is
//!   how many connections hold descriptors;
//! - `DEBUG ... a connection ended and freed resources: accepting again` (at `staunch=debug`):
//!   the wait cut short because one of the server's connections closed;
//! - `stats: accepted=... backoffs=... woken_by_release=... active=... peak_active=...` every
//!   `STATS_MS` (default 250), on stdout: the numbers to export to your metrics. `backoffs`
//!   climbing while `accepted` stands still is the storm; `woken_by_release` shows recovery.
//!
//! In a real server, `EMFILE` means the limit is too low for the load (raise `LimitNOFILE=` or
//! `ulimit -n`) or descriptors leak; cap connections below the limit with `spawn_listen(n)`.

#[cfg(unix)]
mod storm {
    use std::io::IsTerminal as _;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::Context as _;
    use staunch::ListenExt;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::Semaphore;
    use tokio_stream::{wrappers::TcpListenerStream, StreamExt as _};
    use tokio_util::sync::CancellationToken;
    use tracing_subscriber::EnvFilter;

    /// How long each client keeps its connection after its echo.
    const HOLD: Duration = Duration::from_millis(100);
    /// The whole storm ends by then, served or not.
    const STORM_LIMIT: Duration = Duration::from_secs(20);
    /// Descriptors left to the server when the clients hold as many as they may.
    const SERVER_SHARE: u64 = 8;

    pub(crate) fn main() -> anyhow::Result<()> {
        tracing_subscriber::fmt()
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,staunch=debug".into()),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();

        let nofile: u64 = env_number("NOFILE", 64)?;
        let clients: usize = env_number("CLIENTS", 120)?;
        let stats_every = Duration::from_millis(env_number("STATS_MS", 250)?);
        lower_nofile(nofile)?;
        tokio::runtime::Runtime::new()?.block_on(run(nofile, clients, stats_every))
    }

    /// Lower this process's soft limit on open files (the hard limit stays).
    fn lower_nofile(nofile: u64) -> anyhow::Result<()> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, writable one.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit");
        }
        limit.rlim_cur = (nofile as libc::rlim_t).min(limit.rlim_max);
        // SAFETY: setrlimit reads one `rlimit` through a pointer to a live one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit");
        }
        Ok(())
    }

    async fn echo(socket: TcpStream) -> std::io::Result<()> {
        let (mut reader, mut writer) = socket.into_split();
        tokio::io::copy(&mut reader, &mut writer).await?;
        Ok(())
    }

    async fn run(nofile: u64, clients: usize, stats_every: Duration) -> anyhow::Result<()> {
        let addr = std::env::args().nth(1);
        let addr = addr.as_deref().unwrap_or("127.0.0.1:0");
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "the storm stays on loopback: {addr}"
        );
        println!("listening on {addr}");

        // The clients may hold every descriptor but `SERVER_SHARE`: the server runs out (EMFILE)
        // but can always accept a few, so the storm ends.
        let in_use = std::fs::read_dir("/dev/fd").map_or(16, |d| d.count()) as u64;
        let client_share = nofile.saturating_sub(in_use + SERVER_SHARE).max(1);
        println!(
            "storm: RLIMIT_NOFILE={nofile}, {in_use} descriptors in use, {clients} clients, \
             at most {client_share} at once"
        );

        let stop = CancellationToken::new();
        let server = TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(50))
            .map(echo)
            .spawn_listen(1024);
        let stats = server.stats();

        // The operator's view: one line of counters at a fixed period.
        let ticker = tokio::spawn({
            let stats = stats.clone();
            let stop = stop.clone();
            async move {
                let mut tick = tokio::time::interval(stats_every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => println!("stats: {}", stats.snapshot()),
                        () = stop.cancelled() => break,
                    }
                }
            }
        });

        let storm = tokio::spawn({
            let stop = stop.clone();
            async move {
                let started = Instant::now();
                let share = Arc::new(Semaphore::new(client_share as usize));
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..clients {
                    let share = share.clone();
                    tasks.spawn(async move {
                        let _permit = share.acquire_owned().await.unwrap();
                        client(addr, i).await
                    });
                }
                let served = tokio::time::timeout(STORM_LIMIT, async {
                    let mut served = 0;
                    while let Some(result) = tasks.join_next().await {
                        served += usize::from(matches!(result, Ok(Ok(()))));
                    }
                    served
                })
                .await;
                let served = served.unwrap_or(0);
                println!(
                    "storm: {served} of {clients} clients served in {} ms",
                    started.elapsed().as_millis()
                );
                stop.cancel();
                served
            }
        });

        let report = server
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .grace(Duration::from_secs(2))
            .await;
        let served = storm.await?;
        ticker.await?;
        println!("{report}");
        anyhow::ensure!(
            served == clients,
            "only {served} of {clients} clients were served"
        );
        Ok(())
    }

    /// Connect (retrying while this process is out of descriptors too), check one echo, hold the
    /// connection for `HOLD`, close.
    async fn client(addr: std::net::SocketAddr, i: usize) -> std::io::Result<()> {
        let stream = loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => break stream,
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let (reader, mut writer) = stream.into_split();
        let line = format!("client {i}\n");
        writer.write_all(line.as_bytes()).await?;
        let mut echoed = String::new();
        BufReader::new(reader).read_line(&mut echoed).await?;
        if echoed != line {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        tokio::time::sleep(HOLD).await;
        Ok(())
    }

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
}

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    storm::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("this example lowers RLIMIT_NOFILE, which needs a Unix system");
}
