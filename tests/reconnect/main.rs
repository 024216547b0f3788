//! The client side (`staunch::reconnect`, `staunch::backoff`), one test binary with a module per
//! subject and the scripted connectors defined once in `support`.

mod auto_traits;
mod background;
mod backoff;
mod edge_cases;
mod example;
mod hot_path;
mod io_guarantees;
mod props;
mod retry_loop;
mod split_halves;
mod stable_and_fatal;
mod support;
mod tcp;
mod turmoil;
