//! The benchmark program: staunch side by side with the alternatives.
//!
//! ```sh
//! cargo run --release -p staunch-perf            # full run, writes docs/perf/
//! cargo run --release -p staunch-perf -- --quick # < 2 minutes, same scenarios, smaller
//! cargo run --release -p staunch-perf -- --soak  # 1,000,000 connections through spawn_listen
//! ```
//!
//! Scenarios: 1 accept churn, 2 HTTP, 3+4 EMFILE storm and wake on release, 5 idle connections,
//! 6 reconnecting client, 7 combinator overhead, 8 one accept loop per core (`SO_REUSEPORT`),
//! 9 queued clients at EMFILE with and without `shed_on_emfile`, 10 resumable sessions against
//! `Reconnecting`, 11 the accept rate limit's accuracy (excess queued, and excess rejected with
//! `reject_excess`), 12 HTTP with one loop per core
//! (`SO_REUSEPORT`) against bare per-core loops and nginx (when installed), 13 shutdown under
//! keep-alive HTTP load: `with_graceful_shutdown` with and without a `Drain` against dropping
//! the accept loop (requests cut, time to the last response and to exit), and 200 clients
//! queued in the backlog as the port closes, taken (`take_backlog`) or reset.
//!
//! Options: `--only 1,3,6` (scenario numbers), `--rounds N`, `--threads N` (load-generator
//! threads for scenarios 1, 2, 8 and 12: tokio workers, and `wrk -t`; default 2, at least as many
//! as the server has cores so the load is not the ceiling), `--out DIR` (default `docs/perf`,
//! `--quick` defaults to `target/perf-quick` so a smoke run does not overwrite the full one),
//! `--soak-connections N`. Servers run in child processes (this binary re-executed with
//! `--role`, multi-thread ones with a worker per core), load generators in this process, so the
//! server's CPU time (`/proc/<pid>/task/*/schedstat`) is its own: scenarios 1, 2 and 8 report it
//! per connection (or request), steadier than throughput on a shared machine. Every address is
//! 127.0.0.1. Linux only (`/proc`).

mod client;
mod load;
mod loss;
mod per_core_http;
mod report;
mod resume;
mod servers;
mod shutdown;
mod soak;
mod sys;

#[path = "../benches/micro/workloads.rs"]
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use report::{median, Report, Series, Spec};
use sys::ChildServer;

struct Config {
    quick: bool,
    rounds: usize,
    /// Load-generator threads (scenarios 1, 2, 8 and 11).
    threads: usize,
    only: Option<Vec<u32>>,
    out: PathBuf,
    soak: bool,
    soak_connections: u64,
}

