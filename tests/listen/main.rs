//! The server side (`staunch::listen`), one test binary with a module per subject.

mod auto_traits;
mod backlog;
mod bind;
mod conn;
mod emfile;
mod lifecycle;
mod link;
mod listener;
mod per_core;
mod props;
mod shutdown;
mod sleep_on_error;
mod support;
