//! Build the examples and run them as a user would: start the binary, read its
//! "listening on ADDR" line, talk to it over loopback, stop it with SIGTERM or SIGINT, and check
//! its exit status and the stats line it prints.
//!
//! `cargo test --test examples` does not build the examples, so the first test to need one runs
//! `cargo build --example echo` with this binary's profile (quick when they are
//! up to date; cargo releases its build lock before running tests). Every wait is bounded, and
//! a running example is killed when its test ends, pass or fail.
#![cfg(unix)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[path = "../../tests/support/example_process.rs"]
mod example_process;
use example_process::{lines, read_all, wait_timeout, wait_until_refused, IO, STARTUP};

/// `GRACE` in examples/echo.rs.
const ECHO_GRACE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// echo

#[test]
fn echo_serves_concurrent_clients_and_drains_on_sigterm() {
    let mut server = Example::start("echo", &[]);
    let addr = server.addr;

    // Eight clients, all connected at once (each has had a reply before the barrier), a few
    // lines each.
    const CLIENTS: usize = 8;
    let barrier = Barrier::new(CLIENTS);
    thread::scope(|s| {
        for c in 0..CLIENTS {
            let barrier = &barrier;
            s.spawn(move || {
                let mut client = LineClient::connect(addr);
                client.assert_echo(&format!("client {c} says hello"));
                barrier.wait();
                for l in 0..5 {
                    client.assert_echo(&format!("client {c} line {l}"));
                }
            });
        }
    });

    // One client stays connected through the signal.
    let mut lingering = LineClient::connect(addr);
    lingering.assert_echo("before the signal");

    server.signal(libc::SIGTERM);
    // The listening socket closes at once: new clients are refused, not left in the backlog.
    let probes_connected = wait_until_refused(addr);
    // The open connection is idle: it is told to close at once, not cut at the deadline.
    assert_eq!(lingering.read_line(), "", "expected end of stream");

    // Generous: `cancelled == 0` below is what shows it did not wait for the grace period.
    let exit = server.wait_exit(ECHO_GRACE * 3);
    assert!(exit.status.success(), "{exit:?}");
    let report = exit.report();
    let t = &report.totals;
    // Probes that connected before the listener closed may have been accepted too.
    let accepted = t["accepted"];
    assert!(
        (CLIENTS as u64 + 1..=CLIENTS as u64 + 1 + probes_connected).contains(&accepted),
        "accepted={accepted}, probes that connected: {probes_connected}: {exit:?}"
    );
    assert_eq!(t["connections"], accepted, "{exit:?}");
    assert_eq!(t["finished"], accepted, "{exit:?}");
    assert_eq!(report.cancelled, 0, "{exit:?}");
    assert!(
        report.finished >= 1,
        "the lingering client ended after the signal: {exit:?}"
    );
    for zero in [
        "failed",
        "panicked",
        "timed_out",
        "cancelled",
        "active",
        "connection_errors",
    ] {
        assert_eq!(t[zero], 0, "{zero}: {exit:?}");
    }
    assert!(t["peak_active"] >= CLIENTS as u64, "{exit:?}");
}

#[test]
fn echo_closes_an_idle_connection_at_once_on_sigint() {
    let mut server = Example::start("echo", &[]);
    let mut idle = LineClient::connect(server.addr);
    idle.assert_echo("I will never leave");

    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    let exit = server.wait_exit(ECHO_GRACE * 3);
    let took = signalled.elapsed();
    assert!(exit.status.success(), "{exit:?}");
    // Before the drain signal it took the whole grace period (5 s).
    assert!(
        took < Duration::from_millis(500),
        "exited {took:?} after SIGINT: {exit:?}"
    );
    let report = exit.report();
    assert_eq!((report.finished, report.cancelled), (1, 0), "{exit:?}");
    // The client sees its connection closed.
    assert_eq!(idle.read_line(), "", "expected end of stream");
}