impl Config {
    fn wants(&self, n: u32) -> bool {
        !self.soak && self.only.as_ref().is_none_or(|o| o.contains(&n))
    }
    fn secs(&self, full: f64, quick: f64) -> Duration {
        Duration::from_secs_f64(if self.quick { quick } else { full })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--role") {
        let role = args.get(i + 1).cloned().unwrap_or_default();
        servers::run(&role, servers::RoleArgs::parse(&args));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--load") {
        churn_load(&args, args.get(i + 1).and_then(|p| p.parse().ok()));
        return;
    }
    let has = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if has("--help") || has("-h") {
        println!("usage: compare [--quick] [--only 1,2,...] [--rounds N] [--threads N] [--out DIR] [--soak] [--soak-connections N]");
        println!("       compare --role echo --contender bare-mt|bare-ct|listen-ct|spawn_listen-mt   (a server: prints READY <port>)");
        println!("       compare --load PORT [--threads N] [--seconds S]   (scenario 1's churn against a server already running, for profilers)");
        return;
    }
    let quick = has("--quick");
    let cfg = Config {
        quick,
        rounds: value("--rounds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 2 } else { 5 }),
        threads: value("--threads")
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(2),
        only: value("--only").map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect()),
        out: value("--out").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(if quick {
                "target/perf-quick"
            } else {
                "docs/perf"
            })
        }),
        soak: has("--soak"),
        soak_connections: value("--soak-connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000),
    };
    std::fs::create_dir_all(&cfg.out).expect("create the output folder");
    // Scenario 5 holds 10,000 connections in this process too.
    let nofile = sys::set_nofile(None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
        .unwrap();
    let (date, cpus, model, kernel) = sys::machine();
    let header = format!(
        "staunch compare ({}), {date}\n{cpus} CPUs ({model}), Linux {kernel}, load average at start {}\nrounds: {}, load-generator threads: {}, RLIMIT_NOFILE: {nofile}",
        if cfg.quick { "--quick" } else if cfg.soak { "--soak" } else { "full run" },
        sys::loadavg(),
        cfg.rounds,
        cfg.threads
    );
    println!("{header}");
    let started = Instant::now();
    let mut rep = Report::default();

    if cfg.soak {
        println!(
            "\n== soak: {} connections through spawn_listen",
            cfg.soak_connections
        );
        let result = soak::run(&rt, cfg.soak_connections, 64);
        let mut text = format!(
            "## Soak ({date}, {cpus} CPUs, Linux {kernel})\n\nResult: **{}**\n\n",
            if result.passed { "passed" } else { "FAILED" }
        );
        for l in &result.lines {
            text.push_str(l);
            text.push('\n');
        }
        println!("{text}");
        let _ = result.rate;
        std::fs::write(cfg.out.join("soak.md"), text).expect("write soak.md");
        println!("wrote {}", cfg.out.join("soak.md").display());
        std::process::exit(if result.passed { 0 } else { 1 });
    }

    if cfg.wants(1) {
        scenario_churn(&cfg, &rt, &mut rep);
    }
    if cfg.wants(2) {
        scenario_http(&cfg, &mut rep);
    }
    if cfg.wants(3) || cfg.wants(4) {
        scenario_emfile(&cfg, &rt, &mut rep);
    }
    if cfg.wants(5) {
        scenario_idle(&cfg, &rt, &mut rep);
    }
    if cfg.wants(6) {
        scenario_client(&cfg, &rt, &mut rep);
    }
    if cfg.wants(7) {
        scenario_micro(&cfg, &mut rep);
    }
    if cfg.wants(8) {
        scenario_reuseport(&cfg, &mut rep);
    }
    if cfg.wants(9) {
        scenario_shed(&cfg, &rt, &mut rep);
    }
    if cfg.wants(10) {
        scenario_resume(&cfg, &rt, &mut rep);
    }
    if cfg.wants(11) {
        scenario_rate(&cfg, &rt, &mut rep);
    }
    if cfg.wants(12) {
        per_core_http::scenario(&cfg, &mut rep);
    }
    if cfg.wants(13) {
        shutdown::scenario(&cfg, &rt, &mut rep);
    }

    let table = rep.table();
    let footer = format!(
        "\nWall time {:.0} s; load average at the end {}.",
        started.elapsed().as_secs_f64(),
        sys::loadavg()
    );
    println!("\n## Results\n\n{header}\n{table}");
    for n in &rep.notes {
        println!("- {n}");
    }
    println!("{footer}");
    let md = format!(
        "<!-- generated by `cargo run --release -p staunch-perf{}` -->\n```text\n{header}\n```\n{table}\n{}\n{footer}\n",
        if cfg.quick { " -- --quick" } else { "" },
        rep.notes.iter().map(|n| format!("- {n}\n")).collect::<String>()
    );
    std::fs::write(cfg.out.join("results.md"), md).expect("write results.md");
    std::fs::write(cfg.out.join("results.csv"), rep.csv(&header)).expect("write results.csv");
    let mut written = rep.plots(
        &cfg.out,
        &[
            (
                "emfile_cpu",
                "EMFILE storm: server CPU (descriptors freed at t = 0)".to_string(),
                "seconds since descriptors were freed",
                "server CPU seconds since the storm began",
            ),
            (
                "emfile_served",
                "EMFILE storm: clients served around the release".to_string(),
                "seconds since descriptors were freed",
                "clients served",
            ),
        ],
    );
    for (name, scenario, metric, title) in [
        (
            "churn_ratio",
            "1 accept churn",
            "connections per second",
            "Accept churn: connections/s relative to the bare spawn loop",
        ),
        (
            "http_ratio",
            "2 HTTP (hyper)",
            "requests per second, keep-alive",
            "HTTP keep-alive: requests/s relative to hyper-util's plain loop",
        ),
        (
            "reuseport_ratio",
            "8 SO_REUSEPORT",
            "connections per second",
            "Accept churn, one loop per core (SO_REUSEPORT): connections/s relative to one loop",
        ),
        (
            "http_close_ratio",
            "2 HTTP (hyper)",
            "requests per second, Connection: close",
            "HTTP Connection: close: requests/s relative to hyper-util's plain loop",
        ),
    ] {
        let Some(spec) = rep
            .specs
            .iter()
            .find(|s| s.scenario == scenario && s.metric == metric)
        else {
            continue;
        };
        let Some(base) = spec.baseline.clone() else {
            continue;
        };
        let mut rows = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for s in rep
            .samples
            .iter()
            .filter(|s| s.scenario == scenario && s.metric == metric)
        {
            if seen.contains(&s.contender) {
                continue;
            }
            seen.push(s.contender.clone());
            let v = if s.contender == base {
                vec![1.0]
            } else {
                rep.paired_ratios(scenario, metric, &s.contender, &base)
            };
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            rows.push((s.contender.clone(), median(&v), lo, hi));
        }
        if let Some(f) = rep.ratio_chart(&cfg.out, name, title, &rows) {
            written.push(f);
        }
    }
    println!(
        "wrote {}/results.md, results.csv and {}",
        cfg.out.display(),
        written.join(", ")
    );
}

