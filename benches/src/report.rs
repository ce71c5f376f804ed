//! `BENCHMARKS.md` and its charts, built from the samples on file: medians
//! with min and max per point, franz/peer ratios taken per repetition (the
//! machine drifts between runs, ratios much less), one chart per sweep and
//! every goal of issue #16 judged met or not met.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::median;
use crate::store::{Point, Sample};

/// One client at one point, over its repetitions.
#[derive(Debug, Clone)]
pub struct Agg {
    /// Median records (requests) per second.
    pub rate: f64,
    /// Lowest rate over the repetitions.
    pub rate_min: f64,
    /// Highest rate over the repetitions.
    pub rate_max: f64,
    /// Median CPU ns per record (request).
    pub cpu_ns: f64,
    /// Lowest CPU ns per record over the repetitions.
    pub cpu_ns_min: f64,
    /// Median peak RSS, MiB.
    pub rss: f64,
    /// Median p50 latency, µs.
    pub p50_us: f64,
    /// Median p99 latency, µs.
    pub p99_us: f64,
    /// Repetitions.
    pub reps: usize,
}

/// The samples of one report, indexed.
pub struct Results<'a> {
    samples: &'a [Sample],
}

impl<'a> Results<'a> {
    /// Indexes `samples`.
    pub fn new(samples: &'a [Sample]) -> Self {
        Results { samples }
    }

    fn runs<'s>(
        &'s self,
        part: &'s str,
        client: &'s str,
        point: &'s Point,
    ) -> impl Iterator<Item = &'a Sample> + 's {
        self.samples
            .iter()
            .filter(move |s| s.part == part && s.client == client && &s.point == point)
    }

    /// `client`'s figures at `point`, if it ran there.
    pub fn agg(&self, part: &str, client: &str, point: &Point) -> Option<Agg> {
        let runs: Vec<&Sample> = self.runs(part, client, point).collect();
        if runs.is_empty() {
            return None;
        }
        let of = |f: fn(&Sample) -> f64| median(runs.iter().map(|s| f(s)));
        let rates = runs.iter().map(|s| s.rate());
        Some(Agg {
            rate: of(Sample::rate),
            rate_min: rates.clone().fold(f64::INFINITY, f64::min),
            rate_max: rates.fold(0.0, f64::max),
            cpu_ns: of(Sample::cpu_ns_per_unit),
            cpu_ns_min: runs
                .iter()
                .map(|s| s.cpu_ns_per_unit())
                .fold(f64::INFINITY, f64::min),
            rss: of(|s| s.peak_rss_mib),
            p50_us: of(|s| s.p50_us),
            p99_us: of(|s| s.p99_us),
            reps: runs.len(),
        })
    }

    /// Median over repetitions of franz/`peer` rate and CPU-per-unit
    /// ratios, each repetition's franz run against the same repetition's
    /// peer run.
    pub fn ratio(&self, part: &str, peer: &str, point: &Point) -> Option<(f64, f64)> {
        let pairs: Vec<(f64, f64)> = self
            .runs(part, "franz", point)
            .filter_map(|f| {
                let p = self.runs(part, peer, point).find(|p| p.rep == f.rep)?;
                Some((
                    f.rate() / p.rate(),
                    f.cpu_ns_per_unit() / p.cpu_ns_per_unit(),
                ))
            })
            .collect();
        if pairs.is_empty() {
            return None;
        }
        Some((
            median(pairs.iter().map(|p| p.0)),
            median(pairs.iter().map(|p| p.1)),
        ))
    }

    /// Clients that ran in `part`, franz first, then in order of first
    /// appearance.
    pub fn clients(&self, part: &str) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for s in self.samples.iter().filter(|s| s.part == part) {
            if !out.contains(&s.client) {
                out.push(s.client.clone());
            }
        }
        out.sort_by_key(|c| c != "franz");
        out
    }
}

