use std::time::Duration;

/// A backoff policy behind a box: the delays, and a way to start over from the template.
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
