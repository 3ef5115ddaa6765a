//! Latency: N sequential runs of one program, each timed from the moment the POST is sent
//! to the first output byte on the session's WebSocket, to the `?wait=true` answer, and to
//! the `result` event on the socket; each followed by one bare run of the same program on
//! this host (interleaved, so both see the same background load), then a pause that lets
//! the pool refill. The run's own `timing` splits each end-to-end time into spans.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hearth_proto::api::Timing;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::bare::Bare;
use crate::client::{ws_connect, ws_next, Http, Target};
use crate::error::BenchError;
use crate::stats::Summary;

/// What to measure.
#[derive(Debug, Clone)]
pub struct LatencyConfig {
    pub lang: String,
    pub code: String,
    pub runs: usize,
    /// Runs before the measured ones (not counted).
    pub warmup: usize,
    /// Between runs: time for the pool to replace the sandbox the run used.
    pub pause: Duration,
    /// Overrides the bare command (`CMD ... {file}`).
    pub bare: Option<String>,
}

/// The spans of one run, in milliseconds, in the order they happen; they add up to the
/// end-to-end time (docs/benchmarks.md, "The timing object").
pub const SPANS: [&str; 8] = [
    "client_to_gateway",
    "gateway_publish",
    "queue_wait",
    "sandbox_acquire",
    "agent_start",
    "program",
    "agent_finish",
    "result_publish",
];

/// Raw samples, for plots and for anyone who wants other statistics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    pub end_to_end_ms: Vec<f64>,
    /// Whether each run (same order) went to a prepared interpreter.
    #[serde(default)]
    pub prepared: Vec<bool>,
    pub first_output_ms: Vec<f64>,
    pub bare_ms: Vec<f64>,
}

/// What N runs came to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyReport {
    pub lang: String,
    pub code: String,
    pub runs: usize,
    pub warmup: usize,
    pub pause_ms: u64,
    /// Runs that did not end `ok` (left out of every statistic).
    pub errors: usize,
    pub first_error: Option<String>,
    /// Runs whose program went to an interpreter started ahead of time.
    pub prepared_runs: usize,
    /// POST sent → `?wait=true` answer read.
    pub end_to_end_ms: Summary,
    /// The same, of the runs that went to a prepared interpreter only.
    #[serde(default)]
    pub end_to_end_prepared_ms: Summary,
    /// POST sent → first `output` event on the session's WebSocket.
    pub first_output_ms: Summary,
    /// POST sent → `result` event on the session's WebSocket.
    pub ws_result_ms: Summary,
    /// The same program run bare on this host (fork + exec + wait).
    pub bare_ms: Summary,
    pub bare_command: Vec<String>,
    /// End to end over bare, at the median and the tail (≤ 1: faster than bare).
    pub ratio_p50: f64,
    pub ratio_p99: f64,
    /// End to end minus the bare median, per run: what hearth adds to the program.
    pub overhead_ms: Summary,
    /// The sandbox alone: sandbox in hand → verdict (`acquired_us` → `exited_us`).
    pub sandbox_ms: Summary,
    /// Each span of [`SPANS`].
    pub breakdown_ms: Vec<(String, Summary)>,
    pub samples: Samples,
}

/// One measured run.
struct One {
    end_to_end: f64,
    first_output: Option<f64>,
    ws_result: Option<f64>,
    prepared: bool,
    spans: Option<[f64; 8]>,
    sandbox: Option<f64>,
}

/// An event as the socket reader saw it: when, and what.
type Seen = (Instant, Value);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn spans(t: &Timing, sent_us: u64, answered_us: u64) -> Option<[f64; 8]> {
    let steps = [sent_us, t.received_us, t.queued_us, t.pulled_us, t.acquired_us, t.started_us];
    if steps.contains(&0) || t.exited_us == 0 {
        return None;
    }
    let d = |a: u64, b: u64| (b as f64 - a as f64) / 1e3;
    let program = t.program_us as f64 / 1e3;
    Some([
        d(sent_us, t.received_us),
        d(t.received_us, t.queued_us),
        d(t.queued_us, t.pulled_us),
        d(t.pulled_us, t.acquired_us),
        d(t.acquired_us, t.started_us),
        program,
        d(t.started_us, t.exited_us) - program,
        d(t.exited_us, answered_us),
    ])
}

/// The body of one run of `lang`'s `code` on `session`.
pub fn body(session: &str, lang: &str, code: &str) -> Bytes {
    let v = json!({"user_id": "bench", "session_id": session, "lang": lang, "code": code});
    Bytes::from(serde_json::to_vec(&v).expect("json encodes"))
}

/// Reads the socket into `tx` until it closes.
async fn read_socket(mut ws: crate::client::Ws, tx: mpsc::UnboundedSender<Seen>) {
    while let Ok(Some(v)) = ws_next(&mut ws, Duration::from_secs(3600)).await {
        if tx.send((Instant::now(), v)).is_err() {
            return;
        }
    }
}

