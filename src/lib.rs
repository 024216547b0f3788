//! staunch
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod log;

pub mod backoff;
pub mod reconnect;
