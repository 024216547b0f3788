//! The server side of every scenario: runs in a child process (`compare --role NAME ...`).
//!
//! Each role binds 127.0.0.1 (port 0 unless `--port`), prints `READY <port> <open fds>` and
//! serves until its stdin closes (the parent exits or drops it) or a hard time limit passes.

use std::convert::Infallible;
use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use staunch::{ListenExt, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::TcpListenerStream;

use crate::sys;

/// No child lives longer than this, whatever happens to the parent.
const CHILD_HARD_LIMIT: Duration = Duration::from_secs(900);

/// Options of a child, from its command line.
#[derive(Debug, Default, Clone)]
pub(crate) struct RoleArgs {
    pub(crate) contender: String,
    pub(crate) handler: String,
    pub(crate) port: u16,
    pub(crate) nofile: Option<u64>,
    pub(crate) max: usize,
    pub(crate) time_limit_ms: u64,
    /// Scenario 8: accept loops (`SO_REUSEPORT`) or runtime workers.
    pub(crate) threads: usize,
}

impl RoleArgs {
    pub(crate) fn parse(args: &[String]) -> RoleArgs {
        let mut r = RoleArgs {
            max: 10_000,
            handler: "echo".into(),
            ..RoleArgs::default()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut v = || it.next().cloned().unwrap_or_default();
            match a.as_str() {
                "--contender" => r.contender = v(),
                "--handler" => r.handler = v(),
                "--port" => r.port = v().parse().unwrap_or(0),
                "--nofile" => r.nofile = v().parse().ok(),
                "--max" => r.max = v().parse().unwrap_or(10_000),
                "--time-limit-ms" => r.time_limit_ms = v().parse().unwrap_or(0),
                "--threads" => r.threads = v().parse().unwrap_or(1),
                _ => {}
            }
        }
        r
    }
}

pub(crate) fn run(role: &str, args: RoleArgs) {
    // Raise (or, for the EMFILE storm, lower) the descriptor limit before anything opens one.
    let limit = sys::set_nofile(args.nofile);
    if args.nofile.is_some() && Some(limit) != args.nofile {
        eprintln!("child: could not set RLIMIT_NOFILE to {:?}", args.nofile);
    }
    // Commands from the parent; EOF means the parent is gone or done with us.
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The soak child handles its own stdin EOF (it reports before exiting).
    let exit_on_eof = role != "soak";
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line).is_err() {
                break;
            }
        }
        if exit_on_eof {
            std::process::exit(0);
        }
    });
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_HARD_LIMIT);
        eprintln!("child: hard time limit reached, exiting");
        std::process::exit(3);
    });
    if role == "reuseport" {
        reuseport_server(&args, cmd_rx);
        return;
    }
    if role == "http-per-core" {
        http_per_core_server(&args);
        return;
    }
    let multi =
        args.contender.ends_with("-mt") || matches!(role, "http" | "emfile" | "sink" | "soak");
    let rt = if multi {
        // A worker per core (tokio's default).
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        let listener = if role == "emfile" {
            // A backlog of 1024, not tokio's 128: scenario 9 queues 200 clients at once, and
            // measures shedding, not backlog overflow (a dropped SYN is retried after 1 s).
            staunch::listen::bind(addr).expect("bind 127.0.0.1")
        } else {
            TcpListener::bind(addr).await.expect("bind 127.0.0.1")
        };
        let port = listener.local_addr().unwrap().port();
        println!("READY {port} {}", sys::own_fd_count());
        match role {
            "echo" => echo_server(listener, &args).await,
            "http" => http_server(listener, &args).await,
            "emfile" => emfile_server(listener, &args).await,
            "sink" => sink_server(listener).await,
            "soak" => crate::soak::server(listener, &args, cmd_rx).await,
            other => panic!("unknown role {other}"),
        }
    });
}

/// Echo until the client closes: one small echo per connection in the churn scenario.
pub(crate) async fn echo(mut s: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}

/// Greet with one byte (the client is "served"), then hold the connection until the client
/// closes it: the EMFILE storm and the idle-connections scenario.
pub(crate) async fn hold(mut s: TcpStream) -> io::Result<()> {
    s.write_all(b"!").await?;
    let mut buf = [0u8; 16];
    while s.read(&mut buf).await? != 0 {}
    Ok(())
}

