//! Rejections in the listener's `Stats`: one vocabulary, each counted once, and the listener's
//! own cancels reported to the hook.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use staunch::overload::{OverloadExt, RejectReason, Rejections};
use staunch::{ListenExt, Stats};

type Seen = Arc<Mutex<Vec<(RejectReason, Option<SocketAddr>)>>>;

/// A `Rejections` whose hook records every event.
fn recorded() -> (Rejections, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let rejections = Rejections::with_hook(move |event| {
        log.lock().unwrap().push((event.reason(), event.peer()));
    });
    (rejections, seen)
}

fn from(peer: &str) -> ((), SocketAddr) {
    ((), peer.parse().unwrap())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn time_limit_and_shutdown_cancels_reach_the_hook_and_are_counted_once() {
    let (rejections, seen) = recorded();
    // All three run past their 5 s limit, before the shutdown at 6 s: counted as timed out,
    // not as cancelled at shutdown.
    let server = stream::iter([10u64, 3600, 3600])
        .chain(stream::pending())
        .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
        .listen(10)
        .connection_time_limit(Duration::from_secs(5))
        .rejections(rejections.clone());
    let stats = server.stats();
    let report = server
        .with_graceful_shutdown(
            tokio::time::sleep(Duration::from_secs(6)),
            Duration::from_secs(1),
        )
        .await;
    let s = stats.snapshot();
    assert_eq!((s.timed_out, s.cancelled, report.cancelled), (3, 0, 0));
    assert_eq!(s.rejected(RejectReason::TimeLimit), 3);
    assert_eq!(s.rejected_total(), 3);
    assert_eq!(rejections.count(RejectReason::TimeLimit), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(RejectReason::TimeLimit, None); 3]
    );

    let (rejections, seen) = recorded();
    let server = stream::iter([3600u64, 3600])
        .chain(stream::pending())
        .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
        .listen(10)
        .rejections(rejections.clone());
    let stats = server.stats();
    let report = server
        .with_graceful_shutdown(
            tokio::time::sleep(Duration::from_secs(1)),
            Duration::from_secs(1),
        )
        .await;
    let s = stats.snapshot();
    assert_eq!((s.cancelled, report.cancelled), (2, 2));
    assert_eq!(s.rejected(RejectReason::Shutdown), 2);
    assert_eq!(rejections.count(RejectReason::Shutdown), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(RejectReason::Shutdown, None); 2]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_handle_shared_by_two_listeners_is_counted_once_when_merged() {
    let (rejections, seen) = recorded();
    let hold = |permit| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(permit);
    };
    let a = stream::iter([from("10.0.0.1:1"), from("10.0.0.1:2"), from("10.0.0.1:3")])
        .limit_per_peer(1)
        .rejections(rejections.clone())
        .map(hold)
        .listen(10)
        .rejections(rejections.clone());
    let b = stream::iter([from("10.0.0.2:1"), from("10.0.0.2:2")])
        .limit_per_peer(1)
        .rejections(rejections.clone())
        .map(hold)
        .listen(10)
        .rejections(rejections.clone());
    let (sa, sb) = (a.stats(), b.stats());
    tokio::join!(a, b);
    // Each listener's own view shows the shared counters...
    assert_eq!(sa.snapshot().peer_limit, 3);
    assert_eq!(sb.snapshot().peer_limit, 3);
    // ...and a merged view reads them once.
    let all = Stats::merged([sa.clone(), sb, sa]).snapshot();
    assert_eq!((all.connections, all.peer_limit), (2, 3));
    assert_eq!(all.rejected_total(), 3);
    let mut peers: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(r, p)| (r.as_str(), p.unwrap().to_string()))
        .collect();
    peers.sort();
    assert_eq!(
        peers,
        [
            ("peer_limit", "10.0.0.1:2".to_owned()),
            ("peer_limit", "10.0.0.1:3".to_owned()),
            ("peer_limit", "10.0.0.2:2".to_owned()),
        ]
    );
    assert!(all.to_string().contains(" peer_limit=3"), "{all}");
}

/// Control: without `Listener::rejections`, the listener's stats do not see the handle's
/// counters (so the test above checks the link, not a global).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn control_a_listener_not_given_the_handle_does_not_count_it() {
    let rejections = Rejections::new();
    let server = stream::iter([from("10.0.0.1:1"), from("10.0.0.1:2")])
        .limit_per_peer(1)
        .rejections(rejections.clone())
        .map(|permit| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(permit);
        })
        .listen(10);
    let stats = server.stats();
    server.await;
    assert_eq!(rejections.count(RejectReason::PeerLimit), 1);
    assert_eq!(stats.snapshot().peer_limit, 0);
}
