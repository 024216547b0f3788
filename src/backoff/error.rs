use std::fmt;
use std::time::Duration;

/// Why a backoff policy's parameters were rejected.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::{BackoffError, Constant, Exponential};
///
/// // A `min` above the default `max` (10 s): the error names both, and the one to set.
/// let error = Exponential::builder().min(Duration::from_secs(30)).build().unwrap_err();
/// assert_eq!(
///     error,
///     BackoffError::MinGreaterThanMax {
///         min: Duration::from_secs(30),
///         max: Duration::from_secs(10),
///         default: Some("max"),
///     }
/// );
/// assert_eq!(
///     error.to_string(),
///     "the smallest delay (min = 30s) is greater than the cap (max = 10s); \
///      max is its default: set it with .max()"
/// );
/// assert_eq!(Constant::try_new(Duration::ZERO), Err(BackoffError::ZeroDelay));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum BackoffError {
    /// A zero delay would make every retry loop a busy loop.
    ZeroDelay,
    /// The smallest delay is larger than the cap.
    MinGreaterThanMax {
        /// The smallest delay, as set (or its default).
        min: Duration,
        /// The cap, as set (or its default).
        max: Duration,
        /// The setting left at its default, if one was (`"min"` or `"max"`): the one to set.
        default: Option<&'static str>,
    },
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
            BackoffError::ZeroDelay => {
                f.write_str("the delay must be greater than zero, not 0 (a busy loop)")
            }
            BackoffError::MinGreaterThanMax { min, max, default } => {
                write!(
                    f,
                    "the smallest delay (min = {min:?}) is greater than the cap (max = {max:?})"
                )?;
                match default {
                    Some(setting) => {
                        write!(f, "; {setting} is its default: set it with .{setting}()")
                    }
                    None => Ok(()),
                }
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
