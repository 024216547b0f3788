//! `Listener::reclaim_idle`: near the limit, the longest-idle connections are asked to close
//! through their `Drain` clone. The policy on scripted connections with paused time, then a full
//! listener of idle keep-alive clients on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::listen::Drain;
use staunch::overload::{RejectReason, Rejections};
use staunch::ListenExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_stream::wrappers::TcpListenerStream;

use super::{loopback, serial, within};

#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for a request this long; closes at once if its drain fires meanwhile.
    Idle(u64),
    /// Serving a request this long; then closes if its drain has fired.
    Busy(u64),
    /// Idle this long, but not listening to its drain.
    Deaf(u64),
}
use Phase::{Busy, Deaf, Idle};

/// A connection that arrives at `at` seconds and runs `phases`.
struct Script {
    at: u64,
    phases: Vec<Phase>,
}

fn conn(at: u64, phases: &[Phase]) -> Script {
    Script {
        at,
        phases: phases.to_vec(),
    }
}

fn peer(id: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 1000))
}

/// How connection `id` ended, and when (seconds after the start).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum End {
    Reclaimed(usize, u64),
    ClosedAfterRequest(usize, u64),
    Done(usize, u64),
}

async fn run(id: usize, phases: Vec<Phase>, drain: Drain, start: Instant) -> End {
    let now = || start.elapsed().as_secs();
    for phase in phases {
        match phase {
            Idle(secs) => {
                let _idle = drain.idle();
                tokio::select! {
                    () = sleep(Duration::from_secs(secs)) => {}
                    () = drain.draining() => return End::Reclaimed(id, now()),
                }
            }
            Busy(secs) => {
                sleep(Duration::from_secs(secs)).await;
                if drain.is_draining() {
                    return End::ClosedAfterRequest(id, now());
                }
            }
            Deaf(secs) => {
                let _idle = drain.idle();
                sleep(Duration::from_secs(secs)).await;
            }
        }
    }
    End::Done(id, now())
}

/// Run `scripts` through a listener of `limit` with reclaim keeping `keep_free` slots free
/// (`None`: no reclaim), and return how each connection ended, in order of its end, with
/// the rejections reported to the hook.
async fn serve(
    scripts: Vec<Script>,
    limit: usize,
    keep_free: Option<usize>,
) -> (Vec<End>, Vec<(RejectReason, Option<SocketAddr>)>, u64) {
    let start = Instant::now();
    let drain = Drain::new();
    let ends = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let rejections = Rejections::with_hook(move |e| {
        hook_seen.lock().unwrap().push((e.reason(), e.peer()));
    });
    let server = stream::iter(scripts.into_iter().enumerate())
        .then(|(id, script)| async move {
            sleep_until(start + Duration::from_secs(script.at)).await;
            (id, script.phases)
        })
        .map({
            let (drain, ends) = (drain.clone(), ends.clone());
            move |(id, phases)| {
                let drain = drain.clone().peer(peer(id));
                let ends = ends.clone();
                async move {
                    let end = run(id, phases, drain, start).await;
                    ends.lock().unwrap().push(end);
                }
            }
        })
        .listen(limit)
        .rejections(rejections);
    let server = match keep_free {
        Some(k) => server.reclaim_idle_keep_free(&drain, k),
        None => server,
    };
    let stats = server.stats();
    server.await;
    let mut ends = ends.lock().unwrap().clone();
    ends.sort_by_key(|end| match *end {
        End::Reclaimed(id, at) | End::ClosedAfterRequest(id, at) | End::Done(id, at) => (at, id),
    });
    let seen = seen.lock().unwrap().clone();
    (ends, seen, stats.snapshot().reclaimed)
}

/// Limit 4, reclaim when full (the default for a limit under 16): the longest-idle connection
/// is asked, never a busy one, and only one at a time.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_longest_idle_is_asked_never_a_busy_one() {
    let scripts = vec![
        conn(0, &[Idle(100)]),
        conn(1, &[Busy(100)]), // never idle: never asked, though it is the oldest left
        conn(2, &[Idle(100)]),
        conn(3, &[Idle(100)]), // full: 0 is asked
        conn(5, &[Idle(100)]), // full again: 2 is asked (idle since 2), not 3
    ];
    let (ends, seen, reclaimed) = serve(scripts, 4, Some(1)).await;
    assert_eq!(
        ends,
        [
            End::Reclaimed(0, 3),
            End::Reclaimed(2, 5),
            End::Done(1, 101),
            End::Done(3, 103),
            End::Done(4, 105),
        ]
    );
    assert_eq!(
        seen,
        [
            (RejectReason::Reclaimed, Some(peer(0))),
            (RejectReason::Reclaimed, Some(peer(2)))
        ]
    );
    assert_eq!(reclaimed, 2);
}

