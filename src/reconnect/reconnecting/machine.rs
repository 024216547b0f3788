//! The state machine of [`Reconnecting`]: the states with their data, the one
//! [`transition`](Reconnecting::transition) that logs and publishes, and the loop that drives it.

use std::future::Future;
use std::io;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{Half, Reconnecting};
use crate::reconnect::now;
use crate::reconnect::retry::{settle, ConnectAttempt, Next};
use crate::reconnect::{BoxFuture, ConnState, Connect, Decision, GaveUp, GiveUpCause, Reason};
use crate::task::AbortOnDrop;

/// One attempt with the connect timeout.
type TimedAttempt<C> = ConnectAttempt<Attempt<<C as Connect>::Future, <C as Connect>::Io>>;

pub(super) enum State<C: Connect> {
    Idle,
    /// A connection was lost (`uptime` is how long it was up) or an attempt failed; what follows
    /// is decided when the machine is next driven.
    Failed {
        reason: Reason,
        uptime: Option<Duration>,
    },
    /// The `on_disconnect` hook decides.
    Deciding {
        hook: BoxFuture<Decision>,
        reason: Reason,
        next_delay: Option<Duration>,
    },
    Backoff {
        sleep: Pin<Box<Sleep>>,
        delay: Duration,
        reason: Reason,
    },
    Connecting(Pin<Box<TimedAttempt<C>>>),
    /// The `on_connect` hook runs on the new connection.
    Handshake(BoxFuture<io::Result<C::Io>>),
    Connected(Live<C::Io>),
    GaveUp(GaveUp),
    /// Shut down locally and the connection is gone: nothing reconnects.
    ShutDown,
}

/// A live connection and what belongs to it alone.
pub(super) struct Live<Io> {
    pub(super) io: Io,
    pub(super) since: Instant,
    /// Bytes accepted since it was established or confirmed.
    pub(super) unconfirmed: u64,
    /// `shutdown()` was called: once it is lost, nothing reconnects.
    pub(super) shut: bool,
    /// The idle timer, allocated once per connection and re-armed with `reset`.
    idle: Option<Pin<Box<Sleep>>>,
    idle_armed: bool,
}

impl<Io> Live<Io> {
    fn new(io: Io) -> Self {
        Live {
            io,
            since: Instant::now(),
            unconfirmed: 0,
            shut: false,
            idle: None,
            idle_armed: false,
        }
    }

    /// Bytes arrived: the idle clock starts again at the next wait.
    pub(super) fn disarm_idle(&mut self) {
        self.idle_armed = false;
    }

    /// A read waits: ready once it has waited `limit` since the clock was armed.
    pub(super) fn poll_idle(&mut self, cx: &mut Context<'_>, limit: Duration) -> Poll<()> {
        let deadline = Instant::now() + limit;
        let sleep = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.idle_armed {
            sleep.as_mut().reset(deadline);
            self.idle_armed = true;
        }
        sleep.as_mut().poll(cx)
    }
}

pin_project_lite::pin_project! {
    /// One connection attempt: polled in place, or (the first attempt of
    /// `build_and_connect_in_background`) running in a task of its own.
    #[project = AttemptProj]
    pub(super) enum Attempt<F, Io> {
        Local { #[pin] connect: F },
        // Aborted when the adapter drops it (a timeout, a cancellation, a shutdown, or the
        // adapter itself being dropped), so no connection is left open behind it.
        Spawned { task: AbortOnDrop<io::Result<Io>> },
    }
}

impl<F, Io> Future for Attempt<F, Io>
where
    F: Future<Output = io::Result<Io>>,
{
    type Output = io::Result<Io>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AttemptProj::Local { connect } => connect.poll(cx),
            AttemptProj::Spawned { task } => {
                match std::task::ready!(Pin::new(&mut task.0).poll(cx)) {
                    Ok(result) => Poll::Ready(result),
                    // The connector panicked in the task: panic here, as it would have in place.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // The runtime is shutting down.
                    Err(e) => Poll::Ready(Err(io::Error::other(e))),
                }
            }
        }
    }
}

pub(super) fn shut_down_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection was shut down")
}

