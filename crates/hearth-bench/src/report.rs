//! The report: one JSON document with every figure (and the raw latency samples), a
//! Markdown summary beside it, and the plots it links to. [`Report::targets`] holds the
//! issue's targets, each with what was measured and whether it was met.

use std::fmt::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::connections::ConnectionsReport;
use crate::error::BenchError;
use crate::latency::LatencyReport;
use crate::svg;
use crate::throughput::ThroughputReport;

/// The machine the bench ran on, and how busy it was.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Host {
    pub cpus: usize,
    pub kernel: String,
    /// `/proc/loadavg`'s three numbers when the bench started and ended.
    pub load_before: Vec<f64>,
    pub load_after: Vec<f64>,
}

impl Host {
    pub fn load() -> Vec<f64> {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        text.split_whitespace().take(3).filter_map(|v| v.parse().ok()).collect()
    }

    pub fn now() -> Host {
        Host {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            load_before: Host::load(),
            load_after: Vec::new(),
        }
    }
}

/// One of the targets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Format version of this document.
    pub format: u32,
    pub hearth_version: String,
    /// Seconds since the Unix epoch when the bench started.
    pub started_at: u64,
    pub seconds: f64,
    pub url: String,
    /// What the person running it said about the conditions (`--note`).
    pub note: String,
    pub host: Host,
    pub latency: Vec<LatencyReport>,
    pub throughput: Vec<ThroughputReport>,
    pub connections: Option<ConnectionsReport>,
    pub targets: Vec<Target>,
}