#[test]
fn echo_cuts_a_busy_connection_when_the_grace_period_ends() {
    let mut server = Example::start("echo", &[]);
    let mut busy = LineClient::connect(server.addr);
    busy.assert_echo("I send and never read");
    // Send until both directions' buffers are full: the server is stuck writing its reply, busy,
    // so the drain signal (heard only between reads) does not end it.
    busy.writer.set_nonblocking(true).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    // Full means no progress for a while: the server still echoes (and so reads) until its
    // replies fill our receive buffer and its send buffer.
    let mut sent = 0usize;
    let flood = Instant::now();
    let mut progress = Instant::now();
    while progress.elapsed() < Duration::from_millis(300) {
        match busy.writer.write(&chunk) {
            Ok(n) => {
                sent += n;
                progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("write: {e}"),
        }
        assert!(flood.elapsed() < IO, "still sending after {sent} bytes");
    }

    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    let exit = server.wait_exit(ECHO_GRACE * 3);
    let took = signalled.elapsed();
    assert!(exit.status.success(), "{exit:?}");
    assert!(
        took >= ECHO_GRACE - Duration::from_millis(500),
        "exited after {took:?}, before the grace period ended: {exit:?}"
    );
    let report = exit.report();
    assert_eq!((report.finished, report.cancelled), (0, 1), "{exit:?}");
    assert_eq!(report.totals["cancelled"], 1, "{exit:?}");
}

#[test]
fn echo_max_connections_from_env_holds_extra_clients_in_the_backlog() {
    let mut server = Example::start("echo", &[("MAX_CONNECTIONS", "1")]);
    let mut first = LineClient::connect(server.addr);
    first.assert_echo("first");

    // The second client connects (the kernel completes the handshake) but is not served...
    let mut second = LineClient::connect(server.addr);
    second.send("second");
    second
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0; 16];
    match second.reader.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the second client was served while the first was connected: {other:?}"),
    }
    // ...until the first one leaves.
    drop(first);
    second.reader.get_ref().set_read_timeout(Some(IO)).unwrap();
    assert_eq!(second.read_line(), "second\n");
    drop(second);

    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(ECHO_GRACE * 3);
    assert!(exit.status.success(), "{exit:?}");
    let t = exit.report().totals;
    assert_eq!(
        (t["accepted"], t["finished"], t["peak_active"]),
        (2, 2, 1),
        "{exit:?}"
    );
}

#[test]
fn echo_rejects_a_max_connections_that_is_not_a_positive_integer() {
    for bad in ["0", "many"] {
        let mut child = Command::new(example("echo"))
            .arg("127.0.0.1:0")
            .env("MAX_CONNECTIONS", bad)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = read_all(child.stderr.take().unwrap());
        let status = wait_timeout(&mut child, STARTUP).expect("the example did not exit");
        let stderr = stderr.join().unwrap();
        assert!(!status.success(), "MAX_CONNECTIONS={bad}: {status}");
        assert!(
            stderr.contains("MAX_CONNECTIONS"),
            "MAX_CONNECTIONS={bad}: {stderr}"
        );
    }
}

#[test]
fn echo_exits_cleanly_when_signalled_as_soon_as_it_listens() {
    // A signal right after "listening on" must be handled, not kill the process. (The example
    // installs its handlers before printing that line. One installed on first poll, as
    // `tokio::signal::ctrl_c()` does, leaves a window of microseconds that this test only
    // rarely hits: a control run with such a handler passed 20 times in 20.)
    let mut server = Example::start("echo", &[]);
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(IO);
    assert!(exit.status.success(), "{exit:?}");
    let report = exit.report();
    assert_eq!((report.finished, report.cancelled), (0, 0), "{exit:?}");
    assert_eq!(report.totals["accepted"], 0, "{exit:?}");
}

// ---------------------------------------------------------------------------------------------
// reuseport

