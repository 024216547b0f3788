//! [`BindHandle`]: changing the addresses of a [`BindMany`] while it runs.

#[allow(unused_imports)]
use super::*;

impl BindHandle {
    /// Make `addrs` the set: close the addresses not in it at once, bind the new ones (a failed
    /// bind is retried with backoff), keep the others as they are.
    ///
    /// Once the stream is dropped, this binds nothing: no one would accept.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, net::TcpStream, time::Duration};
    ///
    /// let (_accepts, handle) = staunch::listen::bind_many(["127.0.0.1:0".parse().unwrap()]);
    /// let addr = handle.bound()[0];
    /// let connect = || TcpStream::connect_timeout(&addr, Duration::from_secs(5));
    /// assert!(connect().is_ok()); // it waits in the backlog
    /// handle.set([]); // closed at once, though nothing polls the stream
    /// assert_eq!(connect().unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    /// assert!(handle.status().is_empty());
    /// # Ok::<(), io::Error>(())
    /// ```
    pub fn set(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        let failures = self.set_and_collect(addrs);
        let hook = self.shared.lock().on_bind_error.clone();
        report(hook, failures);
    }

    /// [`set`](BindHandle::set), returning the failed binds instead of reporting them.
    pub(super) fn set_and_collect(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Failures {
        let wanted: Vec<SocketAddr> = addrs.into_iter().collect();
        let mut failures = Failures::new();
        let mut state = self.shared.lock();
        if state.closed {
            log_event!(
                debug,
                "bind_many: the stream is gone, the address set stays empty"
            );
            return failures;
        }
        state.addrs.retain(|e| {
            let keep = wanted.contains(&e.addr);
            if !keep {
                log_event!(info, addr = %e.addr, "bind_many: address removed, closing it");
            }
            keep
        });
        for addr in wanted {
            if state.addrs.iter().any(|e| e.addr == addr) {
                continue;
            }
            let slot = bind_or_fail(addr, &state.policy, None, &mut failures);
            state.addrs.push(Entry { addr, slot });
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        failures
    }

    /// Every address of the set and its state.
    pub fn status(&self) -> BTreeMap<SocketAddr, AddrState> {
        let state = self.shared.lock();
        state
            .addrs
            .iter()
            .map(|e| {
                let s = match &e.slot {
                    Slot::Std(l) => AddrState::Bound {
                        local: l.local_addr().unwrap_or(e.addr),
                    },
                    Slot::Bound(l) => AddrState::Bound {
                        local: l.local_addr().unwrap_or(e.addr),
                    },
                    Slot::Failing {
                        error, attempts, ..
                    } => AddrState::Failing {
                        error: error.clone(),
                        attempts: *attempts,
                    },
                    Slot::Empty => unreachable!("a slot is never left empty"),
                };
                (e.addr, s)
            })
            .collect()
    }

    /// A duplicate of every socket bound now, with its address in the set: to hand them to a
    /// new process ([`handover`](crate::handover)), which starts its own `BindMany` from them
    /// with [`bind_many_from`]. Drop them once handed over: a duplicate keeps its socket open
    /// (connections would queue on it) after this `BindMany` closes its own.
    ///
    /// # Errors
    ///
    /// The error of duplicating a descriptor (`EMFILE`).
    pub fn listeners(&self) -> io::Result<Vec<(SocketAddr, std::net::TcpListener)>> {
        let state = self.shared.lock();
        let mut listeners = Vec::new();
        for entry in &state.addrs {
            let duplicate = match &entry.slot {
                Slot::Std(l) => l.try_clone()?,
                Slot::Bound(l) => duplicate(l)?,
                Slot::Failing { .. } => continue,
                Slot::Empty => unreachable!("a slot is never left empty"),
            };
            listeners.push((entry.addr, duplicate));
        }
        Ok(listeners)
    }

    /// The local addresses bound now (with the real port where port 0 was asked for).
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.status()
            .into_values()
            .filter_map(|s| match s {
                AddrState::Bound { local } => Some(local),
                AddrState::Failing { .. } => None,
            })
            .collect()
    }
}

impl Clone for BindHandle {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        BindHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for BindHandle {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.handles -= 1;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}
impl fmt::Debug for BindHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindHandle")
            .field("status", &self.status())
            .finish()
    }
}
