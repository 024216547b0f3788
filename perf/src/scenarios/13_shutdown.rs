//! Scenario 13: shutdown under keep-alive load. A hyper HTTP/1.1 server in this process (on its
//! own runtime and thread), 24 keep-alive clients looping a 300 ms request and 8 looping a fast
//! one; the shutdown signal comes mid-load. Contenders:
//!
//! - `Conn`: `spawn_serve` + `with_graceful_shutdown(signal).grace(grace)`, each connection
//!   calling hyper's `graceful_shutdown` when its `Conn` fires;
//! - `Grace`: `spawn_listen`, with no handle (the grace deadline alone);
//! - `Naive`: an accept + spawn loop that, at the signal, drops the listener and the `JoinSet`
//!   (aborting every connection task), as most tokio servers do.
//!
//! A request is *cut* when the server started it (its handler ran) and the client got no full
//! response: the server counts handlers started, the clients count full responses. A request
//! the client wrote that the server never started met a connection the server was closing
//! while it was idle (its FIN crossed the request on the wire), or one aborted with the request
//! unread (a reset): it was *never started*, and a client can retry it safely.
//!
//! Then the backlog: a server whose 2 slots stall until the drain starts, 200 more clients
//! connected and queued in the kernel, each with its request sent, when the signal comes. With
//! `take_backlog` (the default) they are taken and answered; with `take_backlog(0)` (the plain
//! close of the listening socket) the kernel resets them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use staunch::listen::{Conn, ShutdownReport};
use staunch::ListenExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;

use crate::report::{Report, Spec};
use crate::Config;

/// The slow request's service time.
pub(crate) const SLOW: Duration = Duration::from_millis(300);
pub(crate) const SLOW_CLIENTS: usize = 24;
pub(crate) const FAST_CLIENTS: usize = 8;
/// A bound on every client operation (connect, write, a response).
const IO: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contender {
    Conn,
    Grace,
    Naive,
}

impl Contender {
    pub(crate) const ALL: [Contender; 3] = [Contender::Conn, Contender::Grace, Contender::Naive];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Contender::Conn => "staunch spawn_serve + Conn, with_graceful_shutdown",
            Contender::Grace => "staunch spawn_listen, with_graceful_shutdown (no handle)",
            Contender::Naive => "naive: drop the accept loop, abort the tasks",
        }
    }
}

/// One run's measurements.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Requests the server started that got no full response.
    pub(crate) cut: u64,
    /// Requests written that the server never started (an idle connection's FIN or a reset
    /// crossed them): safe to retry.
    pub(crate) never_started: u64,
    /// Full responses that arrived after the signal.
    pub(crate) completed_after_signal: u64,
    /// From the signal to the last full response (zero if none came after the signal).
    pub(crate) signal_to_last_response: Duration,
    /// From the last full response (or the signal, if none came after it) to the end of the
    /// server future.
    pub(crate) last_response_to_exit: Duration,
    pub(crate) signal_to_exit: Duration,
    /// Full responses over the whole run (slow ones among them).
    pub(crate) complete: u64,
    pub(crate) slow: u64,
    /// Clients whose last connect was refused (the port closed), out of all of them.
    pub(crate) refused: usize,
    pub(crate) report: Option<ShutdownReport>,
}

const S: &str = "13 shutdown under load";

