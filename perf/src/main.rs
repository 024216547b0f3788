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
//! keep-alive HTTP load: `with_graceful_shutdown` with and without the `Conn` handle against dropping
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
mod report;
mod resume;
mod scenarios;
mod servers;
mod soak;
mod sys;

#[path = "../benches/micro/workloads.rs"]
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use report::Report;

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

/// A scenario's entry point: most drive their clients on this process's runtime; the others
/// build their own, or leave the load to wrk.
enum Run {
    Runtime(fn(&Config, &tokio::runtime::Runtime, &mut Report)),
    Alone(fn(&Config, &mut Report)),
}

/// Every scenario, in the order they run, with the numbers `--only` selects it by.
const SCENARIOS: &[(&[u32], Run)] = &[
    (&[1], Run::Runtime(scenarios::accept_churn::run)),
    (&[2], Run::Alone(scenarios::http::run)),
    (&[3, 4], Run::Runtime(scenarios::emfile_storm::run)),
    (&[5], Run::Runtime(scenarios::idle_connections::run)),
    (&[6], Run::Runtime(scenarios::reconnecting_client::run)),
    (&[7], Run::Alone(scenarios::combinator_overhead::run)),
    (&[8], Run::Alone(scenarios::reuseport::run)),
    (&[9], Run::Runtime(scenarios::queued_at_emfile::run)),
    (&[10], Run::Runtime(scenarios::resumable_session::run)),
    (&[11], Run::Runtime(scenarios::accept_rate_limit::run)),
    (&[12], Run::Alone(scenarios::per_core_http::run)),
    (&[13], Run::Runtime(scenarios::shutdown::run)),
];

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

    for (numbers, run) in SCENARIOS {
        if numbers.iter().any(|&n| cfg.wants(n)) {
            match run {
                Run::Runtime(f) => f(&cfg, &rt, &mut rep),
                Run::Alone(f) => f(&cfg, &mut rep),
            }
        }
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
    let written = rep.charts(&cfg.out);
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
