//! The integration examples, run as a user would with the real clients of each ecosystem:
//! each test builds and starts an example, talks to it over loopback (127.0.0.1 or a Unix
//! socket), stops it with a signal and checks what it did and printed. One test binary for all of
//! them, so they share one build and one link.
#![cfg(unix)]

mod harness;

mod axum_router;
mod emfile_tracing;
mod grpc;
mod hyper_reclaim;
mod hyper_server;
mod socket_activation;
mod tls;
mod tower_connector;
mod unix_socket;
