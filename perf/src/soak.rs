//! Soak: a million connections through `spawn_listen` (clean closes, resets, slow and stalled
//! clients), then check that descriptors, memory and every counter came back to where they were.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use staunch::ListenExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;

use crate::load::addr;
use crate::servers::{echo, RoleArgs};
use crate::sys::{self, ChildServer};

/// Server per-connection time limit: stalled clients are cut by it, slow ones stay under it.
const TIME_LIMIT_MS: u64 = 250;

fn mark_line(tag: &str, stats: &staunch::Stats) -> String {
    format!(
        "{tag} fds={} rss_kib={} {}",
        sys::own_fd_count(),
        sys::rss_kib(std::process::id()),
        stats.snapshot()
    )
}

/// The child: `spawn_listen` on a multi-thread runtime; `mark` prints descriptors, RSS and the
/// counters, `stop` (or stdin EOF) shuts down gracefully and prints them one last time.
pub(crate) async fn server(
    listener: TcpListener,
    args: &RoleArgs,
    mut cmds: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .map(echo)
        .spawn_listen(args.max)
        .connection_time_limit(Duration::from_millis(args.time_limit_ms.max(1)));
    let stats = server.stats();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let marks = stats.clone();
    tokio::spawn(async move {
        while let Some(line) = cmds.recv().await {
            if line == "mark" {
                println!("{}", mark_line("MARK", &marks));
            } else if line == "stop" {
                break;
            }
        }
        let _ = stop_tx.send(());
    });
    let report = server
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .grace(Duration::from_secs(2))
        .await;
    println!(
        "{} shutdown_cancelled={}",
        mark_line("DONE", &stats),
        report.cancelled
    );
}

fn parse_kv(line: &str) -> BTreeMap<String, f64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

#[derive(Default)]
struct ClientCounts {
    attempts: AtomicU64,
    connected: AtomicU64,
    connect_errors: AtomicU64,
    clean: AtomicU64,
    resets: AtomicU64,
    slow: AtomicU64,
    stalled_cut: AtomicU64,
    unexpected: AtomicU64,
}

async fn one(port: u16, i: u64, c: &ClientCounts) {
    let kind = i % 1000;
    let Ok(Ok(mut s)) = timeout(Duration::from_secs(3), TcpStream::connect(addr(port))).await
    else {
        c.connect_errors.fetch_add(1, Relaxed);
        return;
    };
    c.connected.fetch_add(1, Relaxed);
    let mut buf = [0u8; 8];
    let ok = match kind {
        // 0.1 %: stalled, sends nothing; the server's time limit must cut it.
        0 => {
            let cut = timeout(Duration::from_secs(2), s.read(&mut buf)).await;
            let cut = matches!(cut, Ok(Ok(0)) | Ok(Err(_)));
            if cut {
                c.stalled_cut.fetch_add(1, Relaxed);
            }
            cut
        }
        // 1 %: slow, the message in two halves 20 ms apart, then 20 ms before closing.
        1..=10 => {
            let r = async {
                s.write_all(b"slow").await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.write_all(b"ly!!").await?;
                s.read_exact(&mut buf).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                std::io::Result::Ok(())
            };
            let ok = matches!(timeout(Duration::from_secs(2), r).await, Ok(Ok(())));
            if ok {
                c.slow.fetch_add(1, Relaxed);
            }
            ok
        }
        // 10 %: reset, send the message and abort the connection (SO_LINGER 0: RST, no FIN).
        11..=110 => {
            let _ = s.write_all(b"ping1234").await;
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
            c.resets.fetch_add(1, Relaxed);
            return;
        }
        // The rest: clean, one echo and a normal close.
        _ => {
            let r = async {
                s.write_all(b"ping1234").await?;
                s.read_exact(&mut buf).await?;
                std::io::Result::Ok(())
            };
            let ok = matches!(timeout(Duration::from_secs(2), r).await, Ok(Ok(())));
            if ok {
                c.clean.fetch_add(1, Relaxed);
            }
            ok
        }
    };
    if !ok {
        c.unexpected.fetch_add(1, Relaxed);
    }
}

/// What the soak found; `lines` go to the report as they are.
pub(crate) struct SoakResult {
    pub(crate) passed: bool,
    pub(crate) lines: Vec<String>,
    pub(crate) rate: f64,
}