/// The order is by when a connection last turned idle, not by when it connected, and it is
/// checked when a connection turns idle.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_order_is_by_idle_time() {
    let scripts = vec![
        conn(0, &[Idle(5), Busy(1), Idle(100)]), // idle since 6 when it matters
        conn(1, &[Idle(100)]),                   // idle since 1
        conn(2, &[Busy(10), Idle(100)]),
        conn(3, &[Busy(20), Idle(100)]), // full from 3, but nobody turns idle until 6
    ];
    let (ends, _, reclaimed) = serve(scripts, 4, Some(1)).await;
    assert_eq!(
        ends,
        [
            End::Reclaimed(1, 6),
            End::Done(0, 106),
            End::Done(2, 112),
            End::Done(3, 123),
        ]
    );
    assert_eq!(reclaimed, 1);
}

/// Enough are asked at once to bring the free slots back to `keep_free`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn enough_are_asked_at_once() {
    let scripts = vec![
        conn(0, &[Idle(100)]),
        conn(1, &[Busy(10), Idle(100)]),
        conn(2, &[Busy(10), Idle(100)]),
    ];
    // Limit 4, keep 3 free. At 11 connection 1 turns idle with 1 free: two are wanted, the
    // two idle (0, and 1 itself) are asked. At 12 connection 2 turns idle with 3 free.
    let (ends, _, reclaimed) = serve(scripts, 4, Some(3)).await;
    assert_eq!(
        ends,
        [
            End::Reclaimed(0, 11),
            End::Reclaimed(1, 11),
            End::Done(2, 112),
        ]
    );
    assert_eq!(reclaimed, 2);
}

/// A connection asked to close counts as free until it has gone, even if it does not listen:
/// nobody else is asked on its account.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_connection_asked_counts_as_free_until_it_goes() {
    let scripts = vec![
        conn(0, &[Deaf(50)]),
        conn(1, &[Idle(5), Busy(1), Idle(100)]),
    ];
    // Limit 2, keep 1 free: at 1 the listener is full and 0 is asked (it does not listen). At 7
    // connection 1 turns idle again, with 0 counted as gone: it is not asked.
    let (ends, _, reclaimed) = serve(scripts, 2, Some(1)).await;
    assert_eq!(ends, [End::Done(0, 50), End::Done(1, 107)]);
    assert_eq!(reclaimed, 1);
}

/// Control: the same scripts without reclaim; `Drain::idle` alone does nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_reclaim_nobody_is_asked() {
    let scripts = vec![
        conn(0, &[Idle(100)]),
        conn(1, &[Busy(100)]),
        conn(2, &[Idle(100)]),
        conn(3, &[Idle(100)]),
        conn(5, &[Idle(100)]), // waits for a slot: starts at 100
    ];
    let (ends, seen, reclaimed) = serve(scripts, 4, None).await;
    assert_eq!(
        ends,
        [
            End::Done(0, 100),
            End::Done(1, 101),
            End::Done(2, 102),
            End::Done(3, 103),
            End::Done(4, 200),
        ]
    );
    assert!(seen.is_empty());
    assert_eq!(reclaimed, 0);
}

/// The default threshold for a limit of 32 is 32/16 + 1 = 3 free: connections idle from the
/// start are asked from the 30th on, so at most 30 are ever active at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn default_threshold_keeps_a_sixteenth_free() {
    let start = Instant::now();
    let drain = Drain::new();
    let server = stream::iter(0..40u64)
        .then(|at| sleep_until(start + Duration::from_secs(at)))
        .map({
            let drain = drain.clone();
            move |()| {
                let drain = drain.clone();
                async move {
                    let _idle = drain.idle();
                    tokio::select! {
                        () = sleep(Duration::from_secs(1000)) => {}
                        () = drain.draining() => {}
                    }
                }
            }
        })
        .listen(32)
        .reclaim_idle(&drain)
        .rejections(Rejections::new());
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.peak_active, s.reclaimed), (30, 40 - 29), "{s}");
}

