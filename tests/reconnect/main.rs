//! The client side (`staunch::reconnect`, `staunch::backoff`), one test binary with a module per
//! subject and the scripted connectors defined once in `support`.

mod auto_traits;
mod background;
mod backoff;
mod failover;
mod hooks;
mod hot_path;
mod io_guarantees;
mod outage;
mod props;
mod reconnect_now;
mod retry_loop;
mod settings;
mod split_halves;
mod support;
mod tcp;
mod turmoil;
