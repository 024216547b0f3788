//! Property tests for the backoff arithmetic: the cap, the monotonic base, jitter bounds, limits
//! and parameter validation.

use std::time::Duration;

use std::sync::atomic::Ordering;

use staunch::reconnect::{Decision, Reconnecting, RetryLoop, SessionEnd};

use proptest::prelude::*;
use staunch::backoff::{BackoffError, Constant, Exponential, Jitter};

fn params() -> impl Strategy<Value = (u64, u64, f64)> {
    // min in ms, max in ms (>= min), factor in [1, 10]
    (1u64..5_000, 0u64..100_000, 1.0f64..10.0).prop_map(|(min, extra, f)| (min, min + extra, f))
}

proptest! {
    #[test]
    fn base_is_capped_and_monotonic((min, max, factor) in params()) {
        let policy = Exponential::builder()
            .min(Duration::from_millis(min))
            .max(Duration::from_millis(max))
            .factor(factor)
            .build()
            .unwrap();
        let mut last = Duration::ZERO;
        for n in 0..200u32 {
            let base = policy.base_delay(n);
            prop_assert!(base >= Duration::from_millis(min), "n={n} base={base:?}");
            prop_assert!(base <= Duration::from_millis(max), "n={n} base={base:?}");
            prop_assert!(base >= last, "n={n}: {base:?} < {last:?}");
            last = base;
        }
        prop_assert_eq!(policy.base_delay(u32::MAX), Duration::from_millis(max));
    }

    #[test]
    fn without_jitter_the_delays_are_the_base((min, max, factor) in params()) {
        let policy = Exponential::builder()
            .min(Duration::from_millis(min))
            .max(Duration::from_millis(max))
            .factor(factor)
            .build()
            .unwrap();
        let delays: Vec<_> = policy.clone().take(50).collect();
        for (n, d) in delays.iter().enumerate() {
            prop_assert_eq!(*d, policy.base_delay(n as u32));
        }
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_base((min, max, factor) in params(), seed: u64) {
        let policy = Exponential::builder()
            .min(Duration::from_millis(min))
            .max(Duration::from_millis(max))
            .factor(factor)
            .jitter(Jitter::Full)
            .seed(seed)
            .build()
            .unwrap();
        for (n, d) in policy.clone().take(50).enumerate() {
            prop_assert!(d <= policy.base_delay(n as u32), "n={n} d={d:?}");
        }
    }

    #[test]
    fn proportional_jitter_stays_within_its_band(
        (min, max, factor) in params(),
        p in 0.0f64..=1.0,
        seed: u64,
    ) {
        let policy = Exponential::builder()
            .min(Duration::from_millis(min))
            .max(Duration::from_millis(max))
            .factor(factor)
            .jitter(Jitter::Proportional(p))
            .seed(seed)
            .build()
            .unwrap();
        for (n, d) in policy.clone().take(50).enumerate() {
            let base = policy.base_delay(n as u32).as_secs_f64();
            let d = d.as_secs_f64();
            let slack = 1e-6;
            prop_assert!(d >= base * (1.0 - p) - slack, "n={n} d={d} base={base} p={p}");
            prop_assert!(d <= (base * (1.0 + p)).min(max as f64 / 1000.0) + slack, "n={n} d={d}");
        }
    }

    #[test]
    fn a_seed_makes_jitter_reproducible(seed: u64) {
        let build = || Exponential::builder().jitter(Jitter::Full).seed(seed).build().unwrap();
        let a: Vec<_> = build().take(20).collect();
        let b: Vec<_> = build().take(20).collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn limits_end_the_iterator(attempts in 1u32..50, total_ms in 10u64..100_000) {
        let policy = Exponential::builder()
            .min(Duration::from_millis(10))
            .max(Duration::from_secs(1))
            .max_attempts(attempts)
            .build()
            .unwrap();
        // `attempts` attempts in all: the first needs no delay.
        prop_assert_eq!(policy.count(), attempts as usize - 1);

        let policy = Exponential::builder()
            .min(Duration::from_millis(10))
            .max(Duration::from_secs(1))
            .max_total(Duration::from_millis(total_ms))
            .build()
            .unwrap();
        let delays: Vec<_> = policy.clone().take(10_000).collect();
        let sum: Duration = delays.iter().sum();
        prop_assert!(sum <= Duration::from_millis(total_ms));
        // The next delay would have overrun the budget.
        let next = policy.base_delay(delays.len() as u32);
        prop_assert!(sum + next > Duration::from_millis(total_ms));
    }

    #[test]
    fn min_greater_than_max_is_rejected(max in 1u64..10_000, extra in 1u64..10_000) {
        let result = Exponential::builder()
            .min(Duration::from_millis(max + extra))
            .max(Duration::from_millis(max))
            .build();
        let error = result.unwrap_err();
        prop_assert!(
            matches!(error, BackoffError::MinGreaterThanMax { default: None, .. }),
            "{:?}",
            error
        );
        // The message names both values, as set.
        let message = error.to_string();
        prop_assert!(message.contains(&format!("{:?}", Duration::from_millis(max + extra))), "{}", message);
        prop_assert!(message.contains(&format!("{:?}", Duration::from_millis(max))), "{}", message);
    }

    #[test]
    fn a_factor_below_one_is_rejected(factor in -10.0f64..1.0) {
        let result = Exponential::builder().factor(factor).build();
        prop_assert!(matches!(result, Err(BackoffError::InvalidFactor(_))));
    }

    #[test]
    fn jitter_outside_zero_to_one_is_rejected(p in prop_oneof![-10.0f64..-1e-9, 1.0000001f64..10.0]) {
        let result = Exponential::builder().jitter(Jitter::Proportional(p)).build();
        prop_assert!(matches!(result, Err(BackoffError::InvalidJitter(_))));
    }
}

#[test]
fn non_finite_parameters_are_rejected() {
    for factor in [f64::NAN, f64::INFINITY] {
        let result = Exponential::builder().factor(factor).build();
        assert!(
            matches!(result, Err(BackoffError::InvalidFactor(_))),
            "{factor}"
        );
    }
    for p in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let result = Exponential::builder()
            .jitter(Jitter::Proportional(p))
            .build();
        assert!(matches!(result, Err(BackoffError::InvalidJitter(_))), "{p}");
    }
    assert_eq!(
        Exponential::builder()
            .min(Duration::ZERO)
            .build()
            .unwrap_err(),
        BackoffError::ZeroDelay
    );
    assert_eq!(
        Exponential::builder().max_attempts(0).build().unwrap_err(),
        BackoffError::ZeroAttempts
    );
    assert_eq!(
        Constant::try_new(Duration::ZERO).unwrap_err(),
        BackoffError::ZeroDelay
    );
}

#[test]
fn the_formula_is_min_times_factor_to_the_n() {
    // Not tokio-retry's base^n * factor (djc/tokio-retry#22).
    let policy = Exponential::builder()
        .min(Duration::from_millis(50))
        .max(Duration::from_secs(600))
        .factor(3.0)
        .build()
        .unwrap();
    let ms: Vec<_> = policy.take(4).map(|d| d.as_millis()).collect();
    assert_eq!(ms, [50, 150, 450, 1350]);
}

#[test]
fn clones_of_an_unseeded_policy_draw_fresh_jitter() {
    let policy = Exponential::builder()
        .min(Duration::from_millis(1000))
        .max(Duration::from_secs(10))
        .jitter(Jitter::Proportional(0.5))
        .build()
        .unwrap();
    // The jitter range of the first delay is 500..=1500 ms.
    let firsts: Vec<u128> = (0..1000)
        .map(|_| policy.clone().next().unwrap().as_millis())
        .collect();
    let (lo, hi) = (firsts.iter().min().unwrap(), firsts.iter().max().unwrap());
    assert!(
        hi - lo >= 500,
        "first delays spread over {lo}..={hi} ms only"
    );
    let distinct: std::collections::HashSet<_> = firsts.iter().collect();
    assert!(
        distinct.len() > 500,
        "{} distinct first delays",
        distinct.len()
    );
}

#[test]
fn clones_of_a_seeded_policy_repeat_it() {
    let policy = Exponential::builder()
        .jitter(Jitter::Full)
        .seed(42)
        .build()
        .unwrap();
    let first: Vec<_> = policy.clone().take(10).collect();
    for _ in 0..100 {
        assert_eq!(policy.clone().take(10).collect::<Vec<_>>(), first);
    }
}

#[test]
fn a_max_total_that_allows_no_delay_is_rejected() {
    let build = |total_ms, jitter| {
        Exponential::builder()
            .min(Duration::from_millis(100))
            .jitter(jitter)
            .max_total(Duration::from_millis(total_ms))
            .build()
    };
    for (total, jitter, first) in [
        (0, Jitter::None, 100),
        (99, Jitter::None, 100),
        (120, Jitter::Proportional(0.5), 150),
    ] {
        assert_eq!(
            build(total, jitter).unwrap_err(),
            BackoffError::MaxTotalTooSmall {
                max_total: Duration::from_millis(total),
                first_delay: Duration::from_millis(first),
            }
        );
    }
    // The smallest budget accepted yields its first delay.
    assert_eq!(build(100, Jitter::None).unwrap().count(), 1);
    assert!(build(0, Jitter::None)
        .unwrap_err()
        .to_string()
        .contains("max_total"));
}

#[tokio::test(start_paused = true)]
async fn max_attempts_counts_connection_attempts() {
    use staunch::reconnect::{GaveUp, GiveUpCause, Reconnecting};
    let (connector, calls) = crate::support::failing(std::io::ErrorKind::ConnectionRefused);
    let policy = Exponential::builder().max_attempts(6).build().unwrap();
    let mut conn = Reconnecting::builder(connector).policy(policy).build();
    let err = conn.wait_connected().await.unwrap_err();
    let gave_up = GaveUp::from_io_error(&err).unwrap();
    assert_eq!(gave_up.cause(), GiveUpCause::PolicyExhausted);
    assert_eq!(gave_up.attempts(), 6);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_policy_of_zero_delays_is_not_a_busy_loop() {
    // Real clock: a busy loop would make tens of thousands of attempts in 100 ms.
    let (connector, calls) = crate::support::refusing(usize::MAX);
    let mut conn = Reconnecting::builder(connector)
        .policy(std::iter::repeat(Duration::ZERO))
        .build();
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_millis(100), conn.wait_connected()).await;
    let elapsed_ms = started.elapsed().as_millis() as usize;
    let attempts = calls.load(Ordering::SeqCst);
    eprintln!("{attempts} attempts in {elapsed_ms} ms");
    assert!(
        attempts <= elapsed_ms + 2,
        "{attempts} attempts in {elapsed_ms} ms"
    );
}

#[tokio::test]
async fn the_retry_loop_does_not_busy_loop_on_zero_delays() {
    let (connector, calls) = crate::support::refusing(usize::MAX);
    let started = std::time::Instant::now();
    let run = RetryLoop::new(connector)
        .policy(std::iter::repeat(Duration::from_secs(1)))
        .on_disconnect(|_, _| Box::pin(async { Decision::RetryAfter(Duration::ZERO) }))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) });
    let _ = tokio::time::timeout(Duration::from_millis(100), run).await;
    let elapsed_ms = started.elapsed().as_millis() as usize;
    let attempts = calls.load(Ordering::SeqCst);
    eprintln!("{attempts} attempts in {elapsed_ms} ms");
    assert!(
        attempts <= elapsed_ms + 2,
        "{attempts} attempts in {elapsed_ms} ms"
    );
}