/// A sweep: one varying parameter, the others fixed.
pub struct Sweep {
    /// Heading and chart title.
    pub title: &'static str,
    /// The part it reads.
    pub part: &'static str,
    /// The x axis label.
    pub x_label: &'static str,
    /// The points, with their x value and label.
    pub points: Vec<(f64, String, Point)>,
    /// Log x axis.
    pub log_x: bool,
    /// "records" or "requests".
    pub unit: &'static str,
}

/// The payload sizes of the sweeps.
pub const SIZES: &[u64] = &[10, 100, 1024, 10 * 1024, 100 * 1024];
/// The partition counts of the sweeps.
pub const PARTITIONS: &[u32] = &[1, 6, 100, 1000];
/// The codecs of the compression sweep.
pub const CODECS: &[&str] = &["none", "lz4", "zstd"];
/// Requests in flight in the transport sweep.
pub const IN_FLIGHT: &[u32] = &[1, 8, 64, 256];
/// The transport payload's size (a JSON object of about 120 bytes).
pub const TRANSPORT_SIZE: u64 = 120;

/// A size as the tables write it (`100 B`, `1 KiB`).
pub fn size_label(size: u64) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Every sweep the report draws.
pub fn sweeps() -> Vec<Sweep> {
    let mut out = Vec::new();
    for part in ["producer", "consumer"] {
        out.push(Sweep {
            title: if part == "producer" {
                "Producer: payload size, 6 partitions"
            } else {
                "Consumer: payload size, 6 partitions"
            },
            part,
            x_label: "value size (bytes)",
            points: SIZES
                .iter()
                .map(|&s| (s as f64, size_label(s), Point::records(s, 6)))
                .collect(),
            log_x: true,
            unit: "records",
        });
        out.push(Sweep {
            title: if part == "producer" {
                "Producer: partitions, 100 B"
            } else {
                "Consumer: partitions, 100 B"
            },
            part,
            x_label: "partitions",
            points: PARTITIONS
                .iter()
                .map(|&p| (p as f64, format!("{p} partitions"), Point::records(100, p)))
                .collect(),
            log_x: true,
            unit: "records",
        });
    }
    out.push(Sweep {
        title: "Producer: compression, 1 KiB, 6 partitions",
        part: "producer",
        x_label: "codec (0 none, 1 lz4, 2 zstd)",
        points: CODECS
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut p = Point::records(1024, 6);
                p.compression = c.to_string();
                (i as f64, c.to_string(), p)
            })
            .collect(),
        log_x: false,
        unit: "records",
    });
    for partitions in [1u32, 4] {
        out.push(Sweep {
            title: if partitions == 1 {
                "Transport: requests in flight, 1 partition"
            } else {
                "Transport: requests in flight, 4 partitions"
            },
            part: "transport",
            x_label: "requests in flight",
            points: IN_FLIGHT
                .iter()
                .map(|&c| {
                    let mut p = Point::records(TRANSPORT_SIZE, partitions);
                    p.in_flight = c;
                    (c as f64, format!("{c} in flight"), p)
                })
                .collect(),
            log_x: true,
            unit: "requests",
        });
    }
    out
}

/// A goal of issue #16 and how it came out.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is asked.
    pub goal: String,
    /// The measured figure, or why there is none.
    pub figure: String,
    /// `Some(true)` met, `Some(false)` not met, `None` not measured.
    pub met: Option<bool>,
}

fn goal(goal: String, measured: Option<(String, bool)>, missing: &str) -> Goal {
    match measured {
        Some((figure, met)) => Goal {
            goal,
            figure,
            met: Some(met),
        },
        None => Goal {
            goal,
            figure: missing.to_string(),
            met: None,
        },
    }
}

