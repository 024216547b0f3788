//! Child processes, `/proc` readers and resource limits (Linux).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server child: the same binary re-executed with `--role`.
pub(crate) struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Instant, String)>,
    pub(crate) pid: u32,
    pub(crate) port: u16,
    /// Open descriptors in the child when it printed READY.
    pub(crate) fds_at_ready: usize,
    /// When the parent read the READY line.
    pub(crate) ready_at: Instant,
}

impl ChildServer {
    /// Start `--role role args...` and wait (bounded) for its `READY <port> <fds>` line.
    pub(crate) fn spawn(role: &str, args: &[String]) -> ChildServer {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .arg("--role")
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server child");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let pid = child.id();
        let mut server = ChildServer {
            child,
            stdin,
            lines,
            pid,
            port: 0,
            fds_at_ready: 0,
            ready_at: Instant::now(),
        };
        let (at, line) = server
            .expect_line("READY", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("server child {role} {args:?} did not start"));
        let mut parts = line.split_whitespace().skip(1);
        server.port = parts.next().and_then(|p| p.parse().ok()).expect("port");
        server.fds_at_ready = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        server.ready_at = at;
        server
    }

    /// The next stdout line starting with `prefix`, with the instant the parent read it.
    pub(crate) fn expect_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Option<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.starts_with(prefix) => return Some((at, line)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Send one command line to the child's stdin.
    pub(crate) fn command(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    pub(crate) fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid)
    }

    pub(crate) fn cpu_ns(&self) -> u64 {
        cpu_ns(self.pid)
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }

    /// Kill (SIGKILL) and reap.
    pub(crate) fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stdin = None;
        self.stop();
    }
}

/// User + system CPU time of a whole process (all threads), in clock ticks, from
/// `/proc/<pid>/stat` fields 14 and 15.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    utime + stime
}

/// CPU time of a whole process in nanoseconds: the sum of `/proc/<pid>/task/*/schedstat`'s first
/// field (time on CPU), finer than `/proc/<pid>/stat`'s clock ticks.
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident set size from `/proc/<pid>/status` (`VmRSS`), KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of this process (`/proc/self/fd`, minus the directory handle itself).
pub(crate) fn own_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// Set this process's soft `RLIMIT_NOFILE`; `None` raises it to the hard limit. Returns the new
/// soft limit.
pub(crate) fn set_nofile(soft: Option<u64>) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid, initialised struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = soft.unwrap_or(lim.rlim_max).min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Date (UTC), CPU count and model, kernel: the header of every report.
pub(crate) fn machine() -> (String, usize, String, String) {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    (date, cpus, model, kernel)
}

/// Load average over the last minute: how busy the shared machine was.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
