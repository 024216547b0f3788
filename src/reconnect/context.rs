use std::time::Duration;

use super::Reason;

/// What a hook knows when it runs.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) attempt: u32,
    pub(crate) total_attempts: u64,
    pub(crate) generation: u64,
    pub(crate) reason: Option<Reason>,
    pub(crate) elapsed: Duration,
    pub(crate) uptime: Option<Duration>,
}

impl Context {
    /// Connection attempts made in the current outage, that is since the backoff last started
    /// over (see [`Builder::stable_after`](super::Builder::stable_after)): 0 in `on_disconnect`
    /// right after a stable connection was lost, `n` after `n` attempts (successful ones whose
    /// connection did not stay up for the stable period included); in `on_connect`, the number of
    /// the attempt that produced the new connection (1-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Connection attempts made since the adapter was built.
    pub fn total_attempts(&self) -> u64 {
        self.total_attempts
    }

    /// In `on_disconnect`, the generation of the last established connection (0 if none was ever
    /// established); in `on_connect`, the generation the new connection gets once the hook
    /// succeeds.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Why the hook runs: the lost connection's or the failed attempt's reason; `None` in
    /// `on_connect`.
    pub fn reason(&self) -> Option<&Reason> {
        self.reason.as_ref()
    }

    /// Time since the outage began: the first attempt, or the loss of the last connection that
    /// stayed up for the [stable period](super::Builder::stable_after). Connections lost sooner do
    /// not end the outage.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// In `on_disconnect` right after a live connection was lost, how long it had been up (from
    /// its establishment to the moment the loss was noticed); `None` after a failed attempt and
    /// in `on_connect`.
    pub fn uptime(&self) -> Option<Duration> {
        self.uptime
    }
}