/// Judges every goal on the samples (median ratios).
pub fn goals(r: &Results) -> Vec<Goal> {
    let mut out = Vec::new();
    let against = |part: &str, peer: &str, point: &Point, rate: f64, cpu: f64| {
        r.ratio(part, peer, point).map(|(rr, cr)| {
            (
                format!("{rr:.2}× the records/s at {cr:.2}× the CPU per record"),
                rr >= rate && cr <= cpu,
            )
        })
    };
    for size in [100u64, 1024] {
        let p = Point::records(size, 6);
        let l = size_label(size);
        out.push(goal(
            format!("Producer {l}, 6 partitions: ≥ 1.3× librdkafka's records/s at ≤ 0.4× its CPU"),
            against("producer", "librdkafka", &p, 1.3, 0.4),
            "not measured (librdkafka not run)",
        ));
        out.push(goal(
            format!("Producer {l}, 6 partitions: ≥ 1.0× franz-go's records/s at ≤ 0.8× its CPU"),
            against("producer", "franz-go", &p, 1.0, 0.8),
            "not measured (franz-go not run)",
        ));
    }
    out.push(goal(
        "Consumer 100 B: ≥ 2× librdkafka's records/s at ≤ 0.25× its CPU".into(),
        against("consumer", "librdkafka", &Point::records(100, 6), 2.0, 0.25),
        "not measured (librdkafka not run)",
    ));
    for size in [100u64, 1024] {
        out.push(goal(
            format!(
                "Consumer {}: ≥ 1.0× franz-go's records/s at ≤ 0.8× its CPU",
                size_label(size)
            ),
            against("consumer", "franz-go", &Point::records(size, 6), 1.0, 0.8),
            "not measured (franz-go not run)",
        ));
    }
    for part in ["producer", "consumer"] {
        let wide = r.agg(part, "franz", &Point::records(100, 1000));
        let six = r.agg(part, "franz", &Point::records(100, 6));
        out.push(goal(
            format!("{part} at 1,000 partitions: franz's CPU per record ≤ 1.5× its own at 6"),
            wide.as_ref().zip(six).map(|(w, s)| {
                let x = w.cpu_ns / s.cpu_ns;
                (
                    format!("{:.0} ns against {:.0} ns: {x:.2}×", w.cpu_ns, s.cpu_ns),
                    x <= 1.5,
                )
            }),
            "not measured",
        ));
        let rd = r.agg(part, "librdkafka", &Point::records(100, 1000));
        out.push(goal(
            format!("{part} at 1,000 partitions: franz's peak RSS under librdkafka's"),
            wide.zip(rd).map(|(w, l)| {
                (
                    format!("{:.0} MiB against {:.0} MiB", w.rss, l.rss),
                    w.rss < l.rss,
                )
            }),
            "not measured",
        ));
    }
    // A floor is the best case: the lowest repetition, not the median (a
    // repetition that shared its core with another process is not a floor).
    let floor = r
        .agg("limits", "copy+CRC floor", &Point::records(100, 0))
        .map(|a| a.cpu_ns_min);
    for (part, bound) in [("producer", 15.0), ("consumer", 10.0)] {
        let franz = r.agg(part, "franz", &Point::records(100, 6));
        out.push(goal(
            format!("{part}: franz's CPU per 100 B record ≤ {bound}× the copy+CRC floor"),
            franz.zip(floor).map(|(f, fl)| {
                let x = f.cpu_ns / fl;
                (
                    format!("{:.0} ns against a {fl:.1} ns floor: {x:.1}×", f.cpu_ns),
                    x <= bound,
                )
            }),
            "not measured",
        ));
    }
    let at = |c: u32, p: u32| {
        let mut point = Point::records(TRANSPORT_SIZE, p);
        point.in_flight = c;
        point
    };
    for p in [1u32, 4] {
        out.push(goal(
            format!("Transport, 64 in flight, {p} partition(s): ≥ 5× NestJS's requests/s"),
            r.ratio("transport", "nestjs", &at(64, p))
                .map(|(rr, _)| (format!("{rr:.2}×"), rr >= 5.0)),
            "not measured (NestJS not run)",
        ));
        out.push(goal(
            format!(
                "Transport, 64 in flight, {p} partition(s): ≥ 1.5× Spring Kafka's requests/s at ≤ 0.3× its CPU per request"
            ),
            r.ratio("transport", "spring", &at(64, p)).map(|(rr, cr)| {
                (
                    format!("{rr:.2}× at {cr:.2}× the CPU"),
                    rr >= 1.5 && cr <= 0.3,
                )
            }),
            "not measured (the Spring Kafka peer is not built yet)",
        ));
    }
    let e2e = r
        .agg(
            "limits",
            "broker produce-to-consume",
            &Point::records(120, 1),
        )
        .map(|a| a.p50_us);
    out.push(goal(
        "Transport p50 at 1 in flight within 1.5× of twice the broker's produce-to-consume p50"
            .into(),
        r.agg("transport", "franz", &at(1, 1))
            .zip(e2e)
            .map(|(f, e)| {
                let x = f.p50_us / (2.0 * e);
                (
                    format!(
                        "{:.2} ms against 2 × {:.2} ms: {x:.2}×",
                        f.p50_us / 1e3,
                        e / 1e3
                    ),
                    x <= 1.5,
                )
            }),
        "not measured",
    ));
    out
}

