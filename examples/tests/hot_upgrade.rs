//! The hot_upgrade example under load across upgrades: the port never refuses or resets a
//! connection, connections open at an upgrade finish on the old process, and the serving pid
//! changes each time. Loopback only; every wait is bounded.
#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "../../tests/support/example_process.rs"]
#[allow(dead_code)] // shared; this binary uses some of it
mod example_process;
use example_process::{lines, wait_timeout, IO, STARTUP};

fn example(name: &str) -> std::path::PathBuf {
    example_process::example(&["hot_upgrade"], name)
}

/// Whether process `pid` has exited (gone, or a zombie nobody reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Sends SIGKILL to every process it holds when dropped, so that a failing test leaves none.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !exited(pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// `GRACE` in examples/hot_upgrade.rs.
const GRACE: Duration = Duration::from_secs(10);
const UPGRADES: usize = 3;
const LONG_LIVED: usize = 20;
/// After an upgrade, each long-lived connection echoes this many lines, this far apart, on the
/// draining process, then closes: well within `GRACE`.
const LONG_LIVED_ROUNDS: usize = 5;
const LONG_LIVED_PAUSE: Duration = Duration::from_millis(200);
/// Short connections a second the load must reach.
const MIN_RATE: f64 = 200.0;
const LOAD_THREADS: usize = 4;
/// Pause between one thread's connections: at most ~LOAD_THREADS * 1000/3 a second.
const PACE: Duration = Duration::from_millis(3);

/// What the short connections saw.
#[derive(Debug, Default)]
struct Load {
    ok: u64,
    refused: u64,
    reset: u64,
    other: Vec<String>,
    elapsed: Duration,
}

/// Short connections (connect, echo a line, close) from several threads until `stop`.
fn short_connections(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<Load> {
    thread::spawn(move || {
        let start = Instant::now();
        let workers: Vec<_> = (0..LOAD_THREADS)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut load = Load::default();
                    while !stop.load(Ordering::Relaxed) {
                        match echo_once(addr) {
                            Ok(()) => load.ok += 1,
                            Err(e) if e.kind() == ErrorKind::ConnectionRefused => load.refused += 1,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                                ) =>
                            {
                                load.reset += 1
                            }
                            Err(e) => load.other.push(e.to_string()),
                        }
                        thread::sleep(PACE);
                    }
                    load
                })
            })
            .collect();
        let mut total = Load::default();
        for worker in workers {
            let load = worker.join().unwrap();
            total.ok += load.ok;
            total.refused += load.refused;
            total.reset += load.reset;
            total.other.extend(load.other);
        }
        total.elapsed = start.elapsed();
        total
    })
}

fn echo_once(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, IO)?;
    stream.set_read_timeout(Some(IO))?;
    stream.write_all(b"ping\n")?;
    let mut reply = [0; 5];
    stream.read_exact(&mut reply)?;
    assert_eq!(&reply, b"ping\n");
    Ok(())
}

/// A connection that stays open across an upgrade.
struct LongLived(TcpStream);

impl LongLived {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, IO).expect("connect");
        stream.set_read_timeout(Some(IO)).unwrap();
        LongLived(stream)
    }

    fn echo(&mut self, line: &str) {
        self.0.write_all(line.as_bytes()).expect("write");
        let mut reply = vec![0; line.len()];
        self.0.read_exact(&mut reply).expect("read the echo");
        assert_eq!(reply, line.as_bytes());
    }
}

fn next_line(stdout: &Receiver<String>, waiting_for: &str) -> String {
    stdout
        .recv_timeout(STARTUP)
        .unwrap_or_else(|e| panic!("no line ({waiting_for}): {e}"))
}

/// `listening on ADDR pid PID[ (took over from OLD)]`: the address, the pid, the old pid.
fn parse_listening(line: &str) -> (SocketAddr, u32, Option<u32>) {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields[..] {
        ["listening", "on", addr, "pid", pid] => {
            (addr.parse().unwrap(), pid.parse().unwrap(), None)
        }
        ["listening", "on", addr, "pid", pid, "(took", "over", "from", old] => (
            addr.parse().unwrap(),
            pid.parse().unwrap(),
            Some(old.trim_end_matches(')').parse().unwrap()),
        ),
        _ => panic!("not a listening line: {line:?}"),
    }
}

/// `drained: N finished, M cancelled`.
fn parse_drained(line: &str) -> (u64, u64) {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields[..] {
        ["drained:", n, "finished,", m, "cancelled"] => (n.parse().unwrap(), m.parse().unwrap()),
        _ => panic!("not a drained line: {line:?}"),
    }
}

