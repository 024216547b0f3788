//! Handing listening sockets to a new process: the library's two sides and their checks,
//! `LISTEN_FDS` inheritance across exec, `bind_many` and `SO_REUSEPORT` sockets, and what
//! closing an `SO_REUSEPORT` socket does to its queue. (The hot_upgrade example under load is
//! tested in examples/tests/hot_upgrade.rs.) Loopback only; every wait is bounded.
#![cfg(target_os = "linux")]

mod bind;
mod from_env;
mod late;
mod library;
mod reuseport;