/// Formats a rate with its min–max.
fn rate_cell(a: &Agg) -> String {
    if a.reps > 1 {
        format!("{:.0} ({:.0}–{:.0})", a.rate, a.rate_min, a.rate_max)
    } else {
        format!("{:.0}", a.rate)
    }
}

/// The markdown table of one sweep.
pub fn sweep_table(r: &Results, s: &Sweep) -> String {
    let mut t = String::new();
    let transport = s.part == "transport";
    let unit = s.unit;
    if transport {
        let _ = writeln!(
            t,
            "| point | client | reps | requests/s median (min–max) | p50 ms | p99 ms | CPU µs per request | peak RSS MiB | req/s franz/peer | CPU franz/peer |"
        );
        let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|");
    } else {
        let _ = writeln!(
            t,
            "| point | client | reps | {unit}/s median (min–max) | MB/s | CPU ns per record | peak RSS MiB | {unit}/s franz/peer | CPU franz/peer |"
        );
        let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|");
    }
    for (_, label, point) in &s.points {
        for client in r.clients(s.part) {
            let Some(a) = r.agg(s.part, &client, point) else {
                continue;
            };
            let (rr, cr) = if client == "franz" {
                ("-".into(), "-".into())
            } else {
                r.ratio(s.part, &client, point)
                    .map(|(a, b)| (format!("{a:.2}"), format!("{b:.2}")))
                    .unwrap_or(("n/a".into(), "n/a".into()))
            };
            if transport {
                let _ = writeln!(
                    t,
                    "| {label} | {client} | {} | {} | {:.2} | {:.2} | {:.1} | {:.0} | {rr} | {cr} |",
                    a.reps,
                    rate_cell(&a),
                    a.p50_us / 1e3,
                    a.p99_us / 1e3,
                    a.cpu_ns / 1e3,
                    a.rss
                );
            } else {
                let _ = writeln!(
                    t,
                    "| {label} | {client} | {} | {} | {:.0} | {:.0} | {:.0} | {rr} | {cr} |",
                    a.reps,
                    rate_cell(&a),
                    a.rate * point.size as f64 / 1e6,
                    a.cpu_ns,
                    a.rss
                );
            }
        }
    }
    t
}

/// A colour per client, stable across charts.
fn colour(client: &str) -> RGBColor {
    match client {
        "franz" => RGBColor(214, 39, 40),
        "librdkafka" => RGBColor(31, 119, 180),
        "java" => RGBColor(255, 127, 14),
        "franz-go" => RGBColor(44, 160, 44),
        "kafkajs" | "nestjs" => RGBColor(148, 103, 189),
        "spring" => RGBColor(140, 86, 75),
        "rskafka" => RGBColor(227, 119, 194),
        _ => RGBColor(127, 127, 127),
    }
}

type ChartResult = Result<(), Box<dyn std::error::Error>>;

