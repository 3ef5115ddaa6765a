//! `hearth bench`: measures a running hearth the way its users would meet it — over HTTP
//! and WebSockets, from outside — and sets every figure beside its floor, the same program
//! run bare on this host in the same bench run: latency (N sequential runs, with the
//! breakdown the runs' own `timing` gives), throughput (runs per second at given
//! concurrencies, beside bare fork+exec), and connections (K idle sockets on one gateway:
//! memory per connection and fan-out latency while they are open). It writes a JSON report,
//! a Markdown summary and SVG plots, and judges the targets of issue 8.
//!
//! Layout:
//! - [`client`]: HTTP/1.1 (kept alive) and WebSocket clients, `/metrics` parsing.
//! - [`bare`]: the floor: the same program by fork+exec of the same interpreter.
//! - [`latency`]: sequential runs, first output, result, breakdown.
//! - [`throughput`]: runs per second at each concurrency, queue depth, errors.
//! - [`connections`]: many idle sockets, memory per connection, fan-out latency.
//! - [`stats`]: order statistics.
//! - [`report`]: the JSON report, the Markdown summary, the targets.
//! - [`svg`]: the plots.
//! - [`error`]: the `BenchError`.

#![deny(unsafe_code)]

pub mod bare;
pub mod client;
pub mod connections;
pub mod error;
pub mod latency;
pub mod report;
pub mod stats;
pub mod svg;
pub mod throughput;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use client::Target;
pub use connections::ConnectionsConfig;
pub use error::BenchError;
pub use latency::LatencyConfig;
pub use report::Report;
pub use throughput::ThroughputConfig;

/// The trivial program of a language, as the bench runs it when given no code.
pub fn default_code(lang: &str) -> Option<&'static str> {
    Some(match lang {
        "python" => "print(1)",
        "javascript" => "console.log(1)",
        "bash" => "echo 1",
        "ruby" => "puts 1",
        "perl" => "print 1, \"\\n\";",
        "php" => "<?php echo 1, \"\\n\";",
        "lua" => "print(1)",
        _ => return None,
    })
}

/// Everything one bench run does.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub url: String,
    pub token: Option<String>,
    /// Where the report goes (created).
    pub out: PathBuf,
    /// Said in the report: what else ran on the machine, the build, anything that matters.
    pub note: String,
    pub latency: Vec<LatencyConfig>,
    pub throughput: Vec<ThroughputConfig>,
    pub connections: Option<ConnectionsConfig>,
}

/// Runs every part of `config` in turn (latency first, on a quiet service), writes the
/// report into `config.out` and returns it.
pub async fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    let target = Target::resolve(&config.url, config.token.clone()).await?;
    let mut http = client::Http::new(&target);
    let ready = http.get("/readyz").await?;
    if ready.status != 200 {
        return Err(BenchError::Status { what: format!("GET {}/readyz", target.url), status: ready.status });
    }
    let started = Instant::now();
    let mut report = Report {
        format: 1,
        hearth_version: format!("hearth {}", env!("CARGO_PKG_VERSION")),
        started_at: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        seconds: 0.0,
        url: target.url.clone(),
        note: config.note.clone(),
        host: report::Host::now(),
        latency: Vec::new(),
        throughput: Vec::new(),
        connections: None,
        targets: Vec::new(),
    };
    for l in &config.latency {
        tracing::info!(lang = %l.lang, runs = l.runs, "latency");
        report.latency.push(latency::measure(&target, l).await?);
    }
    for t in &config.throughput {
        tracing::info!(lang = %t.lang, levels = ?t.concurrency, "throughput");
        report.throughput.push(throughput::measure(&target, t).await?);
    }
    if let Some(c) = &config.connections {
        tracing::info!(sockets = c.sockets, "connections");
        report.connections = Some(connections::measure(&target, c).await?);
    }
    report.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    report.host.load_after = report::Host::load();
    report.judge();
    report.write(&config.out)?;
    Ok(report)
}
