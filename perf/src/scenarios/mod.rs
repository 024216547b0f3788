//! The scenarios, one file each, numbered as the program's `--only`, its report and
//! docs/performance.md number them (3 and 4 share a file: one run measures both); and the
//! helpers several of them share.

use std::time::Duration;

#[path = "01_accept_churn.rs"]
pub(crate) mod accept_churn;

#[path = "02_http.rs"]
pub(crate) mod http;

#[path = "03_emfile_storm.rs"]
pub(crate) mod emfile_storm;

#[path = "05_idle_connections.rs"]
pub(crate) mod idle_connections;

#[path = "06_reconnecting_client.rs"]
pub(crate) mod reconnecting_client;

#[path = "07_combinator_overhead.rs"]
pub(crate) mod combinator_overhead;

#[path = "08_reuseport.rs"]
pub(crate) mod reuseport;

#[path = "09_queued_at_emfile.rs"]
pub(crate) mod queued_at_emfile;

#[path = "10_resumable_session.rs"]
pub(crate) mod resumable_session;

#[path = "11_accept_rate_limit.rs"]
pub(crate) mod accept_rate_limit;

#[path = "12_per_core_http.rs"]
pub(crate) mod per_core_http;

#[path = "13_shutdown.rs"]
pub(crate) mod shutdown;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Contenders in a different order each round, so drift in the machine's load spreads evenly.
fn rotated<'a>(list: &[&'a str], round: usize) -> Vec<&'a str> {
    let n = list.len();
    (0..n).map(|i| list[(i + round) % n]).collect()
}

fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// Run wrk; (requests per second, requests completed).
fn wrk(port: u16, threads: usize, duration: Duration, close: bool) -> Option<(f64, f64)> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args([
        &format!("-t{threads}"),
        &format!("-c{}", 64.max(threads)),
        &format!("-d{}s", duration.as_secs().max(1)),
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}/"));
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Socket errors") {
        let line = text
            .lines()
            .find(|l| l.contains("Socket errors"))
            .unwrap_or("");
        eprintln!("  wrk: {}", line.trim());
    }
    if text.contains("Non-2xx") {
        eprintln!("  wrk: non-2xx responses");
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())?;
    let total = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some((rps, total))
}

fn cpu_metric(close: bool) -> &'static str {
    if close {
        "server CPU per request, Connection: close"
    } else {
        "server CPU per request, keep-alive"
    }
}
