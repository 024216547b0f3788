//! staunch-http end to end: real clients on loopback against the one-call server, one
//! connection's lifetime limits, upgrades and a WebSocket through a shutdown, tonic and
//! `axum::serve`.

mod axum_listener;
mod grpc;
mod lifetime;
mod serve;
mod support;
mod upgrade;
mod websocket;