pub(crate) fn run(rt: &tokio::runtime::Runtime, total: u64, concurrency: usize) -> SoakResult {
    let mut server = ChildServer::spawn(
        "soak",
        &[
            "--time-limit-ms".into(),
            TIME_LIMIT_MS.to_string(),
            "--max".into(),
            "10000".into(),
        ],
    );
    let port = server.port;
    let counts = Arc::new(ClientCounts::default());
    let drive = |n: u64, counts: Arc<ClientCounts>| {
        let next = Arc::new(AtomicU64::new(0));
        let hard_deadline = Instant::now() + Duration::from_secs(1800);
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (next, counts) = (next.clone(), counts.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Relaxed);
                        if i >= n || Instant::now() > hard_deadline {
                            break;
                        }
                        counts.attempts.fetch_add(1, Relaxed);
                        one(port, i, &counts).await;
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    };
    // Warm-up, so the starting level includes the runtime's and allocator's steady state.
    let warmup = (total / 50).max(2_000);
    drive(warmup, Arc::new(ClientCounts::default()));
    std::thread::sleep(Duration::from_millis(500));
    server.command("mark");
    let start_line = server
        .expect_line("MARK", Duration::from_secs(5))
        .map(|l| l.1)
        .unwrap_or_default();
    let start = parse_kv(&start_line);
    let began = Instant::now();
    drive(total, counts.clone());
    let elapsed = began.elapsed();
    std::thread::sleep(Duration::from_millis(1000));
    server.command("mark");
    let end_line = server
        .expect_line("MARK", Duration::from_secs(5))
        .map(|l| l.1)
        .unwrap_or_default();
    let end = parse_kv(&end_line);
    server.command("stop");
    let done_line = server
        .expect_line("DONE", Duration::from_secs(10))
        .map(|l| l.1)
        .unwrap_or_default();
    let done = parse_kv(&done_line);
    let g = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    let c = |a: &AtomicU64| a.load(Relaxed) as f64;
    let d = |k: &str| g(&end, k) - g(&start, k);

    let mut lines = Vec::new();
    let mut passed = true;
    let mut check = |name: String, ok: bool| {
        passed &= ok;
        lines.push(format!("- [{}] {name}", if ok { "x" } else { " " }));
    };
    let rate = c(&counts.attempts) / elapsed.as_secs_f64();
    let (fd0, fd1) = (g(&start, "fds"), g(&end, "fds"));
    let (rss0, rss1) = (g(&start, "rss_kib"), g(&end, "rss_kib"));
    let ended = d("finished") + d("failed") + d("panicked") + d("timed_out") + d("cancelled");
    check(
        format!(
            "{} connections in {:.1} s ({rate:.0}/s) after a warm-up of {warmup}",
            c(&counts.attempts),
            elapsed.as_secs_f64()
        ),
        c(&counts.attempts) >= total as f64,
    );
    check(
        format!("open descriptors back to the start: {fd0} after warm-up, {fd1} at the end"),
        fd1 <= fd0,
    );
    check(
        format!(
            "RSS back to the start (within 10 % or 2 MiB): {:.1} MiB after warm-up, {:.1} MiB at the end ({:+.1} MiB)",
            rss0 / 1024.0,
            rss1 / 1024.0,
            (rss1 - rss0) / 1024.0
        ),
        rss1 <= (rss0 * 1.10).max(rss0 + 2048.0),
    );
    check(
        format!("no connection left running: active={}", g(&end, "active")),
        g(&end, "active") == 0.0,
    );
    let gap = c(&counts.connected) - d("accepted") - d("connection_errors");
    check(
        format!(
            "client connects = server accepts + per-connection accept errors (+ resets the kernel dropped before accept): {} = {} + {} + {gap}",
            c(&counts.connected),
            d("accepted"),
            d("connection_errors")
        ),
        gap >= 0.0 && gap <= c(&counts.resets),
    );
    check(
        format!(
            "every accepted socket became a connection: accepted {} = connections {}",
            d("accepted"),
            d("connections")
        ),
        d("accepted") == d("connections"),
    );
    check(
        format!(
            "connections = finished + failed + panicked + timed_out + cancelled: {} = {} + {} + {} + {} + {}",
            d("connections"),
            d("finished"),
            d("failed"),
            d("panicked"),
            d("timed_out"),
            d("cancelled")
        ),
        d("connections") == ended,
    );
    check(
        format!(
            "stalled clients cut by the time limit: {} cut (client side) = {} timed out (server side)",
            c(&counts.stalled_cut),
            d("timed_out")
        ),
        c(&counts.stalled_cut) == d("timed_out"),
    );
    check(
        format!(
            "resets sent {} ≈ connections failed {} (a reset that lands after the echo can end as finished)",
            c(&counts.resets),
            d("failed")
        ),
        d("failed") <= c(&counts.resets),
    );
    check(
        format!(
            "clients that saw their echo: {} clean + {} slow; unexpected client failures: {}; connect errors: {}",
            c(&counts.clean),
            c(&counts.slow),
            c(&counts.unexpected),
            c(&counts.connect_errors)
        ),
        c(&counts.unexpected) == 0.0 && c(&counts.connect_errors) == 0.0,
    );
    check(
        format!(
            "graceful shutdown after the soak: {} cancelled, {} backoffs, panicked {}",
            g(&done, "shutdown_cancelled"),
            g(&done, "backoffs"),
            g(&done, "panicked")
        ),
        g(&done, "shutdown_cancelled") == 0.0 && g(&done, "panicked") == 0.0,
    );
    lines.push(format!("- start: `{start_line}`"));
    lines.push(format!("- end:   `{end_line}`"));
    SoakResult {
        passed,
        lines,
        rate,
    }
}
