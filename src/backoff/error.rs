use std::fmt;
use std::time::Duration;

/// Why a backoff policy's parameters were rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum BackoffError {
    /// A zero delay would make every retry loop a busy loop.
    ZeroDelay,
    /// The smallest delay is larger than the cap.
    MinGreaterThanMax,
    /// The growth factor is below 1 (delays would shrink) or not a finite number.
    InvalidFactor(f64),
    /// The jitter fraction is outside `0.0..=1.0` or not a number.
    InvalidJitter(f64),
    /// `max_attempts(0)` would allow no attempt at all.
    ZeroAttempts,
    /// The `max_total` budget is smaller than the largest possible first delay, so the policy
    /// could give no delay at all.
    MaxTotalTooSmall {
        /// The budget given.
        max_total: Duration,
        /// The largest first delay: `min`, or `min * (1 + p)` with proportional jitter.
        first_delay: Duration,
    },
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackoffError::ZeroDelay => f.write_str("the delay must be greater than zero"),
            BackoffError::MinGreaterThanMax => {
                f.write_str("the minimum delay must not be greater than the maximum delay")
            }
            BackoffError::InvalidFactor(x) => {
                write!(f, "the growth factor must be a finite number >= 1, got {x}")
            }
            BackoffError::InvalidJitter(x) => {
                write!(f, "the jitter fraction must be within 0.0..=1.0, got {x}")
            }
            BackoffError::ZeroAttempts => f.write_str("max_attempts must be at least 1"),
            BackoffError::MaxTotalTooSmall {
                max_total,
                first_delay,
            } => write!(
                f,
                "max_total ({max_total:?}) is smaller than the first delay ({first_delay:?}): \
                 the policy could give no delay at all"
            ),
        }
    }
}

impl std::error::Error for BackoffError {}
