//! `sleep_on_error` on scripted streams with paused time: classification, skip-at-once, backoff
//! timing, waker registration, policies, hooks and give-up.

use std::io;
use std::panic::Location;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::backoff::Exponential;
use staunch::listen::{AcceptAction, ErrorClass};
use staunch::ListenExt;
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready_eq, task};

use crate::support::{emfile, panic_location, reset, with_debug_logging, BadDisplay};

const DELAY: Duration = Duration::from_millis(100);

#[test]
fn classification_table() {
    let connection = [
        io::Error::from(io::ErrorKind::ConnectionRefused),
        io::ErrorKind::ConnectionAborted.into(),
        io::ErrorKind::ConnectionReset.into(),
        io::ErrorKind::Interrupted.into(),
        io::Error::from_raw_os_error(libc::ECONNABORTED),
        io::Error::from_raw_os_error(libc::EINTR),
        io::Error::from_raw_os_error(libc::EPROTO),
        io::Error::from_raw_os_error(libc::ENOPROTOOPT),
        io::Error::from_raw_os_error(libc::EHOSTDOWN),
        io::Error::from_raw_os_error(libc::ENONET),
        io::Error::from_raw_os_error(libc::EHOSTUNREACH),
        io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        io::Error::from_raw_os_error(libc::ENETUNREACH),
        io::Error::from_raw_os_error(libc::ENETDOWN),
    ];
    for e in &connection {
        assert_eq!(ErrorClass::of(e), ErrorClass::Connection, "{e:?}");
        assert!(staunch::is_connection_error(e), "{e:?}");
    }
    let resource = [
        io::Error::from_raw_os_error(libc::EMFILE),
        io::Error::from_raw_os_error(libc::ENFILE),
        io::Error::from_raw_os_error(libc::ENOBUFS),
        io::Error::from_raw_os_error(libc::ENOMEM),
        io::ErrorKind::OutOfMemory.into(),
    ];
    for e in &resource {
        assert_eq!(ErrorClass::of(e), ErrorClass::Resource, "{e:?}");
        assert!(!staunch::is_connection_error(e), "{e:?}");
    }
    let unknown = [
        io::Error::other("something odd"),
        io::ErrorKind::WouldBlock.into(),
        io::Error::from_raw_os_error(libc::EBADF),
        io::Error::from_raw_os_error(libc::EINVAL),
    ];
    for e in &unknown {
        assert_eq!(ErrorClass::of(e), ErrorClass::Unknown, "{e:?}");
        assert!(!staunch::is_connection_error(e), "{e:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_skipped_at_once() {
    let accepts = stream::iter([
        Err(reset()),
        Err(io::ErrorKind::ConnectionAborted.into()),
        Err(io::Error::from_raw_os_error(libc::EPROTO)),
        Ok(1),
    ]);
    let s = accepts.sleep_on_error(DELAY);
    let stats = s.stats();
    let mut s = task::spawn(s);
    let start = Instant::now();
    assert_ready_eq!(s.poll_next(), Some(1));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_ready_eq!(s.poll_next(), None);
    let stats = stats.snapshot();
    assert_eq!(
        (stats.accepted, stats.connection_errors, stats.backoffs),
        (1, 3, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn resource_error_backs_off_and_registers_a_waker() {
    let accepts = stream::iter([Err(emfile()), Ok(1)]);
    let s = accepts.sleep_on_error(DELAY);
    let stats = s.stats();
    let mut s = task::spawn(s);
    assert_pending!(s.poll_next());
    time::advance(DELAY - Duration::from_millis(1)).await;
    assert!(!s.is_woken(), "woken before the delay ran out");
    assert_pending!(s.poll_next());
    time::advance(Duration::from_millis(1)).await;
    assert!(
        s.is_woken(),
        "no waker registered for the end of the backoff"
    );
    assert_ready_eq!(s.poll_next(), Some(1));
    assert_eq!(stats.snapshot().backoffs, 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_errors_back_off_too() {
    let accepts = stream::iter([Err(io::Error::other("odd")), Ok(1)]);
    let start = Instant::now();
    let items: Vec<i32> = accepts.sleep_on_error(DELAY).collect().await;
    assert_eq!(items, [1]);
    assert_eq!(start.elapsed(), DELAY);
}

#[tokio::test(start_paused = true)]
async fn never_ends_because_of_errors() {
    let mut script = Vec::new();
    for i in 0..50 {
        script.push(Err(emfile()));
        script.push(Err(reset()));
        script.push(Ok(i));
    }
    let start = Instant::now();
    let items: Vec<i32> = stream::iter(script).sleep_on_error(DELAY).collect().await;
    assert_eq!(items, (0..50).collect::<Vec<_>>());
    assert_eq!(start.elapsed(), DELAY * 50);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_grows_to_its_cap_and_resets_after_success() {
    let policy = Exponential::builder()
        .min(Duration::from_millis(10))
        .max(Duration::from_millis(40))
        .build()
        .unwrap();
    let delays = Arc::new(Mutex::new(Vec::new()));
    let seen = delays.clone();
    let script = [
        Err(emfile()),
        Err(emfile()),
        Err(emfile()),
        Err(emfile()),
        Ok(1),
        Err(emfile()),
        Ok(2),
    ];
    let start = Instant::now();
    let items: Vec<i32> = stream::iter(script)
        .sleep_on_error(DELAY)
        .backoff(policy)
        .on_error(move |event| {
            if let AcceptAction::Backoff(d) = event.action() {
                seen.lock().unwrap().push(d.as_millis());
            }
        })
        .collect()
        .await;
    assert_eq!(items, [1, 2]);
    assert_eq!(*delays.lock().unwrap(), [10, 20, 40, 40, 10]);
    assert_eq!(start.elapsed(), Duration::from_millis(120));
}

#[tokio::test(start_paused = true)]
async fn hook_sees_every_error_with_class_and_action() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let script = [
        Err(reset()),
        Err(emfile()),
        Err(io::Error::other("x")),
        Ok(()),
    ];
    let _: Vec<()> = stream::iter(script)
        .sleep_on_error(DELAY)
        .on_error(move |e| {
            seen.lock()
                .unwrap()
                .push((e.class(), e.action(), e.consecutive()))
        })
        .collect()
        .await;
    assert_eq!(
        *events.lock().unwrap(),
        [
            (ErrorClass::Connection, AcceptAction::Skip, 0),
            (ErrorClass::Resource, AcceptAction::Backoff(DELAY), 1),
            (ErrorClass::Unknown, AcceptAction::Backoff(DELAY), 2),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn give_up_ends_the_stream_and_reports_the_error() {
    let actions = Arc::new(Mutex::new(Vec::new()));
    let seen = actions.clone();
    let script = [Ok(0), Err(emfile()), Err(emfile()), Err(emfile()), Ok(1)];
    let s = stream::iter(script)
        .sleep_on_error(DELAY)
        .give_up_after(3)
        .on_error(move |e| seen.lock().unwrap().push(e.action()));
    let stats = s.stats();
    let start = Instant::now();
    let items: Vec<i32> = s.collect().await;
    assert_eq!(
        items,
        [0],
        "the item after the give-up must not be delivered"
    );
    assert_eq!(start.elapsed(), DELAY * 2);
    assert_eq!(
        *actions.lock().unwrap(),
        [
            AcceptAction::Backoff(DELAY),
            AcceptAction::Backoff(DELAY),
            AcceptAction::GiveUp
        ]
    );
    assert!(stats.snapshot().gave_up);
    let error = stats.take_give_up_error().expect("the error is kept");
    assert_eq!(error.raw_os_error(), Some(libc::EMFILE));
}

#[tokio::test(start_paused = true)]
async fn give_up_counts_only_consecutive_errors() {
    let script = [
        Err(emfile()),
        Err(emfile()),
        Ok(1),
        Err(emfile()),
        Err(emfile()),
        Ok(2),
    ];
    let items: Vec<i32> = stream::iter(script)
        .sleep_on_error(DELAY)
        .give_up_after(3)
        .collect()
        .await;
    assert_eq!(items, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_finite_policy_gives_up_when_it_ends() {
    let script = [Err(emfile()), Err(emfile()), Ok(1)];
    let s = stream::iter(script)
        .sleep_on_error(DELAY)
        .backoff(std::iter::repeat_n(DELAY, 1));
    let stats = s.stats();
    let items: Vec<i32> = s.collect().await;
    assert!(items.is_empty());
    assert!(stats.snapshot().gave_up);
}

#[tokio::test(start_paused = true)]
async fn zero_delays_from_a_policy_are_raised_to_the_minimum() {
    let script = (0..10).map(|_| Err(emfile())).chain([Ok(1)]);
    let start = Instant::now();
    let items: Vec<i32> = stream::iter(script)
        .sleep_on_error(DELAY)
        .backoff(std::iter::repeat(Duration::ZERO))
        .collect()
        .await;
    assert_eq!(items, [1]);
    assert_eq!(start.elapsed(), staunch::listen::MIN_ACCEPT_BACKOFF * 10);
}

#[test]
#[should_panic(expected = "sleep_on_error: the delay must be greater than zero")]
fn zero_delay_is_rejected() {
    let _ = stream::empty::<io::Result<()>>().sleep_on_error(Duration::ZERO);
}

#[test]
#[should_panic(expected = "give_up_after: the limit must be at least 1")]
fn zero_give_up_limit_is_rejected() {
    let _ = stream::empty::<io::Result<()>>()
        .sleep_on_error(DELAY)
        .give_up_after(0);
}

#[tokio::test(start_paused = true)]
async fn endless_connection_errors_yield_to_the_runtime() {
    // A stream that fails instantly forever must not trap the task in one `poll_next`.
    let accepts = stream::repeat_with(|| Err::<(), _>(reset()));
    let s = accepts.sleep_on_error(DELAY);
    let stats = s.stats();
    let mut s = task::spawn(s);
    assert_pending!(s.poll_next());
    assert!(s.is_woken(), "it must ask to be polled again, not stall");
    let skipped = stats.snapshot().connection_errors;
    assert!(
        skipped > 0 && skipped <= 64,
        "skipped {skipped} in one poll"
    );
}

#[tokio::test(start_paused = true)]
async fn size_hint_and_fused() {
    use futures_util::stream::{FusedStream, Stream};
    let s = stream::iter([Ok(1), Err(reset())]).sleep_on_error(DELAY);
    assert_eq!(s.size_hint(), (0, Some(2)));
    let mut s = Box::pin(s);
    assert!(!s.is_terminated());
    while s.next().await.is_some() {}
    assert!(s.is_terminated());
    assert_eq!(s.size_hint(), (0, Some(0)));
}

#[cfg(feature = "tracing")]
#[tokio::test(start_paused = true)]
async fn a_long_storm_logs_one_error_a_second_and_the_rest_at_debug() {
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // 25 errors, 100 ms apart: 2.5 s of storm.
    let script = (0..25).map(|_| Err(emfile())).chain([Ok(1)]);
    let items: Vec<i32> = stream::iter(script).sleep_on_error(DELAY).collect().await;
    assert_eq!(items, [1]);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let backoffs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("accept: error, backing off"))
        .collect();
    assert_eq!(backoffs.len(), 25, "every backoff is still an event");
    let loud = backoffs.iter().filter(|l| l.contains("ERROR")).count();
    assert_eq!(
        loud, 3,
        "one error-level event per second (at 0 s, 1 s, 2 s):\n{text}"
    );
}

#[test]
fn zero_delay_panic_points_at_the_caller() {
    let here = Location::caller().file();
    let at = panic_location(|| {
        let _ = stream::empty::<io::Result<()>>().sleep_on_error(Duration::ZERO);
    });
    assert!(at.starts_with(here), "{at}");
}

#[test]
fn logging_an_accept_error_whose_display_panics_does_not_kill_the_stream() {
    with_debug_logging(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let accepts = stream::iter([
                Err(io::Error::new(io::ErrorKind::ConnectionReset, BadDisplay)),
                Err(io::Error::other(BadDisplay)),
                Ok(()),
            ]);
            let n = accepts
                .sleep_on_error(Duration::from_millis(1))
                .count()
                .await;
            assert_eq!(n, 1);
        });
    });
}
