use std::time::Duration;

use super::BackoffError;

/// How much randomness [`Exponential`] adds to each delay, so that many clients that failed
/// together do not retry together.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::{Exponential, Jitter};
///
/// let base = Duration::from_millis(100);
/// let policy = |jitter| {
///     let builder = Exponential::builder().min(base).factor(1.0); // 100 ms every time
///     builder.jitter(jitter).seed(7).build().unwrap()
/// };
/// // Full: anywhere from zero to the base delay.
/// assert!(policy(Jitter::Full).take(100).all(|d| d <= base));
/// // Proportional(0.2): within 20 % of it, either way.
/// let (low, high) = (base.mul_f64(0.8), base.mul_f64(1.2));
/// assert!(policy(Jitter::Proportional(0.2)).take(100).all(|d| low <= d && d <= high));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: the delay is the base delay.
    #[default]
    None,
    /// Uniform in `0..=base` ("full jitter"). Spreads retries the most; a delay may be near zero.
    Full,
    /// Uniform in `base * (1 - p) ..= base * (1 + p)`, capped at the maximum delay; `p` is in
    /// `0.0..=1.0`.
    Proportional(f64),
}

/// Exponential backoff: the base delay before attempt `n` (0-based) is `min * factor^n`, capped at
/// `max`; jitter is applied to the base, so the base itself grows monotonically.
///
/// Optional limits end the iterator: a number of attempts, and a budget for the sum of all delays
/// (the delay that would overrun the budget is not given; the iterator ends instead).
///
/// **Randomness.** Each clone draws a fresh random stream, so clients configured with clones of
/// one policy, and the outages of one client (each starts over from a clone), do not retry in
/// step. A [seeded](ExponentialBuilder::seed) policy is deterministic instead: its clones repeat
/// its delays.
///
/// Build one with [`Exponential::builder`]; the defaults are `min` 10 ms, `max` 10 s, `factor` 2,
/// no jitter, no limits.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::{Exponential, Jitter};
///
/// let policy = Exponential::builder()
///     .min(Duration::from_millis(100))
///     .max(Duration::from_millis(300))
///     .jitter(Jitter::Proportional(0.1))
///     .seed(7) // deterministic jitter, for tests
///     .build()?;
/// for (n, delay) in policy.take(5).enumerate() {
///     assert!(delay <= Duration::from_millis(300), "attempt {n}: {delay:?}");
/// }
/// # Ok::<(), staunch::backoff::BackoffError>(())
/// ```
#[derive(Debug)]
pub struct Exponential {
    min: Duration,
    max: Duration,
    factor: f64,
    jitter: Jitter,
    /// Delays to give at most: `max_attempts - 1`, the first attempt needs none.
    max_delays: Option<u32>,
    max_total: Option<Duration>,
    rng: u64,
    seeded: bool,
    attempt: u32,
    total: Duration,
}

impl Clone for Exponential {
    /// A copy in the same position, with a fresh random stream unless the policy was seeded.
    fn clone(&self) -> Self {
        Exponential {
            rng: if self.seeded { self.rng } else { random_seed() },
            ..*self
        }
    }
}

/// Builder for [`Exponential`]; parameters are checked by [`build`](ExponentialBuilder::build).
///
/// # Examples
///
/// The defaults: 10 ms, doubling, capped at 10 s, no jitter, no limit.
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Exponential;
///
/// let delays: Vec<_> = Exponential::builder().build()?.take(12).collect();
/// assert_eq!(delays[..3], [10, 20, 40].map(Duration::from_millis));
/// assert_eq!(delays[9], Duration::from_millis(5120));
/// assert_eq!(delays[10..], [Duration::from_secs(10); 2]); // 10.24 s, capped
/// # Ok::<(), staunch::backoff::BackoffError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the policy"]
pub struct ExponentialBuilder {
    min: Duration,
    max: Duration,
    factor: f64,
    jitter: Jitter,
    max_attempts: Option<u32>,
    max_total: Option<Duration>,
    seed: Option<u64>,
    // Which of `min` and `max` were set, so that an error can name the one left at its default.
    min_set: bool,
    max_set: bool,
}

impl Exponential {
    /// A builder with the defaults: `min` 10 ms, `max` 10 s, `factor` 2, no jitter, no limits.
    pub fn builder() -> ExponentialBuilder {
        ExponentialBuilder {
            min: Duration::from_millis(10),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: Jitter::None,
            max_attempts: None,
            max_total: None,
            seed: None,
            min_set: false,
            max_set: false,
        }
    }