async fn echo_server(listener: TcpListener, args: &RoleArgs) {
    let hold_handler = args.handler == "hold";
    match args.contender.as_str() {
        // The baseline: the loop in every tokio tutorial.
        "bare-mt" | "bare-ct" => loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    if hold_handler {
                        tokio::spawn(hold(s));
                    } else {
                        tokio::spawn(echo(s));
                    }
                }
                Err(_) => continue,
            }
        },
        "listen-ct" => {
            let accepts =
                TcpListenerStream::new(listener).sleep_on_error(Duration::from_millis(100));
            if hold_handler {
                accepts.map(hold).listen(args.max).await
            } else {
                accepts.map(echo).listen(args.max).await
            }
        }
        "spawn_listen-mt" => {
            let accepts =
                TcpListenerStream::new(listener).sleep_on_error(Duration::from_millis(100));
            if hold_handler {
                accepts.map(hold).spawn_listen(args.max).await
            } else {
                accepts.map(echo).spawn_listen(args.max).await
            }
        }
        other => panic!("unknown echo contender {other}"),
    }
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

async fn serve_hyper(s: TcpStream) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(s), hyper::service::service_fn(hello))
        .await
}

async fn http_server(listener: TcpListener, args: &RoleArgs) {
    match args.contender.as_str() {
        // hyper-util's example server: accept, spawn, serve_connection.
        "hyper-plain" => loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = serve_hyper(s).await;
            });
        },
        "axum" => {
            let app =
                axum::Router::new().route("/", axum::routing::get(|| async { "Hello, World!" }));
            axum::serve(listener, app).await.unwrap();
        }
        "hyper-staunch" => {
            TcpListenerStream::new(listener)
                .sleep_on_error(Duration::from_millis(100))
                .map(serve_hyper)
                .spawn_listen(args.max)
                .await
        }
        // The one-call server of staunch-http, with its defaults (header read timeout, drain
        // with a deadline at SIGTERM, connections counted through upgrades).
        "staunch-http" => {
            staunch_http::serve(listener, tower::service_fn(hello))
                .max_connections(args.max)
                .await;
        }
        "staunch-http-axum" => {
            let app =
                axum::Router::new().route("/", axum::routing::get(|| async { "Hello, World!" }));
            staunch_http::serve(listener, app)
                .max_connections(args.max)
                .await;
        }
        other => panic!("unknown http contender {other}"),
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    // axum 0.8.9 src/serve/listener.rs:160 (the same three kinds tk-listen skips).
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn emfile_server(listener: TcpListener, args: &RoleArgs) {
    match args.contender.as_str() {
        // tonic's and hyper-util's examples: `Err(_) => continue`.
        "naive" => loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(hold(s));
                }
                Err(_) => continue,
            }
        },
        // axum::serve's accept loop (axum 0.8.9 src/serve/listener.rs:140-158): skip connection
        // errors, sleep 1 s on anything else.
        "axum-1s" => loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(hold(s));
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        },
        // tk-listen's `sleep_on_error(Duration::from_millis(100))`.
        "fixed-100ms" => loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(hold(s));
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        },
        // staunch's sleep_on_error on its own (no listener to wake it): plain timed backoff.
        "staunch-unchained" => {
            let mut accepts = Box::pin(
                TcpListenerStream::new(listener).sleep_on_error(Duration::from_millis(100)),
            );
            while let Some(s) = accepts.next().await {
                tokio::spawn(hold(s));
            }
        }
        // The README's server: sleep_on_error(100 ms) chained into spawn_listen (wake on release).
        "staunch" => {
            TcpListenerStream::new(listener)
                .sleep_on_error(Duration::from_millis(100))
                .map(hold)
                .spawn_listen(args.max)
                .await
        }
        // The same, shedding the backlog on EMFILE.
        "staunch-shed" => {
            TcpListenerStream::new(listener)
                .sleep_on_error(Duration::from_millis(100))
                .shed_on_emfile(1024)
                .map(hold)
                .spawn_listen(args.max)
                .await
        }
        other => panic!("unknown emfile contender {other}"),
    }
}