/// `--load PORT`: scenario 1's churn against a server started by hand (`--role echo`), so a
/// profiler can watch the server alone.
fn churn_load(args: &[String], port: Option<u16>) {
    let Some(port) = port else {
        eprintln!("usage: compare --load PORT [--threads N] [--seconds S]");
        std::process::exit(2);
    };
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let threads = value("--threads").map_or(2, |n| n.max(1.0) as usize);
    let seconds = value("--seconds").unwrap_or(10.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    // The server's pid is not known here: no CPU figure, only the rate.
    let run = rt.block_on(load::churn(
        port,
        0,
        (16 * threads).max(32),
        Duration::from_secs_f64(0.3),
        Duration::from_secs_f64(seconds),
    ));
    println!(
        "{:.0} conn/s ({} completed, {} client errors)",
        run.rate, run.completed, run.errors
    );
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Contenders in a different order each round, so drift in the machine's load spreads evenly.
fn rotated<'a>(list: &[&'a str], round: usize) -> Vec<&'a str> {
    let n = list.len();
    (0..n).map(|i| list[(i + round) % n]).collect()
}

fn scenario_churn(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "1 accept churn";
    const M: &str = "connections per second";
    // 32 client loops on 2 threads; more of both with more load-generator threads.
    let concurrency = (16 * cfg.threads).max(32);
    println!(
        "\n== {S}: connect, 8-byte echo, close; {concurrency} client loops on {} threads in this process",
        cfg.threads
    );
    let contenders = ["bare-mt", "bare-ct", "listen-ct", "spawn_listen-mt"];
    let names = |c: &str| match c {
        "bare-mt" => "bare accept+spawn loop (multi-thread)",
        "bare-ct" => "bare accept+spawn loop (current-thread)",
        "listen-ct" => "staunch listen(10_000) (current-thread)",
        _ => "staunch spawn_listen(10_000) (multi-thread)",
    };
    // Many short alternating rounds: the machine is shared, and its load drifts over seconds.
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds * 2
    };
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn("echo", &strings(&["--contender", c]));
            let load::Churn {
                rate,
                errors,
                cpu_us,
                ..
            } = rt.block_on(load::churn(
                server.port,
                server.pid,
                concurrency,
                cfg.secs(0.3, 0.25),
                cfg.secs(1.5, 1.0),
            ));
            drop(server);
            println!(
                "  round {round} {:<45} {rate:>9.0} conn/s, server CPU {cpu_us:>5.1} µs/conn  ({errors} client errors)",
                names(c)
            );
            rep.add(S, names(c), M, "conn/s", round, rate);
            rep.add(
                S,
                names(c),
                "server CPU per connection",
                "µs",
                round,
                cpu_us,
            );
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: M,
        baseline: Some(names("bare-mt").into()),
        higher_is_better: true,
        goal: ">= 0.97".into(),
        paired: true,
    });
    rep.specs.push(Spec {
        scenario: S,
        metric: "server CPU per connection",
        baseline: Some(names("bare-mt").into()),
        higher_is_better: false,
        goal: "<= 1.03 (the cost side of >= 0.97)".into(),
        paired: true,
    });
    let ct =
        |metric: &str| median(&rep.paired_ratios(S, metric, names("listen-ct"), names("bare-ct")));
    rep.notes.push(format!(
        "Accept churn, same runtime flavour: staunch listen (current-thread) / bare loop (current-thread), paired medians over {rounds} rounds: {:.3} of the connections per second, {:.3}× the server CPU per connection.",
        ct(M),
        ct("server CPU per connection")
    ));
}

