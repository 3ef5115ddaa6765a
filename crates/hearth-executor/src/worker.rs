//! One run, from its message to its ack: check the delivery count, say `running`, take a
//! warm sandbox, build the job, run it while output events stream and progress acks keep
//! the message ours, then publish the `result` event, store the result and ack. Errors say
//! what comes next ([`crate::error::Next`]): report a verdict, or let the run be redelivered.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::Message;
use futures_util::StreamExt;
use hearth_bus::control::{ControlMsg, Done};
use hearth_bus::{event, names, retry, Bus, Job};
use hearth_proto::api::{Encoding, RunResult, Timing};
use hearth_proto::frame::FileSpec;
use hearth_proto::{ids, Status};
use hearth_sandbox::{Control, JobInput, Language, Languages, Pool, Sandbox};
use tokio::sync::{mpsc, watch};

use crate::config::ExecutorConfig;
use crate::error::{Next, RunError};
use crate::output::{forward, EventSink};
use crate::AbortOnDrop;

/// Room left in a message for headers and the event's own fields.
const PAYLOAD_MARGIN: usize = 16 << 10;

/// Shared by every run of one executor.
pub struct Worker {
    pub bus: Bus,
    pub pool: Pool,
    pub languages: Languages,
    pub config: ExecutorConfig,
    pub driver: &'static str,
    pub busy: AtomicUsize,
    pub done: AtomicU64,
    /// Sandboxes that failed before a program started, the run moved to a fresh one.
    pub retried: AtomicU64,
    /// Turns true when shutdown's drain time is up: runs still going give their message
    /// back (nak) for another executor to take at once.
    pub abandon: watch::Sender<bool>,
}

/// A run's stdin/kill requests, as they come from its control subject.
struct Controls {
    rx: mpsc::Receiver<Control>,
    /// Turns true on a kill, so a run not started yet is not started at all.
    killed: watch::Receiver<bool>,
    _listener: Option<AbortOnDrop<()>>,
}

/// Whether this delivery may run the run.
enum Claim {
    Ours,
    /// The run already ended (cancelled while queued, or finished on an earlier delivery
    /// whose ack was lost): it is not run again.
    Ended(Status),
}

/// Counts a run as busy while it lives.
struct BusyGuard<'a>(&'a AtomicUsize);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Worker {
    pub fn new(bus: Bus, pool: Pool, languages: Languages, config: ExecutorConfig, driver: &'static str) -> Worker {
        Worker {
            bus,
            pool,
            languages,
            config,
            driver,
            busy: AtomicUsize::new(0),
            done: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            abandon: watch::channel(false).0,
        }
    }

