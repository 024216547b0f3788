//! How a `sleep_on_error` stream and its listener find each other through adapters: the stats
//! link and the wake on release, whatever the poll order (`select`, `chain`, a first poll outside
//! the listener).

use std::io;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::ListenExt;
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};

use crate::support::{emfile, reset};

#[tokio::test(start_paused = true)]
async fn wake_on_release_cuts_a_resource_backoff_short() {
    // One connection holds a "descriptor" for 1 s; accept then fails with EMFILE; the backoff is
    // 100 s. Chained into `listen`, the backoff ends when the connection does.
    let script = || {
        stream::iter([
            Ok(1u64),
            Err(io::Error::from_raw_os_error(libc::EMFILE)),
            Ok(0),
        ])
    };
    let start = Instant::now();
    let server = script()
        .sleep_on_error(Duration::from_secs(100))
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(10);
    let stats = server.stats();
    server.await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let s = stats.snapshot();
    assert_eq!((s.woken_by_release, s.backoffs, s.accepted), (1, 1, 2));

    // Control: the same stream polled from another task (not chained) waits out the full delay.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let accepts = script().sleep_on_error(Duration::from_secs(100));
        tokio::pin!(accepts);
        while let Some(item) = accepts.next().await {
            let _ = tx.send(item).await;
        }
    });
    let start = Instant::now();
    tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(10)
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(100));
}

#[tokio::test(start_paused = true)]
async fn stats_link_through_adapters() {
    let (_stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([Ok(1u64), Err(io::ErrorKind::ConnectionReset.into()), Ok(2)])
        .sleep_on_error(Duration::from_millis(10))
        .take_until(signal)
        .map(|secs| sleep(Duration::from_secs(secs)))
        .filter(|_| async { true })
        .listen(1);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!(
        (s.accepted, s.connection_errors, s.connections, s.finished),
        (2, 1, 2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn link_survives_select_when_the_other_side_yields_first() {
    let a = stream::iter([Ok(1u64)]).sleep_on_error(Duration::from_secs(100));
    let b = stream::iter([Err(io::Error::from_raw_os_error(libc::EMFILE)), Ok(0)])
        .sleep_on_error(Duration::from_secs(100));
    let start = Instant::now();
    let server = stream::select(a, b)
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(10);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.accepted, s.backoffs, s.woken_by_release), (2, 1, 1));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "b's backoff was not cut short"
    );
}

#[tokio::test(start_paused = true)]
async fn chain_links_a_stream_first_polled_later() {
    let a = stream::iter([Ok(())]).sleep_on_error(Duration::from_millis(10));
    let b = stream::iter([Err(reset()), Err(emfile()), Ok(())])
        .sleep_on_error(Duration::from_millis(10));
    let server = a.chain(b).map(|()| async {}).listen(1);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!(
        (s.accepted, s.connection_errors, s.backoffs, s.connections),
        (2, 1, 1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn counts_made_before_the_first_poll_inside_the_listener_are_kept() {
    let mut accepts = Box::pin(
        stream::iter([Err(reset()), Ok(1), Ok(2)]).sleep_on_error(Duration::from_millis(10)),
    );
    // Polled outside any listener first.
    assert_eq!(accepts.next().await, Some(1));
    let server = accepts.map(|_| async {}).listen(1);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.accepted, s.connection_errors, s.connections), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_listener_polled_inside_another_listeners_stream_keeps_the_links_apart() {
    let d = Duration::from_millis(10);
    let inner = stream::iter([Err(reset()), Ok(())])
        .sleep_on_error(d)
        .map(|()| async {})
        .listen(1);
    let inner_stats = inner.stats();
    // `once(inner)` polls the inner listener while the outer one polls its stream.
    let outer_accepts = stream::iter([Err(reset()), Err(reset()), Ok(())]).sleep_on_error(d);
    let outer = stream::once(inner)
        .chain(outer_accepts)
        .map(|()| async {})
        .listen(1);
    let outer_stats = outer.stats();
    outer.await;
    let (i, o) = (inner_stats.snapshot(), outer_stats.snapshot());
    assert_eq!((i.connection_errors, i.accepted, i.connections), (1, 1, 1));
    assert_eq!((o.connection_errors, o.accepted, o.connections), (2, 1, 2));
}

#[tokio::test(start_paused = true)]
async fn merged_stats_count_every_counter_once() {
    let accepts =
        stream::iter([Ok(()), Err(reset()), Ok(())]).sleep_on_error(Duration::from_millis(10));
    let accept_stats = accepts.stats();
    let server = accepts.map(|()| async {}).listen(1);
    let stats = server.stats();
    server.await;
    let alone = stats.snapshot();
    assert_eq!((alone.accepted, alone.connection_errors), (2, 1));
    // The listener's handle already includes the stream's counters.
    let merged = staunch::Stats::merged([stats.clone(), accept_stats, stats]);
    assert_eq!(merged.snapshot(), alone);
}
