//! `from_env` in a child process (this test binary, run again) that inherits sockets at
//! descriptors 3 and up, as systemd or `systemfd` pass them.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use staunch::handover::{from_env, HandoverError, Listener, SuccessorCommand};

/// Set in the child's environment: run `child` for real.
const CHILD: &str = "STAUNCH_TEST_FROM_ENV_CHILD";
/// Set in the child's environment: say what `SuccessorCommand` set up, and say `ready`.
const CHECK_EXEC: &str = "STAUNCH_TEST_FROM_ENV_CHECK_EXEC";
/// Set in the child's environment: take the sockets (after breaking the first one if the value
/// is `break`), start a long-lived process of its own, and exit without being ready.
const LEAVE_A_CHILD: &str = "STAUNCH_TEST_FROM_ENV_LEAVE_A_CHILD";

/// The child: print what `from_env` returned, and answer one client on each TCP listener.
#[test]
fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    if let Some(mode) = std::env::var_os(LEAVE_A_CHILD) {
        leave_a_child(mode == "break");
        return;
    }
    if std::env::var_os(CHECK_EXEC).is_some() {
        let pid = std::env::var("LISTEN_PID").ok();
        let matches = pid.as_deref() == Some(std::process::id().to_string().as_str());
        println!("child: LISTEN_PID is this process: {matches}");
        let n: RawFd = std::env::var("LISTEN_FDS").unwrap().parse().unwrap();
        println!(
            "child: LISTEN_FDNAMES={}",
            std::env::var("LISTEN_FDNAMES").unwrap()
        );
        // SAFETY: F_GETFD reads the descriptor's flags; no memory is passed.
        let inherited = (3..3 + n).all(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == 0);
        println!("child: open and not close-on-exec: {inherited}");
    }
    match from_env() {
        Err(e) => println!("child: error: {e}"),
        Ok((listeners, _ready)) if listeners.is_empty() => println!("child: none"),
        Ok((listeners, ready)) => {
            if std::env::var_os(CHECK_EXEC).is_some() {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(ready.ready())
                    .unwrap();
            }
            for (name, listener) in listeners {
                println!("child: {name} {:?}", listener.kind());
                if let Listener::Tcp(listener) = listener {
                    listener.set_nonblocking(false).unwrap();
                    let (mut served, _) = listener.accept().unwrap();
                    served.write_all(b"from the child").unwrap();
                }
            }
        }
    }
}

/// A successor that starts a process of its own (which outlives it), then exits without being
/// ready; with `broken`, `from_env` fails first (descriptor 3 is not a socket any more).
fn leave_a_child(broken: bool) {
    if broken {
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: dup2 between descriptors; 3 is this process's to replace.
        assert_eq!(unsafe { libc::dup2(null.as_raw_fd(), 3) }, 3);
    }
    let taken = from_env();
    // Left running on purpose: it outlives this process, and the test kills it by its pid.
    #[allow(clippy::zombie_processes)]
    let sleeper = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    println!("child: sleeper {}", sleeper.id());
    match taken {
        Ok(_) => println!("child: taken"),
        Err(e) => println!("child: error: {e}"),
    }
}

