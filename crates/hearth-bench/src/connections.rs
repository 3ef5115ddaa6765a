//! Connections: K idle WebSocket sessions held open on one gateway (each its own session),
//! the gateway's resident memory before and after (from its `/metrics`), then, while they
//! are open, W more sockets on one watched session and R runs on it: the fan-out latency is
//! from the executor publishing the result (`timing.published_us`) to each socket having it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_proto::api::Timing;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::client::{metrics, ws_connect, ws_next, Http, Target};
use crate::error::BenchError;
use crate::latency::body;
use crate::stats::Summary;

#[derive(Debug, Clone)]
pub struct ConnectionsConfig {
    /// Idle sockets to hold.
    pub sockets: usize,
    /// Sockets being opened at once.
    pub parallel: usize,
    /// Sockets on the watched session.
    pub fanout_sockets: usize,
    /// Runs on the watched session.
    pub fanout_runs: usize,
    pub lang: String,
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fanout {
    pub sockets: usize,
    pub runs: usize,
    /// Result published by the executor → received by each socket (every socket, every run).
    pub latency_ms: Summary,
    /// Deliveries expected and received.
    pub expected: usize,
    pub received: usize,
    /// `hearth_ws_connections` after the runs, before the watched sockets closed.
    pub open_after_runs: u64,
    /// POST → `?wait=true` answer of those runs, while every socket is open.
    pub end_to_end_ms: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionsReport {
    pub target: usize,
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub open_seconds: f64,
    pub opens_per_s: f64,
    /// The gateway's `process_resident_memory_bytes`, before the sockets and with all open.
    pub gateway_rss_before: u64,
    pub gateway_rss_after: u64,
    /// `(after - before) / opened`: what one idle socket costs the gateway.
    pub bytes_per_connection: u64,
    pub gateway_fds_after: u64,
    /// `hearth_ws_connections` once the idle sockets were open.
    pub gateway_ws_connections: u64,
    /// Idle sockets the gateway still held at the end (after the fan-out runs).
    pub still_open: u64,
    /// This process's resident memory with every socket open.
    pub bench_rss: u64,
    pub fanout: Option<Fanout>,
}

fn own_rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// The soft limit on open files of this process.
pub fn fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

async fn gauge(http: &mut Http, name: &str) -> Result<u64, BenchError> {
    Ok(metrics(http).await?.get(name).copied().unwrap_or(0.0) as u64)
}

/// Passes on every result event and when it arrived (µs since the epoch); holds the socket
/// open until aborted.
async fn watch(mut ws: crate::client::Ws, tx: mpsc::UnboundedSender<(String, u64)>) {
    loop {
        match ws_next(&mut ws, Duration::from_secs(3600)).await {
            Ok(Some(v)) if v["type"] == "result" => {
                let at = Timing::now_us();
                let _ = tx.send((v["run_id"].as_str().unwrap_or_default().to_string(), at));
            }
            Ok(Some(_)) => {}
            _ => return,
        }
    }
}

pub async fn measure(target: &Target, config: &ConnectionsConfig) -> Result<ConnectionsReport, BenchError> {
    let needed = config.sockets + config.fanout_sockets + 64;
    let limit = fd_limit();
    if needed as u64 > limit {
        return Err(BenchError::FdLimit { needed, limit });
    }
    let mut http = Http::new(target);
    let before = gauge(&mut http, "process_resident_memory_bytes").await?;
    let pid = std::process::id();
    let start = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..config.sockets)
        .map(|i| {
            let target = target.clone();
            async move { ws_connect(&target, &format!("session_id=bench-{pid}-idle-{i}")).await }
        })
        .buffer_unordered(config.parallel.max(1))
        .collect()
        .await;
    let open_seconds = start.elapsed().as_secs_f64();
    let mut idle = Vec::with_capacity(results.len());
    let (mut failed, mut first_error) = (0, None);
    for r in results {
        match r {
            Ok(ws) => idle.push(ws),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    // Let the gateway settle (allocations of the last upgrades, the sockets' first reads).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = gauge(&mut http, "process_resident_memory_bytes").await?;
    let fds = gauge(&mut http, "process_open_fds").await?;
    let open = gauge(&mut http, "hearth_ws_connections").await?;
    let fanout = if config.fanout_sockets > 0 && config.fanout_runs > 0 {
        Some(fan_out(target, config, &mut http).await?)
    } else {
        None
    };
    let still_open = match &fanout {
        Some(f) => f.open_after_runs.saturating_sub(f.sockets as u64),
        None => gauge(&mut http, "hearth_ws_connections").await?,
    };
    let report = ConnectionsReport {
        target: config.sockets,
        opened: idle.len(),
        failed,
        first_error,
        open_seconds: (open_seconds * 100.0).round() / 100.0,
        opens_per_s: (idle.len() as f64 / open_seconds.max(1e-9)).round(),
        gateway_rss_before: before,
        gateway_rss_after: after,
        bytes_per_connection: after.saturating_sub(before) / idle.len().max(1) as u64,
        gateway_fds_after: fds,
        gateway_ws_connections: open,
        still_open,
        bench_rss: own_rss(),
        fanout,
    };
    drop(idle);
    Ok(report)
}

async fn fan_out(target: &Target, config: &ConnectionsConfig, http: &mut Http) -> Result<Fanout, BenchError> {
    let session = format!("bench-{}-fan", std::process::id());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watchers = Vec::new();
    for _ in 0..config.fanout_sockets {
        let ws = ws_connect(target, &format!("session_id={session}")).await?;
        watchers.push(tokio::spawn(watch(ws, tx.clone())));
    }
    drop(tx);
    let body = body(&session, &config.lang, &config.code);
    let mut published = std::collections::HashMap::new();
    let mut e2e = Vec::new();
    for _ in 0..config.fanout_runs {
        let sent = Instant::now();
        let a = http.request("POST", "/v1/runs?wait=true", Some(body.clone()), Duration::from_secs(120)).await?;
        e2e.push(sent.elapsed().as_secs_f64() * 1e3);
        if a.status != 200 {
            return Err(BenchError::Status { what: "a fan-out run".into(), status: a.status });
        }
        let v = a.json()?;
        let t: Option<Timing> = serde_json::from_value(v["timing"].clone()).ok();
        published.insert(v["run_id"].as_str().unwrap_or_default().to_string(), t.map_or(0, |t| t.published_us));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latency = Vec::new();
    let expected = config.fanout_sockets * config.fanout_runs;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while latency.len() < expected {
        let Ok(Some((run_id, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else { break };
        if let Some(&p) = published.get(&run_id).filter(|&&p| p > 0) {
            latency.push((at as f64 - p as f64) / 1e3);
        }
    }
    let open_after_runs = gauge(http, "hearth_ws_connections").await?;
    for w in watchers {
        w.abort();
    }
    Ok(Fanout {
        sockets: config.fanout_sockets,
        runs: config.fanout_runs,
        expected,
        received: latency.len(),
        open_after_runs,
        latency_ms: Summary::of(&latency),
        end_to_end_ms: Summary::of(&e2e),
    })
}
