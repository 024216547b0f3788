//! Zero-downtime restart: hand the listening sockets to a new process, drain the old one.
//!
//! A new binary takes over the very sockets the old one listens on, so the port never closes:
//! a client connecting during the switch waits in the kernel's accept queue, which both
//! processes share, instead of being refused. The old process stops accepting only after the
//! new one says it is ready, then drains its connections with the usual graceful shutdown
//! (deadline and report). If the new process fails before it is ready, the old one keeps
//! serving as if nothing happened. This is nginx's binary upgrade, HAProxy's
//! `expose-fd listeners`, Envoy's hot restart and Cloudflare's ecdysis/tableflip.
//!
//! Two ways in:
//!
//! - **Over a Unix socket** (`SCM_RIGHTS`): the old process [binds](Handover::bind) a control
//!   socket at a path, issues a [ticket](Handover::ticket) for the new process, and
//!   [offers](Handover::offer) its listeners there; the new process
//!   [takes them over](take_over) with that ticket, validates them, and calls
//!   [`Ready::ready`] when it can serve, which is when [`Handover::offer`] returns.
//! - **Inherited across exec**: the `LISTEN_FDS` protocol of systemd's socket activation, which
//!   `systemfd` and the `listenfd` crate speak too. The old process starts the new one with
//!   [`SuccessorCommand`] and [waits](SuccessorReady::wait) until it is ready; the new one
//!   takes them with [`from_env`] (which also takes systemd's) and calls [`Ready::ready`].
//!
//! `bind_many` and `bind_reuseport` sockets are plain listeners too:
//! [`BindHandle::listeners`](crate::listen::BindHandle::listeners) gives the ones a
//! [`BindMany`](crate::listen::BindMany) holds, and
//! [`bind_many_from`](crate::listen::bind_many_from) starts one from listeners taken over,
//! binding nothing.
//!
//! Each socket is checked before use: it is a socket, it is listening (`SO_ACCEPTCONN`), and
//! its family and type are those of a TCP or Unix stream listener, as announced. Errors name
//! the socket ([`HandoverError`]). The API takes and returns plain listeners (borrowed
//! descriptors and [`Listener`]), so sockets from anywhere can be handed over.
//!
//! # Example: the old process
//!
//! ```no_run
//! use std::os::fd::AsFd as _;
//! use staunch::handover::Handover;
//!
//! # async fn run(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! // On SIGHUP, say:
//! let handover = Handover::bind("/run/myapp/handover.sock")?;
//! let successor = tokio::process::Command::new(std::env::current_exe()?)
//!     .env("MYAPP_TAKE_OVER", handover.ticket())
//!     .spawn()?;
//! handover.offer(&[("http", listener.as_fd())]).await?;
//! // The successor is serving: stop accepting and drain (the graceful shutdown's signal).
//! # drop(successor); Ok(())
//! # }
//! ```
//!
//! `examples/hot_upgrade.rs` is a complete server that upgrades itself on SIGHUP, and races
//! the offer with the successor's exit so that a successor that dies before it connects does
//! not leave the offer waiting.
//!
//! # Example: the new process
//!
//! ```no_run
//! use staunch::handover::take_over;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ticket = std::env::var_os("MYAPP_TAKE_OVER").ok_or("not started for a handover")?;
//! let (mut listeners, ready) = take_over(&ticket).await?;
//! let listener = tokio::net::TcpListener::from_std(listeners.take_tcp("http")?)?;
//! // ... load configuration, warm caches: the old process serves meanwhile ...
//! ready.ready().await?; // the old process stops accepting now
//! # drop(listener); Ok(())
//! # }
//! ```
//!
//! # `SO_REUSEPORT` groups
//!
//! Starting the new process with sockets of its own in the same `SO_REUSEPORT` group, then
//! closing the old ones, loses connections: closing a socket of a group resets the
//! connections still queued on it (completed handshakes nobody accepted, handshakes in
//! progress), unless `net.ipv4.tcp_migrate_req` (Linux 5.14 and later, off by default) is set,
//! in which case the kernel moves them to another socket of the group; [`tcp_migrate_req`]
//! reads it (changing it takes root, for the whole network namespace). Handing the group's
//! sockets over instead closes none of them: the queues move with the sockets, whatever that
//! setting. Measured on Linux 6.18 with 64 connections queued on a group of two listeners:
//! closing one lost 28 to 34 of them with `tcp_migrate_req=0` and none with `1`; handing it
//! over lost none (`tests/handover/reuseport.rs`).
//!
//! # With systemd
//!
//! ```ini
//! [Service]
//! Type=notify
//! NotifyAccess=all
//! ExecStart=/usr/bin/myapp
//! ExecReload=/bin/kill -HUP $MAINPID
//! ```
//!
//! - `systemctl reload` sends SIGHUP to the main process, which starts the new one and offers
//!   it the sockets; `ExecReload=` returns at once and the upgrade goes on in the background.
//! - The new process inherits `NOTIFY_SOCKET`. [`Ready::ready`] sends `READY=1` and
//!   `MAINPID=<its pid>` there before it tells the old process, so systemd follows the new
//!   process as the main one before the old one exits (`NotifyAccess=all` lets a process other
//!   than the main one say so). Both stay in the service's cgroup.
//! - With a `.socket` unit, systemd owns the listeners and passes them to the first process
//!   ([`from_env`]); later upgrades go through the control socket as above (keep its path
//!   under `RuntimeDirectory=`), or across exec with [`SuccessorCommand`].
//! - A `systemctl stop` during a drain reaches both processes; the old one is draining already
//!   and keeps to its deadline (set `TimeoutStopSec=` above the grace).
//!
//! # In containers
//!
//! The container's main process (PID 1 or under an init such as `tini`) must stay alive, so
//! run a supervisor that upgrades its child, or let the new process be the child of the old
//! one and keep PID 1 a small init that reaps orphans and forwards signals. An orchestrator's
//! rolling update (new container, new network namespace) cannot share sockets this way; there,
//! readiness probes and connection draining at the load balancer do this job.
//!
//! # A successor that comes late
//!
//! Each offer has its own [ticket](Handover::ticket), and a new ticket voids the older ones. A
//! new process started for an offer that was given up (it was too slow, the old process raced
//! the offer with a timeout) and that connects afterwards is turned away with
//! [`HandoverError::StaleTicket`]: the next offer waits for the process it was made for,
//! instead of handing the sockets to the stale one.
//!
//! # What it does not cover
//!
//! Only listening sockets move. Established connections stay with the old process until they
//! finish or the grace period cuts them; application state (caches, sessions, counters) is not
//! copied: keep it outside the process or send it over a channel of your own. The control
//! socket's directory should be writable only by the service's user: whoever can connect can
//! take the sockets.
#![cfg_attr(docsrs, doc(cfg(unix)))]

mod control;
mod env;
mod error;
mod exec;
mod kind;
mod listener;
mod ready;
mod scm;
mod validate;

pub use control::{take_over, Handover};
pub use env::from_env;
pub use error::HandoverError;
pub use exec::{SuccessorCommand, SuccessorReady};
pub use kind::Kind;
pub use listener::{tcp_migrate_req, Listener, Listeners};
pub use ready::Ready;
