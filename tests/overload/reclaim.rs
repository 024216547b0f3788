//! `Listener::reclaim_idle`: near the limit, the longest-idle connections are asked to close
//! through their `Conn` (the handle `serve`/`spawn_serve` gives each connection), never the
//! connection whose start or idle mark made the check. The policy on scripted connections with
//! paused time, then listeners of keep-alive clients on loopback.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::listen::Conn;
use staunch::overload::RejectReason;
use staunch::ListenExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_stream::wrappers::TcpListenerStream;

use super::{loopback, serial, within};

type Seen = Arc<Mutex<Vec<(RejectReason, Option<SocketAddr>)>>>;

#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for a request this long; closes at once if its handle fires meanwhile.
    Idle(u64),
    /// Serving a request this long; then closes if its handle has fired.
    Busy(u64),
    /// Idle this long, but not listening to its handle.
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

async fn run(id: usize, phases: Vec<Phase>, conn: Conn, start: Instant) -> End {
    let now = || start.elapsed().as_secs();
    for phase in phases {
        match phase {
            Idle(secs) => {
                let _idle = conn.idle();
                tokio::select! {
                    () = sleep(Duration::from_secs(secs)) => {}
                    () = conn.draining() => return End::Reclaimed(id, now()),
                }
            }
            Busy(secs) => {
                sleep(Duration::from_secs(secs)).await;
                if conn.is_draining() {
                    return End::ClosedAfterRequest(id, now());
                }
            }
            Deaf(secs) => {
                let _idle = conn.idle();
                sleep(Duration::from_secs(secs)).await;
            }
        }
    }
    End::Done(id, now())
}

/// A hook for `on_reject` that records every event, and what it recorded.
fn recorded() -> (
    impl Fn(&staunch::overload::RejectEvent) + Send + Sync + 'static,
    Seen,
) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hook = move |e: &staunch::overload::RejectEvent| {
        log.lock().unwrap().push((e.reason(), e.peer()));
    };
    (hook, seen)
}

/// Run `scripts` through a listener of `limit` with reclaim keeping `keep_free` slots free
/// (`None`: no reclaim), and return how each connection ended, in order of its end, the
/// rejections reported to the hook, and the reclaims counted in the listener's stats.
async fn serve(
    scripts: Vec<Script>,
    limit: usize,
    keep_free: Option<usize>,
) -> (Vec<End>, Vec<(RejectReason, Option<SocketAddr>)>, u64) {
    let start = Instant::now();
    let ends = Arc::new(Mutex::new(Vec::new()));
    let (hook, seen) = recorded();
    let server = stream::iter(scripts.into_iter().enumerate())
        .then(|(id, script)| async move {
            sleep_until(start + Duration::from_secs(script.at)).await;
            (id, script.phases)
        })
        .serve(limit, {
            let ends = ends.clone();
            move |(id, phases), conn: Conn| {
                let conn = conn.with_peer(peer(id));
                let ends = ends.clone();
                async move {
                    let end = run(id, phases, conn, start).await;
                    ends.lock().unwrap().push(end);
                }
            }
        })
        .on_reject(hook);
    let server = match keep_free {
        Some(k) => server.reclaim_idle_keep_free(k),
        None => server,
    };
    let stats = server.stats();
    server.await;
    let mut ends = ends.lock().unwrap().clone();
    ends.sort_by_key(|end| match *end {
        End::Reclaimed(id, at) | End::ClosedAfterRequest(id, at) | End::Done(id, at) => (at, id),
    });
    let seen = seen.lock().unwrap().clone();
    let s = stats.snapshot();
    // Reclaim is the only rejection here, and the hook saw each one.
    assert_eq!(s.rejected.total(), s.rejected.get(RejectReason::Reclaimed));
    assert_eq!(seen.len() as u64, s.rejected.get(RejectReason::Reclaimed));
    (ends, seen, s.rejected.get(RejectReason::Reclaimed))
}