/// Scenario 8: scenario 1's churn against one accept loop, one loop per CPU with `SO_REUSEPORT`
/// (stats merged with `Stats::merged`), and `spawn_listen` on a multi-thread runtime.
fn scenario_reuseport(cfg: &Config, rep: &mut Report) {
    const S: &str = "8 SO_REUSEPORT";
    const M: &str = "connections per second";
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    // As scenario 1 on 2 CPUs (2 client workers, 32 loops); more of both with more cores, so
    // the load generator is not what caps N accept loops.
    let workers = n.max(cfg.threads);
    let concurrency = (16 * n).max(32);
    println!(
        "\n== {S}: scenario 1's churn, {concurrency} client loops on {workers} threads; {n} accept loops vs one"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let contenders = [
        "single-ct",
        "reuseport-ct",
        "reuseport-bare-ct",
        "spawn_listen-mt",
    ];
    let names: Vec<(&str, String)> = vec![
        (
            "single-ct",
            "one accept loop: listen(10_000) (current-thread)".into(),
        ),
        (
            "reuseport-ct",
            format!("{n} accept loops, SO_REUSEPORT: listen(10_000) × {n} (current-thread each)"),
        ),
        (
            "reuseport-bare-ct",
            format!(
                "{n} accept loops, SO_REUSEPORT: bare accept+spawn × {n} (current-thread each)"
            ),
        ),
        (
            "spawn_listen-mt",
            format!("one accept loop: spawn_listen(10_000) (multi-thread, {n} workers)"),
        ),
    ];
    let name = |c: &str| names.iter().find(|(k, _)| *k == c).unwrap().1.clone();
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds * 2
    };
    let mut mismatches = Vec::new();
    let mut spread = Vec::new();
    let (mut exact, mut client_errors, mut counted_runs) = (0, 0, 0);
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let mut server = ChildServer::spawn(
                "reuseport",
                &strings(&["--contender", c, "--threads", &n.to_string()]),
            );
            let run = rt.block_on(load::churn(
                server.port,
                server.pid,
                concurrency,
                cfg.secs(0.3, 0.2),
                cfg.secs(1.5, 0.6),
            ));
            server.command("stats");
            let stats = server
                .expect_line("STATS", Duration::from_secs(5))
                .map(|(_, l)| l)
                .unwrap_or_default();
            drop(server);
            let field = |k: &str| -> Option<u64> {
                stats
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            };
            let per_loop = stats
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("per_loop="))
                .unwrap_or("?")
                .to_string();
            // Every client connection that completed its echo was accepted, started and
            // finished by exactly one loop; a client error may or may not have reached a loop.
            let (done, errs) = (run.completed, run.errors);
            client_errors += errs;
            // The bare loops keep no counters.
            let counted = stats != "STATS none";
            counted_runs += usize::from(counted);
            let ok = !counted
                || match (
                    field("accepted"),
                    field("connections"),
                    field("finished"),
                    field("active"),
                ) {
                    (Some(a), Some(conns), Some(f), Some(0)) => {
                        exact += usize::from(a == done && conns == done && f == done);
                        a == conns
                            && (done..=done + errs).contains(&conns)
                            && f <= conns
                            && f >= done
                    }
                    _ => false,
                };
            if !ok {
                mismatches.push(format!(
                    "round {round} {c}: clients completed {done} (+{errs} errors), server `{stats}`"
                ));
            }
            if c == "reuseport-ct" {
                spread.push(per_loop.clone());
            }
            println!(
                "  round {round} {:<68} {:>9.0} conn/s, server CPU {:>5.1} µs/conn  ({errs} client errors; merged stats {} clients: {}, per loop {per_loop})",
                name(c),
                run.rate,
                run.cpu_us,
                if ok { "match" } else { "DO NOT match" },
                field("connections").map_or("?".into(), |v| v.to_string()),
            );
            rep.add(S, &name(c), M, "conn/s", round, run.rate);
            rep.add(
                S,
                &name(c),
                "server CPU per connection",
                "µs",
                round,
                run.cpu_us,
            );
        }
    }
    for (metric, higher, goal) in [
        (M, true, "informational: > 1 needs spare cores"),
        ("server CPU per connection", false, "informational"),
    ] {
        rep.specs.push(Spec {
            scenario: S,
            metric,
            baseline: Some(name("single-ct")),
            higher_is_better: higher,
            goal: goal.into(),
            paired: true,
        });
    }
    let per_core = |metric: &str| {
        rep.paired_ratios(S, metric, &name("reuseport-ct"), &name("reuseport-bare-ct"))
    };
    let (rate, cpu) = (per_core(M), per_core("server CPU per connection"));
    rep.notes.push(format!(
        "Per core ({n} loops): staunch `per_core` + listen / bare accept+spawn loops in the same layout, paired medians over {} rounds: {:.3} of the connections per second, {:.3}× the server CPU per connection.",
        rate.len(),
        median(&rate),
        median(&cpu)
    ));
    if mismatches.is_empty() {
        rep.notes.push(format!(
            "SO_REUSEPORT: in all {} runs (every contender that counts, every round) the merged server counters matched the clients, active 0 at the end: accepted = connections = finished = clients that completed their echo{}. Connections per loop ({n} loops), per round: {}.",
            counted_runs,
            if exact == counted_runs {
                String::new()
            } else {
                format!(
                    " in {exact} runs, the others within the {client_errors} client errors"
                )
            },
            spread.join(", ")
        ));
    } else {
        for m in &mismatches {
            eprintln!("  merged stats mismatch: {m}");
        }
        rep.notes.push(format!(
            "SO_REUSEPORT: merged counters did NOT match the clients in {} of {} runs: {}",
            mismatches.len(),
            counted_runs,
            mismatches.join("; ")
        ));
    }
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

