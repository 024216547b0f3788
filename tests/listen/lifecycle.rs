//! `Listener::on_connection` and `Listener::metrics`: every connection's start and end, with
//! how it ended and how long it ran, on scripted connections with paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::listen::{ConnectionEnd, ConnectionEvent};
use staunch::ListenExt;
use tokio::time::sleep;

type Seen = Arc<Mutex<Vec<ConnectionEvent>>>;

fn recorder() -> (Seen, impl Fn(&ConnectionEvent) + Send + Sync + 'static) {
    let seen = Seen::default();
    let hook_seen = seen.clone();
    (seen, move |event: &ConnectionEvent| {
        hook_seen.lock().unwrap().push(*event)
    })
}

fn ended(seen: &Seen) -> Vec<(ConnectionEnd, u64)> {
    let mut ends: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match *e {
            ConnectionEvent::Ended { end, duration } => Some((end, duration.as_secs())),
            _ => None,
        })
        .collect();
    ends.sort_by_key(|&(end, secs)| (secs, end.as_str()));
    ends
}

/// One connection of each kind: finished, failed, panicked, timed out, and one cut at the
/// shutdown deadline; every one is seen opened and ended, with its duration.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_end_is_seen_with_its_duration_in_both_modes() {
    for spawned in [false, true] {
        let (seen, hook) = recorder();
        // (seconds to run, what it does at the end)
        let script = [(1u64, 0u8), (2, 1), (3, 2), (100, 0), (20, 0)];
        let connections =
            stream::iter(script)
                .chain(stream::pending())
                .map(|(secs, how)| async move {
                    sleep(Duration::from_secs(secs)).await;
                    match how {
                        0 => Ok(()),
                        1 => Err("failed"),
                        _ => panic!("panicked"),
                    }
                });
        let signal = sleep(Duration::from_secs(10));
        let report = if spawned {
            connections
                .spawn_listen(10)
                .connection_time_limit(Duration::from_secs(50))
                .on_connection(hook)
                .with_graceful_shutdown(signal)
                .grace(Duration::from_secs(5))
                .await
        } else {
            connections
                .listen(10)
                .connection_time_limit(Duration::from_secs(50))
                .on_connection(hook)
                .with_graceful_shutdown(signal)
                .grace(Duration::from_secs(5))
                .await
        };
        assert_eq!(report.cancelled, 2, "spawned={spawned}: {report}");
        let opened = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| **e == ConnectionEvent::Opened)
            .count();
        assert_eq!(opened, 5, "spawned={spawned}");
        assert_eq!(
            ended(&seen),
            [
                (ConnectionEnd::Finished, 1),
                (ConnectionEnd::Failed, 2),
                (ConnectionEnd::Panicked, 3),
                // The 100 s and 20 s ones, cut at the deadline (signal at 10 s + 5 s grace).
                (ConnectionEnd::Cancelled, 15),
                (ConnectionEnd::Cancelled, 15),
            ],
            "spawned={spawned}"
        );
    }
}

/// A listener has one connection hook: a second one panics.
#[test]
#[should_panic(expected = "already has a connection hook")]
fn a_second_hook_is_refused() {
    drop(
        stream::iter([async {}])
            .listen(1)
            .on_connection(|_| {})
            .on_connection(|_| {}),
    );
}

/// A connection dropped with the listener (no shutdown) is seen as cancelled too.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_listener_reports_its_connections_cancelled() {
    let (seen, hook) = recorder();
    let server = stream::iter([3600u64])
        .chain(stream::pending())
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(10)
        .on_connection(hook);
    let _ = tokio::time::timeout(Duration::from_secs(7), server).await;
    assert_eq!(ended(&seen), [(ConnectionEnd::Cancelled, 7)]);
}

#[cfg(feature = "metrics")]
mod metrics {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use ::metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };
    use staunch::overload::{OverloadExt, RejectReason};

    use super::*;

    /// Every value recorded, by metric name and labels.
    #[derive(Default)]
    struct Recorded(Mutex<BTreeMap<String, Vec<f64>>>);

    struct Handle(Arc<Recorded>, String);

    impl Handle {
        fn push(&self, value: f64) {
            self.0
                 .0
                .lock()
                .unwrap()
                .entry(self.1.clone())
                .or_default()
                .push(value);
        }
    }

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            self.push(value as f64);
        }
        fn absolute(&self, value: u64) {
            self.push(value as f64);
        }
    }

    impl GaugeFn for Handle {
        fn increment(&self, value: f64) {
            self.push(value);
        }
        fn decrement(&self, value: f64) {
            self.push(-value);
        }
        fn set(&self, value: f64) {
            self.push(value);
        }
    }

    impl HistogramFn for Handle {
        fn record(&self, value: f64) {
            self.push(value);
        }
    }

    struct TestRecorder(Arc<Recorded>, AtomicU64);

    impl TestRecorder {
        fn handle(&self, key: &Key) -> Arc<Handle> {
            self.1.fetch_add(1, Ordering::Relaxed);
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            Arc::new(Handle(
                self.0.clone(),
                format!("{} {}", key.name(), labels.join(",")),
            ))
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.handle(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.handle(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.handle(key))
        }
    }

    /// The four metrics, labelled with the listener's name, the end and the reason.
    #[test]
    fn connections_durations_and_rejections_are_recorded() {
        let recorded = Arc::new(Recorded::default());
        let recorder = TestRecorder(recorded.clone(), AtomicU64::new(0));
        ::metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let peer = "10.0.0.1:1".parse::<std::net::SocketAddr>().unwrap();
                stream::iter([(2u64, peer), (1, peer)])
                    .limit_per_peer(1)
                    .map(|permit| async move {
                        sleep(Duration::from_secs(permit.get_ref().0)).await;
                    })
                    .listen(10)
                    .metrics("api")
                    .await;
            });
        });
        let recorded = recorded.0.lock().unwrap();
        let get = |key: &str| recorded.get(key).cloned().unwrap_or_default();
        assert_eq!(get("staunch.connections listener=api"), [1.0]);
        assert_eq!(get("staunch.active_connections listener=api"), [1.0, -1.0]);
        assert_eq!(
            get("staunch.connection.duration end=finished,listener=api"),
            [2.0]
        );
        assert_eq!(
            get(&format!(
                "staunch.rejected_connections listener=api,reason={}",
                RejectReason::PeerLimit.as_str()
            )),
            [1.0]
        );
        assert_eq!(recorded.len(), 4, "{recorded:?}");
    }

    /// Control: a listener without `metrics` records nothing through the same recorder.
    #[test]
    fn control_without_metrics_nothing_is_recorded() {
        let recorded = Arc::new(Recorded::default());
        let recorder = TestRecorder(recorded.clone(), AtomicU64::new(0));
        ::metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(stream::iter([(), ()]).map(|()| async {}).listen(10));
        });
        assert!(recorded.0.lock().unwrap().is_empty());
        assert_eq!(recorder.1.load(Ordering::Relaxed), 0);
    }
}
