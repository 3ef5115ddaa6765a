//! `GET /v1/status`: what the status page shows, as JSON: the executors online (slots, busy,
//! warm sandboxes), the depth of the `RUNS` queue, and the recent run latency this gateway
//! saw.
//!
//! Latency is from the moment this gateway accepted a run (before its `queued` event) to the
//! moment its session feed ([`crate::hub`], which reads every session's events once for all
//! its sockets) passes the run's `result` event: what a client of this gateway waits,
//! queueing, compiling and the program's own time included. Only events that start with
//! `{"type":"result"` are parsed (how `hearth_bus::event::result` encodes them; a test holds
//! that). It keeps the last [`KEEP`] latencies no older than [`WINDOW`]; runs it accepted and
//! never saw end are forgotten after [`PENDING_MAX_AGE`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use hearth_bus::event::EventHead;
use hearth_bus::names;
use serde::Serialize;

use crate::AppState;

/// Latencies kept at most.
pub const KEEP: usize = 1000;
/// Latencies older than this are not "recent".
pub const WINDOW: Duration = Duration::from_secs(300);
/// A run seen accepted but not ended is dropped after this.
pub const PENDING_MAX_AGE: Duration = Duration::from_secs(3600);
/// How `hearth_bus::event::result` begins an event.
const RESULT_PREFIX: &[u8] = b"{\"type\":\"result\"";
/// Queue numbers are read from NATS at most this often, however many pages ask.
const QUEUE_CACHE: Duration = Duration::from_millis(500);

/// Accepted runs waiting for their result, and the latencies of the runs that ended.
#[derive(Debug, Default)]
pub struct Latency {
    inner: Mutex<LatencyInner>,
}

#[derive(Debug, Default)]
struct LatencyInner {
    pending: HashMap<String, Instant>,
    done: VecDeque<(Instant, Duration)>,
}

/// p50/p99 over the recent runs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Runs the percentiles are over.
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// How far back "recent" goes.
    pub window_s: u64,
}

/// The value at quantile `q` of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((sorted[rank - 1].as_secs_f64() * 1000.0 * 10.0).round() / 10.0)
}

impl Latency {
    /// `run_id` was accepted at `at`.
    pub fn accepted(&self, run_id: &str, at: Instant) {
        let mut inner = self.inner.lock().expect("latency lock");
        if inner.pending.len() >= 4096 && inner.pending.len().is_power_of_two() {
            inner.pending.retain(|_, t| t.elapsed() < PENDING_MAX_AGE);
        }
        inner.pending.insert(run_id.to_string(), at);
    }

    /// `run_id` will not run after all (its publish failed).
    pub fn forget(&self, run_id: &str) {
        self.inner.lock().expect("latency lock").pending.remove(run_id);
    }

    /// `run_id` ended now (ignored unless this gateway accepted it and it had not ended).
    pub fn ended(&self, run_id: &str) {
        self.ended_at(run_id, Instant::now());
    }

    fn ended_at(&self, run_id: &str, now: Instant) {
        let mut inner = self.inner.lock().expect("latency lock");
        let Some(start) = inner.pending.remove(run_id) else { return };
        if inner.done.len() == KEEP {
            inner.done.pop_front();
        }
        inner.done.push_back((now, now.saturating_duration_since(start)));
    }

    /// p50/p99 over the runs that ended within [`WINDOW`] of `now`.
    pub fn summary(&self) -> LatencySummary {
        self.summary_at(Instant::now())
    }

    fn summary_at(&self, now: Instant) -> LatencySummary {
        let inner = self.inner.lock().expect("latency lock");
        let mut recent: Vec<Duration> =
            inner.done.iter().filter(|(at, _)| now.saturating_duration_since(*at) <= WINDOW).map(|(_, d)| *d).collect();
        recent.sort();
        LatencySummary {
            count: recent.len(),
            p50_ms: quantile(&recent, 0.5),
            p99_ms: quantile(&recent, 0.99),
            window_s: WINDOW.as_secs(),
        }
    }
}

/// The run a result event ends, `None` for any other event.
pub fn result_run_id(payload: &[u8]) -> Option<String> {
    if !payload.starts_with(RESULT_PREFIX) {
        return None;
    }
    serde_json::from_slice::<EventHead>(payload).ok().map(|h| h.run_id)
}

/// The `RUNS` queue as NATS counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Queue {
    /// Runs in the stream: waiting or being run (a work queue drops a run once acked).
    pub depth: u64,
    /// Of those, not yet handed to an executor.
    pub waiting: u64,
    /// Of those, handed to an executor and not yet acked.
    pub running: u64,
}

/// Queue numbers read a moment ago (see [`QUEUE_CACHE`]).
#[derive(Debug, Default)]
pub struct QueueCache(tokio::sync::Mutex<Option<(Instant, Queue)>>);

async fn read_queue(state: &AppState) -> Result<Queue, String> {
    let info = state.bus.runs.get_info().await.map_err(|e| e.to_string())?;
    let depth = info.state.messages;
    match state.bus.runs.consumer_info(names::EXECUTORS_CONSUMER).await {
        Ok(c) => Ok(Queue { depth, waiting: c.num_pending, running: c.num_ack_pending as u64 }),
        // No executor ever connected: nothing was handed out.
        Err(_) => Ok(Queue { depth, waiting: depth, running: 0 }),
    }
}

