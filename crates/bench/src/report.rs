//! Results: the terminal table, `results.json` and `latency.svg` (p50, p99 and p999 per
//! scenario on a log scale). Ratios are against floors measured in the same run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Scenario name.
    pub name: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Successful operations.
    pub operations: u64,
    /// Failed operations.
    pub errors: u64,
    /// Successful operations per second.
    pub per_second: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
}

impl Measurement {
    /// Figures from a latency histogram in microseconds.
    pub fn from_histogram(
        name: &str,
        histogram: &Histogram<u64>,
        elapsed: Duration,
        errors: u64,
        concurrency: usize,
    ) -> Self {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
        Self {
            name: name.to_owned(),
            concurrency,
            operations: histogram.len(),
            errors,
            per_second: histogram.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
            p50_ms: ms(0.5),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
        }
    }
}

/// Every measurement of a run.
#[derive(Debug, Serialize)]
pub struct Report {
    profile: String,
    backend: String,
    concurrency: usize,
    machine: String,
    started_at: String,
    measurements: Vec<Measurement>,
    /// Figures that are not latencies (memory per stream, seeding time, depth ratios).
    notes: Vec<(String, String)>,
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {model}")
}

impl Report {
    /// An empty report.
    pub fn new(profile: &str, backend: &str, concurrency: usize) -> Self {
        Self {
            profile: profile.to_owned(),
            backend: backend.to_owned(),
            concurrency,
            machine: machine(),
            started_at: chrono::Utc::now().to_rfc3339(),
            measurements: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a figure that is not a latency, and prints it.
    pub fn note(&mut self, name: &str, value: String) {
        println!("  {name}: {value}");
        self.notes.push((name.to_owned(), value));
    }

    /// Adds a measurement and prints its line.
    pub fn push(&mut self, measurement: Measurement) {
        println!(
            "  {:<36} {:>9.0}/s  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  p999 {:>7.2} ms  errors {}",
            measurement.name,
            measurement.per_second,
            measurement.p50_ms,
            measurement.p95_ms,
            measurement.p99_ms,
            measurement.p999_ms,
            measurement.errors
        );
        self.measurements.push(measurement);
    }

    fn find(&self, prefix: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|measurement| measurement.name.starts_with(prefix))
    }

    /// Prints the table with ratios against the floors.
    pub fn print(&self) {
        println!();
        println!(
            "{} profile on {} ({}), {} in flight",
            self.profile, self.backend, self.machine, self.concurrency
        );
        println!(
            "{:<36} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>14} {:>14}",
            "scenario",
            "ops/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p999 ms",
            "errors",
            "vs db floor",
            "p99 vs grpc"
        );
        let database = self.find("database floor").map(|floor| floor.per_second);
        let grpc = self.find("grpc floor").map(|floor| floor.p99_ms);
        for measurement in &self.measurements {
            let throughput = database.map_or(String::from("-"), |floor| {
                format!("{:.2}x", measurement.per_second / floor.max(f64::EPSILON))
            });
            let latency = grpc.map_or(String::from("-"), |floor| {
                format!("{:.1}x", measurement.p99_ms / floor.max(f64::EPSILON))
            });
            println!(
                "{:<36} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>14} {:>14}",
                measurement.name,
                measurement.per_second,
                measurement.p50_ms,
                measurement.p95_ms,
                measurement.p99_ms,
                measurement.p999_ms,
                measurement.errors,
                throughput,
                latency
            );
        }
        for (name, value) in &self.notes {
            println!("{name}: {value}");
        }
    }

    /// Writes `results.json` and `latency.svg` into `folder`.
    pub fn write(&self, folder: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(folder)?;
        std::fs::write(
            folder.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(folder.join("latency.svg"), self.svg())?;
        if let Some(svg) = self.history_svg() {
            std::fs::write(folder.join("history.svg"), svg)?;
        }
        Ok(())
    }

    /// The history-depth curve: p50 and p99 of the newest and the oldest page against the
    /// conversation's length (log scale), from the `history N, newest|oldest page` rows.
    fn history_svg(&self) -> Option<String> {
        let points: Vec<(f64, &str, f64, f64)> = self
            .measurements
            .iter()
            .filter_map(|measurement| {
                let rest = measurement.name.strip_prefix("history ")?;
                let (size, label) = rest.split_once(", ")?;
                let size: f64 = size.parse().ok()?;
                let label = label.strip_suffix(" page")?;
                Some((size, label, measurement.p50_ms, measurement.p99_ms))
            })
            .collect();
        if points.is_empty() {
            return None;
        }
        let (width, height, left, bottom) = (700.0, 420.0, 70.0, 360.0);
        let top_ms = points.iter().map(|point| point.3).fold(1.0_f64, f64::max) * 1.2;
        let x = |size: f64| left + (size.log10() - 2.0) / 5.0 * (width - left - 30.0);
        let y = |ms: f64| bottom - ms / top_ms * (bottom - 40.0);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><text x="10" y="20" font-size="14">ListMessages page latency by conversation length: {} on {}</text>"#,
            self.profile, self.backend
        );
        for exponent in 2..=7 {
            let position = x(10_f64.powi(exponent));
            let _ = write!(
                svg,
                r##"<line x1="{position}" y1="40" x2="{position}" y2="{bottom}" stroke="#ddd"/><text x="{position}" y="{}" text-anchor="middle">10^{exponent}</text>"##,
                bottom + 18.0
            );
        }
        for step in 0..=4 {
            let ms = top_ms * f64::from(step) / 4.0;
            let _ = write!(
                svg,
                r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#eee"/><text x="{2}" y="{0}" text-anchor="end">{ms:.1} ms</text>"##,
                y(ms),
                width - 30.0,
                left - 5.0
            );
        }
        let series = [
            ("newest", 2, "#4c78a8", "newest page p50"),
            ("oldest", 2, "#f58518", "oldest page p50"),
            ("newest", 3, "#9ecae9", "newest page p99"),
            ("oldest", 3, "#ffbf79", "oldest page p99"),
        ];
        for (index, (label, column, color, legend)) in series.into_iter().enumerate() {
            let line: Vec<String> = points
                .iter()
                .filter(|point| point.1 == label)
                .map(|point| {
                    let value = if column == 2 { point.2 } else { point.3 };
                    format!("{:.1},{:.1}", x(point.0), y(value))
                })
                .collect();
            let _ = write!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/><text x="{}" y="{}" fill="{color}">{legend}</text>"#,
                line.join(" "),
                width - 200.0,
                50.0 + 15.0 * index as f64
            );
        }
        svg.push_str("</svg>\n");
        Some(svg)
    }