/// Reads and discards; prints `FIRST` when the first byte of this process's life arrives.
async fn sink_server(listener: TcpListener) {
    let first = std::sync::Arc::new(std::sync::Once::new());
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let first = first.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => first.call_once(|| println!("FIRST")),
                }
            }
        });
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Scenario 8: the same `sleep_on_error(100 ms).map(echo).listen(max)` chain on one accept loop
/// (`single-ct`), on one loop per thread with its own `SO_REUSEPORT` socket (`reuseport-ct`,
/// through `listen::per_core`), and `spawn_listen(max)` on a multi-thread runtime
/// (`spawn_listen-mt`); bare accept+spawn loops in the per-core layout (`reuseport-bare-ct`);
/// `--threads N` for all but the first. A `stats` command prints the counters (merged over the loops) once no connection is
/// left running.
fn reuseport_server(args: &RoleArgs, cmds: UnboundedReceiver<String>) {
    let n = args.threads.max(1);
    let local = SocketAddr::from(([127, 0, 0, 1], args.port));
    let max = args.max;
    let backoff = Duration::from_millis(100);
    match args.contender.as_str() {
        "single-ct" => current_thread().block_on(async move {
            let listener = TcpListener::bind(local).await.expect("bind 127.0.0.1");
            println!(
                "READY {} {}",
                listener.local_addr().unwrap().port(),
                sys::own_fd_count()
            );
            let server = TcpListenerStream::new(listener)
                .sleep_on_error(backoff)
                .map(echo)
                .listen(max);
            tokio::spawn(answer_stats(vec![server.stats()], cmds));
            server.await
        }),
        "spawn_listen-mt" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let listener = TcpListener::bind(local).await.expect("bind 127.0.0.1");
                println!(
                    "READY {} {}",
                    listener.local_addr().unwrap().port(),
                    sys::own_fd_count()
                );
                let server = TcpListenerStream::new(listener)
                    .sleep_on_error(backoff)
                    .map(echo)
                    .spawn_listen(max);
                tokio::spawn(answer_stats(vec![server.stats()], cmds));
                server.await
            }),
        "reuseport-ct" => {
            let server = staunch::listen::per_core(local, n, move |listener| {
                TcpListenerStream::new(listener)
                    .sleep_on_error(backoff)
                    .map(echo)
                    .listen(max)
            })
            .expect("per_core 127.0.0.1");
            println!(
                "READY {} {}",
                server.local_addr().port(),
                sys::own_fd_count()
            );
            let per_loop = server.stats_per_loop().to_vec();
            current_thread().block_on(answer_stats(per_loop, cmds));
            drop(server);
        }
        // The same layout by hand, each loop the bare accept+spawn loop: the baseline of the
        // per-core goal. It keeps no counters, so its `stats` line says so.
        "reuseport-bare-ct" => {
            let listeners =
                staunch::listen::bind_reuseport(local, n).expect("bind_reuseport 127.0.0.1");
            let port = listeners[0].local_addr().unwrap().port();
            for listener in listeners {
                std::thread::spawn(move || {
                    current_thread().block_on(async move {
                        let listener = TcpListener::from_std(listener).expect("register listener");
                        loop {
                            if let Ok((s, _)) = listener.accept().await {
                                tokio::spawn(echo(s));
                            }
                        }
                    })
                });
            }
            println!("READY {port} {}", sys::own_fd_count());
            current_thread().block_on(async move {
                let mut cmds = cmds;
                while cmds.recv().await.is_some() {
                    println!("STATS none");
                }
            });
        }
        other => panic!("unknown reuseport contender {other}"),
    }
}

/// On `stats`: wait (at most 2 s) until no connection is running, then print
/// `STATS <merged snapshot> per_loop=<connections of each loop, />`.
async fn answer_stats(per_loop: Vec<Stats>, mut cmds: UnboundedReceiver<String>) {
    let all = Stats::merged(per_loop.iter().cloned());
    while let Some(line) = cmds.recv().await {
        if line != "stats" {
            continue;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while all.snapshot().active > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let loops: Vec<String> = per_loop
            .iter()
            .map(|s| s.snapshot().connections.to_string())
            .collect();
        println!("STATS {} per_loop={}", all.snapshot(), loops.join("/"));
    }
}

/// Scenario 12: hyper "hello" on one current-thread loop per core, each with its own
/// `SO_REUSEPORT` socket: `listen::per_core` with in-task `listen` (`percore-staunch`), or the
/// same layout by hand with bare accept + spawn loops (`percore-bare`). Serves until stdin closes.
fn http_per_core_server(args: &RoleArgs) {
    let n = args.threads.max(1);
    let local = SocketAddr::from(([127, 0, 0, 1], args.port));
    let max = args.max;
    // The staunch loops live as long as their handle.
    let mut _per_core = None;
    let port = match args.contender.as_str() {
        "percore-staunch" => {
            let server = staunch::listen::per_core(local, n, move |listener| {
                TcpListenerStream::new(listener)
                    .sleep_on_error(Duration::from_millis(100))
                    .map(serve_hyper)
                    .listen(max)
            })
            .expect("per_core 127.0.0.1");
            let port = server.local_addr().port();
            _per_core = Some(server);
            port
        }
        "percore-bare" => {
            let listeners =
                staunch::listen::bind_reuseport(local, n).expect("bind_reuseport 127.0.0.1");
            let port = listeners[0].local_addr().unwrap().port();
            for listener in listeners {
                std::thread::spawn(move || {
                    current_thread().block_on(async move {
                        let listener = TcpListener::from_std(listener).expect("register listener");
                        loop {
                            if let Ok((s, _)) = listener.accept().await {
                                tokio::spawn(serve_hyper(s));
                            }
                        }
                    })
                });
            }
            port
        }
        other => panic!("unknown http-per-core contender {other}"),
    };
    println!("READY {port} {}", sys::own_fd_count());
    // The stdin thread exits the process when the parent is done.
    loop {
        std::thread::park();
    }
}
