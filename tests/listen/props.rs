//! Property tests over random sequences of accepts, errors and connection lifetimes, on paused
//! time: never more than `n` in flight, every accepted item delivered once and in order, the
//! stream never ends because of an error, and the stats add up.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use proptest::prelude::*;
use staunch::ListenExt;

#[derive(Debug, Clone)]
enum Event {
    /// A connection that lives this many milliseconds, ending as given.
    Accept(u64, Outcome),
    ConnectionError,
    ResourceError,
    UnknownError,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Ok,
    Err,
    Panic,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0u64..50, prop_oneof![4 => Just(Outcome::Ok), 1 => Just(Outcome::Err), 1 => Just(Outcome::Panic)])
            .prop_map(|(ms, o)| Event::Accept(ms, o)),
        1 => Just(Event::ConnectionError),
        1 => Just(Event::ResourceError),
        1 => Just(Event::UnknownError),
    ]
}

fn run(events: Vec<Event>, max: usize, spawn: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let started = Arc::new(Mutex::new(Vec::new()));
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let accepts: Vec<io::Result<(usize, u64, Outcome)>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| match e {
            Event::Accept(ms, o) => Ok((i, *ms, *o)),
            Event::ConnectionError => Err(io::ErrorKind::ConnectionReset.into()),
            Event::ResourceError => Err(io::Error::from_raw_os_error(libc::EMFILE)),
            Event::UnknownError => Err(io::Error::other("unknown")),
        })
        .collect();
    let (s, n, p) = (started.clone(), now.clone(), peak.clone());
    let handle = move |(i, ms, outcome): (usize, u64, Outcome)| {
        let (s, n, p) = (s.clone(), n.clone(), p.clone());
        async move {
            s.lock().unwrap().push(i);
            let active = n.fetch_add(1, SeqCst) + 1;
            p.fetch_max(active, SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            n.fetch_sub(1, SeqCst);
            match outcome {
                Outcome::Ok => Ok(()),
                Outcome::Err => Err(io::Error::other("handler failed")),
                Outcome::Panic => panic!("handler panicked"),
            }
        }
    };
    let accepts = stream::iter(accepts).sleep_on_error(Duration::from_millis(7));
    let stats = rt.block_on(async move {
        if spawn {
            let server = accepts.map(handle).spawn_listen(max);
            let stats = server.stats();
            server.await;
            stats
        } else {
            let server = accepts.map(handle).listen(max);
            let stats = server.stats();
            server.await;
            stats
        }
    });

    let expected: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Accept(..)))
        .map(|(i, _)| i)
        .collect();
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count() as u64;
    let s = stats.snapshot();
    prop_assert!(
        peak.load(SeqCst) <= max,
        "peak {} > {max}",
        peak.load(SeqCst)
    );
    prop_assert!(s.peak_active <= max);
    prop_assert_eq!(
        &*started.lock().unwrap(),
        &expected,
        "delivered once, in order"
    );
    prop_assert_eq!(s.accepted, expected.len() as u64);
    prop_assert_eq!(s.connections, expected.len() as u64);
    prop_assert_eq!(
        s.connection_errors,
        count(|e| matches!(e, Event::ConnectionError))
    );
    prop_assert_eq!(
        s.backoffs,
        count(|e| matches!(e, Event::ResourceError | Event::UnknownError))
    );
    prop_assert_eq!(s.active, 0);
    prop_assert_eq!(
        s.finished,
        count(|e| matches!(e, Event::Accept(_, Outcome::Ok)))
    );
    prop_assert_eq!(
        s.failed,
        count(|e| matches!(e, Event::Accept(_, Outcome::Err)))
    );
    prop_assert_eq!(
        s.panicked,
        count(|e| matches!(e, Event::Accept(_, Outcome::Panic)))
    );
    prop_assert_eq!(
        s.connections,
        s.finished + s.failed + s.panicked + s.timed_out + s.cancelled
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn listen_invariants(events in prop::collection::vec(event(), 0..60), max in 1usize..6) {
        run(events, max, false)?;
    }

    #[test]
    fn spawn_listen_invariants(events in prop::collection::vec(event(), 0..60), max in 1usize..6) {
        run(events, max, true)?;
    }
}
