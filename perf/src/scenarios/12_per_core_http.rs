//! Scenario 12: HTTP with one loop per core (`SO_REUSEPORT`): hyper "hello" served by
//! `listen::per_core` with in-task `listen`, by bare per-core current-thread loops, and by nginx
//! (`worker_processes auto`, `reuseport`, `return 200`) when its binary is found.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cpu_metric, rotated, strings, wrk, wrk_available};
use crate::report::{median, Report, Spec};
use crate::sys::{self, ChildServer};
use crate::Config;

const S: &str = "12 per-core HTTP";

/// `nginx` on the PATH, else Debian's `/usr/sbin/nginx` (not on a non-root PATH).
fn nginx_binary() -> Option<PathBuf> {
    ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).arg("-v").output().is_ok())
}

/// An nginx master and its workers, started from a config in a temporary folder.
struct Nginx {
    master: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    fn start(bin: &Path, round: usize) -> Result<Nginx, String> {
        let dir =
            std::env::temp_dir().join(format!("staunch-perf-nginx-{}-{round}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // A port the kernel just handed out and nobody holds now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("pick a port: {e}"))?
            .port();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let conf = format!(
            "{}worker_processes auto;\ndaemon off;\nmaster_process on;\nerror_log stderr;\npid {}/nginx.pid;\nevents {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port} reuseport;\n    location / {{ return 200 \"hello\"; }}\n  }}\n}}\n",
            if root { "user root;\n" } else { "" },
            dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).map_err(|e| format!("write {}: {e}", path.display()))?;
        let master = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut nginx = Nginx { master, dir, port };
        // Ready once it accepts and every worker is up (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = std::thread::available_parallelism().map_or(1, |n| n.get());
        loop {
            if let Ok(Some(status)) = nginx.master.try_wait() {
                return Err(format!("nginx exited at start: {status}"));
            }
            let accepts = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if accepts && nginx.workers().len() >= want {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx not ready in 10 s (accepts: {accepts}, workers: {})",
                    nginx.workers().len()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's children: the workers (found by scanning `/proc` for the parent pid).
    fn workers(&self) -> Vec<u32> {
        let master = self.master.id();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
                    after.split_whitespace().nth(1) == Some(master.to_string().as_str())
                })
            })
            .collect()
    }

    /// CPU time of the master and all its workers, nanoseconds.
    fn cpu_ns(&self) -> u64 {
        sys::cpu_ns(self.master.id()) + self.workers().into_iter().map(sys::cpu_ns).sum::<u64>()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let workers = self.workers();
        // SIGTERM: the master stops its workers and exits; bounded, then SIGKILL everything.
        // SAFETY: kill(2) on pids this process started (the master) or the master's children.
        unsafe { libc::kill(self.master.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.master.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for w in self.workers().into_iter().chain(workers) {
            // SAFETY: as above; a pid already gone gives ESRCH.
            unsafe { libc::kill(w as i32, libc::SIGKILL) };
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server of this scenario: our child process or nginx.
enum Server {
    Child(ChildServer),
    Nginx(Nginx),
}

impl Server {
    fn port(&self) -> u16 {
        match self {
            Server::Child(c) => c.port,
            Server::Nginx(n) => n.port,
        }
    }
    fn cpu_ns(&self) -> u64 {
        match self {
            Server::Child(c) => c.cpu_ns(),
            Server::Nginx(n) => n.cpu_ns(),
        }
    }
}

pub(crate) fn run(cfg: &Config, rep: &mut Report) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\n== {S}: wrk -t{} -c{} against {n} loops with SO_REUSEPORT (one per core), keep-alive and Connection: close alternating",
        cfg.threads,
        64.max(cfg.threads)
    );
    if !wrk_available() {
        println!("  wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu); skipping scenario 12");
        rep.notes
            .push("Scenario 12 skipped: wrk is not installed (`apt-get install -y wrk`).".into());
        return;
    }
    let staunch = format!("staunch per_core: listen × {n} (current-thread each)");
    let bare = format!("bare accept + spawn × {n} (current-thread each)");
    let nginx_name = format!("nginx, worker_processes auto ({n}), reuseport");
    let nginx = nginx_binary();
    let mut contenders = vec!["percore-staunch", "percore-bare"];
    match &nginx {
        Some(_) => contenders.push("nginx"),
        None => {
            println!("  nginx not found: install it with `apt-get install -y nginx` (Debian/Ubuntu); scenario 12 runs without it");
            rep.notes.push(
                "Scenario 12: nginx is not installed (`apt-get install -y nginx`), so it ran without nginx.".into(),
            );
        }
    }
    let name = |c: &str| match c {
        "percore-staunch" => staunch.clone(),
        "percore-bare" => bare.clone(),
        _ => nginx_name.clone(),
    };
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds + 3
    };
    let modes = [
        (false, "requests per second, keep-alive"),
        (true, "requests per second, Connection: close"),
    ];
    let mut failures = Vec::new();
    for round in 0..rounds {
        // Alternate which mode goes first, and the order of the servers, every round.
        let order = if round % 2 == 0 {
            [modes[0], modes[1]]
        } else {
            [modes[1], modes[0]]
        };
        for (close, metric) in order {
            for c in rotated(&contenders, round) {
                let server = if c == "nginx" {
                    match Nginx::start(nginx.as_deref().unwrap(), round) {
                        Ok(s) => Server::Nginx(s),
                        Err(e) => {
                            eprintln!("  round {round}: {e}");
                            failures.push(e);
                            continue;
                        }
                    }
                } else {
                    Server::Child(ChildServer::spawn(
                        "http-per-core",
                        &strings(&["--contender", c, "--threads", &n.to_string()]),
                    ))
                };
                let ns0 = server.cpu_ns();
                let (rps, total) = wrk(server.port(), cfg.threads, cfg.secs(2.0, 1.0), close)
                    .unwrap_or((f64::NAN, f64::NAN));
                let cpu_us = (server.cpu_ns() - ns0) as f64 / 1000.0 / total;
                drop(server);
                println!(
                    "  round {round} {metric:<40} {:<48} {rps:>9.0} req/s, server CPU {cpu_us:>5.1} µs/req",
                    name(c)
                );
                rep.add(S, &name(c), metric, "req/s", round, rps);
                rep.add(S, &name(c), cpu_metric(close), "µs", round, cpu_us);
            }
        }
    }
    for (close, metric) in modes {
        rep.specs.push(Spec {
            scenario: S,
            metric,
            baseline: Some(bare.clone()),
            higher_is_better: true,
            goal: "staunch >= 0.99; staunch >= nginx (see the note)".into(),
            paired: true,
        });
        rep.specs.push(Spec {
            scenario: S,
            metric: cpu_metric(close),
            baseline: Some(bare.clone()),
            higher_is_better: false,
            goal: "staunch <= 1.1".into(),
            paired: true,
        });
        if nginx.is_some() {
            let r = |m: &'static str| rep.paired_ratios(S, m, &staunch, &nginx_name);
            let (rate, cpu) = (r(metric), r(cpu_metric(close)));
            rep.notes.push(format!(
                "Per-core HTTP, {}: staunch per_core / nginx, paired medians over {} rounds: {:.3}× the requests per second (goal >= 1.0), {:.3}× the server CPU per request.",
                if close { "Connection: close" } else { "keep-alive" },
                rate.len(),
                median(&rate),
                median(&cpu)
            ));
        }
    }
    if !failures.is_empty() {
        rep.notes.push(format!(
            "Scenario 12: nginx failed to start in {} runs: {}",
            failures.len(),
            failures.join("; ")
        ));
    }
}