fn scenario_http(cfg: &Config, rep: &mut Report) {
    const S: &str = "2 HTTP (hyper)";
    println!(
        "\n== {S}: wrk -t{} -c{} against hyper servers (multi-thread, a worker per core)",
        cfg.threads,
        64.max(cfg.threads)
    );
    if !wrk_available() {
        println!("  wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu); skipping scenario 2");
        rep.notes
            .push("Scenario 2 skipped: wrk is not installed (`apt-get install -y wrk`).".into());
        return;
    }
    let contenders = ["hyper-plain", "axum", "hyper-staunch"];
    let names = |c: &str| match c {
        "hyper-plain" => "hyper-util plain accept loop",
        "axum" => "axum::serve",
        _ => "hyper through staunch spawn_listen",
    };
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds + 3
    };
    for (close, metric) in [
        (false, "requests per second, keep-alive"),
        (true, "requests per second, Connection: close"),
    ] {
        for round in 0..rounds {
            for c in rotated(&contenders, round) {
                let server = ChildServer::spawn("http", &strings(&["--contender", c]));
                let ns0 = server.cpu_ns();
                let (rps, total) = wrk(server.port, cfg.threads, cfg.secs(2.0, 1.0), close)
                    .unwrap_or((f64::NAN, f64::NAN));
                let cpu_us = (server.cpu_ns() - ns0) as f64 / 1000.0 / total;
                drop(server);
                println!("  round {round} {metric:<40} {:<36} {rps:>9.0} req/s, server CPU {cpu_us:>5.1} µs/req", names(c));
                rep.add(S, names(c), metric, "req/s", round, rps);
                rep.add(S, names(c), cpu_metric(close), "µs", round, cpu_us);
            }
        }
        rep.specs.push(Spec {
            scenario: S,
            metric,
            baseline: Some(names("hyper-plain").into()),
            higher_is_better: true,
            goal: ">= 0.97, and >= axum::serve".into(),
            paired: true,
        });
        rep.specs.push(Spec {
            scenario: S,
            metric: cpu_metric(close),
            baseline: Some(names("hyper-plain").into()),
            higher_is_better: false,
            goal: "<= 1.03".into(),
            paired: true,
        });
    }
}

