//! examples/unix.rs with `std::os::unix::net::UnixStream` clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Example, IO};

/// `GRACE` in examples/unix.rs.
const GRACE: Duration = Duration::from_secs(5);

fn socket_path(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("staunch-{test}-{}.sock", std::process::id()))
}

fn connect(path: &Path) -> (BufReader<UnixStream>, UnixStream) {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(IO)).unwrap();
    stream.set_write_timeout(Some(IO)).unwrap();
    (BufReader::new(stream.try_clone().unwrap()), stream)
}

fn assert_echo(client: &mut (BufReader<UnixStream>, UnixStream), line: &str) {
    client.1.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut echoed = String::new();
    client.0.read_line(&mut echoed).unwrap();
    assert_eq!(echoed, format!("{line}\n"));
}

#[test]
fn unix_socket_echoes_and_drains_on_sigterm() {
    let path = socket_path("unix-echo");
    // A stale socket file from an earlier run, whose listener is gone.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let server = Example::start("unix", &[path.to_str().unwrap()], &[]);
    assert_eq!(Path::new(&server.listening), path);

    const CLIENTS: usize = 6;
    let barrier = Barrier::new(CLIENTS);
    thread::scope(|s| {
        for c in 0..CLIENTS {
            let (barrier, path) = (&barrier, &path);
            s.spawn(move || {
                let mut client = connect(path);
                assert_echo(&mut client, &format!("client {c} says hello"));
                barrier.wait(); // all connected at once
                assert_echo(&mut client, &format!("client {c} says goodbye"));
            });
        }
    });

    // One client stays connected through the signal, idle: it is closed, not cut.
    let mut idle = connect(&path);
    assert_echo(&mut idle, "still here");
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(GRACE * 3);
    exit.assert_success();
    let report = exit.report();
    assert_eq!((report.finished, report.cancelled), (1, 0), "{exit:?}");
    let t = &report.totals;
    assert_eq!((t["accepted"], t["finished"]), (7, 7), "{exit:?}");
    assert_closed(&mut idle);
    // The example removed its socket file.
    assert!(!path.exists(), "{} left behind", path.display());
}

/// The server closed `client`: end of stream, nothing more to read.
fn assert_closed(client: &mut (BufReader<UnixStream>, UnixStream)) {
    let mut rest = Vec::new();
    match client.0.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => panic!("expected end of stream: {e}"),
    }
}

/// At SIGINT the example closes an idle client at once, through its `Conn`, and exits long
/// before its grace period would end. (An example that ignores the handle, as one echoing with
/// `tokio::io::copy` does, holds the client until the grace period ends and then cuts it: the
/// client's read returns after `GRACE`, and the bounds below fail.)
#[test]
fn unix_closes_an_idle_client_at_once_on_sigint() {
    const AT_ONCE: Duration = Duration::from_secs(1);
    let path = socket_path("unix-idle");
    let server = Example::start("unix", &[path.to_str().unwrap()], &[]);
    // Served once, so it is surely a connection of the server's (not in the backlog); then idle.
    let mut idle = connect(&path);
    assert_echo(&mut idle, "and now I say nothing");

    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    assert_closed(&mut idle); // bounded by the read timeout, `IO`, twice `GRACE`
    let closed = signalled.elapsed();
    let exit = server.wait_exit(GRACE * 2);
    let exited = signalled.elapsed();
    exit.assert_success();
    assert!(closed < AT_ONCE, "closed {closed:?} after SIGINT: {exit:?}");
    assert!(exited < AT_ONCE, "exited {exited:?} after SIGINT: {exit:?}");
    let report = exit.report();
    assert_eq!((report.finished, report.cancelled), (1, 0), "{exit:?}");
    assert!(!path.exists(), "{} left behind", path.display());
}
