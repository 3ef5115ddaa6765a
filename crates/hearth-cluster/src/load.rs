//! A steady load of runs from a client that checks every answer, as a user behind a load
//! balancer would see it, while something else breaks the cluster.
//!
//! - Runs go out at a steady rate, round-robin over the gateways; a gateway that refuses the
//!   connection (nothing was sent) is skipped for the next one. A run counts as **sent** once
//!   a gateway answered 202: that is the acknowledgement, and every sent run must finish.
//! - Each session is watched over a WebSocket; when it breaks, the watcher reconnects to the
//!   next gateway with `since=<last seq>`. An event at or below the last seq seen is a
//!   **replayed duplicate**.
//! - Every run's program prints something only it knows (a nonce), so every answer is
//!   checked: status `ok` and exactly the expected stdout, else it is **wrong**.
//! - At the end the events each session received are compared with what the `EVENTS`
//!   stream holds for it: a sequence the socket never delivered is a **gap**.
//! - **lost** = sent runs with no final result anywhere (neither on the socket nor in
//!   `GET /v1/runs/{id}`); **duplicates** = results seen more than once for one run.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::ClusterError;
use crate::http::{self, WsNext};

/// What each run runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// bash `echo <nonce>`: a few milliseconds.
    Echo,
    /// python: sleeps `ms`, then prints the nonce reversed (runs stay in flight a while).
    Sleepy { ms: u64 },
}

impl Program {
    /// (lang, code, expected stdout) of the run carrying `nonce`.
    fn run(&self, nonce: &str) -> (&'static str, String, String) {
        match self {
            Program::Echo => ("bash", format!("echo {nonce}"), format!("{nonce}\n")),
            Program::Sleepy { ms } => (
                "python",
                format!("import time\ntime.sleep({})\nprint({nonce:?}[::-1])\n", *ms as f64 / 1000.0),
                format!("{}\n", nonce.chars().rev().collect::<String>()),
            ),
        }
    }
}

/// How the load runs.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub gateways: Vec<SocketAddr>,
    /// The cluster's NATS (comma-separated URLs), for the final comparison with `EVENTS`.
    pub nats_url: String,
    /// Session ids are `<name>-<i>`; nonces `<name>-<n>`.
    pub name: String,
    pub sessions: usize,
    /// One run every `every`.
    pub every: Duration,
    pub program: Program,
    /// Bound of one POST.
    pub post_timeout: Duration,
}

impl LoadSpec {
    pub fn new(name: &str, gateways: Vec<SocketAddr>, nats_url: &str) -> LoadSpec {
        LoadSpec {
            gateways,
            nats_url: nats_url.to_string(),
            name: name.to_string(),
            sessions: 3,
            every: Duration::from_millis(300),
            program: Program::Echo,
            post_timeout: Duration::from_secs(15),
        }
    }
}

/// What the client saw of one run.
#[derive(Debug, Default, Clone)]
struct Trace {
    queued: bool,
    runnings: u32,
    outputs: u32,
    results: u32,
    status: Option<String>,
    stdout: Option<String>,
    /// The executor of its last start.
    executor: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Sent (202) runs: run id -> expected stdout.
    sent: HashMap<String, String>,
    traces: HashMap<String, Trace>,
    refused: BTreeMap<String, u64>,
    replayed: u64,
    reconnects: u64,
    /// Per session, the seqs received (each once, in order).
    seqs: Vec<Vec<u64>>,
}

/// The counts at the end of a load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Runs a gateway acknowledged (202).
    pub sent: u64,
    /// Of those, runs with a final result.
    pub finished: u64,
    /// Sent runs with no final result anywhere: must be 0.
    pub lost: u64,
    /// Results seen more than once for one run.
    pub duplicates: u64,
    /// Events a reconnecting socket delivered again (seq at or below one seen).
    pub replayed: u64,
    /// Events of a session's stream its socket never delivered, plus runs whose events
    /// were incomplete (no `queued`, `running` or `output`) or whose result only the store had.
    pub gaps: u64,
    /// Finished runs whose status was not `ok` or whose stdout was not the expected one.
    pub wrong: u64,
    /// Runs a gateway did not acknowledge (refused connection everywhere, 5xx, time-out),
    /// by reason. Not sent, so not lost.
    pub refused: BTreeMap<String, u64>,
    /// Sent runs that were started more than once (redelivered after a failure).
    pub redelivered: u64,
    pub reconnects: u64,
    /// Sent run id -> the executor of its last start.
    pub ran_on: BTreeMap<String, String>,
    /// Details of what was wrong, lost or missing (first few).
    pub problems: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let refused: u64 = self.refused.values().sum();
        write!(
            f,
            "runs sent {}, finished {}, lost {}, duplicates seen {} (results {}, replayed events {}), gaps {}, wrong answers {}; \
             refused {} {:?}, redelivered {}, websocket reconnects {}",
            self.sent,
            self.finished,
            self.lost,
            self.duplicates + self.replayed,
            self.duplicates,
            self.replayed,
            self.gaps,
            self.wrong,
            refused,
            self.refused,
            self.redelivered,
            self.reconnects
        )
    }
}

