//! Load generators (this process) for accept churn, the EMFILE storm and idle connections; the
//! servers run in child processes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::sys::{self, ChildServer};

pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One accept-churn run.
pub(crate) struct Churn {
    /// Connections per second during `measure`.
    pub(crate) rate: f64,
    /// Client errors (connect, echo or 2 s timeout), warm-up included.
    pub(crate) errors: u64,
    /// Server CPU microseconds per connection during `measure`.
    pub(crate) cpu_us: f64,
    /// Connections that completed their echo, warm-up included.
    pub(crate) completed: u64,
}

/// Connect, one 8-byte echo, close; `concurrency` loops for `warmup + measure` against the
/// server process `pid`.
pub(crate) async fn churn(
    port: u16,
    pid: u32,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> Churn {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + warmup + measure;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (done, errors) = (done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let one = async {
                    let mut s = TcpStream::connect(addr(port)).await?;
                    s.write_all(b"ping1234").await?;
                    let mut buf = [0u8; 8];
                    s.read_exact(&mut buf).await?;
                    std::io::Result::Ok(())
                };
                match timeout(Duration::from_secs(2), one).await {
                    Ok(Ok(())) => done.fetch_add(1, Relaxed),
                    _ => errors.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep_until((start + warmup).into()).await;
    let (c0, t0, ns0) = (done.load(Relaxed), Instant::now(), sys::cpu_ns(pid));
    tokio::time::sleep_until(end.into()).await;
    let (c1, t1, ns1) = (done.load(Relaxed), Instant::now(), sys::cpu_ns(pid));
    for t in tasks {
        let _ = t.await;
    }
    Churn {
        rate: (c1 - c0) as f64 / (t1 - t0).as_secs_f64(),
        errors: errors.load(Relaxed),
        cpu_us: (ns1 - ns0) as f64 / 1000.0 / (c1 - c0).max(1) as f64,
        completed: done.load(Relaxed),
    }
}

/// One EMFILE storm against a server child whose descriptor limit is `nofile`.
pub(crate) struct Storm {
    /// CPU seconds per second of exhaustion (1.0 = one full core), from `/proc/<pid>/stat`.
    pub(crate) cpu_share: f64,
    /// The same from `/proc/<pid>/task/*/schedstat` (nanosecond resolution).
    pub(crate) cpu_share_ns: f64,
    /// From "descriptors freed" to "every waiting client served".
    pub(crate) recovery: Option<Duration>,
    pub(crate) served_before: usize,
    pub(crate) waiting: usize,
    /// (seconds since descriptors were freed, server CPU seconds since the storm began, clients
    /// served).
    pub(crate) samples: Vec<(f64, f64, usize)>,
}

pub(crate) async fn storm(server: &ChildServer, nofile: u64, exhaust: Duration) -> Storm {
    let capacity = (nofile as usize).saturating_sub(server.fds_at_ready);
    let waiting = (capacity * 3 / 4).clamp(1, 40);
    let total = capacity + waiting;
    let port = server.port;
    let served: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for i in 0..total {
        let served = served.clone();
        let mut release = release_rx.clone();
        clients.push(tokio::spawn(async move {
            let client = async {
                let mut s = TcpStream::connect(addr(port)).await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                served.lock().unwrap()[i] = Some(Instant::now());
                // Served before the descriptors were freed: hold the descriptor until then.
                let _ = release.wait_for(|r| *r).await;
                drop(s);
                std::io::Result::Ok(())
            };
            let _ = timeout(Duration::from_secs(20), client).await;
        }));
        // Connect in order so the first `capacity` clients are the ones served.
        tokio::task::yield_now().await;
    }
    let count = |v: &Mutex<Vec<Option<Instant>>>| v.lock().unwrap().iter().flatten().count();
    // Wait until the server has taken all it can (no new client served for 300 ms).
    let settle_deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (count(&served), Instant::now());
    while Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = count(&served);
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let served_before = count(&served);
    let tck = sys::clk_tck();
    let cpu_at = |base: u64| (server.cpu_ticks() - base) as f64 / tck;
    let cpu0 = server.cpu_ticks();
    let ns0 = server.cpu_ns();
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let free_at = t0 + exhaust;
    // Sample during the exhaustion, then free the descriptors and sample the recovery.
    while Instant::now() < free_at {
        samples.push((Instant::now(), cpu_at(cpu0), count(&served)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_share = cpu_at(cpu0) / t0.elapsed().as_secs_f64();
    let cpu_share_ns = (server.cpu_ns() - ns0) as f64 / 1e9 / t0.elapsed().as_secs_f64();
    let t_free = Instant::now();
    release_tx.send_replace(true);
    let recover_deadline = t_free + Duration::from_secs(5);
    while count(&served) < total && Instant::now() < recover_deadline {
        samples.push((Instant::now(), cpu_at(cpu0), count(&served)));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let recovery = {
        let v = served.lock().unwrap();
        if v.iter().all(Option::is_some) {
            v.iter()
                .flatten()
                .max()
                .map(|last| last.saturating_duration_since(t_free))
        } else {
            None
        }
    };
    let tail = Instant::now() + Duration::from_millis(150);
    while Instant::now() < tail {
        samples.push((Instant::now(), cpu_at(cpu0), count(&served)));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in clients {
        c.abort();
    }
    let samples = samples
        .into_iter()
        .map(|(t, cpu, n)| {
            let x = if t >= t_free {
                (t - t_free).as_secs_f64()
            } else {
                -(t_free - t).as_secs_f64()
            };
            (x, cpu, n)
        })
        .collect();
    Storm {
        cpu_share,
        cpu_share_ns,
        recovery,
        served_before,
        waiting: total - served_before,
        samples,
    }
}

/// Open `n` idle connections (each greeted by the server, so its handler is running) and return
/// the server's RSS growth in bytes per connection, and how many were opened.
pub(crate) async fn idle(server: &ChildServer, n: usize) -> (f64, usize) {
    let port = server.port;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = server.rss_kib();
    let failed = Arc::new(AtomicBool::new(false));
    let conns: Vec<TcpStream> = futures_util::stream::iter(0..n)
        .map(|_| {
            let failed = failed.clone();
            async move {
                let c = async {
                    let mut s = TcpStream::connect(addr(port)).await?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await?;
                    std::io::Result::Ok(s)
                };
                match timeout(Duration::from_secs(10), c).await {
                    Ok(Ok(s)) => Some(s),
                    other => {
                        if !failed.swap(true, Relaxed) {
                            eprintln!("  idle: a connection failed: {other:?}");
                        }
                        None
                    }
                }
            }
        })
        .buffer_unordered(256)
        .filter_map(|s| async move { s })
        .collect()
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss1 = server.rss_kib();
    let opened = conns.len();
    drop(conns);
    let per = (rss1.saturating_sub(rss0) * 1024) as f64 / opened.max(1) as f64;
    (per, opened)
}

/// The waits of clients queued against a server with no free descriptors.
pub(crate) struct Queued {
    /// Each queued client's wait, from its connect until it was served or told (reset or EOF),
    /// or `limit` if neither came by then; and whether it was told.
    pub(crate) waits: Vec<(Duration, Outcome)>,
    /// CPU seconds per second (schedstat) over `limit` from the first queued connect.
    pub(crate) cpu_share_ns: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Served,
    Told,
    Waiting,
}

/// Fill the server's descriptors with held clients, then queue `n` more (at once) and time how
/// long each waits to learn anything, up to `limit`.
pub(crate) async fn queued(server: &ChildServer, nofile: u64, n: usize, limit: Duration) -> Queued {
    let capacity = (nofile as usize).saturating_sub(server.fds_at_ready);
    let port = server.port;
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let greeted = Arc::new(AtomicU64::new(0));
    let mut holders = Vec::new();
    // More holders than descriptors: the extra ones are queued (or shed) with the others.
    for _ in 0..capacity + 2 {
        let greeted = greeted.clone();
        let mut release = release_rx.clone();
        holders.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr(port)).await else {
                return;
            };
            if s.read_exact(&mut [0u8; 1]).await.is_ok() {
                greeted.fetch_add(1, Relaxed);
                let _ = release.wait_for(|r| *r).await;
            }
        }));
        tokio::task::yield_now().await;
    }
    // Until the server has taken all it can (nobody new greeted for 300 ms).
    let settle_deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (greeted.load(Relaxed), Instant::now());
    while Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let g = greeted.load(Relaxed);
        if g != last.0 {
            last = (g, Instant::now());
        } else if g > 0 && last.1.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let ns0 = server.cpu_ns();
    let t0 = Instant::now();
    let clients: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let start = Instant::now();
                let outcome = timeout(limit, async {
                    let mut s = match TcpStream::connect(addr(port)).await {
                        Ok(s) => s,
                        Err(_) => return Outcome::Told,
                    };
                    match s.read(&mut [0u8; 1]).await {
                        Ok(1) => Outcome::Served,
                        _ => Outcome::Told,
                    }
                })
                .await
                .unwrap_or(Outcome::Waiting);
                (start.elapsed().min(limit), outcome)
            })
        })
        .collect();
    let mut waits = Vec::with_capacity(n);
    for c in clients {
        waits.push(c.await.expect("client task"));
    }
    // CPU over a fixed window (`limit`), so that a burst of shedding is not read as a rate.
    tokio::time::sleep_until((t0 + limit).into()).await;
    let cpu_share_ns = (server.cpu_ns() - ns0) as f64 / 1e9 / t0.elapsed().as_secs_f64();
    release_tx.send_replace(true);
    for h in holders {
        h.abort();
    }
    Queued {
        waits,
        cpu_share_ns,
    }
}

