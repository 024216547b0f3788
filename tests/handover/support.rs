//! Building and running the hot_upgrade example as a child process, with bounded waits.
//! (A trimmed copy of tests/support/example_process.rs, so this binary stands alone.)

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The path of example `name`, built once with this test binary's profile. Quick when it is
/// up to date (cargo releases its build lock before running tests).
pub(crate) fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_example(name))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_example(name: &str) -> Result<PathBuf, String> {
    // This binary is <target>/<profile dir>/deps/<test>-<hash>; build with the same profile.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile = match exe
        .parent()
        .and_then(|deps| deps.parent())
        .and_then(|p| p.file_name())
        .and_then(|p| p.to_str())
    {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let mut command = Command::new(env!("CARGO"));
    // Variables cargo sets for this test process, not for a shell: dependencies' build
    // scripts that watch them (ring watches CARGO_MANIFEST_DIR and CARGO_PKG_*) would rebuild
    // on every switch between `cargo test` and a plain `cargo build`.
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
    let mut cargo = command
        .args(["build", "--example", name, "--profile", profile])
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
        return Err(format!("cargo build --example {name} took over {limit:?}"));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    if !status.success() {
        return Err(format!("cargo build --example {name}: {status}\n{stderr}"));
    }
    stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .find_map(|l| json_string(l, "executable"))
        .map(PathBuf::from)
        .ok_or_else(|| format!("cargo built no example {name}"))
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

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        let _ = pipe.read_to_string(&mut all);
        all
    })
}

/// Whether process `pid` has exited (gone, or a zombie nobody reaped yet).
pub(crate) fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Sends SIGKILL to every process it holds when dropped, so that a failing test leaves none.
#[derive(Default)]
pub(crate) struct KillOnDrop(pub(crate) Vec<u32>);

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
