//! Samples, the markdown table, the CSV and the SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

pub(crate) struct Sample {
    pub(crate) scenario: &'static str,
    pub(crate) contender: String,
    pub(crate) metric: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) round: usize,
    pub(crate) value: f64,
}

/// How one metric of one scenario is summarised.
pub(crate) struct Spec {
    pub(crate) scenario: &'static str,
    pub(crate) metric: &'static str,
    /// The contender each other one is divided by; `None`: no ratio column.
    pub(crate) baseline: Option<String>,
    pub(crate) higher_is_better: bool,
    pub(crate) goal: String,
    /// Rounds are paired (every contender ran once per round, back to back): the ratio is the
    /// median of per-round ratios, which cancels drift of the machine's load between rounds.
    pub(crate) paired: bool,
}

/// A line of a plot: (x, y) points.
pub(crate) struct Series {
    pub(crate) plot: &'static str,
    pub(crate) contender: String,
    pub(crate) points: Vec<(f64, f64)>,
}

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) samples: Vec<Sample>,
    pub(crate) specs: Vec<Spec>,
    pub(crate) series: Vec<Series>,
    pub(crate) notes: Vec<String>,
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub(crate) fn fmt_value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    match unit {
        "conn/s" | "req/s" => format!("{v:.0}"),
        "MiB/s" => format!("{v:.0}"),
        "B/conn" => format!("{v:.0}"),
        "ms" => format!("{v:.1}"),
        "µs" => format!("{v:.2}"),
        "% core" => format!("{v:.1}"),
        "requests" => format!("{v:.1}"),
        "ns/item" => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    }
}

impl Report {
    pub(crate) fn add(
        &mut self,
        scenario: &'static str,
        contender: &str,
        metric: &'static str,
        unit: &'static str,
        round: usize,
        value: f64,
    ) {
        self.samples.push(Sample {
            scenario,
            contender: contender.to_string(),
            metric,
            unit,
            round,
            value,
        });
    }