fn f(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

impl Report {
    /// Judges the targets from what was measured (those not measured are left out).
    pub fn judge(&mut self) {
        let mut t = Vec::new();
        for l in &self.latency {
            match l.lang.as_str() {
                "python" | "javascript" => t.push(Target {
                    name: format!("{} `{}` end to end vs bare", l.lang, l.code),
                    goal: "median ratio <= 1.0".into(),
                    measured: format!(
                        "{} ms vs bare {} ms: ratio {} (p99 ratio {})",
                        f(l.end_to_end_ms.p50),
                        f(l.bare_ms.p50),
                        l.ratio_p50,
                        l.ratio_p99
                    ),
                    met: l.end_to_end_ms.n > 0 && l.ratio_p50 <= 1.0,
                }),
                "bash" => t.push(Target {
                    name: format!("bash `{}` platform overhead", l.code),
                    goal: "< 5 ms median, < 20 ms p99".into(),
                    measured: format!("{} ms median, {} ms p99", f(l.overhead_ms.p50), f(l.overhead_ms.p99)),
                    met: l.end_to_end_ms.n > 0 && l.overhead_ms.p50 < 5.0 && l.overhead_ms.p99 < 20.0,
                }),
                _ => {}
            }
        }
        if let Some(c) = &self.connections {
            t.push(Target {
                name: "concurrent WebSocket sessions on one gateway".into(),
                goal: ">= 10000".into(),
                measured: format!(
                    "{} open of {} asked ({} still open at the end), {} KiB each",
                    c.opened,
                    c.target,
                    c.still_open,
                    c.bytes_per_connection / 1024
                ),
                met: c.opened >= 10_000 && c.still_open >= 10_000,
            });
        }
        for tp in &self.throughput {
            t.push(Target {
                name: format!("throughput of {} `{}`", tp.lang, tp.code),
                goal: ">= half of bare fork+exec".into(),
                measured: format!(
                    "{} runs/s vs bare {} runs/s: ratio {}",
                    f(tp.peak_runs_per_s),
                    f(tp.peak_bare_runs_per_s),
                    tp.peak_ratio
                ),
                met: tp.peak_ratio >= 0.5,
            });
        }
        self.targets = t;
    }

    /// Writes `report.json`, `report.md` and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BenchError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| BenchError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files: Vec<(String, String)> = Vec::new();
        for l in &self.latency {
            let s = &l.samples;
            let series = [
                ("end to end", &s.end_to_end_ms[..]),
                ("first output", &s.first_output_ms[..]),
                ("bare", &s.bare_ms[..]),
            ];
            let title = format!("{} `{}`: POST to answer, vs bare", l.lang, l.code);
            files.push((format!("latency-{}-cdf.svg", l.lang), svg::cdf(&title, "milliseconds", &series)));
            files.push((format!("latency-{}-hist.svg", l.lang), svg::histogram(&title, "milliseconds", &series, 40)));
        }
        for tp in &self.throughput {
            let pts = |f: &dyn Fn(&crate::throughput::Level) -> f64| {
                tp.levels.iter().map(|l| (l.concurrency as f64, f(l))).collect()
            };
            let series = [
                svg::Series { name: "hearth".into(), points: pts(&|l| l.runs_per_s) },
                svg::Series { name: "bare fork+exec".into(), points: pts(&|l| l.bare_runs_per_s) },
            ];
            let title = format!("{} `{}`: runs per second", tp.lang, tp.code);
            files.push((
                format!("throughput-{}.svg", tp.lang),
                svg::lines(&title, "concurrency", "runs/s", &series, true, false),
            ));
        }
        let json = serde_json::to_string_pretty(self).expect("a report encodes");
        files.push(("report.json".into(), json + "\n"));
        files.push(("report.md".into(), self.markdown()));
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        Ok(())
    }

    /// The Markdown summary (the plots are linked by relative name).
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let load = |l: &[f64]| l.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" ");
        let _ = writeln!(m, "# hearth bench\n");
        let _ = writeln!(
            m,
            "{} against {}, {} CPUs, Linux {}; load average {} before, {} after; {:.0} s.",
            self.hearth_version,
            self.url,
            self.host.cpus,
            self.host.kernel,
            load(&self.host.load_before),
            load(&self.host.load_after),
            self.seconds
        );
        if !self.note.is_empty() {
            let _ = writeln!(m, "\n{}", self.note);
        }
        if !self.targets.is_empty() {
            let _ = writeln!(m, "\n## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|");
            for t in &self.targets {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} |",
                    t.name,
                    t.goal,
                    t.measured,
                    if t.met { "yes" } else { "**no**" }
                );
            }
        }
        for l in &self.latency {
            let _ = writeln!(
                m,
                "\n## Latency: {} `{}`\n\n{} runs after {} warm-up, {} ms apart; {} errors{}; {} of {} on a prepared interpreter.\n",
                l.lang,
                l.code,
                l.runs,
                l.warmup,
                l.pause_ms,
                l.errors,
                l.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
                l.prepared_runs,
                l.end_to_end_ms.n
            );
            let _ = writeln!(m, "| ms | n | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|");
            let rows = [
                ("POST → `?wait=true` answer", &l.end_to_end_ms),
                ("  of which runs on a prepared interpreter", &l.end_to_end_prepared_ms),
                ("POST → first output on the WebSocket", &l.first_output_ms),
                ("POST → `result` on the WebSocket", &l.ws_result_ms),
                ("sandbox only (acquired → verdict)", &l.sandbox_ms),
                ("bare, same host (`{}`)", &l.bare_ms),
                ("end to end − bare median", &l.overhead_ms),
            ];
            for (name, s) in rows.into_iter().filter(|(_, s)| s.n > 0) {
                let name = name.replace("{}", &l.bare_command.join(" "));
                let _ = writeln!(m, "| {name} | {} | {} | {} | {} | {} |", s.n, f(s.p50), f(s.p90), f(s.p99), f(s.max));
            }
            let _ = writeln!(m, "\nRatio to bare: {} at the median, {} at p99.\n", l.ratio_p50, l.ratio_p99);
            let _ = writeln!(m, "Where the time goes (docs/benchmarks.md, the timing object):\n");
            let _ = writeln!(m, "| span | mean ms | p50 | p99 |\n|---|---:|---:|---:|");
            for (name, s) in &l.breakdown_ms {
                let _ = writeln!(m, "| {name} | {} | {} | {} |", f(s.mean), f(s.p50), f(s.p99));
            }
            let _ = writeln!(m, "\n![CDF](latency-{0}-cdf.svg) ![histogram](latency-{0}-hist.svg)", l.lang);
        }
        for tp in &self.throughput {
            let _ = writeln!(
                m,
                "\n## Throughput: {} `{}`\n\n{} s per level; bare = `{}` on as many threads.\n",
                tp.lang,
                tp.code,
                tp.duration_s,
                tp.bare_command.join(" ")
            );
            let _ = writeln!(
                m,
                "| concurrency | runs/s | bare runs/s | ratio | p50 ms | p99 ms | errors | queue max | queue mean |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for l in &tp.levels {
                let errors = if l.errors == 0 {
                    "0".to_string()
                } else {
                    format!(
                        "{} ({})",
                        l.errors,
                        l.error_kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
                    )
                };
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    l.concurrency,
                    f(l.runs_per_s),
                    f(l.bare_runs_per_s),
                    l.ratio,
                    f(l.latency_ms.p50),
                    f(l.latency_ms.p99),
                    errors,
                    l.queue_depth_max,
                    l.queue_depth_mean
                );
            }
            let _ = writeln!(m, "\n![throughput](throughput-{}.svg)", tp.lang);
        }
        if let Some(c) = &self.connections {
            let _ = writeln!(m, "\n## Connections\n");
            let _ = writeln!(
                m,
                "{} of {} idle sockets opened in {} s ({} /s), {} failed{}; the gateway held {} sockets and {} fds; {} still open at the end.",
                c.opened,
                c.target,
                c.open_seconds,
                c.opens_per_s,
                c.failed,
                c.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
                c.gateway_ws_connections,
                c.gateway_fds_after,
                c.still_open
            );
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            let _ = writeln!(
                m,
                "\nGateway resident memory {} MiB before, {} MiB with them open: **{} KiB per connection**. (The bench itself: {} MiB.)",
                f(mib(c.gateway_rss_before)),
                f(mib(c.gateway_rss_after)),
                f(c.bytes_per_connection as f64 / 1024.0),
                f(mib(c.bench_rss))
            );
            if let Some(fo) = &c.fanout {
                let s = &fo.latency_ms;
                let _ = writeln!(
                    m,
                    "\nFan-out while they are open: {} sockets on one session, {} runs; {} of {} deliveries; result published → on each socket: p50 {} ms, p99 {} ms, max {} ms. Those runs end to end: p50 {} ms, p99 {} ms.",
                    fo.sockets,
                    fo.runs,
                    fo.received,
                    fo.expected,
                    f(s.p50),
                    f(s.p99),
                    f(s.max),
                    f(fo.end_to_end_ms.p50),
                    f(fo.end_to_end_ms.p99)
                );
            }
        }
        m
    }
}
