//! Running an example as a user would: build it, start it, read what it prints, signal it, and
//! collect its exit. Every wait is bounded; a running example is killed when its test ends.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "../../../tests/support/example_process.rs"]
mod example_process;
use example_process::{lines, wait_timeout};
pub(crate) use example_process::{wait_until_refused, IO, STARTUP};

/// The examples these tests run (built together, once).
const EXAMPLES: &[&str] = &[
    "axum",
    "hyper",
    "tonic",
    "tls",
    "unix",
    "listenfd",
    "emfile_tracing",
];

/// A running example; killed on drop if it is still running.
pub(crate) struct Example {
    name: &'static str,
    pub(crate) child: Child,
    /// What followed "listening on " in its first line.
    pub(crate) listening: String,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
    stderr_seen: Vec<String>,
}

/// How an example ended.
pub(crate) struct Exit {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<String>,
    pub(crate) stderr: Vec<String>,
}

impl Example {
    /// Start example `name` with `args` and `env`, and wait for its "listening on ..." line.
    pub(crate) fn start(name: &'static str, args: &[&str], env: &[(&str, &str)]) -> Example {
        Example::spawn(name, Command::new(example(name)).args(args), env)
    }

    /// Start a prepared command that runs example `name` (possibly through a wrapper).
    pub(crate) fn spawn(
        name: &'static str,
        command: &mut Command,
        env: &[(&str, &str)],
    ) -> Example {
        let mut child = command
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run example {name}: {e}"));
        let mut example = Example {
            name,
            stdout: lines(child.stdout.take().unwrap()),
            stderr: lines(child.stderr.take().unwrap()),
            child,
            listening: String::new(),
            stdout_seen: Vec::new(),
            stderr_seen: Vec::new(),
        };
        let first = example.wait_stdout("listening on ", STARTUP);
        example.listening = first["listening on ".len()..].trim().to_owned();
        example
    }

    /// `listening` as a loopback socket address (anything after the address is ignored).
    pub(crate) fn addr(&self) -> SocketAddr {
        let addr: SocketAddr = self
            .listening
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{}: not an address: {:?}", self.name, self.listening));
        assert!(addr.ip().is_loopback(), "{addr}");
        addr
    }

    /// Wait at most `within` for a stdout line starting with `prefix`.
    pub(crate) fn wait_stdout(&mut self, prefix: &str, within: Duration) -> String {
        let name = self.name;
        wait_line(
            name,
            "stdout",
            &self.stdout,
            &mut self.stdout_seen,
            within,
            |l| l.starts_with(prefix),
        )
    }

    /// Wait at most `within` for a stderr line containing `needle`.
    pub(crate) fn wait_stderr(&mut self, needle: &str, within: Duration) -> String {
        let name = self.name;
        wait_line(
            name,
            "stderr",
            &self.stderr,
            &mut self.stderr_seen,
            within,
            |l| l.contains(needle),
        )
    }

    pub(crate) fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) takes no pointers. `pid` is our child, which has not been waited for
        // (only `wait_exit` and `Drop` do that, and both end the `Example`), so it cannot have
        // been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Wait at most `within` for the example to exit, and collect what it printed.
    pub(crate) fn wait_exit(mut self, within: Duration) -> Exit {
        let status = wait_timeout(&mut self.child, within)
            .unwrap_or_else(|| panic!("{} did not exit within {within:?}", self.name));
        let mut stdout = std::mem::take(&mut self.stdout_seen);
        stdout.extend(self.stdout.iter()); // ends: the pipe closed with the process
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        stderr.extend(self.stderr.iter());
        Exit {
            status,
            stdout,
            stderr,
        }
    }
}

fn wait_line(
    name: &str,
    which: &str,
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    within: Duration,
    matches: impl Fn(&str) -> bool,
) -> String {
    if let Some(line) = seen.iter().find(|l| matches(l)) {
        return line.clone();
    }
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if matches(&line) {
                    return line;
                }
            }
            Err(e) => panic!(
                "{name}: no such line on {which} within {within:?} ({e}); it printed:\n{}",
                seen.join("\n")
            ),
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // No-ops once the child has been waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            self.stderr_seen.extend(self.stderr.try_iter());
            eprintln!(
                "--- {} stderr ---\n{}",
                self.name,
                self.stderr_seen.join("\n")
            );
        }
    }
}

/// What the examples print on exit (`ShutdownReport`'s `Display`): "shutdown: F ended and C
/// cancelled after the signal (...); totals: key=value ...".
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) finished: u64,
    pub(crate) cancelled: u64,
    pub(crate) totals: HashMap<String, u64>,
}

impl Exit {
    pub(crate) fn report(&self) -> Report {
        let line = self
            .stdout
            .iter()
            .find_map(|l| l.strip_prefix("shutdown: "))
            .unwrap_or_else(|| panic!("no stats line: {self:?}"));
        let (summary, totals) = line.split_once("; totals: ").expect(line);
        // "F ended and C cancelled (N open when the port closed, ...)": F, then C, then maybe
        // more (the phases' counts).
        let numbers: Vec<u64> = summary
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [finished, cancelled, ..] = numbers[..] else {
            panic!("expected two counts: {line}")
        };
        Report {
            finished,
            cancelled,
            totals: parse_totals(totals),
        }
    }

    pub(crate) fn assert_success(&self) {
        assert!(self.status.success(), "{self:?}");
    }
}

/// `key=value` pairs, as `StatsSnapshot`'s `Display` writes them.
pub(crate) fn parse_totals(totals: &str) -> HashMap<String, u64> {
    totals
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Building

/// The path of example `name`, built by the first caller with the test binary's profile.
pub(crate) fn example(name: &str) -> PathBuf {
    example_process::example(EXAMPLES, name)
}