impl<C: Connect> Reconnecting<C> {
    /// The one place where the state changes: logs the change and publishes it.
    pub(super) fn transition(&mut self, next: State<C>) {
        self.state = next;
        let public = match &self.state {
            State::Idle => ConnState::Idle,
            State::Failed { reason, .. } => ConnState::Failed {
                generation: self.generation,
                reason: reason.clone(),
            },
            // Still `Failed` and `Connecting` to the outside.
            State::Deciding { .. } | State::Handshake(_) => return,
            State::Backoff { delay, reason, .. } => ConnState::Backoff {
                attempt: self.outage.attempt().saturating_add(1),
                delay: *delay,
                reason: reason.clone(),
            },
            State::Connecting(_) => ConnState::Connecting {
                attempt: self.outage.attempt(),
            },
            State::Connected(_) => ConnState::Connected {
                generation: self.generation,
            },
            State::GaveUp(gave_up) => ConnState::GaveUp(gave_up.clone()),
            State::ShutDown => ConnState::ShutDown,
        };
        log_event!(debug, state = ?public, "reconnect: state changed");
        self.tx.send_replace(public);
    }

    /// The outcome for an operation that needs a connection, once there is one or never will be.
    fn settled(&self) -> Option<io::Result<()>> {
        match &self.state {
            State::Connected(_) => Some(Ok(())),
            State::GaveUp(gave_up) => Some(Err(gave_up.to_io_error())),
            State::ShutDown => Some(Err(shut_down_error())),
            _ => None,
        }
    }

