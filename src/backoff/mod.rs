//! Backoff policies shared by the server side ([`sleep_on_error`](crate::ListenExt::sleep_on_error))
//! and the client side ([`reconnect`](crate::reconnect)).
//!
//! A policy is any `Iterator<Item = Duration>`: each call to `next` gives the delay before the
//! next attempt, and `None` means "give up". Strategies from other crates (backon, tokio-retry) or
//! a plain `std::iter::repeat(d).take(5)` plug in unchanged. Where a policy must start over (after
//! a successful accept, or after a connection stayed up), staunch clones the policy it was given,
//! so policies are also `Clone`. [`Exponential`]'s clones draw fresh jitter (unless seeded), so
//! neither the outages of one client nor a fleet configured with clones of one policy retry in
//! step.
//!
//! "Attempts" counts attempts, the first one included: a policy that gives `n - 1` delays allows
//! `n` attempts ([`ExponentialBuilder::max_attempts`]).
//!
//! Built-ins:
//!
//! | policy | delay before attempt `n` (0-based) |
//! |---|---|
//! | [`Constant`] | `delay` |
//! | [`Exponential`] | `min(min * factor^n, max)`, then jitter, limited by attempts and a total-delay budget |
//! | [`Exponential::grpc`] | gRPC's connection backoff: `min(1 s * 1.6^n, 120 s)`, ±20 % jitter |
//!
//! Parameters are validated when the policy is built, with a typed [`BackoffError`].
//!
//! ```
//! use std::time::Duration;
//! use staunch::backoff::{Exponential, Jitter};
//!
//! let policy = Exponential::builder()
//!     .min(Duration::from_millis(10))
//!     .max(Duration::from_secs(1))
//!     .factor(2.0)
//!     .jitter(Jitter::None)
//!     .max_attempts(4) // the first attempt and three retries
//!     .build()
//!     .unwrap();
//! let delays: Vec<_> = policy.collect();
//! assert_eq!(delays, [10, 20, 40].map(Duration::from_millis).to_vec());
//! ```

mod boxed;
mod constant;
mod error;
mod exponential;

pub use constant::Constant;
pub use error::BackoffError;
pub use exponential::{Exponential, ExponentialBuilder, Jitter};

/// The minimum connect timeout of gRPC's connection backoff spec, to go with
/// [`Exponential::grpc`] through
/// [`connect_timeout_until_next_retry`](crate::reconnect::Builder::connect_timeout_until_next_retry):
/// 20 s.
pub const GRPC_MIN_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

pub(crate) use boxed::{default_policy, DynPolicy};
