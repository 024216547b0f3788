//! Scenario 11: the accept rate limit's accuracy.

use crate::report::{Report, Spec};
use crate::{load, Config};

/// The accept rate limiter's accuracy: connections accepted per second against the limit,
/// under a flood of reconnecting clients.
pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
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