    /// The backoff of gRPC's [connection backoff
    /// spec](https://github.com/grpc/grpc/blob/master/doc/connection-backoff.md): 1 s initial
    /// delay, multiplier 1.6, jitter ±20 %, 120 s cap, no limit. Pair it with the spec's minimum
    /// connect timeout,
    /// [`connect_timeout_until_next_retry`](crate::reconnect::Builder::connect_timeout_until_next_retry)`(`[`GRPC_MIN_CONNECT_TIMEOUT`](super::GRPC_MIN_CONNECT_TIMEOUT)`)`:
    ///
    /// ```
    /// use staunch::backoff::{Exponential, GRPC_MIN_CONNECT_TIMEOUT};
    /// use staunch::reconnect::{Reconnecting, TcpConnector};
    ///
    /// let conn = Reconnecting::builder(TcpConnector::new("127.0.0.1:50051"))
    ///     .policy(Exponential::grpc())
    ///     .connect_timeout_until_next_retry(GRPC_MIN_CONNECT_TIMEOUT)
    ///     .build();
    /// ```
    ///
    /// **Where it conforms.**
    /// - The delay before retry `n` is uniform in `b * (0.8 ..= 1.2)` with
    ///   `b = min(1 s * 1.6^n, 120 s)`, drawn afresh by every clone, so a fleet that failed
    ///   together spreads out (the test starts 1,000 clients and checks it).
    /// - With `connect_timeout_until_next_retry`, an attempt gets `max(20 s, time until the next
    ///   backoff deadline)`, and the next attempt starts at that deadline (the attempt's start
    ///   plus the delay), as the spec's `SleepUntil(current_deadline)` does.
    ///
    /// **Where it does not.**
    /// - A jittered delay is capped at 120 s here; the spec lets the jitter go up to 144 s.
    /// - The backoff starts over after a connection has stayed up for
    ///   [`stable_after`](crate::reconnect::Builder::stable_after) (10 s by default), not as
    ///   soon as a connection is made, so a server that accepts and then drops every connection
    ///   at once is not retried at the initial rate forever.
    /// - With a plain [`connect_timeout`](crate::reconnect::Builder::connect_timeout) instead,
    ///   the timeout is fixed and each delay counts from the failure.
    pub fn grpc() -> Exponential {
        Exponential::builder()
            .min(Duration::from_secs(1))
            .max(Duration::from_secs(120))
            .factor(1.6)
            .jitter(Jitter::Proportional(0.2))
            .build()
            .expect("the gRPC parameters are valid")
    }

    /// The base delay (before jitter) for 0-based attempt `n`: `min(min * factor^n, max)`.
    pub fn base_delay(&self, n: u32) -> Duration {
        let secs = self.min.as_secs_f64() * self.factor.powf(f64::from(n));
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs).clamp(self.min, self.max)
        }
    }

    /// How many delays this policy has given so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn next_random_unit(&mut self) -> f64 {
        // splitmix64: tiny, good enough for spreading retries, and reproducible from a seed.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for Exponential {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.max_delays.is_some_and(|n| self.attempt >= n) {
            return None;
        }
        let base = self.base_delay(self.attempt);
        let delay = match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(self.next_random_unit()),
            Jitter::Proportional(p) => {
                let scale = 1.0 - p + 2.0 * p * self.next_random_unit();
                // `mul_f64` panics on overflow, which a `max` near `Duration::MAX` can reach.
                Duration::try_from_secs_f64(base.as_secs_f64() * scale)
                    .map_or(self.max, |d| d.min(self.max))
            }
        };
        let total = self.total.saturating_add(delay);
        if self.max_total.is_some_and(|cap| total > cap) {
            return None;
        }
        self.total = total;
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

impl ExponentialBuilder {
    /// The first (smallest) delay. Must be greater than zero.
    pub fn min(mut self, min: Duration) -> Self {
        self.min = min;
        self.min_set = true;
        self
    }