    /// Drive the machine until there is a live connection, or a terminal state. `cx`'s waker is
    /// registered for `half`.
    pub(super) fn poll_connected(
        &mut self,
        cx: &mut Context<'_>,
        half: Half,
    ) -> Poll<io::Result<()>> {
        if let Some(done) = self.settled() {
            return Poll::Ready(done);
        }
        match half {
            Half::Read => self.waiters.read.register(cx.waker()),
            Half::Write => self.waiters.write.register(cx.waker()),
        }
        let waker = self.waker.clone();
        let cx = &mut Context::from_waker(&waker);
        loop {
            let next = if self.retry.poll_cancelled(cx) {
                self.give_up(GiveUpCause::Cancelled, None)
            } else {
                match mem::replace(&mut self.state, State::Idle) {
                    State::Idle => self.connect_again(),
                    State::Failed { reason, uptime } => self.after_failure(reason, uptime),
                    State::Deciding {
                        mut hook,
                        reason,
                        next_delay,
                    } => match hook.as_mut().poll(cx) {
                        Poll::Ready(decision) => self.backoff(settle(decision, next_delay), reason),
                        Poll::Pending => {
                            self.state = State::Deciding {
                                hook,
                                reason,
                                next_delay,
                            };
                            return Poll::Pending;
                        }
                    },
                    // Asked to reconnect now: the wait is over.
                    State::Backoff { .. } if now::requested(&self.retry.reconnect_now, cx) => {
                        self.outage.start_over(&self.retry);
                        self.connect_again()
                    }
                    State::Backoff {
                        mut sleep,
                        delay,
                        reason,
                    } => match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => self.connect_again(),
                        Poll::Pending => {
                            self.state = State::Backoff {
                                sleep,
                                delay,
                                reason,
                            };
                            return Poll::Pending;
                        }
                    },
                    State::Connecting(mut attempt) => match attempt.as_mut().poll(cx) {
                        Poll::Ready(Ok(io)) => self.opened(io),
                        Poll::Ready(Err(reason)) => self.attempt_failed(reason),
                        Poll::Pending => {
                            self.state = State::Connecting(attempt);
                            return Poll::Pending;
                        }
                    },
                    State::Handshake(mut handshake) => match handshake.as_mut().poll(cx) {
                        Poll::Ready(Ok(io)) => self.established(io),
                        Poll::Ready(Err(e)) => {
                            self.attempt_failed(Reason::HandshakeFailed(Arc::new(e)))
                        }
                        Poll::Pending => {
                            self.state = State::Handshake(handshake);
                            return Poll::Pending;
                        }
                    },
                    State::Connected(_) | State::GaveUp(_) | State::ShutDown => {
                        unreachable!("settled states return before the loop")
                    }
                }
            };
            self.transition(next);
            if let Some(done) = self.settled() {
                return Poll::Ready(done);
            }
        }
    }

    fn connect_again(&mut self) -> State<C> {
        let connect = self.connector.connect();
        self.connect(Attempt::Local { connect })
    }

    pub(super) fn connect(&mut self, attempt: Attempt<C::Future, C::Io>) -> State<C> {
        let (attempt_number, timeout) = self.outage.begin_attempt(&self.retry);
        log_event!(debug, attempt = attempt_number, "reconnect: connecting");
        // Only the log event reads it (no event without the `tracing` feature).
        let _ = attempt_number;
        State::Connecting(Box::pin(self.retry.attempt(attempt, timeout)))
    }

    fn attempt_failed(&mut self, reason: Reason) -> State<C> {
        log_event!(warn, attempt = self.outage.attempt(), reason = %reason, "reconnect: attempt failed");
        if self.retry.is_fatal(&reason) {
            self.give_up(GiveUpCause::Fatal, Some(reason))
        } else {
            State::Failed {
                reason,
                uptime: None,
            }
        }
    }

    fn after_failure(&mut self, reason: Reason, uptime: Option<Duration>) -> State<C> {
        let next = self.outage.after_failure(
            &mut self.retry,
            &mut self.connector,
            self.generation,
            reason.clone(),
            uptime,
        );
        match next {
            Next::Decided(delay) => self.backoff(delay, reason),
            Next::Ask(hook, next_delay) => State::Deciding {
                hook,
                reason,
                next_delay,
            },
        }
    }

    fn backoff(&mut self, delay: Result<Duration, GiveUpCause>, reason: Reason) -> State<C> {
        match delay {
            Ok(delay) => State::Backoff {
                sleep: Box::pin(tokio::time::sleep(delay)),
                delay,
                reason,
            },
            Err(cause) => self.give_up(cause, None),
        }
    }

    fn give_up(&mut self, cause: GiveUpCause, last: Option<Reason>) -> State<C> {
        self.retry.cancel = None;
        State::GaveUp(self.outage.give_up(cause, last))
    }

    fn opened(&mut self, io: C::Io) -> State<C> {
        match self.on_connect.as_mut() {
            Some(hook) => {
                let ctx = self.outage.context(self.generation + 1, None);
                State::Handshake(hook(&ctx, io))
            }
            None => self.established(io),
        }
    }

    fn established(&mut self, io: C::Io) -> State<C> {
        // The attempt count, the policy and the outage go on until this connection has proved
        // stable (see `Outage::connection_lost`).
        self.generation += 1;
        log_event!(info, generation = self.generation, "reconnect: connected");
        // A request to reconnect now is met.
        self.retry.reconnect_now.take_woken();
        State::Connected(Live::new(io))
    }

    /// The live connection was lost, noticed by `detector`. Reports the loss to the halves that
    /// used it; returns the detector's report if it is owed one now.
    pub(super) fn lose(
        &mut self,
        reason: Reason,
        detector: Half,
        detector_reports: bool,
    ) -> Option<io::Error> {
        let State::Connected(live) = mem::replace(&mut self.state, State::Idle) else {
            unreachable!("lose is called on a live connection")
        };
        let uptime = live.since.elapsed();
        log_event!(
            debug,
            generation = self.generation,
            unconfirmed = live.unconfirmed,
            reason = %reason,
            "reconnect: connection lost"
        );
        self.outage.connection_lost(uptime, &self.retry);
        let reports = |half| match half {
            Half::Read if half == detector => detector_reports,
            Half::Write if half == detector => detector_reports,
            Half::Read => self.read_mode == crate::reconnect::ReadMode::Boundary,
            Half::Write => self.write_mode == crate::reconnect::WriteMode::Report,
        };
        let (read_reports, write_reports) = (reports(Half::Read), reports(Half::Write));
        let error = self.halves.lost(
            self.generation,
            live.unconfirmed,
            C::unacked_bytes(&live.io),
            &reason,
            detector,
            [read_reports, write_reports],
        );
        self.transition(if live.shut {
            State::ShutDown
        } else {
            State::Failed {
                reason,
                uptime: Some(uptime),
            }
        });
        error
    }
}
