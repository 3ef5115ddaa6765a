//! Throughput: runs per second of one trivial program at given concurrencies — C clients,
//! each on its own kept-alive connection and session, posting `?wait=true` runs back to
//! back for a fixed time — with the errors by kind and the `RUNS` queue depth sampled from
//! `/metrics`; then bare fork+exec of the same interpreter on C threads for the same time,
//! the floor on these cores.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bare::Bare;
use crate::client::{metrics, Http, Target};
use crate::error::BenchError;
use crate::latency::body;
use crate::stats::Summary;

#[derive(Debug, Clone)]
pub struct ThroughputConfig {
    pub lang: String,
    pub code: String,
    pub concurrency: Vec<usize>,
    /// Measured time per level (after a warm-up of a fifth of it, at most a second).
    pub duration: Duration,
    pub bare: Option<String>,
}

/// One concurrency level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Level {
    pub concurrency: usize,
    /// Runs answered in the measured time (ok or not).
    pub runs: u64,
    pub ok: u64,
    pub errors: u64,
    /// Errors by kind (`http 503`, `status timeout`, `timeout`...).
    pub error_kinds: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Runs that ended `ok`, per second.
    pub runs_per_s: f64,
    /// Latency of the ok runs (POST → answer), under this load.
    pub latency_ms: Summary,
    /// Runs waiting on `RUNS`, sampled every 200 ms (`hearth_queue_depth`).
    pub queue_depth_max: f64,
    pub queue_depth_mean: f64,
    /// Bare fork+exec of the same program on as many threads.
    pub bare_runs_per_s: f64,
    /// `runs_per_s / bare_runs_per_s`.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputReport {
    pub lang: String,
    pub code: String,
    pub duration_s: f64,
    pub bare_command: Vec<String>,
    pub levels: Vec<Level>,
    /// The best level of each, and their ratio.
    pub peak_runs_per_s: f64,
    pub peak_bare_runs_per_s: f64,
    pub peak_ratio: f64,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency: Vec<f64>,
}

/// One client: runs back to back until `end`, counting only what was sent after `from`.
async fn client(target: Target, session: String, lang: String, code: String, from: Instant, end: Instant) -> Tally {
    let mut http = Http::new(&target);
    let body = body(&session, &lang, &code);
    let mut t = Tally::default();
    while Instant::now() < end {
        let sent = Instant::now();
        let a = http.request("POST", "/v1/runs?wait=true", Some(body.clone()), Duration::from_secs(120)).await;
        if sent < from {
            continue;
        }
        let kind = match a {
            Ok(a) if a.status == 200 => match a.json().map(|v| v["status"].as_str().map(str::to_owned)) {
                Ok(Some(s)) if s == "ok" => None,
                Ok(s) => Some(format!("status {}", s.unwrap_or_default())),
                Err(_) => Some("bad answer".into()),
            },
            Ok(a) => Some(format!("http {}", a.status)),
            Err(BenchError::Timeout(_)) => Some("timeout".into()),
            Err(e) => Some(format!("{e}").chars().take(60).collect()),
        };
        match kind {
            None => {
                t.ok += 1;
                t.latency.push(sent.elapsed().as_secs_f64() * 1e3);
            }
            Some(k) => {
                *t.errors.entry(k).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    t
}

/// Samples the queue depth every 200 ms until `end`.
async fn sample_queue(target: Target, end: Instant) -> Vec<f64> {
    let mut http = Http::new(&target);
    let mut depths = Vec::new();
    while Instant::now() < end {
        if let Ok(m) = metrics(&mut http).await {
            depths.extend(m.get("hearth_queue_depth").copied());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    depths
}

async fn level(target: &Target, config: &ThroughputConfig, c: usize, bare: &Arc<Bare>) -> Result<Level, BenchError> {
    let warmup = (config.duration / 5).min(Duration::from_secs(1));
    let from = Instant::now() + warmup;
    let end = from + config.duration;
    let clients: Vec<_> = (0..c)
        .map(|i| {
            let session = format!("bench-{}-tp-{c}-{i}", std::process::id());
            tokio::spawn(client(target.clone(), session, config.lang.clone(), config.code.clone(), from, end))
        })
        .collect();
    tokio::time::sleep_until(from.into()).await;
    let depths = sample_queue(target.clone(), end).await;
    let mut all = Tally::default();
    for h in clients {
        let t = h.await.map_err(|e| BenchError::Protocol(e.to_string()))?;
        all.ok += t.ok;
        all.latency.extend(t.latency);
        for (k, n) in t.errors {
            *all.errors.entry(k).or_default() += n;
        }
    }
    // The runs still in flight at `end` finished after it: count the time they took.
    let seconds = from.elapsed().as_secs_f64().max(config.duration.as_secs_f64());
    let b = bare.clone();
    let d = config.duration;
    let (bare_runs, bare_s) = tokio::task::spawn_blocking(move || b.throughput(c, d))
        .await
        .map_err(|e| BenchError::Protocol(e.to_string()))??;
    let errors: u64 = all.errors.values().sum();
    let runs_per_s = all.ok as f64 / seconds;
    let bare_runs_per_s = bare_runs as f64 / bare_s;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(Level {
        concurrency: c,
        runs: all.ok + errors,
        ok: all.ok,
        errors,
        error_kinds: all.errors,
        seconds: round(seconds),
        runs_per_s: round(runs_per_s),
        latency_ms: Summary::of(&all.latency),
        queue_depth_max: depths.iter().copied().fold(0.0, f64::max),
        queue_depth_mean: round(depths.iter().sum::<f64>() / depths.len().max(1) as f64),
        bare_runs_per_s: round(bare_runs_per_s),
        ratio: if bare_runs_per_s > 0.0 { (runs_per_s / bare_runs_per_s * 1000.0).round() / 1000.0 } else { 0.0 },
    })
}

pub async fn measure(target: &Target, config: &ThroughputConfig) -> Result<ThroughputReport, BenchError> {
    let bare = Arc::new(Bare::new(&config.lang, &config.code, config.bare.as_deref())?);
    bare.run_once()?;
    let mut levels = Vec::new();
    for &c in &config.concurrency {
        levels.push(level(target, config, c.max(1), &bare).await?);
        // Let the pool refill before the next level.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let peak = levels.iter().map(|l| l.runs_per_s).fold(0.0, f64::max);
    let peak_bare = levels.iter().map(|l| l.bare_runs_per_s).fold(0.0, f64::max);
    Ok(ThroughputReport {
        lang: config.lang.clone(),
        code: config.code.clone(),
        duration_s: config.duration.as_secs_f64(),
        bare_command: bare.argv.clone(),
        levels,
        peak_runs_per_s: peak,
        peak_bare_runs_per_s: peak_bare,
        peak_ratio: if peak_bare > 0.0 { (peak / peak_bare * 1000.0).round() / 1000.0 } else { 0.0 },
    })
}