/// Limit 4, reclaim when full (the default for a limit under 16): the longest-idle connection
/// is asked, never a busy one, and only one at a time; the check runs when a connection
/// starts.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_longest_idle_is_asked_never_a_busy_one() {
    let scripts = vec![
        conn(0, &[Idle(100)]),
        conn(1, &[Busy(100)]), // never idle: never asked, though it is the oldest left
        conn(2, &[Idle(100)]),
        conn(3, &[Idle(100)]), // its start makes it full: 0 is asked
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

/// The order is by when a connection last turned idle, not by when it connected.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_order_is_by_idle_time() {
    let scripts = vec![
        conn(0, &[Idle(1), Busy(1), Idle(100)]), // connected first, but idle again only from 2
        conn(1, &[Idle(100)]),                   // idle since 1
        conn(2, &[Busy(10), Idle(100)]),
        conn(3, &[Busy(20), Idle(100)]), // its start makes it full: 1 is asked, not 0
    ];
    let (ends, seen, reclaimed) = serve(scripts, 4, Some(1)).await;
    assert_eq!(
        ends,
        [
            End::Reclaimed(1, 3),
            End::Done(0, 102),
            End::Done(2, 112),
            End::Done(3, 123),
        ]
    );
    assert_eq!(seen, [(RejectReason::Reclaimed, Some(peer(1)))]);
    assert_eq!(reclaimed, 1);
}

/// The check also runs when a connection turns idle, and never asks that connection: the first
/// to turn idle in a full listener is not asked to make room (nobody else is idle); the second
/// has the first asked.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_check_runs_when_a_connection_turns_idle_and_never_asks_that_one() {
    let scripts = vec![
        conn(0, &[Busy(5), Idle(100)]), // idle at 5 in a full listener: kept
        conn(1, &[Busy(5), Idle(100)]), // idle at 6: 0 is asked
        conn(2, &[Busy(10), Idle(100)]),
        conn(3, &[Busy(20), Idle(100)]), // full from 3, with nobody idle
    ];
    let (ends, seen, reclaimed) = serve(scripts, 4, Some(1)).await;
    assert_eq!(
        ends,
        [
            End::Reclaimed(0, 6),
            End::Done(1, 106),
            End::Done(2, 112),
            End::Done(3, 123),
        ]
    );
    assert_eq!(seen, [(RejectReason::Reclaimed, Some(peer(0)))]);
    assert_eq!(reclaimed, 1);
}

/// Just enough are asked to bring the free slots back to `keep_free`, the longest idle first,
/// and never the connection that made the check.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn enough_are_asked_to_keep_the_free_slots() {
    // Limit 4, keep 3 free. At 1 connection 1 starts with 2 free: 0, idle, is asked. At 11
    // connection 1 turns idle with 2 free, but nobody else is idle. At 12 connection 2 turns
    // idle with 2 free: 1 is asked.
    let scripts = vec![
        conn(0, &[Idle(100)]),
        conn(1, &[Busy(10), Idle(100)]),
        conn(2, &[Busy(10), Idle(100)]),
    ];
    let (ends, seen, reclaimed) = serve(scripts, 4, Some(3)).await;
    assert_eq!(
        ends,
        [
            End::Reclaimed(0, 1),
            End::Reclaimed(1, 12),
            End::Done(2, 112),
        ]
    );
    assert_eq!(
        seen,
        [
            (RejectReason::Reclaimed, Some(peer(0))),
            (RejectReason::Reclaimed, Some(peer(1)))
        ]
    );
    assert_eq!(reclaimed, 2);

    // Limit 4, keep 2 free, two idle: at 2 one slot is missing, and only the longest idle of
    // the two is asked; at 3 one is missing again, and the other is.
    let scripts = vec![
        conn(0, &[Idle(100)]),
        conn(1, &[Idle(100)]),
        conn(2, &[Busy(100)]),
        conn(3, &[Busy(100)]),
    ];
    let (ends, _, reclaimed) = serve(scripts, 4, Some(2)).await;
    assert_eq!(
        ends,
        [
            End::Reclaimed(0, 2),
            End::Reclaimed(1, 3),
            End::Done(2, 102),
            End::Done(3, 103),
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
        conn(1, &[Idle(100)]),
        conn(2, &[Idle(5), Busy(1), Idle(100)]),
    ];
    // Limit 3, keep 1 free: at 2 connection 2 makes the listener full and 0 is asked (it does
    // not listen). At 8 connection 2 turns idle again, with 0 counted as gone: 1, idle, is not
    // asked.
    let (ends, seen, reclaimed) = serve(scripts, 3, Some(1)).await;
    assert_eq!(
        ends,
        [End::Done(0, 50), End::Done(1, 101), End::Done(2, 108)]
    );
    assert_eq!(seen, [(RejectReason::Reclaimed, Some(peer(0)))]);
    assert_eq!(reclaimed, 1);
}