/// gRPC's connection backoff: 1,000 clients that fail together (clones of one policy) retry
/// spread over at least 30% of the nominal first delay (±20% jitter allows 40%), and every
/// client's delays follow the spec's numbers.
#[test]
fn grpc_preset_spreads_a_fleet_and_follows_the_spec() {
    let policy = Exponential::grpc();
    let first: Vec<Duration> = (0..1_000).map(|_| policy.clone().next().unwrap()).collect();
    let lo = *first.iter().min().unwrap();
    let hi = *first.iter().max().unwrap();
    assert!(
        lo >= Duration::from_millis(800) && hi <= Duration::from_millis(1200),
        "{lo:?}..{hi:?}"
    );
    assert!(
        hi - lo >= Duration::from_millis(300),
        "first retries span only {:?}",
        hi - lo
    );
    // Each delay is within ±20% of min(1 s * 1.6^n, 120 s).
    for (n, delay) in Exponential::grpc().take(20).enumerate() {
        let base = (1.6f64.powi(n as i32)).min(120.0);
        let secs = delay.as_secs_f64();
        assert!(
            secs >= base * 0.8 - 1e-9 && secs <= (base * 1.2).min(120.0) + 1e-9,
            "retry {n}: {secs} s for base {base} s"
        );
    }
    // Control: the same fleet with no jitter retries in lockstep.
    let lockstep = Exponential::builder()
        .min(Duration::from_secs(1))
        .factor(1.6)
        .build()
        .unwrap();
    let first: std::collections::HashSet<Duration> = (0..1_000)
        .map(|_| lockstep.clone().next().unwrap())
        .collect();
    assert_eq!(first.len(), 1);
    assert_eq!(
        staunch::backoff::GRPC_MIN_CONNECT_TIMEOUT,
        Duration::from_secs(20)
    );
}