    fn values(&self, scenario: &str, metric: &str, contender: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.scenario == scenario && s.metric == metric && s.contender == contender)
            .map(|s| s.value)
            .collect()
    }

    pub(crate) fn median_of(&self, scenario: &str, metric: &str, contender: &str) -> f64 {
        median(&self.values(scenario, metric, contender))
    }

    /// Per-round ratios contender / baseline, for rounds where both have a finite value.
    pub(crate) fn paired_ratios(
        &self,
        scenario: &str,
        metric: &str,
        contender: &str,
        baseline: &str,
    ) -> Vec<f64> {
        let pick = |who: &str| -> Vec<(usize, f64)> {
            self.samples
                .iter()
                .filter(|s| s.scenario == scenario && s.metric == metric && s.contender == who)
                .map(|s| (s.round, s.value))
                .collect()
        };
        let base = pick(baseline);
        pick(contender)
            .into_iter()
            .filter_map(|(r, v)| {
                let b = base.iter().find(|(br, _)| *br == r)?.1;
                (b.is_finite() && b != 0.0 && v.is_finite()).then_some(v / b)
            })
            .collect()
    }

    /// The markdown table: median, spread (min–max over rounds), ratio against the baseline.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let mut scenario = "";
        for spec in &self.specs {
            if spec.scenario != scenario {
                scenario = spec.scenario;
                let _ = writeln!(out, "\n### {scenario}\n");
                let _ = writeln!(out, "| metric | contender | median | spread (min–max) | rounds | vs baseline (paired: median of per-round ratios, min–max) | goal |");
                let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
            }
            let mut contenders: Vec<&str> = Vec::new();
            for s in &self.samples {
                if s.scenario == spec.scenario
                    && s.metric == spec.metric
                    && !contenders.contains(&s.contender.as_str())
                {
                    contenders.push(&s.contender);
                }
            }
            let base = spec
                .baseline
                .as_deref()
                .map(|b| self.median_of(spec.scenario, spec.metric, b));
            for c in contenders {
                let v = self.values(spec.scenario, spec.metric, c);
                let unit = self
                    .samples
                    .iter()
                    .find(|s| s.scenario == spec.scenario && s.metric == spec.metric)
                    .map_or("", |s| s.unit);
                let med = median(&v);
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ratio = match (base, spec.baseline.as_deref()) {
                    (_, Some(b)) if b == c => "baseline".to_string(),
                    (_, Some(b)) if spec.paired => {
                        let r = self.paired_ratios(spec.scenario, spec.metric, c, b);
                        if r.is_empty() {
                            "–".into()
                        } else {
                            let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
                            let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            format!("{:.3} ({lo:.2}–{hi:.2})", median(&r))
                        }
                    }
                    (Some(b), _) if b.is_finite() && b != 0.0 && med.is_finite() => {
                        format!("{:.3}", med / b)
                    }
                    (Some(_), _) => "–".into(),
                    _ => String::new(),
                };
                let better = if spec.higher_is_better { "↑" } else { "↓" };
                let _ = writeln!(
                    out,
                    "| {} ({unit} {better}) | {c} | {} | {}–{} | {} | {ratio} | {} |",
                    spec.metric,
                    fmt_value(med, unit),
                    fmt_value(lo, unit),
                    fmt_value(hi, unit),
                    v.len(),
                    if spec.baseline.as_deref() == Some(c) {
                        ""
                    } else {
                        spec.goal.as_str()
                    },
                );
            }
        }
        out
    }

    pub(crate) fn csv(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "scenario,contender,metric,unit,round,value");
        for s in &self.samples {
            let _ = writeln!(
                out,
                "\"{}\",\"{}\",\"{}\",{},{},{}",
                s.scenario, s.contender, s.metric, s.unit, s.round, s.value
            );
        }
        out
    }

    /// One SVG per plot name; `titles` gives (plot, title, x label, y label).
    pub(crate) fn plots(&self, dir: &Path, titles: &[(&str, String, &str, &str)]) -> Vec<String> {
        let mut written = Vec::new();
        for (plot, title, xl, yl) in titles {
            let lines: Vec<&Series> = self.series.iter().filter(|s| s.plot == *plot).collect();
            if lines.is_empty() {
                continue;
            }
            let file = dir.join(format!("{plot}.svg"));
            if let Err(e) = line_chart(&file, title, xl, yl, &lines) {
                eprintln!("plot {plot}: {e}");
                continue;
            }
            written.push(file.display().to_string());
        }
        written
    }

    /// Horizontal bars: the median of `metric` per contender relative to the baseline.
    pub(crate) fn ratio_chart(
        &self,
        dir: &Path,
        name: &str,
        title: &str,
        rows: &[(String, f64, f64, f64)],
    ) -> Option<String> {
        let file = dir.join(format!("{name}.svg"));
        bar_chart(&file, title, rows)
            .map_err(|e| eprintln!("plot {name}: {e}"))
            .ok()?;
        Some(file.display().to_string())
    }

    /// The program's SVGs: the EMFILE storm's line plots and the ratio charts of scenarios 1, 2
    /// and 8; the files written.
    pub(crate) fn charts(&self, dir: &Path) -> Vec<String> {
        let mut written = self.plots(
            dir,
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
            let Some(spec) = self
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
            for s in self
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
                    self.paired_ratios(scenario, metric, &s.contender, &base)
                };
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                rows.push((s.contender.clone(), median(&v), lo, hi));
            }
            if let Some(f) = self.ratio_chart(dir, name, title, &rows) {
                written.push(f);
            }
        }
        written
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn line_chart(
    file: &Path,
    title: &str,
    xl: &str,
    yl: &str,
    lines: &[&Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for s in lines {
        for &(x, y) in &s.points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    if x0.partial_cmp(&x1) != Some(std::cmp::Ordering::Less) {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
    let root = SVGBackend::new(file, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, 0.0..y1)?;
    chart.configure_mesh().x_desc(xl).y_desc(yl).draw()?;
    for (i, s) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.contender.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// rows: (label, median ratio, min ratio, max ratio).
fn bar_chart(
    file: &Path,
    title: &str,
    rows: &[(String, f64, f64, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let n = rows.len().max(1);
    let xmax = rows.iter().map(|r| r.3.max(r.1)).fold(1.1f64, f64::max) * 1.05;
    let root = SVGBackend::new(file, (760, 60 + 40 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..xmax, 0.0..n as f64)?;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = (*y - 0.5).round();
            if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[labels.len() - 1 - i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_desc("median of per-round ratios to the baseline (whiskers: min–max; red: 1.0 and 0.97)")
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let color = COLORS[4];
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.2), (r.1, y + 0.8)],
            color.mix(0.7).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(r.2, y + 0.5), (r.3, y + 0.5)],
            BLACK.stroke_width(2),
        )))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, n as f64)],
        RED.stroke_width(1),
    )))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.97, 0.0), (0.97, n as f64)],
        RED.mix(0.4).stroke_width(1),
    )))?;
    root.present()?;
    Ok(())
}