    /// Bars of p50, p99 and p999 per scenario, log scale from 0.01 ms to 10 s.
    fn svg(&self) -> String {
        let (left, row, width) = (250.0, 54.0, 900.0);
        let height = 70.0 + row * self.measurements.len() as f64;
        let x = |ms: f64| left + (ms.max(0.01).log10() + 2.0) / 6.0 * (width - left - 20.0);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            svg,
            r#"<text x="10" y="20" font-size="14">Latency per scenario (ms, log scale): {} on {}</text>"#,
            self.profile, self.backend
        );
        for (tick, label) in [
            (0.01, "0.01"),
            (0.1, "0.1"),
            (1.0, "1"),
            (10.0, "10"),
            (100.0, "100"),
            (1000.0, "1000"),
            (10000.0, "10000"),
        ] {
            let position = x(tick);
            let _ = write!(
                svg,
                r##"<line x1="{position}" y1="35" x2="{position}" y2="{}" stroke="#ddd"/><text x="{position}" y="{}" text-anchor="middle">{label}</text>"##,
                height - 20.0,
                height - 5.0
            );
        }
        for (index, measurement) in self.measurements.iter().enumerate() {
            let top = 40.0 + row * index as f64;
            let _ = write!(
                svg,
                r#"<text x="10" y="{}">{}</text>"#,
                top + 26.0,
                measurement.name
            );
            for (offset, (value, color, label)) in [
                (measurement.p50_ms, "#4c78a8", "p50"),
                (measurement.p99_ms, "#f58518", "p99"),
                (measurement.p999_ms, "#e45756", "p999"),
            ]
            .into_iter()
            .enumerate()
            {
                let y = top + offset as f64 * 15.0;
                let _ = write!(
                    svg,
                    r#"<rect x="{left}" y="{y}" width="{}" height="12" fill="{color}"/><text x="{}" y="{}">{label} {value:.2}</text>"#,
                    (x(value) - left).max(1.0),
                    x(value) + 4.0,
                    y + 10.0
                );
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}