/// Scenario 13: every contender once per round, in a different order each round.
pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    let load = cfg.secs(1.0, 0.7);
    let grace = cfg.secs(2.0, 1.0);
    println!(
        "\n== {S}: hyper HTTP/1.1 in this process, {SLOW_CLIENTS} keep-alive clients looping a {} ms request and {FAST_CLIENTS} a fast one; signal after {:.1} s, grace {:.0} s",
        SLOW.as_millis(),
        load.as_secs_f64(),
        grace.as_secs_f64()
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for round in 0..cfg.rounds {
        let n = Contender::ALL.len();
        for c in (0..n).map(|i| Contender::ALL[(i + round) % n]) {
            let o = run_once(rt, c, load, grace);
            println!(
                "  round {round} {:<46} cut {:>3}, never started {:>3}, completed after the signal {:>6}; signal → last response {:>7.1} ms → exit {:>7.1} ms (signal → exit {:>7.1} ms); {} responses ({} slow), {}/{} clients refused at the end",
                c.name(),
                o.cut,
                o.never_started,
                o.completed_after_signal,
                ms(o.signal_to_last_response),
                ms(o.last_response_to_exit),
                ms(o.signal_to_exit),
                o.complete,
                o.slow,
                o.refused,
                SLOW_CLIENTS + FAST_CLIENTS,
            );
            if let Some(report) = &o.report {
                println!("    {report}");
            }
            if c == Contender::Conn && o.cut > 0 {
                rep.notes.push(format!(
                    "Shutdown under load, round {round}: {} cut {} requests (expected none).",
                    c.name(),
                    o.cut
                ));
            }
            let name = c.name();
            rep.add(S, name, "requests cut", "requests", round, o.cut as f64);
            rep.add(
                S,
                name,
                "requests never started (crossed a FIN or reset)",
                "requests",
                round,
                o.never_started as f64,
            );
            rep.add(
                S,
                name,
                "responses completed after the signal",
                "requests",
                round,
                o.completed_after_signal as f64,
            );
            rep.add(
                S,
                name,
                "signal → last response",
                "ms",
                round,
                ms(o.signal_to_last_response),
            );
            rep.add(
                S,
                name,
                "last response → exit",
                "ms",
                round,
                ms(o.last_response_to_exit),
            );
            rep.add(S, name, "signal → exit", "ms", round, ms(o.signal_to_exit));
        }
    }
    let spec = |metric, baseline: Option<Contender>, goal: &str| Spec {
        scenario: S,
        metric,
        baseline: baseline.map(|b| b.name().into()),
        higher_is_better: false,
        goal: goal.into(),
        paired: true,
    };
    rep.specs.push(spec(
        "requests cut",
        Some(Contender::Naive),
        "0 with the drain",
    ));
    rep.specs.push(spec(
        "requests never started (crossed a FIN or reset)",
        None,
        "safe to retry: not a loss",
    ));
    rep.specs.push(spec(
        "responses completed after the signal",
        None,
        "the requests in flight, then Connection: close",
    ));
    rep.specs.push(spec(
        "signal → last response",
        None,
        "about one slow request (300 ms) with the drain",
    ));
    rep.specs
        .push(spec("last response → exit", None, "< 1 s with the drain"));
    rep.specs.push(spec(
        "signal → exit",
        Some(Contender::Grace),
        "drain ≪ grace: ends with the slowest request in flight, not at the deadline",
    ));

    println!(
        "  clients queued in the backlog at the signal: {QUEUE_SLOTS} slots stalled until the drain starts, {QUEUED} more clients connected, each with its request sent"
    );
    let taking = |take: usize| match take {
        0 => "take_backlog(0): the plain close",
        _ => "take_backlog (default 1024)",
    };
    for round in 0..cfg.rounds {
        for take in if round % 2 == 0 { [1024, 0] } else { [0, 1024] } {
            let [answered, eof, reset] = rt.block_on(queued_at_close(take));
            println!(
                "  round {round} {:<34} answered {answered:>3}, closed unanswered {eof:>3}, reset {reset:>3} (of {})",
                taking(take),
                QUEUE_SLOTS + QUEUED
            );
            rep.add(
                S,
                taking(take),
                "clients reset",
                "requests",
                round,
                reset as f64,
            );
            rep.add(
                S,
                taking(take),
                "clients answered",
                "requests",
                round,
                answered as f64,
            );
        }
    }
    let queued = |metric, higher_is_better, goal: &str| Spec {
        scenario: S,
        metric,
        baseline: Some(taking(0).into()),
        higher_is_better,
        goal: goal.into(),
        paired: true,
    };
    rep.specs.push(queued(
        "clients reset",
        false,
        "0 of 202: the queued ones are taken, not reset by the close",
    ));
    rep.specs
        .push(queued("clients answered", true, "202 of 202"));
}

/// Slots of the server whose backlog is full when the port closes.
const QUEUE_SLOTS: usize = 2;
/// Clients queued behind them.
const QUEUED: usize = 200;