/// A keep-alive line server: a connection is idle while it waits for the next line, and closes
/// when its drain fires then.
async fn keep_alive(socket: TcpStream, drain: Drain) -> std::io::Result<()> {
    let (reader, mut writer) = socket.into_split();
    let mut lines = BufReader::new(reader).lines();
    loop {
        let idle = drain.idle();
        let line = tokio::select! {
            line = lines.next_line() => line?,
            () = drain.draining() => return Ok(()),
        };
        drop(idle);
        let Some(line) = line else { return Ok(()) };
        writer.write_all(format!("{line}\n").as_bytes()).await?;
        if drain.is_draining() {
            return Ok(());
        }
    }
}

/// Send one line and read the reply.
async fn request(client: &mut BufReader<TcpStream>, line: &str) -> String {
    client
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    client.read_line(&mut reply).await.unwrap();
    reply
}

/// Real sockets: a listener with a limit of 4 full of idle keep-alive clients. With reclaim,
/// the oldest is closed (it reads EOF) and a new client is served within a second; without
/// (the control), the new client waits until a slot frees. Both with connections in the
/// listener's task and spawned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_of_idle_clients_serves_a_new_one() {
    let _serial = serial().await;
    for (reclaim, spawn) in [(true, false), (true, true), (false, false), (false, true)] {
        let (listener, addr) = loopback().await;
        let drain = Drain::new();
        let connections = TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(100))
            .map({
                let drain = drain.clone();
                move |socket| keep_alive(socket, drain.clone())
            });
        let (server, stats): (Pin<Box<dyn Future<Output = ()> + Send>>, _) = match spawn {
            false => {
                let server = connections.listen(4);
                let server = if reclaim {
                    server.reclaim_idle(&drain)
                } else {
                    server
                };
                let stats = server.stats();
                (Box::pin(server), stats)
            }
            true => {
                let server = connections.spawn_listen(4);
                let server = if reclaim {
                    server.reclaim_idle(&drain)
                } else {
                    server
                };
                let stats = server.stats();
                (Box::pin(server), stats)
            }
        };
        let server = tokio::spawn(server);

        let mut clients = Vec::new();
        for i in 0..4 {
            let mut client = BufReader::new(TcpStream::connect(addr).await.unwrap());
            let reply = within(Duration::from_secs(2), "a client below the limit", async {
                request(&mut client, &format!("hello {i}")).await
            })
            .await;
            assert_eq!(reply, format!("hello {i}\n"));
            clients.push(client);
        }
        let mut new = BufReader::new(TcpStream::connect(addr).await.unwrap());
        if reclaim {
            // The fourth client made the listener full while the first was idle: it was closed.
            let mut rest = Vec::new();
            let n = within(
                Duration::from_secs(1),
                "the oldest idle client's EOF",
                async { clients[0].read_to_end(&mut rest).await.unwrap() },
            )
            .await;
            assert_eq!(n, 0);
            let reply = within(Duration::from_secs(1), "the new client", async {
                request(&mut new, "new").await
            })
            .await;
            assert_eq!(reply, "new\n");
            // The new client made it full again, so the second oldest was asked in turn, to
            // keep a slot free for the next; the two newest were not touched.
            let n = within(
                Duration::from_secs(1),
                "the second idle client's EOF",
                async { clients[1].read_to_end(&mut rest).await.unwrap() },
            )
            .await;
            assert_eq!(n, 0);
            for (i, client) in clients.iter_mut().enumerate().skip(2) {
                assert_eq!(request(client, "again").await, "again\n", "client {i}");
            }
            let s = stats.snapshot();
            assert_eq!(s.peak_active, 4, "{s}");
        } else {
            new.get_mut().write_all(b"new\n").await.unwrap();
            let mut reply = String::new();
            let waited =
                tokio::time::timeout(Duration::from_millis(500), new.read_line(&mut reply)).await;
            assert!(waited.is_err(), "served without a free slot: {reply:?}");
            // It was waiting for a slot: one frees, and it is served.
            drop(clients.remove(0));
            within(
                Duration::from_secs(1),
                "the new client after a slot freed",
                async { new.read_line(&mut reply).await.unwrap() },
            )
            .await;
            assert_eq!(reply, "new\n");
        }
        server.abort();
    }
}
