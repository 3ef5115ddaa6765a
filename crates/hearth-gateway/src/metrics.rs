//! The gateway's counters and their Prometheus text form (hand-written: a few counters do
//! not need a metrics crate).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::executors::Totals;
use crate::hub::Hub;
use crate::AppState;

/// Counters since the gateway started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP answers by class: 2xx, 3xx, 4xx, 5xx.
    pub http: [AtomicU64; 4],
    pub runs_accepted: AtomicU64,
    pub runs_rejected_full: AtomicU64,
    /// Runs and requests turned away by per-user limits (429).
    pub runs_rejected_limits: AtomicU64,
    pub runs_waited: AtomicU64,
    pub ws_open: AtomicI64,
    pub ws_events_sent: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Middleware: counts every answer by status class.
pub async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let class = (response.status().as_u16() / 100).clamp(2, 5) as usize - 2;
    Metrics::inc(&state.metrics.http[class]);
    response
}

/// The `RUNS` queue as the executors' consumer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    pub waiting: u64,
    pub in_flight: u64,
}

/// Resident memory of this process in bytes, from `/proc/self/statm` (0 where unknown).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Open file descriptors of this process (0 where unknown).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0)
}

/// Prometheus text for the counters, the session hub, the executors online, the NATS
/// connection and the process itself.
pub fn render(m: &Metrics, hub: &Hub, ex: Totals, nats_connected: bool, queue: Option<Queue>) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let http: Vec<u64> = m.http.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    metric(
        "hearth_http_responses_total",
        "counter",
        "HTTP responses by status class.",
        &[
            ("{class=\"2xx\"}", http[0]),
            ("{class=\"3xx\"}", http[1]),
            ("{class=\"4xx\"}", http[2]),
            ("{class=\"5xx\"}", http[3]),
        ],
    );
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    metric("hearth_runs_accepted_total", "counter", "Runs queued.", &[("", get(&m.runs_accepted))]);
    metric(
        "hearth_runs_rejected_total",
        "counter",
        "Runs refused: the queue was full, or a user was over its limits (requests included).",
        &[
            ("{reason=\"queue_full\"}", get(&m.runs_rejected_full)),
            ("{reason=\"user_limits\"}", get(&m.runs_rejected_limits)),
        ],
    );
    metric(
        "hearth_runs_waited_total",
        "counter",
        "Runs answered synchronously (?wait=true).",
        &[("", get(&m.runs_waited))],
    );
    let ws_open = m.ws_open.load(Ordering::Relaxed).max(0) as u64;
    metric("hearth_ws_connections", "gauge", "WebSocket connections open.", &[("", ws_open)]);
    metric("hearth_ws_events_sent_total", "counter", "Events sent over WebSockets.", &[("", get(&m.ws_events_sent))]);
    metric(
        "hearth_ws_lagged_total",
        "counter",
        "Events dropped for a full socket inbox (the socket then caught up from the stream).",
        &[("", get(&hub.lagged))],
    );
    metric(
        "hearth_events_position",
        "gauge",
        "The last EVENTS stream sequence the session feed handed out.",
        &[("", get(&hub.position))],
    );
    metric("hearth_executors_online", "gauge", "Executors whose heartbeat is fresh.", &[("", ex.online as u64)]);
    metric("hearth_executor_slots", "gauge", "Worker slots of the executors online.", &[("", ex.slots as u64)]);
    metric("hearth_executor_busy", "gauge", "Runs going on in the executors online.", &[("", ex.busy as u64)]);
    metric(
        "hearth_executor_ready_sandboxes",
        "gauge",
        "Warm sandboxes ready in the executors online.",
        &[("", ex.ready as u64)],
    );
    metric(
        "hearth_nats_connected",
        "gauge",
        "1 while the gateway's NATS connection is up.",
        &[("", nats_connected as u64)],
    );
    if let Some(q) = queue {
        metric("hearth_queue_depth", "gauge", "Runs waiting on the RUNS queue for an executor.", &[("", q.waiting)]);
        metric("hearth_runs_in_flight", "gauge", "Runs an executor has taken and not finished.", &[("", q.in_flight)]);
    }
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the gateway's process.",
        &[("", resident_bytes())],
    );
    metric("process_open_fds", "gauge", "Open file descriptors of the gateway's process.", &[("", open_fds())]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        Metrics::inc(&m.runs_accepted);
        Metrics::inc(&m.http[2]);
        let text = render(
            &m,
            &Hub::default(),
            Totals { online: 1, slots: 2, busy: 0, ready: 2 },
            true,
            Some(Queue { waiting: 3, in_flight: 1 }),
        );
        assert!(text.contains("# TYPE hearth_runs_accepted_total counter\nhearth_runs_accepted_total 1\n"));
        assert!(text.contains("hearth_http_responses_total{class=\"4xx\"} 1\n"));
        assert!(text.contains("hearth_executors_online 1\n"));
        assert!(text.contains("hearth_nats_connected 1\n"));
        assert!(text.contains("hearth_queue_depth 3\n"));
        let rss = text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).unwrap();
        assert!(rss.parse::<u64>().unwrap() > 0);
    }
}
