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
}

impl Context {
    /// Connection attempts made since the last successful connection: 0 in `on_disconnect` right
    /// after a live connection was lost, `n` after `n` failed attempts; in `on_connect`, the number
    /// of the attempt that produced the new connection (1-based).
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

    /// Time since the outage began (the connection was lost, or the first attempt started).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}
