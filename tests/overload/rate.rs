//! `limit_rate`: exact timing with paused time, and the rate on real sockets.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use staunch::overload::OverloadExt;
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready, task};

use super::{loopback, within};

/// A stream of ready items that counts how often it is polled.
struct Polls {
    polls: Arc<AtomicUsize>,
}

impl Stream for Polls {
    type Item = ();
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<()>> {
        self.polls.fetch_add(1, SeqCst);
        Poll::Ready(Some(()))
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn items_are_spaced_exactly_by_the_interval() {
    let start = Instant::now();
    let at: Vec<_> = stream::iter(0..6)
        .limit_rate(5, Duration::from_secs(1))
        .map(|_| start.elapsed())
        .collect()
        .await;
    let expected: Vec<_> = (0..6).map(|k| Duration::from_millis(200 * k)).collect();
    assert_eq!(at, expected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_quiet_spell_is_not_banked_beyond_the_burst() {
    // Items at 0, then nothing until 10 s, then 4 at once: with a burst of 2, two pass at
    // 10 s and the rest are spaced again.
    let start = Instant::now();
    let late = stream::iter(0..4).then(|k| async move {
        if k == 0 {
            time::sleep(Duration::from_secs(10)).await;
        }
    });
    let at: Vec<_> = stream::once(async {})
        .chain(late)
        .limit_rate(10, Duration::from_secs(1))
        .burst(2)
        .map(|_| start.elapsed().as_millis())
        .collect()
        .await;
    assert_eq!(at, [0, 10_000, 10_000, 10_100, 10_200]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wakes_exactly_when_the_next_token_is_due_and_never_polls_before() {
    let polls = Arc::new(AtomicUsize::new(0));
    let mut limited = task::spawn(
        Polls {
            polls: polls.clone(),
        }
        .limit_rate(10, Duration::from_secs(1)),
    );
    assert_ready!(limited.poll_next());
    assert_eq!(polls.load(SeqCst), 1);
    assert_pending!(limited.poll_next());
    assert_eq!(polls.load(SeqCst), 1, "inner stream polled without a token");
    time::advance(Duration::from_millis(99)).await;
    assert!(!limited.is_woken(), "woken before the token was due");
    time::advance(Duration::from_millis(1)).await;
    assert!(limited.is_woken(), "not woken when the token was due");
    assert_ready!(limited.poll_next());
    assert_eq!(polls.load(SeqCst), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn yields_to_the_runtime_after_max_per_wake_items() {
    let polls = Arc::new(AtomicUsize::new(0));
    let mut limited = task::spawn(
        Polls {
            polls: polls.clone(),
        }
        .limit_rate(1000, Duration::from_secs(1))
        .burst(100)
        .max_per_wake(3),
    );
    for _ in 0..3 {
        assert_ready!(limited.poll_next());
    }
    assert_pending!(limited.poll_next());
    assert!(limited.is_woken(), "a yield must wake itself");
    assert_eq!(polls.load(SeqCst), 3);
    for _ in 0..3 {
        assert_ready!(limited.poll_next());
    }
    assert_pending!(limited.poll_next());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ends_with_its_stream() {
    let mut limited = Box::pin(stream::iter([1]).limit_rate(1, Duration::from_secs(1)));
    assert_eq!(limited.next().await, Some(1));
    // The end is seen when the next token is due: the stream is not polled before.
    let start = Instant::now();
    assert_eq!(limited.next().await, None);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(futures_util::stream::FusedStream::is_terminated(&limited));
}

#[test]
#[should_panic(expected = "limit_rate: n must be at least 1")]
fn a_zero_rate_panics() {
    let _ = stream::empty::<()>().limit_rate(0, Duration::from_secs(1));
}

#[test]
#[should_panic(expected = "under a nanosecond")]
fn a_rate_finer_than_a_nanosecond_panics() {
    let _ = stream::empty::<()>().limit_rate(2_000_000_000, Duration::from_secs(1));
}

/// The time between the first and the last of `accepts` accepts on a real socket, with 60
/// clients connecting at once.
async fn time_accepts(limit: Option<u32>, accepts: usize) -> Duration {
    let (listener, addr) = loopback().await;
    let clients: Vec<_> = (0..accepts + 9)
        .map(|_| tokio::spawn(tokio::net::TcpStream::connect(addr)))
        .collect();
    let stream = tokio_stream::wrappers::TcpListenerStream::new(listener)
        .map(|r| r.expect("accept on loopback"));
    let mut stream: Pin<Box<dyn Stream<Item = _> + Send>> = match limit {
        Some(n) => Box::pin(stream.limit_rate(n, Duration::from_secs(1))),
        None => Box::pin(stream),
    };
    let mut held = Vec::new();
    held.push(stream.next().await.unwrap());
    let first = Instant::now();
    while held.len() < accepts {
        held.push(stream.next().await.unwrap());
    }
    let elapsed = first.elapsed();
    for client in clients {
        client.abort();
    }
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sockets_are_accepted_at_the_rate_within_ten_percent() {
    let _serial = super::serial().await;
    // 50 intervals of 20 ms: 1 s.
    let elapsed = within(
        Duration::from_secs(5),
        "51 accepts at 50/s",
        time_accepts(Some(50), 51),
    )
    .await;
    eprintln!("51 accepts at 50/s took {elapsed:?}");
    assert!(
        (Duration::from_millis(900)..=Duration::from_millis(1100)).contains(&elapsed),
        "51 accepts at 50/s took {elapsed:?}, not 1 s +-10%"
    );
    // Control: unlimited, the same accepts take a fraction of that.
    let unlimited = within(
        Duration::from_secs(5),
        "51 unlimited accepts",
        time_accepts(None, 51),
    )
    .await;
    assert!(
        unlimited < Duration::from_millis(500),
        "unlimited accepts took {unlimited:?}: the check above would not see a missing limit"
    );
}

/// The order in which two bursting listeners on one thread pass 12 items each.
async fn turns(max_per_wake: u32) -> String {
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let listener = |name: char| {
        let log = log.clone();
        tokio::spawn(async move {
            let mut accepts = Box::pin(
                stream::iter(0..12)
                    .limit_rate(1000, Duration::from_secs(1))
                    .burst(1000)
                    .max_per_wake(max_per_wake),
            );
            while accepts.next().await.is_some() {
                log.lock().unwrap().push(name);
            }
        })
    };
    let (a, b) = (listener('a'), listener('b'));
    a.await.unwrap();
    b.await.unwrap();
    let log = log.lock().unwrap().clone();
    log
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two_bursting_listeners_on_one_thread_take_turns() {
    assert_eq!(turns(4).await, "aaaabbbbaaaabbbbaaaabbbb");
    // Control: with a cap above the burst, the first takes everything before the second runs.
    assert_eq!(turns(100).await, "aaaaaaaaaaaabbbbbbbbbbbb");
}