/// Sends one run and waits for its answer and its events.
async fn one(
    http: &mut Http,
    events: &mut mpsc::UnboundedReceiver<Seen>,
    body: &Bytes,
) -> Result<Result<One, String>, BenchError> {
    let sent_at = Instant::now();
    let sent_us = Timing::epoch_us(SystemTime::now());
    let a = http.request("POST", "/v1/runs?wait=true", Some(body.clone()), Duration::from_secs(120)).await?;
    let end_to_end = ms(sent_at.elapsed());
    let answered_us = Timing::now_us();
    if a.status != 200 {
        return Ok(Err(format!("answered {}: {}", a.status, String::from_utf8_lossy(&a.body))));
    }
    let v = a.json()?;
    let run_id = v["run_id"].as_str().unwrap_or_default().to_string();
    let (mut first_output, mut ws_result) = (None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ws_result.is_none() {
        let Ok(Some((at, ev))) = tokio::time::timeout_at(deadline, events.recv()).await else {
            return Err(BenchError::Timeout(format!("the result event of run {run_id} on the websocket")));
        };
        if ev["run_id"] != run_id.as_str() {
            continue;
        }
        let since = ms(at.saturating_duration_since(sent_at));
        match ev["type"].as_str() {
            Some("output") if first_output.is_none() => first_output = Some(since),
            Some("result") => ws_result = Some(since),
            _ => {}
        }
    }
    if v["status"] != "ok" {
        return Ok(Err(format!("run ended {}: {}", v["status"], v["message"].as_str().unwrap_or_default())));
    }
    let timing: Option<Timing> = serde_json::from_value(v["timing"].clone()).ok();
    Ok(Ok(One {
        end_to_end,
        first_output,
        ws_result,
        prepared: timing.is_some_and(|t| t.prepared),
        spans: timing.and_then(|t| spans(&t, sent_us, answered_us)),
        sandbox: timing
            .filter(|t| t.acquired_us > 0 && t.exited_us >= t.acquired_us)
            .map(|t| (t.exited_us - t.acquired_us) as f64 / 1e3),
    }))
}

/// Measures `config` against `target`.
pub async fn measure(target: &Target, config: &LatencyConfig) -> Result<LatencyReport, BenchError> {
    let bare = std::sync::Arc::new(Bare::new(&config.lang, &config.code, config.bare.as_deref())?);
    bare.run_once()?;
    let session = format!("bench-{}-lat-{}", std::process::id(), config.lang);
    let ws = ws_connect(target, &format!("session_id={session}")).await?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_socket(ws, tx));
    let mut http = Http::new(target);
    let body = body(&session, &config.lang, &config.code);
    for _ in 0..config.warmup {
        one(&mut http, &mut events, &body).await?.map_err(BenchError::Protocol)?;
        tokio::time::sleep(config.pause).await;
    }
    let mut runs = Vec::with_capacity(config.runs);
    let mut bare_ms = Vec::with_capacity(config.runs);
    let (mut errors, mut first_error) = (0, None);
    for _ in 0..config.runs {
        match one(&mut http, &mut events, &body).await? {
            Ok(r) => runs.push(r),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
        let b = bare.clone();
        bare_ms.push(
            tokio::task::spawn_blocking(move || b.run_once())
                .await
                .map_err(|e| BenchError::Protocol(e.to_string()))??,
        );
        tokio::time::sleep(config.pause).await;
    }
    reader.abort();
    let e2e: Vec<f64> = runs.iter().map(|r| r.end_to_end).collect();
    let first: Vec<f64> = runs.iter().filter_map(|r| r.first_output).collect();
    let end = Summary::of(&e2e);
    let floor = Summary::of(&bare_ms);
    let ratio = |a: f64, b: f64| if b > 0.0 { (a / b * 1000.0).round() / 1000.0 } else { 0.0 };
    let breakdown = SPANS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (name.to_string(), Summary::of(&runs.iter().filter_map(|r| r.spans.map(|s| s[i])).collect::<Vec<_>>()))
        })
        .collect();
    Ok(LatencyReport {
        lang: config.lang.clone(),
        code: config.code.clone(),
        runs: config.runs,
        warmup: config.warmup,
        pause_ms: config.pause.as_millis() as u64,
        errors,
        first_error,
        prepared_runs: runs.iter().filter(|r| r.prepared).count(),
        end_to_end_ms: end,
        end_to_end_prepared_ms: Summary::of(
            &runs.iter().filter(|r| r.prepared).map(|r| r.end_to_end).collect::<Vec<_>>(),
        ),
        first_output_ms: Summary::of(&first),
        ws_result_ms: Summary::of(&runs.iter().filter_map(|r| r.ws_result).collect::<Vec<_>>()),
        bare_ms: floor,
        bare_command: bare.argv.clone(),
        ratio_p50: ratio(end.p50, floor.p50),
        ratio_p99: ratio(end.p99, floor.p99),
        overhead_ms: Summary::of(&e2e.iter().map(|x| x - floor.p50).collect::<Vec<_>>()),
        sandbox_ms: Summary::of(&runs.iter().filter_map(|r| r.sandbox).collect::<Vec<_>>()),
        breakdown_ms: breakdown,
        samples: Samples {
            end_to_end_ms: e2e,
            prepared: runs.iter().map(|r| r.prepared).collect(),
            first_output_ms: first,
            bare_ms,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_add_up_to_the_end_to_end_time() {
        let t = Timing {
            received_us: 1_100,
            queued_us: 1_400,
            pulled_us: 1_500,
            acquired_us: 1_600,
            started_us: 2_000,
            exited_us: 3_500,
            program_us: 1_000,
            ..Timing::default()
        };
        let s = spans(&t, 1_000, 4_000).unwrap();
        assert_eq!(s, [0.1, 0.3, 0.1, 0.1, 0.4, 1.0, 0.5, 0.5]);
        assert!((s.iter().sum::<f64>() - 3.0).abs() < 1e-9);
        assert!(spans(&Timing { started_us: 0, ..t }, 1_000, 4_000).is_none(), "a step that never happened");
    }
}