/// Control: the same scripts without reclaim; `Conn::idle` alone does nothing.
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
    let server = stream::iter(0..40u64)
        .then(|at| sleep_until(start + Duration::from_secs(at)))
        .serve(32, |(), conn| async move {
            let _idle = conn.idle();
            tokio::select! {
                () = sleep(Duration::from_secs(1000)) => {}
                () = conn.draining() => {}
            }
        })
        .reclaim_idle();
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!(
        (s.peak_active, s.rejected.get(RejectReason::Reclaimed)),
        (30, 40 - 29),
        "{s}"
    );
}

/// What a connection of the dead-handle tests does.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// Marks itself idle with `set_idle(true)`, then ends a second later, still marked: its
    /// `Conn` is dropped while idle.
    EndsIdle,
    /// Marks itself idle with `set_idle(true)`, drops its `Conn` a second later while still
    /// marked, and runs on for 100 s (its slot still taken).
    DropsItsConnIdle,
    /// Idle with `set_idle(true)` for 100 s, closing if its handle fires.
    Idle,
    /// Busy for 100 s, never idle.
    Busy,
}

/// Run connections arriving at `(seconds, role)` through a listener of 4 that reclaims when
/// full; return, per connection, whether its handle fired, the reclaims counted, and the
/// hook's events.
async fn play(roles: &[(u64, Role)]) -> (Vec<bool>, u64, Vec<(RejectReason, Option<SocketAddr>)>) {
    let start = Instant::now();
    let asked = Arc::new(Mutex::new(vec![None; roles.len()]));
    let (hook, seen) = recorded();
    let server = stream::iter(roles.iter().copied().enumerate())
        .then(|(id, (at, role))| async move {
            sleep_until(start + Duration::from_secs(at)).await;
            (id, role)
        })
        .serve(4, {
            let asked = asked.clone();
            move |(id, role), conn: Conn| {
                let conn = conn.with_peer(peer(id));
                let asked = asked.clone();
                async move {
                    let fired = match role {
                        Role::EndsIdle => {
                            conn.set_idle(true);
                            sleep(Duration::from_secs(1)).await;
                            conn.is_draining()
                        }
                        Role::DropsItsConnIdle => {
                            conn.set_idle(true);
                            sleep(Duration::from_secs(1)).await;
                            let fired = conn.is_draining();
                            drop(conn);
                            sleep(Duration::from_secs(100)).await;
                            fired
                        }
                        Role::Idle => {
                            conn.set_idle(true);
                            tokio::select! {
                                () = sleep(Duration::from_secs(100)) => false,
                                () = conn.draining() => true,
                            }
                        }
                        Role::Busy => {
                            sleep(Duration::from_secs(100)).await;
                            conn.is_draining()
                        }
                    };
                    asked.lock().unwrap()[id] = Some(fired);
                }
            }
        })
        .on_reject(hook)
        .reclaim_idle();
    let stats = server.stats();
    within(Duration::from_secs(3600), "the scripted listener", server).await;
    let asked = asked
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.expect("every connection ran to its end"))
        .collect();
    let s = stats.snapshot();
    assert_eq!(s.connections, roles.len() as u64, "{s}");
    let seen = seen.lock().unwrap().clone();
    (asked, s.rejected.get(RejectReason::Reclaimed), seen)
}

/// A connection whose `Conn` is dropped while it is marked idle with `set_idle(true)` leaves
/// the reclaim queue: a later start that makes the listener full finds nobody idle, counts no
/// reclaim (none for the dead handle), and asks no live connection. Both when the connection
/// ends with its handle, and when it drops its handle and runs on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_conn_dropped_while_marked_idle_leaves_the_reclaim_queue() {
    use Role::{Busy, DropsItsConnIdle, EndsIdle, Idle};
    // 0 ends at 1 while marked idle; 1, 2 and 3 start busy; 4 makes the listener full (4
    // running), then marks itself idle.
    let (asked, reclaimed, seen) =
        play(&[(0, EndsIdle), (2, Busy), (3, Busy), (4, Busy), (5, Idle)]).await;
    assert_eq!(asked, [false; 5], "a live connection was asked to close");
    assert_eq!(reclaimed, 0, "a reclaim was counted for the dead handle");
    assert!(seen.is_empty(), "{seen:?}");

    // 0 drops its handle at 1 while marked idle and keeps its slot; 1 and 2 start busy; 3
    // makes the listener full, then marks itself idle.
    let (asked, reclaimed, seen) =
        play(&[(0, DropsItsConnIdle), (2, Busy), (3, Busy), (4, Idle)]).await;
    assert_eq!(asked, [false; 4], "a live connection was asked to close");
    assert_eq!(reclaimed, 0, "a reclaim was counted for the dropped handle");
    assert!(seen.is_empty(), "{seen:?}");
}