    /// The cap on the base delay.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::backoff::Exponential;
    ///
    /// let policy = Exponential::builder()
    ///     .min(Duration::from_secs(1))
    ///     .max(Duration::from_secs(3))
    ///     .build()?;
    /// assert_eq!(policy.take(4).collect::<Vec<_>>(), [1, 2, 3, 3].map(Duration::from_secs));
    /// # Ok::<(), staunch::backoff::BackoffError>(())
    /// ```
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self.max_set = true;
        self
    }

    /// The growth factor per attempt; a finite number `>= 1` (1 gives a constant delay).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::backoff::{BackoffError, Exponential};
    ///
    /// let builder = Exponential::builder().min(Duration::from_millis(100));
    /// let policy = builder.clone().factor(1.5).build()?;
    /// assert_eq!(policy.take(3).collect::<Vec<_>>(), [100, 150, 225].map(Duration::from_millis));
    /// let shrinking = builder.factor(0.5).build().unwrap_err();
    /// assert_eq!(shrinking, BackoffError::InvalidFactor(0.5));
    /// # Ok::<(), BackoffError>(())
    /// ```
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The randomness added to each delay.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Allow `attempts` attempts in total: the first one needs no delay, so the iterator gives
    /// `attempts - 1` delays and then ends. `max_attempts(1)` gives none (give up after the
    /// first failure); `max_attempts(0)` is rejected by [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use staunch::backoff::{BackoffError, Exponential};
    ///
    /// let delays = |attempts| Exponential::builder().max_attempts(attempts).build();
    /// assert_eq!(delays(3)?.count(), 2); // the first attempt and two retries
    /// assert_eq!(delays(1)?.count(), 0); // give up after the first failure
    /// assert_eq!(delays(0).unwrap_err(), BackoffError::ZeroAttempts);
    /// # Ok::<(), BackoffError>(())
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Give up once the sum of the delays given would exceed `total`. A budget smaller than the
    /// largest possible first delay (jitter included) is rejected by [`build`](Self::build): the
    /// policy could give no delay at all.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::backoff::{BackoffError, Exponential};
    ///
    /// let builder = Exponential::builder().min(Duration::from_millis(100));
    /// // 100 + 200 + 400 ms; the next delay, 800 ms, would bring the sum over 1 s.
    /// let policy = builder.clone().max_total(Duration::from_secs(1)).build()?;
    /// assert_eq!(policy.collect::<Vec<_>>(), [100, 200, 400].map(Duration::from_millis));
    ///
    /// let too_small = builder.max_total(Duration::from_millis(50)).build().unwrap_err();
    /// assert!(matches!(too_small, BackoffError::MaxTotalTooSmall { .. }));
    /// # Ok::<(), BackoffError>(())
    /// ```
    pub fn max_total(mut self, total: Duration) -> Self {
        self.max_total = Some(total);
        self
    }

    /// Seed the jitter's random numbers, so a test sees the same delays every run, and every clone
    /// repeats them. Without a seed, each policy built and each clone gets a fresh one.
    ///
    /// # Examples
    ///
    /// ```
    /// use staunch::backoff::{Exponential, Jitter};
    ///
    /// let builder = Exponential::builder().jitter(Jitter::Full);
    /// let first_five = |policy: &Exponential| policy.clone().take(5).collect::<Vec<_>>();
    ///
    /// let seeded = builder.clone().seed(42).build()?;
    /// assert_eq!(first_five(&seeded), first_five(&seeded)); // clones repeat the delays
    /// let fresh = builder.build()?;
    /// assert_ne!(first_five(&fresh), first_five(&fresh)); // each clone draws its own
    /// # Ok::<(), staunch::backoff::BackoffError>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Check the parameters and build the policy.
    pub fn build(self) -> Result<Exponential, BackoffError> {
        if self.min.is_zero() {
            return Err(BackoffError::ZeroDelay);
        }
        if self.min > self.max {
            return Err(BackoffError::MinGreaterThanMax {
                min: self.min,
                max: self.max,
                default: match (self.min_set, self.max_set) {
                    (true, false) => Some("max"),
                    (false, true) => Some("min"),
                    _ => None,
                },
            });
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(BackoffError::InvalidFactor(self.factor));
        }
        if let Jitter::Proportional(p) = self.jitter {
            if !(0.0..=1.0).contains(&p) {
                return Err(BackoffError::InvalidJitter(p));
            }
        }
        if self.max_attempts == Some(0) {
            return Err(BackoffError::ZeroAttempts);
        }
        if let Some(max_total) = self.max_total {
            let first_delay = match self.jitter {
                Jitter::Proportional(p) => {
                    Duration::try_from_secs_f64(self.min.as_secs_f64() * (1.0 + p))
                        .map_or(self.max, |d| d.min(self.max))
                }
                Jitter::None | Jitter::Full => self.min,
            };
            if max_total < first_delay {
                return Err(BackoffError::MaxTotalTooSmall {
                    max_total,
                    first_delay,
                });
            }
        }
        Ok(Exponential {
            min: self.min,
            max: self.max,
            factor: self.factor,
            jitter: self.jitter,
            max_delays: self.max_attempts.map(|n| n - 1),
            max_total: self.max_total,
            rng: self.seed.unwrap_or_else(random_seed),
            seeded: self.seed.is_some(),
            attempt: 0,
            total: Duration::ZERO,
        })
    }
}

fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    // RandomState is seeded per process and per instance from the OS: no extra dependency.
    RandomState::new().hash_one(std::time::Instant::now())
}