/// A running load.
pub struct Load {
    spec: LoadSpec,
    shared: Arc<Mutex<Shared>>,
    stop_sending: watch::Sender<bool>,
    stop_watching: watch::Sender<bool>,
    sender: tokio::task::JoinHandle<()>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.sender.abort();
        self.watchers.iter().for_each(|w| w.abort());
    }
}

fn session_id(spec: &LoadSpec, i: usize) -> String {
    format!("{}-{i}", spec.name)
}

impl Load {
    /// Opens the sessions' sockets, then starts sending.
    pub async fn start(spec: LoadSpec) -> Result<Load, ClusterError> {
        if spec.gateways.is_empty() || spec.sessions == 0 {
            return Err(ClusterError::Spec("a load needs gateways and sessions".into()));
        }
        let shared = Arc::new(Mutex::new(Shared { seqs: vec![Vec::new(); spec.sessions], ..Shared::default() }));
        let (stop_watching, watching) = watch::channel(false);
        let mut watchers = Vec::new();
        for i in 0..spec.sessions {
            let first = http::ws_connect(
                spec.gateways[i % spec.gateways.len()],
                &format!("session_id={}", session_id(&spec, i)),
            )
            .await?;
            watchers.push(tokio::spawn(watch_session(spec.clone(), i, first, shared.clone(), watching.clone())));
        }
        let (stop_sending, sending) = watch::channel(false);
        let sender = tokio::spawn(send(spec.clone(), shared.clone(), sending));
        Ok(Load { spec, shared, stop_sending, stop_watching, sender, watchers })
    }

    /// Runs sent (acknowledged) so far.
    pub fn sent(&self) -> u64 {
        self.shared.lock().expect("load lock").sent.len() as u64
    }

    /// Sent runs with a result so far.
    pub fn finished(&self) -> u64 {
        let s = self.shared.lock().expect("load lock");
        s.sent.keys().filter(|id| s.traces.get(*id).is_some_and(|t| t.results > 0)).count() as u64
    }

