//! The token schedule shared by [`LimitRate`](super::LimitRate) and
//! [`RejectExcess`](super::RejectExcess).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The most lateness (of the timer or the runtime) [`LimitRate`](super::LimitRate) makes up by passing the items
/// due meanwhile at once: a few timer ticks.
const MAX_LAG: Duration = Duration::from_millis(5);

/// The token schedule of [`LimitRate`](super::LimitRate) and [`RejectExcess`](super::RejectExcess): the generic
/// cell rate algorithm, one token per `interval` and up to a burst at once.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run: `(burst - 1) * interval`.
    slack: Duration,
    /// The theoretical arrival time of the next item; `None` until the first item, when the
    /// bucket is full.
    tat: Option<Instant>,
}

impl Schedule {
    /// One token per `interval`, no burst.
    pub(super) fn new(interval: Duration) -> Self {
        Schedule {
            interval,
            slack: Duration::ZERO,
            tat: None,
        }
    }

    /// Let up to `burst` (at least 1) tokens be taken at once after a quiet spell.
    pub(super) fn set_burst(&mut self, burst: u32) {
        self.slack = self.interval.saturating_mul(burst - 1);
    }

    /// When the next token is due; `None` for a full bucket.
    pub(super) fn due(&self) -> Option<Instant> {
        self.tat.and_then(|tat| tat.checked_sub(self.slack))
    }

    /// Take a token for an item passed at `now`. With `make_up_lateness`, it is charged from
    /// when it was due, if that was at most `MAX_LAG` ago: timer resolution (1 ms) and a busy
    /// runtime must not lower the rate, so after a late wake-up the tokens due meanwhile pass
    /// at once; time without an item is not banked.
    pub(super) fn take(&mut self, now: Instant, make_up_lateness: bool) {
        let charge_from = match self.tat {
            Some(tat) if make_up_lateness => tat.max(now.checked_sub(MAX_LAG).unwrap_or(now)),
            _ => now,
        };
        let from = self.tat.map_or(charge_from, |tat| tat.max(charge_from));
        self.tat = Some(from + self.interval);
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("interval", &self.interval)
            .field(
                "burst",
                &(self.slack.as_nanos() / self.interval.as_nanos() + 1),
            )
            .finish_non_exhaustive()
    }
}