/// The attempts a client makes within `window` (paused time) against a connector whose
/// attempts `hang` or are refused at once, with `delay` between retries and `timeout` per
/// attempt: their start times, in whole seconds.
async fn attempt_starts(hang: bool, delay: u64, timeout: AttemptTimeout, window: u64) -> Vec<u64> {
    use staunch::reconnect::BoxFuture;
    use std::sync::{Arc, Mutex};
    use tokio::io::DuplexStream;
    use tokio::time::Instant;

    let started = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&starts);
    let connector = move || -> BoxFuture<std::io::Result<DuplexStream>> {
        log.lock().unwrap().push(started.elapsed().as_secs());
        if hang {
            Box::pin(std::future::pending())
        } else {
            Box::pin(async { Err(std::io::ErrorKind::ConnectionRefused.into()) })
        }
    };
    let builder =
        Reconnecting::builder(connector).policy(std::iter::repeat(Duration::from_secs(delay)));
    let builder = match timeout {
        AttemptTimeout::Fixed(t) => builder.connect_timeout(Duration::from_secs(t)),
        AttemptTimeout::UntilNextRetry(min) => {
            builder.connect_timeout_until_next_retry(Duration::from_secs(min))
        }
    };
    let mut conn = builder.build();
    let _ = tokio::time::timeout(Duration::from_secs(window), conn.wait_connected()).await;
    let starts = starts.lock().unwrap().clone();
    starts
}