    /// Handles one delivery of a run; never panics on bad input.
    pub async fn handle(&self, msg: Message) {
        let pulled_us = Timing::now_us();
        let info = msg.info().ok();
        let delivered = info.as_ref().map(|i| i.delivered).unwrap_or(1);
        let queued_us = info.as_ref().map(|i| (i.published.unix_timestamp_nanos() / 1000).max(0) as u64).unwrap_or(0);
        let job: Job = match serde_json::from_slice(&msg.payload) {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(error = %e, "a message on the run queue is not a run; dropping it");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let req = &job.request;
        if ids::validate("session_id", &req.session_id).is_err() || ids::validate("run_id", &job.run_id).is_err() {
            tracing::error!(run = %job.run_id, "a run with an invalid id reached the queue; dropping it");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
        let _busy = {
            self.busy.fetch_add(1, Ordering::Relaxed);
            BusyGuard(&self.busy)
        };
        let mut sink =
            EventSink::new(self.bus.js.clone(), names::events_subject(&req.session_id), job.run_id.clone(), delivered);
        let base = RunResult {
            run_id: job.run_id.clone(),
            session_id: req.session_id.clone(),
            user_id: req.user_id.clone(),
            lang: req.lang.clone(),
            ..RunResult::default()
        };
        let mut timing = Timing { received_us: job.received_us, queued_us, pulled_us, ..Timing::default() };
        // Listening before the claim: a gateway that finds the run claimed sends its kill
        // to this subject, and it must arrive.
        let controls = self.listen_for_control(&job.run_id).await;
        let revision = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(hearth_bus::job::QUEUED_REVISION))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        // The sandbox is taken while the claim is being stored (one round trip to NATS
        // saved); a run found ended leaves it unused, and it is destroyed like a used one.
        let wanted = self.languages.get(&req.lang).filter(|_| delivered < self.config.bus.max_deliver);
        let early = async {
            match wanted {
                Some(language) => Some(self.pool.acquire_for(&language.id).await),
                None => None,
            }
        };
        // A redelivery, or progress acks the server did not confirm: another executor may
        // hold the run too, so `finish` looks for a result before answering.
        let shaky = AtomicBool::new(delivered > 1);
        let claimed = async { tokio::join!(self.claim(&job, revision, &base), early) };
        let (claim, early) =
            self.with_progress_acks(&msg, &job.run_id, claimed, false, &shaky).await.expect("never abandoned");
        if let Claim::Ended(status) = claim {
            tracing::debug!(run = %job.run_id, %status, "run already ended; not running it");
            self.ack(&msg, &job.run_id).await;
            self.notify_done(&job).await;
            if let Some(Ok(sb)) = early {
                destroy(sb).await;
            }
            return;
        }
        if delivered >= self.config.bus.max_deliver {
            tracing::warn!(run = %job.run_id, delivered, "run exhausted its deliveries; reporting internal_error");
            let message = format!("the run was started {} times and no executor finished it", delivered - 1);
            let result =
                RunResult { status: Some(Status::InternalError), message: Some(message), timing: Some(timing), ..base };
            self.finish(&msg, &job, &mut sink, result, &shaky).await;
            return;
        }
        let mut sandbox = None;
        let outcome = match early {
            Some(Err(source)) => Some(Err(RunError::NoSandbox { run_id: job.run_id.clone(), source })),
            early => {
                sandbox = early.and_then(Result::ok);
                // Boxed: a run's future is large, and polled on a worker thread's stack it
                // must not sit there whole (debug builds overflow it).
                let work = Box::pin(self.execute(&job, delivered, &mut sink, &mut sandbox, controls, &mut timing));
                self.with_progress_acks(&msg, &job.run_id, work, true, &shaky).await
            }
        };
        let Some(outcome) = outcome else {
            tracing::warn!(run = %job.run_id, "executor stopping: run given back for redelivery");
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            if let Some(sb) = sandbox {
                destroy(sb).await;
            }
            return;
        };
        let result = match outcome {
            Ok(result) => Some(RunResult { timing: Some(timing), ..result }),
            Err(e) => match e.next() {
                Next::Report(status) => {
                    tracing::warn!(run = %job.run_id, error = %e, "run failed");
                    Some(RunResult { status: Some(status), message: Some(e.to_string()), timing: Some(timing), ..base })
                }
                Next::Retry => {
                    tracing::warn!(run = %job.run_id, error = %e, "run not done here; it will be redelivered");
                    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_millis(500)))).await;
                    None
                }
            },
        };
        if let Some(result) = result {
            self.finish(&msg, &job, &mut sink, result, &shaky).await;
        }
        if let Some(sb) = sandbox {
            destroy(sb).await;
        }
    }

    /// Claims the run: replaces the `queued` state the gateway stored (exactly that
    /// revision) with `running`. A run whose stored state is already final is not run.
    /// Trouble with the store does not stop the run (it is only logged).
    async fn claim(&self, job: &Job, queued_revision: Option<u64>, base: &RunResult) -> Claim {
        let results = &self.bus.results;
        let running = RunResult { status: Some(Status::Running), ..base.clone() };
        let running: bytes::Bytes = serde_json::to_vec(&running).expect("a result encodes").into();
        let mut expected = queued_revision;
        for _ in 0..3 {
            if let Some(revision) = expected {
                if results.update(&job.run_id, running.clone(), revision).await.is_ok() {
                    return Claim::Ours;
                }
            }
            // Not the revision we knew: someone wrote meanwhile (a cancel, an earlier delivery).
            match results.entry(&job.run_id).await {
                Ok(Some(entry)) => {
                    let stored = serde_json::from_slice::<RunResult>(&entry.value).ok().and_then(|r| r.status);
                    if let Some(status) = stored.filter(|s| s.is_final()) {
                        return Claim::Ended(status);
                    }
                    expected = Some(entry.revision);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(run = %job.run_id, error = %e, "reading the run's state failed");
                    break;
                }
            }
        }
        if let Err(e) = results.put(&job.run_id, running).await {
            tracing::warn!(run = %job.run_id, error = %e, "storing the running state failed");
        }
        Claim::Ours
    }

    /// Tells the gateway that accepted the run that it has ended (best effort: the gateway
    /// also ages out what it never hears about).
    async fn notify_done(&self, job: &Job) {
        let Some(subject) = job.notify.clone() else { return };
        let done = Done { run_id: job.run_id.clone(), user_id: job.request.user_id.clone() };
        let payload = serde_json::to_vec(&done).expect("a notice encodes");
        if let Err(e) = self.bus.client.publish(subject, payload.into()).await {
            tracing::debug!(run = %job.run_id, error = %e, "telling the gateway the run ended failed");
        }
    }

    /// Stores the result, publishes the `result` event after every earlier event, acks. A
    /// cluster electing a leader meanwhile is waited out (bounded, progress acks going), so
    /// a finished run is not run again for it.
    ///
    /// `shaky` (another executor may have the run too) asks the store first, and a result
    /// already final there is not published again.
    async fn finish(&self, msg: &Message, job: &Job, sink: &mut EventSink, mut result: RunResult, shaky: &AtomicBool) {
        if shaky.load(Ordering::Relaxed) && self.finished_elsewhere(&result.run_id).await {
            tracing::info!(run = %result.run_id, "another delivery finished this run first; not answering twice");
            self.ack(msg, &result.run_id).await;
            return;
        }
        if let Some(t) = result.timing.as_mut() {
            t.published_us = Timing::now_us();
        }
        fit(&mut result, self.bus.max_payload().saturating_sub(PAYLOAD_MARGIN));
        // Stored before the `result` event goes out: whoever sees the event can read it.
        let stored = async {
            let value = serde_json::to_vec(&result).expect("a result encodes");
            let put = retry::put(&self.bus.results, &result.run_id, value.into(), retry::PATIENCE);
            let (settled, put) = tokio::join!(sink.settle(), put);
            settled?;
            put.map_err(|e| RunError::Publish { run_id: result.run_id.clone(), message: e.to_string() })?;
            sink.publish(event::result(&result)).await?;
            sink.settle().await
        };
        match self
            .with_progress_acks(msg, &result.run_id, Box::pin(stored), false, shaky)
            .await
            .expect("not abandonable")
        {
            Ok(_) => {
                self.ack(msg, &result.run_id).await;
                self.done.fetch_add(1, Ordering::Relaxed);
                self.notify_done(job).await;
                tracing::debug!(run = %result.run_id, status = ?result.status, wall_ms = result.wall_ms, "run done");
            }
            Err(e) => {
                tracing::error!(run = %result.run_id, error = %e, "storing the result failed; the run will be redelivered");
                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }

    /// Drives `work`, telling the server every third of `ack_wait` that the run is still
    /// being worked on (waiting for a sandbox included), so it is not redelivered meanwhile.
    /// `None` when `abandonable` and the executor abandons its runs (shutdown past its drain
    /// time). A progress ack the server does not confirm (a failover under way) marks the
    /// run `shaky`: it may be redelivered elsewhere meanwhile.
    async fn with_progress_acks<T>(
        &self,
        msg: &Message,
        run_id: &str,
        work: impl Future<Output = T>,
        abandonable: bool,
        shaky: &AtomicBool,
    ) -> Option<T> {
        let every = (self.config.bus.ack_wait / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut abandon = self.abandon.subscribe();
        // Polled beside `work`, never in its way.
        let acks = async {
            loop {
                tick.tick().await;
                let confirmed = tokio::time::timeout(every, msg.double_ack_with(AckKind::Progress)).await;
                if !matches!(confirmed, Ok(Ok(()))) {
                    tracing::warn!(run = %run_id, "in-progress ack not confirmed");
                    shaky.store(true, Ordering::Relaxed);
                }
            }
        };
        tokio::pin!(work);
        tokio::pin!(acks);
        tokio::select! {
            done = &mut work => Some(done),
            _ = crate::consume::until_true(&mut abandon), if abandonable => None,
            () = &mut acks => unreachable!("the ack loop never ends"),
        }
    }

    /// True when the store already holds a final result for `run_id`.
    async fn finished_elsewhere(&self, run_id: &str) -> bool {
        match self.bus.results.get(run_id).await {
            Ok(Some(bytes)) => {
                serde_json::from_slice::<RunResult>(&bytes).ok().and_then(|r| r.status).is_some_and(Status::is_final)
            }
            _ => false,
        }
    }

    /// Acks a finished run and waits for the server to confirm it (a few tries): an ack lost
    /// in a failover would have the run done twice.
    async fn ack(&self, msg: &Message, run_id: &str) {
        for attempt in 1..=3 {
            match msg.double_ack().await {
                Ok(()) => return,
                Err(e) if attempt < 3 => {
                    tracing::info!(run = %run_id, error = %e, "ack not confirmed; acking again");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => tracing::warn!(run = %run_id, error = %e, "ack not confirmed; the run may be redelivered"),
            }
        }
    }

    /// Runs the job in a fresh sandbox: the one in `sandbox` if the caller took it already,
    /// else one from the pool (left in `sandbox` for the caller to destroy).
    async fn execute(
        &self,
        job: &Job,
        attempt: i64,
        sink: &mut EventSink,
        sandbox: &mut Option<Sandbox>,
        controls: Controls,
        timing: &mut Timing,
    ) -> Result<RunResult, RunError> {
        let req = &job.request;
        let run_id = job.run_id.as_str();
        let language =
            self.languages.get(&req.lang).ok_or_else(|| RunError::UnknownLanguage { lang: req.lang.clone() })?;
        let max = job.limits_max.map_or(self.config.limits_max, |m| m.lower(&self.config.limits_max));
        let limits = language.limits(&req.limits, &self.config.limits_default, &max);
        let agent_run = language
            .job(JobInput {
                files: files(req, language)?,
                stdin: req.stdin.clone().into_bytes(),
                args: req.args.clone(),
                limits,
                keep_stdin_open: req.interactive,
                entry: req.entry.clone(),
            })
            .map_err(|e| RunError::Job { run_id: run_id.to_string(), message: e.to_string() })?;
        sink.publish(event::running(&req.session_id, run_id, &self.config.id, attempt)).await?;
        let Controls { rx: mut control_rx, killed, _listener: listener } = controls;
        // What reached a sandbox of this run so far (stdin sent before the program started):
        // a fresh sandbox after a failure gets it again.
        let mut forwarded: Vec<Control> = Vec::new();
        let mut attempt_here = 1;
        let outcome = loop {
            // The first is usually taken already, while the claim was stored.
            if sandbox.is_none() {
                let acquired = self.pool.acquire_for(&language.id).await;
                *sandbox = Some(acquired.map_err(|source| RunError::NoSandbox { run_id: run_id.to_string(), source })?);
            }
            let sb = sandbox.as_mut().expect("a sandbox was just put there");
            timing.acquired_us = Timing::now_us();
            if *killed.borrow() {
                let message = Some("killed before it started".to_string());
                let (session_id, user_id, lang) = (req.session_id.clone(), req.user_id.clone(), req.lang.clone());
                let status = Some(Status::Cancelled);
                return Ok(RunResult {
                    run_id: run_id.into(),
                    session_id,
                    user_id,
                    lang,
                    status,
                    message,
                    ..Default::default()
                });
            }
            let (events_tx, events_rx) = mpsc::channel(256);
            let (attempt_tx, attempt_rx) = mpsc::channel(64);
            for c in &forwarded {
                let _ = attempt_tx.try_send(c.clone());
            }
            let relay = async {
                while let Some(c) = control_rx.recv().await {
                    forwarded.push(c.clone());
                    if attempt_tx.send(c).await.is_err() {
                        break;
                    }
                }
                std::future::pending::<()>().await
            };
            let run = Box::pin(sb.run(&agent_run, Some(events_tx), Some(attempt_rx)));
            let streamed =
                Box::pin(forward(sink, &req.session_id, run_id, events_rx, self.config.coalesce, limits.output_bytes));
            let (outcome, streamed) = tokio::select! {
                both = async { tokio::join!(run, streamed) } => both,
                () = relay => unreachable!("the relay never ends by itself"),
            };
            // Started is known to the streamer; a failed stream counts as started (never
            // re-run what may have shown output).
            let started = streamed.as_ref().map_or(true, |f| f.started);
            match outcome {
                Err(source) if !started && attempt_here < self.config.sandbox_attempts => {
                    // Nothing of the user's program ran and nothing of it was streamed: try
                    // again on a fresh sandbox, without the user seeing it.
                    tracing::warn!(run = %run_id, attempt_here, error = %source, "sandbox failed before the program started; using another");
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    if let Some(sb) = sandbox.take() {
                        destroy(sb).await;
                    }
                    attempt_here += 1;
                }
                Err(source) if !started => {
                    return Err(RunError::SandboxBeforeStart {
                        run_id: run_id.to_string(),
                        attempts: attempt_here,
                        source,
                    });
                }
                Err(source) => return Err(RunError::Sandbox { run_id: run_id.to_string(), source }),
                Ok(outcome) => break (outcome, streamed?),
            }
        };
        drop(listener);
        let (outcome, streamed) = outcome;
        timing.first_output_us = streamed.first_us.unwrap_or(0);
        timing.started_us = outcome.started_at.map_or(0, Timing::epoch_us);
        timing.exited_us = Timing::epoch_us(outcome.ended_at);
        timing.program_us = outcome.result.wall_us;
        timing.prepared = outcome.prepared;
        Ok(RunResult { user_id: req.user_id.clone(), ..outcome.to_api(run_id, &req.session_id, &req.lang) })
    }

    /// Subscribes to the run's control subject and forwards what comes to the sandbox:
    /// stdin (then a close on `eof`) and kill.
    async fn listen_for_control(&self, run_id: &str) -> Controls {
        let (tx, rx) = mpsc::channel(64);
        let (killed_tx, killed) = watch::channel(false);
        let mut sub = match self.bus.client.subscribe(names::control_subject(run_id)).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::warn!(run = %run_id, error = %e, "no control subscription: stdin and kill will not reach this run");
                return Controls { rx, killed, _listener: None };
            }
        };
        let listener = AbortOnDrop(tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let Ok(msg) = serde_json::from_slice::<ControlMsg>(&m.payload) else {
                    continue;
                };
                let controls = match msg {
                    ControlMsg::Kill => {
                        let _ = killed_tx.send(true);
                        vec![Control::Kill]
                    }
                    ControlMsg::Stdin { data, eof } => {
                        let data = (!data.is_empty()).then(|| Control::Stdin(data.into_bytes()));
                        data.into_iter().chain(eof.then_some(Control::CloseStdin)).collect()
                    }
                };
                for control in controls {
                    if tx.send(control).await.is_err() {
                        return;
                    }
                }
            }
        }));
        Controls { rx, killed, _listener: Some(listener) }
    }
}