fn scenario_emfile(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "3+4 EMFILE storm";
    const NOFILE: u64 = 64;
    let exhaust = cfg.secs(3.0, 1.0);
    println!(
        "\n== {S}: server RLIMIT_NOFILE={NOFILE}, more clients than descriptors, {:.0} s of exhaustion",
        exhaust.as_secs_f64()
    );
    let contenders = [
        "naive",
        "axum-1s",
        "fixed-100ms",
        "staunch-unchained",
        "staunch",
    ];
    let names = |c: &str| match c {
        "naive" => "naive loop, retries at once",
        "axum-1s" => "axum::serve-style, 1 s sleep",
        "fixed-100ms" => "tk-listen-style, fixed 100 ms sleep",
        "staunch-unchained" => "staunch sleep_on_error(100 ms) alone",
        _ => "staunch sleep_on_error(100 ms) + spawn_listen",
    };
    let rounds = cfg.rounds.max(3);
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn(
                "emfile",
                &strings(&["--contender", c, "--nofile", &NOFILE.to_string()]),
            );
            let storm = rt.block_on(load::storm(&server, NOFILE, exhaust));
            drop(server);
            let rec_ms = storm
                .recovery
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
            println!(
                "  round {round} {:<48} CPU {:>5.1}% ({:.3}%) of a core, recovery {:>7.1} ms ({} served before, {} waiting)",
                names(c),
                storm.cpu_share * 100.0,
                storm.cpu_share_ns * 100.0,
                rec_ms,
                storm.served_before,
                storm.waiting
            );
            rep.add(
                S,
                names(c),
                "CPU during exhaustion",
                "% core",
                round,
                storm.cpu_share * 100.0,
            );
            rep.add(
                S,
                names(c),
                "CPU during exhaustion (schedstat)",
                "% core",
                round,
                storm.cpu_share_ns * 100.0,
            );
            rep.add(
                S,
                names(c),
                "recovery: freed → all served",
                "ms",
                round,
                rec_ms,
            );
            if round == rounds - 1 {
                rep.series.push(Series {
                    plot: "emfile_cpu",
                    contender: names(c).into(),
                    points: storm.samples.iter().map(|p| (p.0, p.1)).collect(),
                });
                rep.series.push(Series {
                    plot: "emfile_served",
                    contender: names(c).into(),
                    points: storm
                        .samples
                        .iter()
                        .filter(|p| p.0 >= -0.3)
                        .map(|p| (p.0, p.2 as f64))
                        .collect(),
                });
            }
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "CPU during exhaustion",
        baseline: Some(names("naive").into()),
        higher_is_better: false,
        goal: "< 0.02 of naive".into(),
        paired: true,
    });
    rep.specs.push(Spec {
        scenario: S,
        metric: "CPU during exhaustion (schedstat)",
        baseline: Some(names("naive").into()),
        higher_is_better: false,
        goal: "< 0.02 of naive".into(),
        paired: true,
    });
    rep.specs.push(Spec {
        scenario: S,
        metric: "recovery: freed → all served",
        baseline: Some(names("fixed-100ms").into()),
        higher_is_better: false,
        goal: "far below a fixed sleep; ~1 round trip with wake on release".into(),
        paired: true,
    });
}

/// Clients queued against a server out of descriptors: how long each waits to learn anything,
/// with and without `shed_on_emfile`.
fn scenario_shed(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "9 queued clients at EMFILE";
    const NOFILE: u64 = 64;
    const QUEUED: usize = 200;
    let limit = cfg.secs(5.0, 2.0);
    println!(
        "\n== {S}: server RLIMIT_NOFILE={NOFILE}, every descriptor held, {QUEUED} clients queued; wait until served or told (reset/EOF), cut at {:.0} s",
        limit.as_secs_f64()
    );
    let contenders = ["staunch", "staunch-shed"];
    let names = |c: &str| match c {
        "staunch" => "staunch sleep_on_error(100 ms) + spawn_listen",
        _ => "the same + shed_on_emfile(1024)",
    };
    let rounds = cfg.rounds.max(2);
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn(
                "emfile",
                &strings(&["--contender", c, "--nofile", &NOFILE.to_string()]),
            );
            let q = rt.block_on(load::queued(&server, NOFILE, QUEUED, limit));
            drop(server);
            let mut waits: Vec<f64> = q.waits.iter().map(|w| w.0.as_secs_f64() * 1000.0).collect();
            waits.sort_by(f64::total_cmp);
            let pct = |p: usize| waits[(waits.len() - 1) * p / 100];
            let count = |o: load::Outcome| q.waits.iter().filter(|w| w.1 == o).count();
            let told = count(load::Outcome::Told);
            println!(
                "  round {round} {:<48} wait p50 {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms; {told} told, {} served, {} still waiting; CPU {:.3}% of a core over the window",
                names(c),
                pct(50),
                pct(99),
                pct(100),
                count(load::Outcome::Served),
                count(load::Outcome::Waiting),
                q.cpu_share_ns * 100.0
            );
            rep.add(
                S,
                names(c),
                "queued client's wait, p50",
                "ms",
                round,
                pct(50),
            );
            rep.add(
                S,
                names(c),
                "queued client's wait, max",
                "ms",
                round,
                pct(100),
            );
            rep.add(
                S,
                names(c),
                "queued clients told",
                "of 200",
                round,
                told as f64,
            );
            rep.add(
                S,
                names(c),
                "CPU while queued (schedstat)",
                "% core",
                round,
                q.cpu_share_ns * 100.0,
            );
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "queued client's wait, max",
        baseline: Some(names("staunch").into()),
        higher_is_better: false,
        goal: "< 100 ms with shedding; without, clients wait for the cut".into(),
        paired: true,
    });
}