/// Draws one sweep as an SVG: the rate on the left, CPU per unit on the
/// right (p50 latency for the transport), one line per client.
pub fn draw_sweep(r: &Results, s: &Sweep, path: &Path) -> ChartResult {
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(s.title, ("sans-serif", 20))?;
    let (left, right) = root.split_horizontally(550);
    let transport = s.part == "transport";
    let metric_names = if transport {
        ["requests/s", "p50 latency (ms)"]
    } else {
        ["records/s", "CPU ns per record"]
    };
    for (panel, name) in [left, right].into_iter().zip(metric_names) {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for client in r.clients(s.part) {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter_map(|(x, _, p)| {
                    let a = r.agg(s.part, &client, p)?;
                    let y = match (name, transport) {
                        ("requests/s" | "records/s", _) => a.rate,
                        (_, true) => a.p50_us / 1e3,
                        _ => a.cpu_ns,
                    };
                    Some((*x, y))
                })
                .collect();
            if !pts.is_empty() {
                series.push((client, pts));
            }
        }
        let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
        let (ymin, ymax) = ys.fold((f64::INFINITY, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if series.is_empty() || ymax <= 0.0 {
            continue;
        }
        let xs: Vec<f64> = s.points.iter().map(|p| p.0).collect();
        let (xmin, xmax) = (xs[0], xs[xs.len() - 1]);
        let labels: Vec<(f64, String)> = s.points.iter().map(|p| (p.0, p.1.clone())).collect();
        let x_fmt = move |x: &f64| {
            labels
                .iter()
                .find(|l| (l.0 - x).abs() < 1e-9 * x.abs().max(1.0))
                .map(|l| l.1.replace(" partitions", "").replace(" in flight", ""))
                .unwrap_or_else(|| compact(*x))
        };
        let mut b = ChartBuilder::on(&panel);
        b.margin(12).x_label_area_size(40).y_label_area_size(70);
        // A log axis where the values span more than a decade.
        let log_y = ymax / ymin.max(f64::MIN_POSITIVE) > 10.0;
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(s.x_label)
                    .y_desc(name)
                    .x_labels(xs.len())
                    .x_label_formatter(&x_fmt)
                    .y_label_formatter(&|y: &f64| axis_number(*y))
                    .light_line_style(WHITE)
                    .draw()?;
                for (client, pts) in &series {
                    let c = colour(client);
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
                        .label(client.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                        });
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }};
        }
        let (ylo, yhi) = if log_y {
            (ymin * 0.8, ymax * 1.25)
        } else {
            (0.0, ymax * 1.15)
        };
        match (s.log_x, log_y) {
            (true, true) => draw!(b.build_cartesian_2d(
                (xmin * 0.8..xmax * 1.25).log_scale(),
                (ylo..yhi).log_scale()
            )?),
            (true, false) => {
                draw!(b.build_cartesian_2d((xmin * 0.8..xmax * 1.25).log_scale(), ylo..yhi)?)
            }
            (false, true) => {
                draw!(b.build_cartesian_2d(xmin - 0.3..xmax + 0.3, (ylo..yhi).log_scale())?)
            }
            (false, false) => draw!(b.build_cartesian_2d(xmin - 0.3..xmax + 0.3, ylo..yhi)?),
        }
    }
    root.present()?;
    Ok(())
}

/// A tick label that is not one of a sweep's points: 10, 1k, 100k.
fn compact(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.0}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1.0 && (x - x.round()).abs() < 1e-6 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

/// A y axis label: 1.5M, 250k, 42, 2.5.
fn axis_number(y: f64) -> String {
    if y >= 1e6 {
        format!("{:.1}M", y / 1e6)
    } else if y >= 1e4 {
        format!("{:.0}k", y / 1e3)
    } else if y >= 10.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.1}")
    }
}

/// The limits table.
pub fn limits_table(r: &Results) -> String {
    let mut t = String::from("| limit | point | reps | figure |\n|---|---|---|---|\n");
    let mut seen: BTreeMap<(String, String), ()> = BTreeMap::new();
    for s in r.samples.iter().filter(|s| s.part == "limits") {
        let key = (s.client.clone(), format!("{:?}", s.point));
        if seen.insert(key, ()).is_some() {
            continue;
        }
        let Some(a) = r.agg("limits", &s.client, &s.point) else {
            continue;
        };
        let (point, figure) = if s.client == "copy+CRC floor" {
            (
                format!("{} values", size_label(s.point.size)),
                format!(
                    "{:.1} ns per record (lowest of the repetitions; median {:.1})",
                    a.cpu_ns_min, a.cpu_ns
                ),
            )
        } else if a.p50_us > 0.0 {
            (
                format!("{} record, acks=all", size_label(s.point.size)),
                format!("p50 {:.2} ms, p99 {:.2} ms", a.p50_us / 1e3, a.p99_us / 1e3),
            )
        } else {
            (
                format!(
                    "{}, {} partitions",
                    size_label(s.point.size),
                    s.point.partitions
                ),
                format!(
                    "{} records/s ({:.0} MB/s), {:.0} CPU ns per record in the client",
                    rate_cell(&a),
                    a.rate * s.point.size as f64 / 1e6,
                    a.cpu_ns
                ),
            )
        };
        let _ = writeln!(t, "| {} | {point} | {} | {figure} |", s.client, a.reps);
    }
    t
}