/// Wait at most `limit` for `child` to exit.
pub(crate) fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run `child` with `fds` at descriptors 3, 4, ... and `env`; its output.
fn run_child(fds: &[RawFd], env: &[(&str, &str)]) -> String {
    let fds = fds.to_vec();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "from_env::child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    assert!(fds.len() <= 8);
    // SAFETY: between fork and exec the closure calls only fcntl and dup2, which are
    // async-signal-safe, and allocates nothing. Each descriptor is first duplicated above 100,
    // so that placing one at 3 cannot overwrite another not placed yet.
    unsafe {
        command.pre_exec(move || {
            let mut high = [0; 8];
            for (i, &fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(fd, libc::F_DUPFD, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &fd) in high[..fds.len()].iter().enumerate() {
                // dup2 clears close-on-exec on the target.
                if libc::dup2(fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("the child exits");
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    // The test harness prints its own text around ours.
    out.lines()
        .filter_map(|l| Some(l.split_once("child: ")?.1))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn named_sockets_passed_without_a_pid_are_taken() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let path = std::env::temp_dir().join(format!("staunch-from-env-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Queued before the child exists: the child accepts it.
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let out = run_child(
        &[tcp.as_raw_fd(), unix.as_raw_fd()],
        &[
            ("LISTEN_FDS", "2"),
            ("LISTEN_PID", ""),
            ("LISTEN_FDNAMES", "web:admin"),
        ],
    );
    assert_eq!(out, "web Tcp\nadmin Unix");
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "from the child");
    let _ = std::fs::remove_file(path);
}

#[test]
fn sockets_for_another_pid_are_ignored() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run_child(
        &[tcp.as_raw_fd()],
        &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
    );
    assert_eq!(out, "none");
}

#[test]
fn a_passed_descriptor_that_is_not_a_listener_is_an_error() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let out = run_child(&[file.as_raw_fd()], &[("LISTEN_FDS", "1")]);
    assert_eq!(out, "error: `unknown` is not a socket");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = run_child(
        &[udp.as_raw_fd()],
        &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "dns")],
    );
    assert_eq!(
        out,
        "error: socket `dns` is an IPv4 datagram socket, not a TCP or Unix stream listener"
    );
}

#[test]
fn a_count_beyond_the_open_descriptors_is_an_invalid_env() {
    // Nothing at 3 and up: the count is checked before anything is allocated for it (a count
    // of a billion used to allocate 24 GB and abort).
    let out = run_child(&[], &[("LISTEN_FDS", "1000000000")]);
    assert_eq!(
        out,
        "error: LISTEN_FDS=\"1000000000\": more descriptors than are open (the last is not)"
    );
}

/// The old process's side of inheritance: `SuccessorCommand` starts the new process with the
/// sockets at 3, 4, ..., the variables `from_env` (and `sd_listen_fds`) want, and a handshake
/// that says when the new process is ready.
#[tokio::test]
async fn successor_command_passes_sockets_that_from_env_takes() {
    use std::os::fd::AsFd as _;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let path = std::env::temp_dir().join(format!("staunch-exec-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Queued before the child exists: the child accepts it.
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let mut successor = SuccessorCommand::new(
        std::env::current_exe().unwrap(),
        &[("web", tcp.as_fd()), ("admin", unix.as_fd())],
    )
    .unwrap();
    successor
        .command()
        .args([
            "--exact",
            "from_env::child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env(CHECK_EXEC, "1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let (mut child, ready) = successor.spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(30), ready.wait())
        .await
        .expect("ready in time")
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("the child exits");
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    let out: Vec<&str> = out
        .lines()
        .filter_map(|l| Some(l.split_once("child: ")?.1))
        .collect();
    assert_eq!(
        out,
        [
            "LISTEN_PID is this process: true",
            "LISTEN_FDNAMES=web:admin:staunch.ready",
            "open and not close-on-exec: true",
            "web Tcp",
            "admin Unix"
        ]
    );
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "from the child");
    let _ = std::fs::remove_file(path);
}

/// A new process that exits without saying it is ready: the wait fails at once, not at a
/// timeout.
#[tokio::test]
async fn a_successor_that_exits_before_ready_fails_the_wait() {
    use std::os::fd::AsFd as _;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut successor = SuccessorCommand::new("true", &[("web", tcp.as_fd())]).unwrap();
    successor.command().stdin(Stdio::null());
    let (mut child, ready) = successor.spawn().unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), ready.wait())
        .await
        .expect("the wait ends when the child exits");
    assert!(
        matches!(waited, Err(HandoverError::SuccessorGone)),
        "{waited:?}"
    );
    assert!(child.wait().unwrap().success());
}

/// The successor's own children do not inherit the handshake: the wait fails when the
/// successor exits, not when its last child does; also when its `from_env` failed.
#[tokio::test]
async fn a_successor_s_child_does_not_hold_up_the_wait() {
    use std::os::fd::AsFd as _;
    for (mode, said) in [("ok", "taken"), ("break", "error: `web` is not a socket")] {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut successor =
            SuccessorCommand::new(std::env::current_exe().unwrap(), &[("web", tcp.as_fd())])
                .unwrap();
        successor
            .command()
            .args([
                "--exact",
                "from_env::child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env(LEAVE_A_CHILD, mode)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let (mut child, ready) = successor.spawn().unwrap();
        // The sleeper lives 30 s; the successor exits at once.
        let waited = tokio::time::timeout(Duration::from_secs(10), ready.wait()).await;
        let mut stdout = child.stdout.take().unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("the child exits");
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        let out: Vec<&str> = out
            .lines()
            .filter_map(|l| Some(l.split_once("child: ")?.1))
            .collect();
        let sleeper: libc::pid_t = out[0].strip_prefix("sleeper ").unwrap().parse().unwrap();
        // SAFETY: kill sends a signal to the sleeper this test's child started.
        unsafe { libc::kill(sleeper, libc::SIGKILL) };
        assert!(status.success(), "{status}: {out:?}");
        assert_eq!(out[1], said, "{mode}");
        let waited = waited.unwrap_or_else(|_| panic!("{mode}: the wait outlived the successor"));
        assert!(
            matches!(waited, Err(HandoverError::SuccessorGone)),
            "{mode}: {waited:?}"
        );
    }
}

#[test]
fn successor_command_checks_the_sockets() {
    use std::os::fd::AsFd as _;
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = SuccessorCommand::new("true", &[("dns", udp.as_fd())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "socket `dns` is an IPv4 datagram socket, not a TCP or Unix stream listener"
    );
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = SuccessorCommand::new("true", &[("a:b", tcp.as_fd())]).unwrap_err();
    assert!(err.to_string().contains("`:`"), "{err}");
    let err = SuccessorCommand::new("true", &[("staunch.ready", tcp.as_fd())]).unwrap_err();
    assert!(matches!(err, HandoverError::InvalidName { .. }), "{err:?}");
}