/// Control for the test above: the same arrivals with connection 0 still holding its handle
/// while idle have it asked by the start that makes the listener full, so those starts do
/// check, and an idle connection left in the queue would have been counted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn control_a_live_idle_conn_is_asked_by_the_same_arrivals() {
    use Role::{Busy, Idle};
    // 4 running at 4: 0 is asked then; 4 starts in the slot 0 freed, with nobody idle.
    let (asked, reclaimed, seen) =
        play(&[(0, Idle), (2, Busy), (3, Busy), (4, Busy), (5, Idle)]).await;
    assert_eq!(asked, [true, false, false, false, false]);
    assert_eq!(reclaimed, 1);
    assert_eq!(seen, [(RejectReason::Reclaimed, Some(peer(0)))]);

    // 3 makes the listener full at 4: 0 is asked.
    let (asked, reclaimed, seen) = play(&[(0, Idle), (2, Busy), (3, Busy), (4, Idle)]).await;
    assert_eq!(asked, [true, false, false, false]);
    assert_eq!(reclaimed, 1);
    assert_eq!(seen, [(RejectReason::Reclaimed, Some(peer(0)))]);
}

/// A connection that closes on its handle but lingers after dropping it (cleanup that takes a
/// while) no longer holds its slot for reclaim, though the listener counts it until it ends: a
/// check meanwhile must not ask one more connection than needed. Before, the handle's drop
/// released the "asked" count while the listener still counted the connection, and the next
/// idle mark asked a second connection.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reclaimed_connection_that_lingers_after_dropping_its_handle_is_not_counted_twice() {
    let start = Instant::now();
    let (fired, fires) = std::sync::mpsc::channel();
    let server = stream::iter([0u64, 1, 2])
        .then(|at| sleep_until(start + Duration::from_secs(at)))
        .enumerate()
        .serve(3, move |(id, ()), conn| {
            let fired = fired.clone();
            async move {
                if id == 2 {
                    // The newcomer turns idle a moment after its start asked the oldest.
                    sleep(Duration::from_millis(1)).await;
                }
                let _idle = conn.idle();
                tokio::select! {
                    () = sleep(Duration::from_secs(60)) => {}
                    () = conn.draining() => {
                        fired.send((id, start.elapsed().as_millis())).unwrap();
                        drop(_idle);
                        drop(conn);
                        sleep(Duration::from_secs(10)).await; // cleanup, handle gone
                    }
                }
            }
        })
        .reclaim_idle(); // 3 / 16 + 1: one slot kept free
    let stats = server.stats();
    server.await;
    let fires: Vec<_> = fires.try_iter().collect();
    // Only the oldest, asked when the third arrived and filled the listener.
    assert_eq!(fires, [(0, 2000)], "{}", stats.snapshot());
    assert_eq!(stats.snapshot().rejected.get(RejectReason::Reclaimed), 1);
}

