use std::time::Duration;

use super::{Exponential, Jitter};

/// The default policy of the reconnecting client
/// ([`Reconnecting`](crate::reconnect::Reconnecting), [`RetryLoop`](crate::reconnect::RetryLoop)):
/// exponential from 100 ms to 10 s, ±10 % jitter, no limit.
pub(crate) fn default_policy() -> Box<dyn DynPolicy> {
    let policy = Exponential::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(10))
        .jitter(Jitter::Proportional(0.1))
        .build()
        .expect("the default policy is valid");
    Box::new(policy)
}

/// A backoff policy behind a box: the delays, and a way to start over from the template (a clone,
/// so with fresh jitter).
pub(crate) trait DynPolicy: Send {
    fn next_delay(&mut self) -> Option<Duration>;
    fn fresh(&self) -> Box<dyn DynPolicy>;
}

impl<P> DynPolicy for P
where
    P: Iterator<Item = Duration> + Clone + Send + 'static,
{
    fn next_delay(&mut self) -> Option<Duration> {
        self.next()
    }

    fn fresh(&self) -> Box<dyn DynPolicy> {
        Box::new(self.clone())
    }
}
