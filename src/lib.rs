//! staunch
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod log;

pub mod backoff;
mod listen;
pub mod reconnect;

pub use listen::{
    is_connection_error, AcceptAction, AcceptErrorEvent, ConnectionOutput, Drain, ErrorClass,
    GracefulShutdown, Listen, ListenExt, ShutdownReport, SleepOnError, SpawnListen, Stats,
    StatsSnapshot, MIN_ACCEPT_BACKOFF,
};