/// The goals table.
pub fn goals_table(goals: &[Goal]) -> String {
    let mut t = String::from("| goal | measured | result |\n|---|---|---|\n");
    for g in goals {
        let result = match g.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(t, "| {} | {} | {result} |", g.goal, g.figure);
    }
    t
}

/// A file name for a sweep's chart.
pub fn chart_name(s: &Sweep) -> String {
    let slug: String = s
        .title
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut out = String::new();
    for part in slug.split('-').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(part);
    }
    format!("{out}.svg")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(part: &str, client: &str, point: Point, rep: u32, secs: f64, cpu: f64) -> Sample {
        Sample {
            part: part.into(),
            client: client.into(),
            point,
            rep,
            units: 1_000_000,
            secs,
            cpu_secs: cpu,
            peak_rss_mib: 50.0,
            p50_us: 0.0,
            p99_us: 0.0,
            commit: "x".into(),
            at: 0,
        }
    }

    #[test]
    fn ratios_pair_repetitions_and_goals_are_judged_on_their_medians() {
        let p = Point::records(100, 6);
        let samples = vec![
            // franz 2x, 2x and 1x as fast as librdkafka in the three reps;
            // CPU 0.3x each time.
            s("producer", "franz", p.clone(), 0, 1.0, 0.3),
            s("producer", "librdkafka", p.clone(), 0, 2.0, 1.0),
            s("producer", "franz", p.clone(), 1, 2.0, 0.6),
            s("producer", "librdkafka", p.clone(), 1, 4.0, 2.0),
            s("producer", "franz", p.clone(), 2, 1.0, 0.3),
            s("producer", "librdkafka", p.clone(), 2, 1.0, 1.0),
        ];
        let r = Results::new(&samples);
        let (rate, cpu) = r.ratio("producer", "librdkafka", &p).unwrap();
        assert_eq!((rate, cpu), (2.0, 0.3));
        let a = r.agg("producer", "franz", &p).unwrap();
        assert_eq!((a.rate_min, a.rate, a.rate_max, a.reps), (5e5, 1e6, 1e6, 3));
        let g = goals(&r);
        let first = &g[0];
        assert!(first.goal.contains("librdkafka") && first.goal.contains("100 B"));
        assert_eq!(first.met, Some(true), "{first:?}");
        // 1 KiB was never run: not measured, never met.
        assert_eq!(g[2].met, None);
        assert!(sweep_table(&r, &sweeps()[0]).contains("| 100 B | librdkafka | 3 |"));
    }

    #[test]
    fn a_chart_is_drawn_for_a_sweep() {
        let samples: Vec<Sample> = SIZES
            .iter()
            .flat_map(|&size| {
                [
                    s("producer", "franz", Point::records(size, 6), 0, 1.0, 0.3),
                    s("producer", "java", Point::records(size, 6), 0, 3.0, 1.0),
                ]
            })
            .collect();
        let r = Results::new(&samples);
        let path = std::env::temp_dir().join(format!("franz-chart-{}.svg", std::process::id()));
        draw_sweep(&r, &sweeps()[0], &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("franz") && svg.contains("java"));
        std::fs::remove_file(path).unwrap();
        assert_eq!(
            chart_name(&sweeps()[0]),
            "producer-payload-size-6-partitions.svg"
        );
    }
}