/// Clients queued in the kernel's backlog when the port closes: `QUEUE_SLOTS` connections read
/// their request and stall until the drain starts, then answer; `QUEUED` more clients connect
/// and send theirs, then the signal comes. Returns how many clients were answered, closed with
/// no answer, and reset.
async fn queued_at_close(take: usize) -> [usize; 3] {
    let listener = staunch::listen::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, signal) = tokio::sync::oneshot::channel::<()>();
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .spawn_serve(
            QUEUE_SLOTS,
            |mut socket: TcpStream, conn: Conn| async move {
                let mut request = [0; 6];
                socket.read_exact(&mut request).await?;
                conn.draining().await;
                socket.write_all(b"bye\n").await
            },
        )
        .with_graceful_shutdown(async move {
            let _ = signal.await;
        })
        .grace(IO)
        .take_backlog(take);
    let server = tokio::spawn(server);
    let total = QUEUE_SLOTS + QUEUED;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(total);
    let mut clients = JoinSet::new();
    for _ in 0..total {
        let ready = ready_tx.clone();
        clients.spawn(async move {
            let connected = timeout(IO, async {
                let mut socket = TcpStream::connect(addr).await?;
                socket.write_all(b"hello\n").await?;
                std::io::Result::Ok(socket)
            })
            .await;
            let _ = ready.send(()).await;
            let mut socket = match connected {
                Ok(Ok(socket)) => socket,
                _ => return 2,
            };
            let mut answer = Vec::new();
            match timeout(IO, socket.read_to_end(&mut answer)).await {
                Ok(Ok(_)) if answer == b"bye\n" => 0,
                Ok(Ok(_)) => 1,
                _ => 2,
            }
        });
    }
    // Every client has connected (its handshake completed: taken, or queued in the kernel) and
    // sent its request.
    for _ in 0..total {
        let _ = timeout(IO, ready_rx.recv()).await;
    }
    let _ = stop.send(());
    let mut seen = [0; 3];
    while let Some(outcome) = clients.join_next().await {
        seen[outcome.expect("a client panicked")] += 1;
    }
    let _ = timeout(IO, server).await;
    seen
}

/// Load for `load`, signal, and measure until the server future has ended.
pub(crate) fn run_once(
    rt: &tokio::runtime::Runtime,
    contender: Contender,
    load: Duration,
    grace: Duration,
) -> Outcome {
    let started = Arc::new(AtomicU64::new(0));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn({
        let started = started.clone();
        move || server(contender, grace, started, addr_tx, signal_rx)
    });
    let addr = addr_rx
        .recv_timeout(IO)
        .expect("the shutdown scenario's server did not start");
    let signalled = Arc::new(OnceLock::new());
    // Clients stop when refused; this bounds them if the port never closes.
    let until = Instant::now() + load + grace + Duration::from_secs(2);
    let seen: Vec<Seen> = rt.block_on(async {
        let mut clients = JoinSet::new();
        for i in 0..SLOW_CLIENTS + FAST_CLIENTS {
            let path = if i < SLOW_CLIENTS { "/slow" } else { "/" };
            clients.spawn(client(addr, path, until, signalled.clone()));
        }
        tokio::time::sleep(load).await;
        signalled.set(Instant::now()).unwrap();
        let _ = signal_tx.send(());
        let mut seen = Vec::new();
        let all = async {
            while let Some(s) = clients.join_next().await {
                seen.push(s.expect("a client panicked"));
            }
        };
        if timeout(until - Instant::now() + IO * 2, all).await.is_err() {
            eprintln!("  shutdown scenario: clients still running at their bound, aborted");
        }
        seen
    });
    let (exit, report) = server.join().expect("the server thread panicked");
    let signalled = *signalled.get().unwrap();
    let complete: u64 = seen.iter().map(|s| s.complete).sum();
    let sent: u64 = seen.iter().map(|s| s.sent).sum();
    let started = started.load(Relaxed);
    let cut = started.saturating_sub(complete);
    let last = seen
        .iter()
        .filter_map(|s| s.last_response)
        .max()
        .unwrap_or(signalled)
        .max(signalled);
    Outcome {
        cut,
        never_started: sent - complete - cut,
        completed_after_signal: seen.iter().map(|s| s.after_signal).sum(),
        signal_to_last_response: last - signalled,
        last_response_to_exit: exit.saturating_duration_since(last),
        signal_to_exit: exit.saturating_duration_since(signalled),
        complete,
        slow: seen.iter().map(|s| s.slow).sum(),
        refused: seen.iter().filter(|s| s.refused).count(),
        report,
    }
}

