//! Shared by the test binaries that run examples as child processes (examples/tests/examples.rs
//! and integrations/tests/integrations): building and locating the examples
//! of the package under test, bounded waits on a child, reading
//! its pipes, and probing a listener until it closes. Included with `#[path = ...] mod`.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Time for a built example to start and print its address.
pub(crate) const STARTUP: Duration = Duration::from_secs(60);
/// Time for one read or write on a loopback socket.
pub(crate) const IO: Duration = Duration::from_secs(10);

/// The path of example `name`, built by the first caller with the test binary's profile.
///
/// The first call builds all of `examples` (the examples this test binary runs; every call in
/// one binary passes the same list) in one cargo invocation.
pub(crate) fn example(examples: &[&str], name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<Vec<PathBuf>, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| build_examples(examples)).as_ref();
    let built = built.unwrap_or_else(|e| panic!("{e}"));
    built
        .iter()
        .find(|p| p.file_stem().is_some_and(|s| s == name))
        .unwrap_or_else(|| panic!("cargo built no example {name}: {built:?}"))
        .clone()
}

/// Build `examples` (quick when they are up to date, as after `cargo test`, which builds them;
/// cargo releases its build lock before running tests), returning the executables cargo reports,
/// so that wherever the target directory is (`CARGO_TARGET_DIR`, `build.target-dir`), the path
/// is the one cargo used.
fn build_examples(examples: &[&str]) -> Result<Vec<PathBuf>, String> {
    // This binary is <target>/<profile dir>/deps/<test>-<hash>; build with the same profile.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe.parent().and_then(|deps| deps.parent());
    let profile = match profile_dir
        .and_then(|p| p.file_name())
        .and_then(|p| p.to_str())
    {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let mut command = Command::new(env!("CARGO"));
    // Variables cargo sets for this test process, not for a shell: build scripts that watch
    // them (ring's watches CARGO_MANIFEST_DIR and CARGO_PKG_*) would rerun on every switch
    // between this build and a plain `cargo build` or `cargo test`.
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_PKG_")
            || var.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&&*var)
        {
            command.env_remove(&*var);
        }
    }
    command.arg("build");
    for name in examples {
        command.args(["--example", name]);
    }
    let what = format!("cargo build --example {}", examples.join(" --example "));
    let mut cargo = command
        .args(["--profile", profile])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = read_all(cargo.stdout.take().unwrap());
    let stderr = read_all(cargo.stderr.take().unwrap());
    let limit = Duration::from_secs(900);
    let Some(status) = wait_timeout(&mut cargo, limit) else {
        let _ = cargo.kill();
        let _ = cargo.wait();
        return Err(format!("{what} took over {limit:?}"));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    if !status.success() {
        return Err(format!("{what}: {status}\n{stderr}"));
    }
    Ok(stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|l| json_string(l, "executable"))
        .map(PathBuf::from)
        .collect())
}

/// The string value of `"key":"..."` in one line of cargo's JSON output.
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?), // paths only escape `"` and `\`
            c => value.push(c),
        }
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
        thread::sleep(Duration::from_millis(10));
    }
}

/// Each line of `pipe`, as it comes.
pub(crate) fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Everything `pipe` gives until it closes.
pub(crate) fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        let _ = pipe.read_to_string(&mut all);
        all
    })
}

/// Connect until the listener refuses, for at most a few seconds; returns how many probes
/// connected first (each is closed at once without a byte; the server may have accepted it).
pub(crate) fn wait_until_refused(addr: SocketAddr) -> u64 {
    let deadline = Instant::now() + IO;
    let mut connected = 0;
    loop {
        match TcpStream::connect_timeout(&addr, IO) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return connected,
            // The handshake completed into the backlog of a listener that closed just then.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect: {e}"),
            Ok(_) => connected += 1,
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
