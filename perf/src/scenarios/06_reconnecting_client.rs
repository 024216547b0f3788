//! Scenario 6: reconnecting clients, throughput, reconnect latency and bytes lost.

use super::rotated;
use crate::report::{median, Report, Spec};
use crate::sys::ChildServer;
use crate::{client, loss, Config};

pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
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