/// The server thread: its own runtime (two workers, as a small server would have); returns
/// when the server future ended, and the report where there is one.
fn server(
    contender: Contender,
    grace: Duration,
    started: Arc<AtomicU64>,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    signal_rx: tokio::sync::oneshot::Receiver<()>,
) -> (Instant, Option<ShutdownReport>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = staunch::listen::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        // A dropped sender (the load side panicked) is a signal too.
        let signal = async move {
            let _ = signal_rx.await;
        };
        // The signal always comes, and every contender ends within `grace` of it: this only
        // keeps a bug from hanging the benchmark program.
        let bound = Duration::from_secs(60) + grace;
        let report = match contender {
            Contender::Conn => {
                let server = TcpListenerStream::new(listener)
                    .sleep_on_error(Duration::from_millis(100))
                    .spawn_serve(1024, move |s, conn| serve(s, started.clone(), Some(conn)))
                    .with_graceful_shutdown(signal)
                    .grace(grace);
                Some(
                    timeout(bound, server)
                        .await
                        .expect("the staunch server did not end"),
                )
            }
            Contender::Grace => {
                let server = TcpListenerStream::new(listener)
                    .sleep_on_error(Duration::from_millis(100))
                    .map(move |s| serve(s, started.clone(), None))
                    .spawn_listen(1024)
                    .with_graceful_shutdown(signal)
                    .grace(grace);
                Some(
                    timeout(bound, server)
                        .await
                        .expect("the staunch server did not end"),
                )
            }
            Contender::Naive => {
                let naive = async {
                    let mut tasks = JoinSet::new();
                    let mut signal = pin!(signal);
                    loop {
                        tokio::select! {
                            () = &mut signal => break,
                            accepted = listener.accept() => {
                                if let Ok((s, _)) = accepted {
                                    tasks.spawn(serve(s, started.clone(), None));
                                }
                                while tasks.try_join_next().is_some() {}
                            }
                        }
                    }
                    // Dropping both closes the port and aborts every connection.
                    drop(listener);
                    drop(tasks);
                };
                timeout(bound, naive)
                    .await
                    .expect("the naive server did not end");
                None
            }
        };
        (Instant::now(), report)
    })
}

/// One HTTP/1.1 keep-alive connection; with a `Conn`, hyper's `graceful_shutdown` once it fires
/// (the request in progress is answered with `Connection: close`, an idle connection closes at
/// once).
async fn serve(stream: TcpStream, started: Arc<AtomicU64>, drain: Option<Conn>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        started.fetch_add(1, Relaxed);
        async move {
            let body: &'static [u8] = if request.uri().path() == "/slow" {
                tokio::time::sleep(SLOW).await;
                b"slow"
            } else {
                b"fast"
            };
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(body))))
        }
    });
    let mut conn = pin!(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    if let Some(drain) = drain {
        tokio::select! {
            // The connection first: a request already received (say from a client taken from
            // the backlog as the port closed) is answered, with `Connection: close`.
            biased;
            _ = conn.as_mut() => return,
            () = drain.draining() => conn.as_mut().graceful_shutdown(),
        }
    }
    let _ = conn.await;
}

/// What one keep-alive client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Requests written (or attempted) on a connection.
    sent: u64,
    /// Full responses, and the slow ones among them.
    complete: u64,
    slow: u64,
    after_signal: u64,
    last_response: Option<Instant>,
    /// The last connect was refused: the port had closed.
    refused: bool,
}

/// Loop `GET path` over keep-alive connections until a connect is refused (or `until`).
async fn client(
    addr: SocketAddr,
    path: &'static str,
    until: Instant,
    signalled: Arc<OnceLock<Instant>>,
) -> Seen {
    let mut seen = Seen::default();
    let request = format!("GET {path} HTTP/1.1\r\nhost: staunch\r\n\r\n");
    while Instant::now() < until {
        let socket = match timeout(IO, TcpStream::connect(addr)).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                seen.refused = true;
                break;
            }
            Ok(Err(_)) | Err(_) => continue,
        };
        let (reader, mut writer) = socket.into_split();
        let mut reader = BufReader::new(reader);
        while Instant::now() < until {
            seen.sent += 1;
            if !matches!(
                timeout(IO, writer.write_all(request.as_bytes())).await,
                Ok(Ok(()))
            ) {
                break;
            }
            match timeout(IO, response(&mut reader)).await {
                Ok(Some(close)) => {
                    let now = Instant::now();
                    seen.complete += 1;
                    seen.slow += u64::from(path == "/slow");
                    seen.last_response = Some(now);
                    seen.after_signal += u64::from(signalled.get().is_some_and(|s| now > *s));
                    if close {
                        break; // told to go: reconnect (refused once the port has closed)
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    seen
}

/// Read one response; `Some(close)` if it arrived in full (`close`: `Connection: close`).
async fn response<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<bool> {
    let (mut length, mut close, mut status) = (None, false, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        status |= lower.starts_with("http/1.1 200");
        if let Some(n) = lower.strip_prefix("content-length:") {
            length = n.trim().parse::<usize>().ok();
        }
        close |= lower.starts_with("connection:") && lower.contains("close");
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).await.ok()?;
    status.then_some(close)
}