impl QueueCache {
    async fn get(&self, state: &AppState) -> Result<Queue, String> {
        let mut cached = self.0.lock().await;
        if let Some((at, q)) = *cached {
            if at.elapsed() < QUEUE_CACHE {
                return Ok(q);
            }
        }
        let q = read_queue(state).await?;
        *cached = Some((Instant::now(), q));
        Ok(q)
    }
}

/// One executor online, as its last heartbeat said.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorStatus {
    pub id: String,
    pub driver: String,
    pub slots: usize,
    pub busy: usize,
    /// Ready sandboxes it aims to keep.
    pub warm: usize,
    /// Ready sandboxes it holds.
    pub ready: usize,
    pub runs_done: u64,
    pub languages: usize,
    /// Milliseconds since its last heartbeat.
    pub seen_ms_ago: u64,
}

/// The `GET /v1/status` body.
#[derive(Debug, Clone, Serialize)]
pub struct StatusBody {
    pub nats_connected: bool,
    pub executors_online: usize,
    pub slots: usize,
    pub busy: usize,
    /// Sandboxes ready now over the executors online (plain and prepared ones).
    pub warm_ready: usize,
    /// Plain warm sandboxes the executors online aim to keep (prepared ones come on top).
    pub warm_target: usize,
    /// `null` when NATS could not be asked.
    pub queue: Option<Queue>,
    pub latency: LatencySummary,
    pub ws_connections: i64,
    pub executors: Vec<ExecutorStatus>,
}

/// `GET /v1/status`.
pub async fn status(State(state): State<Arc<AppState>>) -> Json<StatusBody> {
    let executors: Vec<ExecutorStatus> = state
        .executors
        .online_with_age()
        .into_iter()
        .map(|(age, hb)| ExecutorStatus {
            id: hb.id,
            driver: hb.driver,
            slots: hb.slots,
            busy: hb.busy,
            warm: hb.warm,
            ready: hb.ready,
            runs_done: hb.runs_done,
            languages: hb.languages.len(),
            seen_ms_ago: age.as_millis() as u64,
        })
        .collect();
    let queue = match state.queue_cache.get(&state).await {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::warn!(error = %e, "reading the run queue for /v1/status");
            None
        }
    };
    Json(StatusBody {
        nats_connected: crate::ops::nats_connected(&state),
        executors_online: executors.len(),
        slots: executors.iter().map(|e| e.slots).sum(),
        busy: executors.iter().map(|e| e.busy).sum(),
        warm_ready: executors.iter().map(|e| e.ready).sum(),
        warm_target: executors.iter().map(|e| e.warm).sum(),
        queue,
        latency: state.latency.summary(),
        ws_connections: state.metrics.ws_open.load(std::sync::atomic::Ordering::Relaxed).max(0),
        executors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::api::RunResult;
    use hearth_proto::Status;

    #[test]
    fn result_events_are_told_apart_by_their_first_bytes() {
        let r =
            RunResult { run_id: "r1".into(), session_id: "s1".into(), status: Some(Status::Ok), ..Default::default() };
        assert_eq!(result_run_id(&hearth_bus::event::result(&r)), Some("r1".to_string()));
        assert_eq!(result_run_id(&hearth_bus::event::queued("s1", "r1")), None);
        let out = hearth_bus::event::output("s1", "r1", hearth_proto::frame::Stream::Stdout, b"{\"type\":\"result\"");
        assert_eq!(result_run_id(&out), None);
        assert_eq!(result_run_id(b"{\"type\":\"result\", broken"), None);
    }

    #[test]
    fn percentiles_over_recent_runs_this_gateway_accepted() {
        let l = Latency::default();
        let t0 = Instant::now();
        assert_eq!(l.summary_at(t0).count, 0);
        assert_eq!(l.summary_at(t0).p50_ms, None);
        for i in 1..=100u64 {
            let id = format!("r{i}");
            l.accepted(&id, t0);
            l.ended_at(&id, t0 + Duration::from_millis(i));
        }
        l.ended_at("r1", t0 + Duration::from_secs(9)); // a second result for one run: ignored
        l.ended_at("never-accepted", t0 + Duration::from_secs(9));
        let s = l.summary_at(t0 + Duration::from_millis(100));
        assert_eq!((s.count, s.p50_ms, s.p99_ms), (100, Some(50.0), Some(99.0)));
        // Past the window, nothing is recent.
        assert_eq!(l.summary_at(t0 + WINDOW + Duration::from_secs(1)).count, 0);
    }

    #[test]
    fn only_the_last_runs_are_kept() {
        let l = Latency::default();
        let t0 = Instant::now();
        for i in 0..(KEEP + 10) {
            let id = format!("r{i}");
            l.accepted(&id, t0);
            l.ended_at(&id, t0);
        }
        assert_eq!(l.summary_at(t0).count, KEEP);
    }
}