/// Run `limit_rate(rate, 1 s)` (`None`: no limit, the control) on a loopback listener in this
/// process while `loops` clients reconnect as fast as they can for `window`; return the
/// connections accepted per second (measured from the first accept to the end of the window).
/// `reject`: the excess is closed at once (`reject_excess`) instead of left in the backlog.
pub(crate) async fn rate_limited(
    rate: Option<u32>,
    reject: bool,
    loops: usize,
    window: Duration,
) -> f64 {
    use staunch::overload::OverloadExt;
    use staunch::ListenExt;
    let listener = staunch::listen::bind(addr(0)).expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None::<Instant>));
    let (count, at) = (accepted.clone(), first.clone());
    let accepts = tokio_stream::wrappers::TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(10));
    let accepts = match (rate, reject) {
        (Some(rate), false) => accepts
            .limit_rate(rate, Duration::from_secs(1))
            .left_stream()
            .left_stream(),
        (Some(rate), true) => accepts
            .limit_rate(rate, Duration::from_secs(1))
            .reject_excess()
            .right_stream()
            .left_stream(),
        (None, _) => accepts.right_stream(),
    };
    let server = tokio::spawn(
        accepts
            .map(move |socket| {
                at.lock().unwrap().get_or_insert_with(Instant::now);
                count.fetch_add(1, Relaxed);
                async move { drop(socket) }
            })
            .spawn_listen(10_000),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..loops)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let Ok(Ok(mut s)) =
                        timeout(Duration::from_secs(1), TcpStream::connect(addr(port))).await
                    else {
                        continue;
                    };
                    let _ = timeout(Duration::from_secs(1), s.read(&mut [0u8; 1])).await;
                }
            })
        })
        .collect();
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let n = accepted.load(Relaxed);
    let since = first.lock().unwrap().map_or(start, |t| t);
    let rate = n.saturating_sub(1) as f64 / since.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    server.abort();
    for c in clients {
        let _ = c.await;
    }
    rate
}
