//! Rejections in the listener's `Stats`: one vocabulary, each counted once by the listener that
//! polls the control (no handle given), and every rejection, the listener's own cancels
//! included, reported to its `on_reject` hook.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use staunch::overload::{OverloadExt, RejectEvent, RejectReason};
use staunch::{ListenExt, Stats};

type Seen = Arc<Mutex<Vec<(RejectReason, Option<SocketAddr>)>>>;

/// A hook for `on_reject` that records every event, and what it recorded.
fn recorded() -> (impl Fn(&RejectEvent) + Send + Sync + 'static, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hook = move |event: &RejectEvent| {
        log.lock().unwrap().push((event.reason(), event.peer()));
    };
    (hook, seen)
}

fn from(peer: &str) -> ((), SocketAddr) {
    ((), peer.parse().unwrap())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn time_limit_and_shutdown_cancels_reach_the_hook_and_are_counted_once() {
    let (hook, seen) = recorded();
    // All three run past their 5 s limit, before the shutdown at 6 s: counted as timed out,
    // not as cancelled at shutdown.
    let server = stream::iter([10u64, 3600, 3600])
        .chain(stream::pending())
        .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
        .listen(10)
        .connection_time_limit(Duration::from_secs(5))
        .on_reject(hook);
    let stats = server.stats();
    let report = server
        .with_graceful_shutdown(tokio::time::sleep(Duration::from_secs(6)))
        .grace(Duration::from_secs(1))
        .await;
    let s = stats.snapshot();
    assert_eq!((s.timed_out, s.cancelled, report.cancelled), (3, 0, 0));
    assert_eq!(s.rejected.get(RejectReason::TimeLimit), 3);
    assert_eq!(s.rejected.get(RejectReason::TimeLimit), s.timed_out);
    assert_eq!(s.rejected.total(), 3);
    assert_eq!(report.stats.rejected, s.rejected);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(RejectReason::TimeLimit, None); 3]
    );

    let (hook, seen) = recorded();
    let server = stream::iter([3600u64, 3600])
        .chain(stream::pending())
        .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
        .listen(10)
        .on_reject(hook);
    let stats = server.stats();
    let report = server
        .with_graceful_shutdown(tokio::time::sleep(Duration::from_secs(1)))
        .grace(Duration::from_secs(1))
        .await;
    let s = stats.snapshot();
    assert_eq!((s.cancelled, report.cancelled), (2, 2));
    assert_eq!(s.rejected.get(RejectReason::Shutdown), 2);
    assert_eq!(s.rejected.get(RejectReason::Shutdown), s.cancelled);
    assert_eq!(s.rejected.total(), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(RejectReason::Shutdown, None); 2]
    );
}

/// Two listeners, each with its own per-peer limit and no handle given: each counts exactly
/// the rejections of the control it polls, once; a merged view reads each listener once, even
/// when given one twice; and each listener's hook sees each of its rejections, with its peer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_listener_counts_its_controls_rejections_once_and_merged_views_once() {
    let (hook_a, seen_a) = recorded();
    let (hook_b, seen_b) = recorded();
    let hold = |permit| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(permit);
    };
    let a = stream::iter([from("10.0.0.1:1"), from("10.0.0.1:2"), from("10.0.0.1:3")])
        .limit_per_peer(1)
        .map(hold)
        .listen(10)
        .on_reject(hook_a);
    let b = stream::iter([from("10.0.0.2:1"), from("10.0.0.2:2")])
        .limit_per_peer(1)
        .map(hold)
        .listen(10)
        .on_reject(hook_b);
    let (sa, sb) = (a.stats(), b.stats());
    tokio::join!(a, b);
    // Each listener's own view shows its own rejections, each once...
    let (a_now, b_now) = (sa.snapshot(), sb.snapshot());
    assert_eq!(
        (
            a_now.connections,
            a_now.rejected.get(RejectReason::PeerLimit)
        ),
        (1, 2)
    );
    assert_eq!(
        (
            b_now.connections,
            b_now.rejected.get(RejectReason::PeerLimit)
        ),
        (1, 1)
    );
    assert_eq!((a_now.rejected.total(), b_now.rejected.total()), (2, 1));
    // ...and a merged view reads each listener once, though `sa` is given twice.
    let all = Stats::merged([sa.clone(), sb, sa]).snapshot();
    assert_eq!(
        (all.connections, all.rejected.get(RejectReason::PeerLimit)),
        (2, 3)
    );
    assert_eq!(all.rejected.total(), 3);
    assert_eq!(
        all.rejected
            .iter()
            .filter(|&(_, n)| n > 0)
            .collect::<Vec<_>>(),
        [(RejectReason::PeerLimit, 3)]
    );
    let peers = |seen: &Seen| -> Vec<(&'static str, String)> {
        let mut peers: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(r, p)| (r.as_str(), p.unwrap().to_string()))
            .collect();
        peers.sort();
        peers
    };
    assert_eq!(
        peers(&seen_a),
        [
            ("peer_limit", "10.0.0.1:2".to_owned()),
            ("peer_limit", "10.0.0.1:3".to_owned()),
        ]
    );
    assert_eq!(peers(&seen_b), [("peer_limit", "10.0.0.2:2".to_owned())]);
    assert!(all.to_string().contains(" peer_limit=3"), "{all}");
    assert_eq!(all.rejected.to_string(), "peer_limit=3");
}

/// Control: a control polled outside any listener (here in a task of its own that forwards
/// what it passes to the listener through a channel) counts nothing in the listener's stats,
/// and its rejections reach no hook (so the test above checks the link, not a global).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn control_a_control_polled_outside_the_listener_is_not_counted() {
    let (hook, seen) = recorded();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        let mut limited = std::pin::pin!(
            stream::iter([from("10.0.0.1:1"), from("10.0.0.1:2")]).limit_per_peer(1)
        );
        let mut passed = 0;
        while let Some(permit) = limited.next().await {
            passed += 1;
            tx.send(permit).unwrap();
        }
        passed
    });
    let server = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .map(|permit| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(permit);
        })
        .listen(10)
        .on_reject(hook);
    let stats = server.stats();
    server.await;
    // The second was rejected (only one passed), but by a control no listener polls.
    assert_eq!(forward.await.unwrap(), 1);
    let s = stats.snapshot();
    assert_eq!(s.connections, 1);
    assert_eq!(s.rejected.get(RejectReason::PeerLimit), 0);
    assert_eq!(s.rejected.total(), 0);
    assert!(seen.lock().unwrap().is_empty());
}
