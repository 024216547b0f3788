use std::time::Duration;

use super::BackoffError;

/// The same delay before every attempt, forever.
///
/// This is tk-listen's behaviour and the default of
/// [`sleep_on_error`](crate::ListenExt::sleep_on_error). Limit it with [`Iterator::take`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
///
/// let mut policy = Constant::new(Duration::from_millis(100)).take(2);
/// assert_eq!(policy.next(), Some(Duration::from_millis(100)));
/// assert_eq!(policy.next(), Some(Duration::from_millis(100)));
/// assert_eq!(policy.next(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constant {
    delay: Duration,
}

impl Constant {
    /// A constant delay.
    ///
    /// # Panics
    ///
    /// Panics if `delay` is zero: a zero delay turns a retry loop into a busy loop. Use
    /// [`Constant::try_new`] to get an error instead.
    #[track_caller]
    pub fn new(delay: Duration) -> Self {
        match Self::try_new(delay) {
            Ok(policy) => policy,
            Err(e) => panic!("staunch::backoff::Constant::new: {e}"),
        }
    }

    /// A constant delay, or [`BackoffError::ZeroDelay`] if `delay` is zero.
    pub fn try_new(delay: Duration) -> Result<Self, BackoffError> {
        if delay.is_zero() {
            return Err(BackoffError::ZeroDelay);
        }
        Ok(Self { delay })
    }

    /// The delay this policy yields.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

impl Iterator for Constant {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.delay)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}