/// Destroys a sandbox (used or not: sandboxes are single-use).
async fn destroy(sb: Sandbox) {
    let id = sb.id().to_string();
    if let Err(e) = sb.destroy().await {
        tracing::warn!(sandbox = %id, error = %e, "destroying a sandbox failed");
    }
}

/// The request's files (or its code under [`Language::code_file`]).
fn files(req: &hearth_proto::api::RunRequest, language: &Language) -> Result<Vec<FileSpec>, RunError> {
    let mut out = Vec::new();
    if let Some(code) = &req.code {
        out.push(FileSpec { path: language.code_file(), data: code.clone().into_bytes(), executable: false });
    }
    for f in &req.files {
        let data = match f.encoding {
            Encoding::Utf8 => f.content.clone().into_bytes(),
            Encoding::Base64 => hearth_proto::b64::decode(&f.content)
                .map_err(|e| RunError::BadFile { name: f.name.clone(), why: format!("content is not base64: {e}") })?,
        };
        out.push(FileSpec { path: f.name.clone(), data, executable: false });
    }
    Ok(out)
}

/// Shortens `r`'s outputs until its JSON fits in `max` bytes (a message must fit in the
/// server's `max_payload`), saying so in `message`.
pub fn fit(r: &mut RunResult, max: usize) {
    let size = |r: &RunResult| serde_json::to_vec(r).map(|v| v.len()).unwrap_or(usize::MAX);
    if size(r) <= max {
        return;
    }
    let (mut out, mut err) = (r.stdout_bytes(), r.stderr_bytes());
    let compile = r.compile_output.clone();
    while size(r) > max && (!out.is_empty() || !err.is_empty()) {
        let longer = if out.len() >= err.len() { &mut out } else { &mut err };
        longer.truncate(longer.len() / 2);
        r.set_outputs(&out, &err, compile.as_bytes());
    }
    r.truncated = true;
    r.message = Some(format!("output shortened to fit a {max}-byte message: the full output was streamed as events"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_results_are_shortened_to_fit() {
        let mut r = RunResult { run_id: "r".into(), ..RunResult::default() };
        r.set_outputs(&vec![b'a'; 100_000], &[0xff; 50_000], b"");
        fit(&mut r, 60_000);
        assert!(serde_json::to_vec(&r).unwrap().len() <= 60_000);
        assert!(r.truncated);
        assert!(r.message.is_some());
        let mut small = RunResult::default();
        small.set_outputs(b"hi\n", b"", b"");
        fit(&mut small, 60_000);
        assert_eq!(small.stdout, "hi\n");
        assert!(!small.truncated);
    }
}
