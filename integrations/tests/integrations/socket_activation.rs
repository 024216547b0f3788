//! examples/listenfd.rs started the way systemd starts a socket-activated service: the listening
//! socket as fd 3, `LISTEN_FDS=1`, and `LISTEN_PID` set to the service's own pid (by a shell that
//! then `exec`s the example, keeping its pid).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use crate::harness::{example, Example, IO};

/// `GRACE` in examples/listenfd.rs.
const GRACE: Duration = Duration::from_secs(5);

/// The example run through `sh -c 'LISTEN_PID=$$ exec example 127.0.0.1:0'` with `listener` as
/// fd 3 in the child, and `LISTEN_FDS=1` (and `LISTEN_PID_OVERRIDE`, if given, instead of `$$`).
fn activate(listener: &TcpListener, pid_override: Option<&str>) -> Example {
    let script = match pid_override {
        None => r#"LISTEN_PID=$$ exec "$0" "$@""#.to_owned(),
        Some(pid) => format!(r#"LISTEN_PID={pid} exec "$0" "$@""#),
    };
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", &script])
        .arg(example("listenfd"))
        .arg("127.0.0.1:0");
    let fd = listener.as_raw_fd();
    // SAFETY: runs in the child between fork and exec, calling only async-signal-safe functions
    // (dup2, fcntl) on a descriptor the parent keeps open until `spawn` returns; no allocation,
    // no locks.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                // Already fd 3: only clear close-on-exec, which dup2 would have done.
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags == -1 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Example::spawn("listenfd", &mut command, &[("LISTEN_FDS", "1")])
}

fn assert_echo(addr: SocketAddr, line: &str) {
    let mut stream = TcpStream::connect_timeout(&addr, IO).unwrap();
    stream.set_read_timeout(Some(IO)).unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut echoed = String::new();
    BufReader::new(stream).read_line(&mut echoed).unwrap();
    assert_eq!(echoed, format!("{line}\n"));
}

#[test]
fn listenfd_serves_on_the_socket_passed_as_fd_3() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A client connects before the service has started: it waits in the socket's backlog,
    // which is the point of socket activation.
    let mut early = TcpStream::connect_timeout(&addr, IO).unwrap();
    early.set_read_timeout(Some(IO)).unwrap();

    let server = activate(&listener, None);
    // Only the example holds the socket now.
    drop(listener);
    assert_eq!(
        server.listening,
        format!("{addr} (passed by the service manager)")
    );
    early.write_all(b"I was here first\n").unwrap();
    let mut echoed = String::new();
    BufReader::new(&mut early).read_line(&mut echoed).unwrap();
    assert_eq!(echoed, "I was here first\n");
    drop(early);
    assert_echo(addr, "later");

    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(GRACE * 2);
    exit.assert_success();
    let t = exit.report().totals;
    assert_eq!((t["accepted"], t["finished"]), (2, 2), "{exit:?}");
    // The socket closed with the example.
    assert!(TcpStream::connect_timeout(&addr, IO).is_err());
}

#[test]
fn listenfd_binds_its_own_socket_when_the_passed_one_is_for_another_process() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // LISTEN_PID names another process (pid 1): the sockets are not ours, so the example must
    // ignore fd 3 and bind the address it was given.
    let server = activate(&listener, Some("1"));
    let ours = listener.local_addr().unwrap();
    assert!(
        server.listening.ends_with("(bound: no socket was passed)"),
        "{}",
        server.listening
    );
    let addr = server.addr();
    assert_ne!(addr, ours);
    assert_echo(addr, "fallback");
    server.signal(libc::SIGTERM);
    server.wait_exit(GRACE * 2).assert_success();
}