    /// Sent runs started on `executor` and not finished yet.
    pub fn in_flight_on(&self, executor: &str) -> Vec<String> {
        let s = self.shared.lock().expect("load lock");
        let mut ids: Vec<String> = s
            .sent
            .keys()
            .filter(|id| s.traces.get(*id).is_some_and(|t| t.results == 0 && t.executor.as_deref() == Some(executor)))
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Waits until at least `n` runs were sent and `finished` of them finished (bounded).
    pub async fn wait_for(&self, sent: u64, finished: u64, within: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + within;
        while self.sent() < sent || self.finished() < finished {
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: "the load".into(),
                    why: format!(
                        "{} sent and {} finished after {within:?} (wanted {sent} and {finished})",
                        self.sent(),
                        self.finished()
                    ),
                    log: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops sending, waits (up to `drain`) for every sent run to finish, then checks
    /// everything and counts.
    pub async fn finish(mut self, drain: Duration) -> Report {
        let _ = self.stop_sending.send(true);
        let sender = std::mem::replace(&mut self.sender, tokio::spawn(async {}));
        let _ = tokio::time::timeout(self.spec.post_timeout + Duration::from_secs(5), sender).await;
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline && self.finished() < self.sent() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.stop_watching.send(true);
        for w in std::mem::take(&mut self.watchers) {
            let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
        }
        let (sent, traces, mut report, seqs) = {
            let s = self.shared.lock().expect("load lock");
            let report = Report {
                replayed: s.replayed,
                reconnects: s.reconnects,
                refused: s.refused.clone(),
                ..Report::default()
            };
            (s.sent.clone(), s.traces.clone(), report, s.seqs.clone())
        };
        report.sent = sent.len() as u64;
        let mut ids: Vec<&String> = sent.keys().collect();
        ids.sort();
        for id in ids {
            let expected = &sent[id];
            let trace = traces.get(id).cloned().unwrap_or_default();
            let problem = |report: &mut Report, what: String| {
                if report.problems.len() < 20 {
                    report.problems.push(format!("run {id}: {what}"));
                }
            };
            if trace.results == 0 {
                match self.stored(id).await {
                    Some(stored) => {
                        report.finished += 1;
                        report.gaps += 1;
                        problem(&mut report, format!("final in the store but never on its socket: {stored}"));
                        if stored["status"] != "ok" || stored["stdout"].as_str() != Some(expected.as_str()) {
                            report.wrong += 1;
                        }
                    }
                    None => {
                        report.lost += 1;
                        problem(&mut report, format!("lost (seen: {trace:?})"));
                    }
                }
                continue;
            }
            report.finished += 1;
            if let Some(ex) = &trace.executor {
                report.ran_on.insert(id.clone(), ex.clone());
            }
            report.duplicates += u64::from(trace.results - 1);
            if trace.runnings > 1 {
                report.redelivered += 1;
            }
            if !trace.queued || trace.runnings == 0 || trace.outputs == 0 {
                report.gaps += 1;
                problem(&mut report, format!("incomplete events {trace:?}"));
            }
            if trace.status.as_deref() != Some("ok") || trace.stdout.as_deref() != Some(expected.as_str()) {
                report.wrong += 1;
                problem(
                    &mut report,
                    format!("answered {:?} {:?}, expected ok {expected:?}", trace.status, trace.stdout),
                );
            }
        }
        match self.stream_gaps(&seqs).await {
            Ok(missing) => {
                for (session, seq) in &missing {
                    if report.problems.len() < 20 {
                        report.problems.push(format!("session {session}: event seq {seq} never delivered"));
                    }
                }
                report.gaps += missing.len() as u64;
            }
            Err(e) => {
                report.gaps += 1;
                report.problems.push(format!("could not read the EVENTS stream to compare: {e}"));
            }
        }
        report
    }

    /// The final stored result of `run_id`, asked of any gateway that answers.
    async fn stored(&self, run_id: &str) -> Option<Value> {
        for addr in &self.spec.gateways {
            if let Ok(a) = http::get(*addr, &format!("/v1/runs/{run_id}")).await {
                if a.status == 200 {
                    return Some(a.json());
                }
                if a.status == 202 || a.status == 404 {
                    return None;
                }
            }
        }
        None
    }

    /// (session, seq) of every event the `EVENTS` stream holds for a session, up to the last
    /// one its socket delivered, that the socket did not deliver.
    async fn stream_gaps(&self, seqs: &[Vec<u64>]) -> Result<Vec<(String, u64)>, String> {
        let urls: Vec<&str> = self.spec.nats_url.split(',').collect();
        let client = async_nats::connect(urls.as_slice()).await.map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(hearth_bus::names::EVENTS_STREAM).await.map_err(|e| e.to_string())?;
        let mut missing = Vec::new();
        for (i, got) in seqs.iter().enumerate() {
            let Some(&last) = got.iter().max() else { continue };
            let session = session_id(&self.spec, i);
            let consumer = stream
                .create_consumer(OrderedConfig {
                    filter_subject: hearth_bus::names::events_subject(&session),
                    deliver_policy: DeliverPolicy::All,
                    ..OrderedConfig::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            let received: std::collections::HashSet<u64> = got.iter().copied().collect();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(3), messages.next()).await;
                let Ok(Some(Ok(msg))) = next else { break };
                let Ok(info) = msg.info() else { break };
                let (seq, pending) = (info.stream_sequence, info.pending);
                if seq > last {
                    break;
                }
                if !received.contains(&seq) {
                    missing.push((session.clone(), seq));
                }
                if pending == 0 {
                    break;
                }
            }
        }
        Ok(missing)
    }
}

/// Sends one run per `spec.every` until told to stop, each POST on its own task.
async fn send(spec: LoadSpec, shared: Arc<Mutex<Shared>>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(spec.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut posts = JoinSet::new();
    for n in 0u64.. {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        while posts.try_join_next().is_some() {}
        let (spec, shared) = (spec.clone(), shared.clone());
        posts.spawn(async move {
            let nonce = format!("{}-{n}", spec.name);
            let (lang, code, expected) = spec.program.run(&nonce);
            let session = session_id(&spec, n as usize % spec.sessions);
            let body = json!({"user_id": "load", "session_id": session, "lang": lang, "code": code});
            let refused = match post(&spec, n as usize, &body).await {
                Ok(run_id) => {
                    shared.lock().expect("load lock").sent.insert(run_id, expected);
                    return;
                }
                Err(why) => why,
            };
            *shared.lock().expect("load lock").refused.entry(refused).or_default() += 1;
        });
    }
    while posts.join_next().await.is_some() {}
}

/// POSTs `body` to gateway `n` (round-robin), moving on to the next gateway only when the
/// connection was refused (nothing sent, so nothing can be doubled). The run id on 202, else
/// why it was not acknowledged.
async fn post(spec: &LoadSpec, n: usize, body: &Value) -> Result<String, String> {
    let gateways = &spec.gateways;
    let mut why = String::new();
    for k in 0..gateways.len() {
        let addr = gateways[(n + k) % gateways.len()];
        match http::post_json(addr, "/v1/runs", body, spec.post_timeout).await {
            Ok(a) if a.status == 202 => {
                return a.json()["run_id"].as_str().map(str::to_owned).ok_or_else(|| "202 without run_id".into())
            }
            Ok(a) => return Err(format!("{} {}", a.status, a.json()["error"]["code"].as_str().unwrap_or(""))),
            Err(e) if e.to_string().contains("Connection refused") => why = "connection refused everywhere".into(),
            Err(e) if e.to_string().contains("no answer within") => return Err("no answer in time".into()),
            Err(_) => return Err("connection broken".into()),
        }
    }
    Err(why)
}

/// Watches session `i`: records every event; on a broken socket reconnects to the next
/// gateway with `since=`, until told to stop.
async fn watch_session(
    spec: LoadSpec,
    i: usize,
    first: http::Ws,
    shared: Arc<Mutex<Shared>>,
    mut stop: watch::Receiver<bool>,
) {
    let session = session_id(&spec, i);
    let mut gateway = i;
    let mut last: Option<u64> = None;
    let mut ws = Some(first);
    while !*stop.borrow() {
        let mut socket = match ws.take() {
            Some(s) => s,
            None => {
                let query = match last {
                    Some(seq) => format!("session_id={session}&since={seq}"),
                    None => format!("session_id={session}"),
                };
                match http::ws_connect(spec.gateways[gateway % spec.gateways.len()], &query).await {
                    Ok(s) => s,
                    Err(_) => {
                        gateway += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                next = http::ws_next(&mut socket, Duration::from_secs(30)) => next,
            };
            match next {
                None => continue,
                Some(WsNext::Event(ev)) => record(&shared, i, &mut last, &ev),
                Some(WsNext::Closed(_)) | Some(WsNext::Broken(_)) => {
                    shared.lock().expect("load lock").reconnects += 1;
                    gateway += 1;
                    break;
                }
            }
        }
    }
}

fn record(shared: &Mutex<Shared>, session: usize, last: &mut Option<u64>, ev: &Value) {
    let Some(seq) = ev["seq"].as_u64() else { return };
    let mut s = shared.lock().expect("load lock");
    if last.is_some_and(|l| seq <= l) {
        s.replayed += 1;
        return;
    }
    *last = Some(seq);
    s.seqs[session].push(seq);
    let Some(run_id) = ev["run_id"].as_str() else { return };
    let t = s.traces.entry(run_id.to_string()).or_default();
    match (ev["type"].as_str(), ev["status"].as_str()) {
        (Some("status"), Some("queued")) => t.queued = true,
        (Some("status"), Some("running")) => {
            t.runnings += 1;
            t.executor = ev["executor"].as_str().map(str::to_owned);
        }
        (Some("output"), _) => t.outputs += 1,
        (Some("result"), status) => {
            t.results += 1;
            if t.results == 1 {
                t.status = status.map(str::to_owned);
                t.stdout = ev["stdout"].as_str().map(str::to_owned);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_know_their_answers() {
        let (lang, code, expected) = Program::Echo.run("n-1");
        assert_eq!((lang, code.as_str(), expected.as_str()), ("bash", "echo n-1", "n-1\n"));
        let (lang, code, expected) = Program::Sleepy { ms: 400 }.run("ab-2");
        assert_eq!(lang, "python");
        assert!(code.contains("time.sleep(0.4)") && code.contains("\"ab-2\"[::-1]"), "{code}");
        assert_eq!(expected, "2-ba\n");
    }

    #[test]
    fn replayed_events_are_counted_and_not_recorded_twice() {
        let shared = Mutex::new(Shared { seqs: vec![Vec::new()], ..Shared::default() });
        let mut last = None;
        let ev = |seq: u64, kind: &str, status: &str| json!({"seq": seq, "run_id": "r", "type": kind, "status": status, "stdout": "x\n"});
        record(&shared, 0, &mut last, &ev(1, "status", "queued"));
        record(&shared, 0, &mut last, &ev(4, "status", "running"));
        record(&shared, 0, &mut last, &ev(4, "status", "running"));
        record(&shared, 0, &mut last, &ev(9, "result", "ok"));
        let s = shared.lock().unwrap();
        assert_eq!(s.replayed, 1);
        assert_eq!(s.seqs[0], vec![1, 4, 9]);
        let t = &s.traces["r"];
        assert_eq!((t.queued, t.runnings, t.results, t.status.as_deref()), (true, 1, 1, Some("ok")));
    }
}