fn wait_exited(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} still runs after {limit:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[allow(clippy::zombie_processes)] // waited for after the first upgrade; killed on a panic
fn three_upgrades_under_load_refuse_and_reset_nothing() {
    let mut first = Command::new(example("hot_upgrade"))
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hot_upgrade");
    let mut pids = KillOnDrop(vec![first.id()]);
    // Every generation writes to this pipe: the new processes inherit it.
    let stdout = lines(first.stdout.take().unwrap());
    let (addr, mut serving, from) = parse_listening(&next_line(&stdout, "the first process"));
    assert_eq!((serving, from), (first.id(), None));

    let stop = Arc::new(AtomicBool::new(false));
    let load = short_connections(addr, stop.clone());
    thread::sleep(Duration::from_millis(300)); // some load on the first process alone

    for upgrade in 0..UPGRADES {
        let mut long_lived: Vec<LongLived> = (0..LONG_LIVED)
            .map(|i| {
                let mut c = LongLived::connect(addr);
                c.echo(&format!("upgrade {upgrade} connection {i} before\n"));
                c
            })
            .collect();

        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(
            unsafe { libc::kill(serving as libc::pid_t, libc::SIGHUP) },
            0
        );
        let line = next_line(&stdout, "the new process");
        let took_over_at = Instant::now();
        let (new_addr, new, from) = parse_listening(&line);
        pids.0.push(new);
        assert_eq!((new_addr, from), (addr, Some(serving)), "{line}");
        assert_ne!(new, serving, "the serving pid must change");

        // The old process drains: its connections are still served, for a while, until they
        // end. Meanwhile the new process takes the short connections.
        for round in 0..LONG_LIVED_ROUNDS {
            for (i, c) in long_lived.iter_mut().enumerate() {
                c.echo(&format!("upgrade {upgrade} connection {i} round {round}\n"));
            }
            thread::sleep(LONG_LIVED_PAUSE);
        }
        drop(long_lived);
        let drained = next_line(&stdout, "the old process's drain report");
        let (finished, cancelled) = parse_drained(&drained);
        assert!(
            took_over_at.elapsed() < GRACE,
            "drained after {:?}",
            took_over_at.elapsed()
        );
        assert_eq!(cancelled, 0, "upgrade {upgrade}: {drained}");
        assert!(
            finished >= LONG_LIVED as u64,
            "upgrade {upgrade}: {drained}"
        );

        if upgrade == 0 {
            let status = wait_timeout(&mut first, IO).expect("the first process exits");
            assert!(status.success(), "{status}");
        }
        wait_exited(serving, IO);
        // Only the new process is left to serve.
        echo_once(addr).expect("the new process serves");
        serving = new;
        thread::sleep(Duration::from_millis(300)); // load on the new process alone
    }

    stop.store(true, Ordering::Relaxed);
    let load = load.join().unwrap();
    let rate = load.ok as f64 / load.elapsed.as_secs_f64();
    eprintln!("short connections: {load:?}, {rate:.0}/s");
    assert_eq!((load.refused, load.reset), (0, 0), "{load:?}");
    assert!(load.other.is_empty(), "{load:?}");
    assert!(rate >= MIN_RATE, "{rate:.0} connections/s, want {MIN_RATE}");

    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(serving as libc::pid_t, libc::SIGTERM) },
        0
    );
    let (_, cancelled) = parse_drained(&next_line(&stdout, "the last drain report"));
    assert_eq!(cancelled, 0);
    wait_exited(serving, IO);
}

/// Control: the load detects refusals, so the zero above means something. The server here
/// restarts the naive way, closing its listener and binding a new one.
#[test]
fn control_a_close_and_rebind_restart_refuses_connections() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let serve = |listener: std::net::TcpListener, stop: Arc<AtomicBool>| {
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let mut line = [0; 5];
                        if s.read_exact(&mut line).is_ok() {
                            let _ = s.write_all(&line);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        })
    };
    let old_stop = Arc::new(AtomicBool::new(false));
    let old = serve(listener, old_stop.clone());
    let load = short_connections(addr, stop.clone());
    thread::sleep(Duration::from_millis(200));
    old_stop.store(true, Ordering::Relaxed);
    old.join().unwrap(); // the listener is closed now
    thread::sleep(Duration::from_millis(200)); // the new process starts
    let new = serve(std::net::TcpListener::bind(addr).unwrap(), stop.clone());
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let load = load.join().unwrap();
    new.join().unwrap();
    assert!(load.refused + load.reset > 0, "{load:?}");
    assert!(load.ok > 0, "{load:?}");
}