/// The accept rate limiter's accuracy: connections accepted per second against the limit,
/// under a flood of reconnecting clients.
fn scenario_rate(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "11 accept rate limit";
    let window = cfg.secs(3.0, 1.5);
    let loops = 64;
    println!(
        "\n== {S}: limit_rate(N, 1 s) in this process, {loops} clients reconnecting as fast as they can for {:.1} s",
        window.as_secs_f64()
    );
    for round in 0..cfg.rounds.max(2) {
        // The control: what this machine accepts with no limit, the most any limit can give.
        let most = rt.block_on(load::rate_limited(None, false, loops, window));
        println!("  round {round} no limit:    accepted {most:>8.1}/s");
        rep.add(
            S,
            "no limit (control)",
            "accepted per second",
            "conn/s",
            round,
            most,
        );
        for rate in [100u32, 1_000, 5_000] {
            for reject in [false, true] {
                let got = rt.block_on(load::rate_limited(Some(rate), reject, loops, window));
                let ratio = got / f64::from(rate);
                let name = if reject {
                    format!("limit_rate({rate}, 1 s).reject_excess()")
                } else {
                    format!("limit_rate({rate}, 1 s)")
                };
                println!(
                    "  round {round} {name:<38} accepted {got:>8.1}/s ({ratio:.3} of the limit)"
                );
                rep.add(S, &name, "accepted / limit", "ratio", round, ratio);
            }
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "accepted / limit",
        baseline: None,
        higher_is_better: true,
        goal: "1.0 ± 0.10 (less only if the machine cannot accept that fast)".into(),
        paired: false,
    });
}

fn scenario_idle(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "5 many idle connections";
    const M: &str = "server RSS growth per connection";
    let n = if cfg.quick { 2_000 } else { 10_000 };
    println!("\n== {S}: {n} idle clients held open (soft RLIMIT_NOFILE raised to the hard limit in both processes)");
    let contenders = ["bare-mt", "listen-ct", "spawn_listen-mt"];
    let names = |c: &str| match c {
        "bare-mt" => "bare accept+spawn loop (multi-thread)",
        "listen-ct" => "staunch listen(10_000) (current-thread)",
        _ => "staunch spawn_listen(10_000) (multi-thread)",
    };
    let rounds = if cfg.quick { 1 } else { 3 };
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn(
                "echo",
                &strings(&["--contender", c, "--handler", "hold", "--max", "10000"]),
            );
            let (per, opened) = rt.block_on(load::idle(&server, n));
            drop(server);
            println!(
                "  round {round} {:<45} {per:>7.0} B/conn over {opened} connections",
                names(c)
            );
            if opened < n {
                rep.notes.push(format!(
                    "Idle connections: {} opened only {opened} of {n}.",
                    names(c)
                ));
            }
            rep.add(S, names(c), M, "B/conn", round, per);
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: M,
        baseline: Some(names("bare-mt").into()),
        higher_is_better: false,
        goal: "<= 1.0 (no more than the bare loop)".into(),
        paired: true,
    });
}

