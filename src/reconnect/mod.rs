//! Client side: a connection that reconnects ([`Reconnecting`]) and a connect-then-run retry loop
//! ([`RetryLoop`]).
//!
//! # `Reconnecting`: what is retried, what is reported, what can be lost
//!
//! [`Reconnecting`] wraps any [`Connect`]or (a closure returning a connect future, or a type with
//! state such as [`TcpConnector`], [`Failover`] or [`UnixConnector`]) and is itself
//! `AsyncRead + AsyncWrite`. One state machine (idle → connecting → `on_connect` hook →
//! connected → failed → `on_disconnect` hook → backoff → connecting … → gave up) is driven by the
//! caller's reads and writes; its futures live inside the adapter, so dropping a read or write
//! future (a timeout, a `select!`) loses no reconnect progress and no data. While it reconnects,
//! an operation returns `Pending`, and a `Pending` write has accepted none of the caller's bytes.
//!
//! **TCP's limit.** A write that returns `Ok(n)` has only copied `n` bytes into the local kernel's
//! send buffer. When the connection later dies, no one can tell how many of those bytes the peer's
//! application read. So no byte-stream adapter can promise delivery across a reconnect; what
//! staunch promises is *no silent loss*: every place where bytes may have been lost is reported,
//! with a count, and nothing is ever reported as written that a live connection did not accept.
//!
//! | situation | default behaviour | opt-in |
//! |---|---|---|
//! | write or flush fails with a disconnect error | that call returns the error **once**: kind from the cause, payload [`Disconnected`] with the generation and the bytes written on that connection since it was established or [`confirm`](Reconnecting::confirm)ed; the next operation reconnects | [`WriteMode::RetryFailedWrite`]: the failed buffer is written to the next connection in the same call (may deliver a suffix without its prefix) |
//! | write while there is no connection | waits (`Pending`) for a new connection, accepting nothing meanwhile | – |
//! | `Ok(n)` from a write | `n` bytes were accepted by the live connection; there is no mode that returns `Ok` for dropped bytes | – |
//! | read fails, or the connection is lost under a reader | the reader gets the [`Disconnected`] error once (its boundary signal), then bytes of the new connection only; [`Reconnecting::generation`] and [`watch`](Reconnecting::watch) say which connection | [`ReadMode::Splice`]: reads go on from the next connection with no marker (io-tether) |
//! | a loss, to whom | reported exactly once to each handle that used the lost connection, never about a connection it did not use: once for a whole adapter (to the first operation whose mode reports), once per half after [`Reconnecting::split`], each with its own count (the read half wrote nothing: 0 unconfirmed bytes); both halves are woken when a reconnect completes | – |
//! | peer closes (read returns 0 bytes) | end of stream, no reconnect; writes may go on (half-close). **Set the [EOF policy](Builder::eof_policy) explicitly**: a long-lived client wants `Reconnect` | [`EofPolicy::Reconnect`] |
//! | read into a full buffer | `Ok` with nothing read, which is not end of stream | – |
//! | local `shutdown()` | shuts the write side; never starts a reconnect; after it, a lost connection is not replaced and writes fail with `BrokenPipe`. It first asks the connection with an empty write, so a reset the adapter had not noticed yet is reported ([`Disconnected`], with the unconfirmed bytes) instead of hidden behind `Ok` | – |
//! | give-up (policy ends, hook says so, cancelled, or a connect error that cannot succeed: `InvalidInput` such as a missing port, `PermissionDenied`, `Unsupported`) | sticky [`ConnState::GaveUp`]; every later operation fails with `NotConnected` and a [`GaveUp`] payload whose [`cause`](GaveUp::cause) says which and whose [`last_reason`](GaveUp::last_reason) holds the last error with its own kind | [`Builder::retry_connect_if`] |
//! | other errors (not [`is_disconnect`]) | returned unchanged, no reconnect | [`Builder::disconnect_if`] |
//!
//! Dead peers are detected with a per-attempt [`connect_timeout`](Builder::connect_timeout), an
//! optional [`idle_timeout`](Builder::idle_timeout) on reads, and TCP keepalive on
//! [`TcpConnector`]. The backoff policy is any `Iterator<Item = Duration> + Clone` (see
//! [`crate::backoff`]); it starts over only once a connection stayed up for a
//! [stable period](Builder::stable_after) (10 s by default), so a server that accepts and drops
//! at once gets ever longer delays, and the attempt number keeps growing across such connections.
//! A connect error that retrying cannot fix (an address with no port, say) ends the adapter at
//! once ([`GiveUpCause::Fatal`], [`Builder::retry_connect_if`]). Hooks:
//! [`on_disconnect`](Builder::on_disconnect) (may change the connector, wait, and returns a
//! [`Decision`]: retry, retry after a delay of its own, or give up) and
//! [`on_connect`](Builder::on_connect) (gets the new connection before user traffic, for a
//! handshake). Cancellation: [`cancel_on`](Builder::cancel_on) with any future; the other way, a
//! [`ReconnectHandle`] cuts a backoff short when the network is known to be back. A non-blocking
//! start: [`build`](Builder::build) never waits, and
//! [`build_and_connect_in_background`](Builder::build_and_connect_in_background) also starts the
//! first attempt at once in a task.
//!
//! **What it logs** (with the `tracing` feature, on by default): each failed attempt and the
//! give-up at `warn`, so that a client whose server is down is not silent while it waits; each
//! new connection at `info`; state changes, losses and backoffs at `debug`. A policy without a
//! limit retries for ever: bound it (`max_attempts`, `max_total`, `.take(n)`) where a caller
//! should hear of it.
//!
//! # `RetryLoop`: connect, run a session, retry
//!
//! When each connection is a session of its own (log in, subscribe, stream until it breaks),
//! [`RetryLoop`] runs `connect → session → wait → connect …` and says how it ended
//! ([`RetryOutcome`]). It drives the same retry core as `Reconnecting`: the same settings with the
//! same defaults, the same meaning of "attempt" (one connection attempt), the same
//! [`on_disconnect`](RetryLoop::on_disconnect) hook shape, and the same [`GaveUp`] when it stops.

mod builder;
mod connect;
mod error;
mod failover;
mod mode;
mod now;
mod reconnecting;
pub(crate) mod retry;
mod retry_loop;
#[cfg(feature = "tower")]
mod service;
mod state;
mod tcp;
#[cfg(unix)]
mod unix;

/// The futures of the built-in connectors, named for use in a [`Connect`] impl of your own.
pub mod future {
    pub use super::failover::FailoverFuture;
}

pub use builder::Builder;
pub use connect::{tcp_send_queue, BoxFuture, Connect};
pub use error::{
    is_disconnect, is_retryable_connect_error, Disconnected, GaveUp, GiveUpCause, Reason,
};
pub use failover::Failover;
pub use mode::{EofPolicy, ReadMode, WriteMode};
pub use now::ReconnectHandle;
pub use reconnecting::Reconnecting;
pub use retry_loop::{RetryLoop, RetryOutcome, SessionEnd};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use service::ConnectService;
pub use state::{ConnState, Decision, HookContext};
pub use tcp::TcpConnector;
#[cfg(unix)]
pub use unix::UnixConnector;