/// A keep-alive line server: a connection is idle while it waits for its next line (not for
/// its first: a client that has just connected is not yet a keep-alive connection), and closes
/// when its handle fires then.
async fn keep_alive(socket: TcpStream, conn: Conn) -> io::Result<()> {
    let (reader, mut writer) = socket.into_split();
    let mut lines = BufReader::new(reader).lines();
    let mut first = true;
    loop {
        let idle = (!first).then(|| conn.idle());
        first = false;
        let line = tokio::select! {
            line = lines.next_line() => line?,
            () = conn.draining() => return Ok(()),
        };
        drop(idle);
        let Some(line) = line else { return Ok(()) };
        writer.write_all(format!("{line}\n").as_bytes()).await?;
        if conn.is_draining() {
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
/// listener's task (`serve`) and spawned (`spawn_serve`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_of_idle_clients_serves_a_new_one() {
    let _serial = serial().await;
    for (reclaim, spawn) in [(true, false), (true, true), (false, false), (false, true)] {
        let (listener, addr) = loopback().await;
        let connections =
            TcpListenerStream::new(listener).sleep_on_error(Duration::from_millis(100));
        let (server, stats): (Pin<Box<dyn Future<Output = ()> + Send>>, _) = match spawn {
            false => {
                let server = connections.serve(4, keep_alive);
                let server = if reclaim {
                    server.reclaim_idle()
                } else {
                    server
                };
                let stats = server.stats();
                (Box::pin(server), stats)
            }
            true => {
                let server = connections.spawn_serve(4, keep_alive);
                let server = if reclaim {
                    server.reclaim_idle()
                } else {
                    server
                };
                let stats = server.stats();
                (Box::pin(server), stats)
            }
        };
        let server = tokio::spawn(server);

        // Wait (bounded) until the listener counts `n` connections: one asked to close has
        // then gone from its count too (with `spawn_serve`, a check made while it has ended
        // but is still counted may ask one more than needed).
        let active = |n: usize, what: &'static str| {
            let stats = stats.clone();
            within(Duration::from_secs(2), what, async move {
                for _ in 0..400 {
                    if stats.snapshot().active == n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                panic!("{what}: {}", stats.snapshot());
            })
        };
        let mut clients = Vec::new();
        for i in 0..4 {
            clients.push(BufReader::new(TcpStream::connect(addr).await.unwrap()));
            if reclaim && i == 3 {
                // The fourth client made the listener full while the first was idle: it was
                // closed.
                let mut rest = Vec::new();
                let n = within(
                    Duration::from_secs(1),
                    "the oldest idle client's EOF",
                    async { clients[0].read_to_end(&mut rest).await.unwrap() },
                )
                .await;
                assert_eq!(n, 0);
                active(3, "the oldest idle client to be gone").await;
            }
            let client = clients.last_mut().unwrap();
            let reply = within(Duration::from_secs(2), "a client below the limit", async {
                request(client, &format!("hello {i}")).await
            })
            .await;
            assert_eq!(reply, format!("hello {i}\n"));
        }
        let mut new = BufReader::new(TcpStream::connect(addr).await.unwrap());
        if reclaim {
            // The new client made it full again, so the second oldest was asked in turn, to
            // keep a slot free for the next; the two newest were not touched.
            let mut rest = Vec::new();
            let n = within(
                Duration::from_secs(1),
                "the second idle client's EOF",
                async { clients[1].read_to_end(&mut rest).await.unwrap() },
            )
            .await;
            assert_eq!(n, 0);
            active(3, "the second idle client to be gone").await;
            let reply = within(Duration::from_secs(1), "the new client", async {
                request(&mut new, "new").await
            })
            .await;
            assert_eq!(reply, "new\n");
            for (i, client) in clients.iter_mut().enumerate().skip(2) {
                assert_eq!(
                    request(client, "again").await,
                    "again\n",
                    "client {i}, spawn={spawn}: {}",
                    stats.snapshot()
                );
            }
            let s = stats.snapshot();
            assert_eq!(s.peak_active, 4, "{s}");
            assert_eq!(s.rejected.get(RejectReason::Reclaimed), 2, "{s}");
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
            let s = stats.snapshot();
            assert_eq!(s.rejected.get(RejectReason::Reclaimed), 0, "{s}");
        }
        server.abort();
    }
}

/// One request per connection: marked idle (the `Conn::idle` guard) until its first line
/// comes, closing at once if its handle fires meanwhile; then `hold` is answered `holding`,
/// and `done` once `release` turns true (mid-request, not idle, all that time); any other line
/// is echoed. Then it closes.
async fn one_request(
    socket: TcpStream,
    conn: Conn,
    mut release: watch::Receiver<bool>,
) -> io::Result<()> {
    let (reader, mut writer) = socket.into_split();
    let mut lines = BufReader::new(reader).lines();
    let line = {
        let _idle = conn.idle();
        tokio::select! {
            biased;
            () = conn.draining() => return Ok(()), // asked to close while idle: close now
            line = lines.next_line() => line?,
        }
    };
    let Some(line) = line else { return Ok(()) };
    if line == "hold" {
        writer.write_all(b"holding\n").await?;
        let _ = release.wait_for(|released| *released).await;
        writer.write_all(b"done\n").await?;
    } else {
        writer.write_all(format!("{line}\n").as_bytes()).await?;
    }
    Ok(())
}

/// Regression: a newcomer near the limit is never reclaimed to make room for itself. A limit
/// of 16 keeps 2 slots free (16/16 + 1); 14 clients hold busy connections (mid-request), so
/// each newcomer, the 15th connection, starts with one slot free and marks itself idle before
/// its first request. Nobody else is idle, so nobody may be asked: all 5 newcomers, one after
/// another, are served, and no reclaim is counted. (The old order, a newcomer queued before
/// the check, had each one asked to close to make room for itself: 0 of 5 served, 5 reclaimed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_turning_idle_near_the_limit_is_not_reclaimed_to_make_room_for_itself() {
    const BUSY: usize = 14;
    const NEWCOMERS: usize = 5;
    const LIMIT: Duration = Duration::from_secs(5);
    let _serial = serial().await;
    let (listener, addr) = loopback().await;
    let (release, released) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let (hook, seen) = recorded();
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(10))
        .spawn_serve(16, move |socket, conn| {
            one_request(socket, conn, released.clone())
        })
        .reclaim_idle()
        .on_reject(hook);
    let stats = server.stats();
    let server = tokio::spawn(
        server
            .with_graceful_shutdown(stopped)
            .grace(Duration::from_secs(2)),
    );

    let mut busy = Vec::new();
    for i in 0..BUSY {
        let mut client = BufReader::new(
            within(LIMIT, "a busy client's connect", TcpStream::connect(addr))
                .await
                .unwrap(),
        );
        let reply = within(LIMIT, "a busy client's request to start", async {
            request(&mut client, "hold").await
        })
        .await;
        assert_eq!(reply, "holding\n", "busy client {i}");
        busy.push(client);
    }
    assert_eq!(stats.snapshot().active, BUSY);

    // The newcomers, one after another: each connects once the previous one is closed.
    let mut outcomes = Vec::new();
    for i in 0..NEWCOMERS {
        let mut client = BufReader::new(
            within(LIMIT, "a newcomer's connect", TcpStream::connect(addr))
                .await
                .unwrap(),
        );
        let line = format!("ping {i}");
        let outcome = within(LIMIT, "a newcomer's answer or close", async {
            if let Err(e) = client
                .get_mut()
                .write_all(format!("{line}\n").as_bytes())
                .await
            {
                return format!("write failed: {e}");
            }
            let mut reply = String::new();
            match client.read_line(&mut reply).await {
                Ok(0) => "closed unanswered".to_owned(),
                Ok(_) => reply,
                Err(e) => format!("read failed: {e}"),
            }
        })
        .await;
        // Whatever it saw, the connection closes next: wait for that, so that the next
        // newcomer finds this one gone.
        let mut rest = Vec::new();
        let _ = within(LIMIT, "the newcomer's close", client.read_to_end(&mut rest)).await;
        outcomes.push((outcome == format!("{line}\n"), outcome));
    }
    let s = stats.snapshot();

    // Let the busy ones finish their requests, then shut down.
    release.send(true).unwrap();
    for (i, client) in busy.iter_mut().enumerate() {
        let mut reply = String::new();
        within(
            LIMIT,
            "a busy client's answer",
            client.read_line(&mut reply),
        )
        .await
        .unwrap();
        assert_eq!(reply, "done\n", "busy client {i}");
    }
    stop.send(()).unwrap();
    let report = within(LIMIT, "the shutdown", server).await.unwrap();

    let served = outcomes.iter().filter(|(served, _)| *served).count();
    eprintln!(
        "{served} of {NEWCOMERS} newcomers served; reclaimed {}; {outcomes:?}",
        s.rejected.get(RejectReason::Reclaimed)
    );
    assert_eq!(served, NEWCOMERS, "newcomers: {outcomes:?}; {s}");
    assert_eq!(s.rejected.get(RejectReason::Reclaimed), 0, "{s}");
    assert_eq!(s.connections, (BUSY + NEWCOMERS) as u64, "{s}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(
        (report.cancelled, report.stats.rejected.total()),
        (0, 0),
        "{report}"
    );
}