fn scenario_client(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "6 reconnecting client";
    println!("\n== {S}: bulk writes to a sink child; restarts of the sink under a writing client");
    let dur = cfg.secs(1.0, 0.5);
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds * 2
    };
    for round in 0..rounds {
        for kind in rotated(&client::CLIENTS, round) {
            let server = ChildServer::spawn("sink", &[]);
            let rate = rt.block_on(client::throughput(kind, server.port, dur)) / (1024.0 * 1024.0);
            drop(server);
            println!("  round {round} throughput {kind:<22} {rate:>8.0} MiB/s");
            rep.add(S, kind, "bulk write throughput", "MiB/s", round, rate);
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "bulk write throughput",
        baseline: Some("bare TcpStream".into()),
        higher_is_better: true,
        goal: ">= 0.98".into(),
        paired: true,
    });
    let restarts = if cfg.quick { 4 } else { 20 };
    for (backoff, metric) in [
        (client::Backoff::Equal, "server up → first byte through"),
        (
            client::Backoff::Defaults,
            "server up → first byte through, each adapter's default backoff",
        ),
    ] {
        for kind in &client::CLIENTS[1..] {
            let lat = client::restart_latencies(rt, kind, restarts, backoff);
            let ms: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
            let max = ms.iter().copied().fold(0.0, f64::max);
            println!(
                "  restart ({backoff:?} backoff) {kind:<22} median {:>7.1} ms, max {max:>7.1} ms over {} restarts",
                median(&ms),
                ms.len()
            );
            for (i, v) in ms.iter().enumerate() {
                rep.add(S, kind, metric, "ms", i, *v);
            }
            if backoff == client::Backoff::Equal {
                rep.notes.push(format!(
                    "Reconnect, {kind}: worst of {} restarts {max:.1} ms (bound: {} ms backoff + one connect).",
                    ms.len(),
                    client::DELAY.as_millis()
                ));
            }
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "server up → first byte through, each adapter's default backoff",
        baseline: Some("stubborn-io".into()),
        higher_is_better: false,
        goal: "documented defaults: staunch 100 ms × 2 ±10 %, io-tether (no default) its docs' retry-at-once resolver, stubborn-io 4 s × 2 ±5 %".into(),
        paired: false,
    });
    for kind in &client::CLIENTS[1..] {
        let t = rt.block_on(loss::run(kind));
        println!(
            "  loss ({} resets, peer not reading) {kind:<22} written {} B, received {} B, lost {} B, reported lost {} B (kernel-measured {} B), failed writes {}",
            loss::RESETS, t.written, t.received, t.lost(), t.reported, t.kernel, t.errors
        );
        rep.add(S, kind, "bytes lost in 10 resets", "B", 0, t.lost() as f64);
        rep.add(
            S,
            kind,
            "bytes reported lost in 10 resets",
            "B",
            0,
            t.reported as f64,
        );
        rep.add(
            S,
            kind,
            "bytes lost by the kernel's count",
            "B",
            0,
            t.kernel as f64,
        );
        rep.notes.push(format!(
            "Loss, {kind}: {} B lost of {} B written over {} resets; reported {} B as possibly lost, {} B as never acknowledged by the peer's kernel.",
            t.lost(), t.written, loss::RESETS, t.reported, t.kernel
        ));
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "bytes reported lost in 10 resets",
        baseline: None,
        higher_is_better: false,
        goal: "kernel-measured <= lost <= reported (staunch); the others report nothing".into(),
        paired: false,
    });
    rep.specs.push(Spec {
        scenario: S,
        metric: "server up → first byte through",
        baseline: Some("stubborn-io".into()),
        higher_is_better: false,
        goal: "staunch fastest, <= 50 ms backoff + one connect".into(),
        paired: false,
    });
}

/// Scenario 10: `staunch::resume` (framing, replay buffer, acks) against the plain adapter.
fn scenario_resume(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "10 resumable session";
    const M: &str = "one-way throughput";
    let mib: u64 = if cfg.quick { 64 } else { 256 };
    println!("\n== {S}: {mib} MiB one way over loopback, 64 KiB writes, both ends in this process");
    let rounds = if cfg.quick {
        cfg.rounds.max(3)
    } else {
        cfg.rounds * 2
    };
    for round in 0..rounds {
        for kind in rotated(&resume::CONTENDERS, round) {
            let rate = rt.block_on(resume::throughput(kind, mib << 20)) / f64::from(1 << 20);
            println!("  round {round} {kind:<26} {rate:>8.0} MiB/s");
            rep.add(S, kind, M, "MiB/s", round, rate);
        }
    }
    let base = "staunch Reconnecting";
    for kind in &resume::CONTENDERS[2..] {
        let ratios = rep.paired_ratios(S, M, kind, base);
        println!(
            "  {kind:<26} / {base}: median ratio {:.2} over {} rounds",
            median(&ratios),
            ratios.len()
        );
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: M,
        baseline: Some(base.into()),
        higher_is_better: true,
        goal: ">= 0.9".into(),
        paired: true,
    });
}

fn scenario_micro(cfg: &Config, rep: &mut Report) {
    const S: &str = "7 combinator overhead";
    let items: u64 = if cfg.quick { 100_000 } else { 1_000_000 };
    println!("\n== {S}: synthetic streams of {items} items on a current-thread runtime (see also `cargo bench -p staunch-perf`)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rounds = cfg.rounds.max(3);
    for (title, short, bare, staunch) in workloads::pairs() {
        let metric: &'static str = title;
        for round in 0..rounds {
            for (who, f) in [("baseline", bare), ("staunch", staunch)] {
                let t = Instant::now();
                let sum = rt.block_on(f(items));
                let ns = t.elapsed().as_nanos() as f64 / items as f64;
                std::hint::black_box(sum);
                rep.add(S, who, metric, "ns/item", round, ns);
            }
        }
        let b = rep.median_of(S, metric, "baseline");
        let s = rep.median_of(S, metric, "staunch");
        println!("  {short:<16} baseline {b:>6.1} ns/item, staunch {s:>6.1} ns/item");
        rep.specs.push(Spec {
            scenario: S,
            metric,
            baseline: Some("baseline".into()),
            higher_is_better: false,
            goal: "informational".into(),
            paired: true,
        });
    }
}
