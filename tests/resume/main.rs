//! The resumable session layer: exactly-once delivery across killed connections on real
//! loopback sockets and in turmoil's simulated network, the session rules (unknown ids, expiry)
//! and malformed input, by scripted transports and a fuzz-style property test; the client's
//! retries; an end whose writer waits still watching its transport.

mod fuzz;
mod loopback;
mod memory;
mod retry;
mod rules;
mod simulated;
mod support;
mod watch;