/// A connect timeout, in seconds.
enum AttemptTimeout {
    Fixed(u64),
    UntilNextRetry(u64),
}

/// gRPC's minimum connect timeout: an attempt runs until the next retry is due, and at least
/// the minimum; the retry is due a delay after the attempt's start, not after its failure.
#[tokio::test(start_paused = true)]
async fn connect_timeout_until_next_retry_follows_grpc() {
    use AttemptTimeout::{Fixed, UntilNextRetry};
    // A hanging attempt gets the whole 30 s gap, and the retry follows at once.
    assert_eq!(
        attempt_starts(true, 30, UntilNextRetry(20), 100).await,
        [0, 30, 60, 90]
    );
    // The minimum, when the delay is shorter; the retry was due long before.
    assert_eq!(
        attempt_starts(true, 5, UntilNextRetry(20), 70).await,
        [0, 20, 40, 60]
    );
    // A refused attempt retries on the same schedule either way.
    assert_eq!(
        attempt_starts(false, 30, UntilNextRetry(20), 100).await,
        [0, 30, 60, 90]
    );
    // The retry loop takes the same setting.
    let starts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&starts);
    let began = tokio::time::Instant::now();
    let connector = move || {
        log.lock().unwrap().push(began.elapsed().as_secs());
        std::future::pending::<std::io::Result<tokio::io::DuplexStream>>()
    };
    let run = RetryLoop::new(connector)
        .policy(std::iter::repeat(Duration::from_secs(30)))
        .connect_timeout_until_next_retry(Duration::from_secs(20))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) });
    let _ = tokio::time::timeout(Duration::from_secs(100), run).await;
    assert_eq!(*starts.lock().unwrap(), [0, 30, 60, 90]);
    // Control, a fixed timeout: the attempt is cut at 20 s, and the delay follows the failure.
    assert_eq!(attempt_starts(true, 30, Fixed(20), 120).await, [0, 50, 100]);
    assert_eq!(
        attempt_starts(false, 30, Fixed(20), 100).await,
        [0, 30, 60, 90]
    );
}

#[test]
fn a_min_over_the_default_max_names_the_default_to_set() {
    let error = Exponential::builder()
        .min(Duration::from_secs(60))
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the smallest delay (min = 60s) is greater than the cap (max = 10s); max is its default: \
         set it with .max()"
    );
    let error = Exponential::builder()
        .max(Duration::from_millis(1))
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("min is its default: set it with .min()"),
        "{error}"
    );
}