#[test]
fn reuseport_serves_and_drains_on_sigint() {
    let mut server = Example::start("reuseport", &[]);
    let addr = server.addr;
    // Enough clients that every loop likely gets some (the kernel hashes each to one socket).
    const CLIENTS: usize = 16;
    thread::scope(|s| {
        for c in 0..CLIENTS {
            s.spawn(move || LineClient::connect(addr).assert_echo(&format!("client {c}")));
        }
    });
    let mut lingering = LineClient::connect(addr);
    lingering.assert_echo("before the signal");

    server.signal(libc::SIGINT);
    let probes_connected = wait_until_refused(addr);
    // The open connection is served through the grace period, on whichever loop has it.
    lingering.assert_echo("after the signal");
    drop(lingering);
    let exit = server.wait_exit(ECHO_GRACE + STARTUP);
    assert!(exit.status.success(), "{exit:?}");
    let report = exit.report();
    let t = &report.totals;
    // Merged over the loops. Probes that connected before the sockets closed may have been
    // accepted too.
    let accepted = t["accepted"];
    assert!(
        (CLIENTS as u64 + 1..=CLIENTS as u64 + 1 + probes_connected).contains(&accepted),
        "accepted={accepted}, probes that connected: {probes_connected}: {exit:?}"
    );
    assert_eq!(t["connections"], accepted, "{exit:?}");
    assert_eq!(t["finished"], accepted, "{exit:?}");
    assert_eq!((t["cancelled"], t["active"]), (0, 0), "{exit:?}");
    assert!(
        report.finished >= 1,
        "the lingering client ended after the signal: {exit:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Running an example

/// A running example; killed on drop if it is still running.
struct Example {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How an example ended.
struct Exit {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Example {
    /// Start `name` on 127.0.0.1:0 and read the address from its first line.
    fn start(name: &'static str, env: &[(&str, &str)]) -> Example {
        let mut child = Command::new(example(name))
            .arg("127.0.0.1:0")
            .env_remove("MAX_CONNECTIONS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run example {name}: {e}"));
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = Some(read_all(child.stderr.take().unwrap()));
        let mut example = Example {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
        };
        let first = example
            .stdout
            .recv_timeout(STARTUP)
            .unwrap_or_else(|e| panic!("{name}: no first line within {STARTUP:?}: {e}"));
        example.addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: expected `listening on ADDR`, got {first:?}"));
        assert!(example.addr.ip().is_loopback(), "{first}");
        example
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) takes no pointers. `pid` is our child, which has not been waited for
        // (only `wait_exit` and `Drop` do that, and both consume or end the `Example`), so it
        // cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Wait at most `within` for the example to exit, and collect what it printed.
    fn wait_exit(&mut self, within: Duration) -> Exit {
        let status = wait_timeout(&mut self.child, within).unwrap_or_else(|| {
            panic!("{} did not exit within {within:?} of the signal", self.name)
        });
        let stdout = self.stdout.iter().collect(); // ends: the pipe closed with the process
        let stderr = self.stderr.take().unwrap().join().unwrap();
        Exit {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // No-ops once the child has been waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(stderr) = self.stderr.take() {
            if thread::panicking() {
                eprintln!("--- {} stderr ---\n{}", self.name, stderr.join().unwrap());
            }
        }
    }
}

/// What the examples print on exit: "shutdown: F finished and C cancelled after the signal;
/// totals: key=value ...".
struct Report {
    finished: u64,
    cancelled: u64,
    totals: HashMap<String, u64>,
}

impl Exit {
    fn report(&self) -> Report {
        let line = self
            .stdout
            .iter()
            .find_map(|l| l.strip_prefix("shutdown: "))
            .unwrap_or_else(|| panic!("no stats line: {self:?}"));
        let (summary, totals) = line.split_once("; totals: ").expect(line);
        let words: Vec<&str> = summary.split_whitespace().collect();
        let number = |i: usize| -> u64 { words[i].parse().expect(line) };
        Report {
            finished: number(0),
            cancelled: number(3),
            totals: totals
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.parse().expect(line)))
                .collect(),
        }
    }
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

/// A client of the echo server, one line at a time.
struct LineClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> LineClient {
        let stream = TcpStream::connect_timeout(&addr, IO).unwrap();
        stream.set_read_timeout(Some(IO)).unwrap();
        stream.set_write_timeout(Some(IO)).unwrap();
        LineClient {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// One line, with its newline; empty at end of stream.
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(_) => line,
            // Cut connections may be reset rather than closed.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => line,
            Err(e) => panic!("read: {e}"),
        }
    }

    fn assert_echo(&mut self, line: &str) {
        self.send(line);
        assert_eq!(self.read_line(), format!("{line}\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Building

/// The examples these tests run (built together, once).
const EXAMPLES: &[&str] = &["echo", "reuseport"];

/// The path of example `name`, built by the first caller with the test binary's profile.
fn example(name: &str) -> PathBuf {
    example_process::example(EXAMPLES, name)
}
