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
use hearth_bus::{event, names, retry, Bus, Job};
use hearth_proto::api::{Encoding, RunResult};
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
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
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
            lang: req.lang.clone(),
            ..RunResult::default()
        };
        // A redelivery whose run another delivery already finished (its ack was lost in a
        // failover): the user has the answer; running it again would only say it twice.
        if delivered > 1 && self.finished_elsewhere(&job.run_id).await {
            tracing::info!(run = %job.run_id, delivered, "redelivered run already has its result; not running it again");
            self.ack(&msg, &job.run_id).await;
            return;
        }
        let shaky = AtomicBool::new(delivered > 1);
        if delivered >= self.config.bus.max_deliver {
            tracing::warn!(run = %job.run_id, delivered, "run exhausted its deliveries; reporting internal_error");
            let message = format!("the run was started {} times and no executor finished it", delivered - 1);
            let result = RunResult { status: Some(Status::InternalError), message: Some(message), ..base };
            self.finish(&msg, &mut sink, result, &shaky).await;
            return;
        }
        let mut sandbox = None;
        let work = self.execute(&job, delivered, &mut sink, &mut sandbox);
        let Some(outcome) = self.with_progress_acks(&msg, &job.run_id, work, true, &shaky).await else {
            tracing::warn!(run = %job.run_id, "executor stopping: run given back for redelivery");
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            if let Some(sb) = sandbox {
                destroy(sb).await;
            }
            return;
        };
        let result = match outcome {
            Ok(result) => Some(result),
            Err(e) => match e.next() {
                Next::Report(status) => {
                    tracing::warn!(run = %job.run_id, error = %e, "run failed");
                    Some(RunResult { status: Some(status), message: Some(e.to_string()), ..base })
                }
                Next::Retry => {
                    tracing::warn!(run = %job.run_id, error = %e, "run not done here; it will be redelivered");
                    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_millis(500)))).await;
                    None
                }
            },
        };
        if let Some(result) = result {
            self.finish(&msg, &mut sink, result, &shaky).await;
        }
        if let Some(sb) = sandbox {
            destroy(sb).await;
        }
    }

    /// Stores the result, publishes the `result` event after every earlier event, acks. A
    /// cluster electing a leader meanwhile is waited out (bounded, progress acks going), so
    /// a finished run is not run again for it.
    ///
    /// `shaky` (a redelivery, or progress acks that failed: another executor may have the run
    /// too) asks the store first, and a result already final there is not published again.
    async fn finish(&self, msg: &Message, sink: &mut EventSink, mut result: RunResult, shaky: &AtomicBool) {
        if shaky.load(Ordering::Relaxed) && self.finished_elsewhere(&result.run_id).await {
            tracing::info!(run = %result.run_id, "another delivery finished this run first; not answering twice");
            self.ack(msg, &result.run_id).await;
            return;
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
        match self.with_progress_acks(msg, &result.run_id, stored, false, shaky).await.expect("not abandonable") {
            Ok(_) => {
                self.ack(msg, &result.run_id).await;
                self.done.fetch_add(1, Ordering::Relaxed);
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
    /// time).
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
        // Confirmed by the server: one that is not (a failover under way) may mean the run
        // is redelivered elsewhere meanwhile, which `finish` then checks for. Polled beside
        // `work`, never in its way.
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

    /// Runs the job in a fresh sandbox (left in `sandbox` for the caller to destroy).
    async fn execute(
        &self,
        job: &Job,
        attempt: i64,
        sink: &mut EventSink,
        sandbox: &mut Option<Sandbox>,
    ) -> Result<RunResult, RunError> {
        let req = &job.request;
        let run_id = job.run_id.as_str();
        let language =
            self.languages.get(&req.lang).ok_or_else(|| RunError::UnknownLanguage { lang: req.lang.clone() })?;
        let limits = language.limits(&req.limits, &self.config.limits_default, &self.config.limits_max);
        let agent_run = language
            .job(JobInput {
                files: files(req, language)?,
                stdin: req.stdin.clone().into_bytes(),
                args: req.args.clone(),
                limits,
                keep_stdin_open: false,
                entry: req.entry.clone(),
            })
            .map_err(|e| RunError::Job { run_id: run_id.to_string(), message: e.to_string() })?;
        sink.publish(event::running(&req.session_id, run_id, &self.config.id, attempt)).await?;
        let running = RunResult {
            run_id: run_id.to_string(),
            session_id: req.session_id.clone(),
            lang: req.lang.clone(),
            status: Some(Status::Running),
            ..RunResult::default()
        };
        let running = serde_json::to_vec(&running).expect("a result encodes");
        let (stored, acquired) =
            tokio::join!(self.bus.results.put(run_id, running.into()), self.pool.acquire_for(&language.id));
        if let Err(e) = stored {
            tracing::warn!(run = %run_id, error = %e, "storing the running state failed");
        }
        let mut acquired = acquired;
        let mut attempt_here = 1;
        loop {
            let sb =
                sandbox.insert(acquired.map_err(|source| RunError::NoSandbox { run_id: run_id.to_string(), source })?);
            let (outcome, started) = self.run_in(sb, run_id, req, &agent_run, limits.output_bytes, sink).await;
            match outcome {
                Err(RunError::Sandbox { source, .. }) if !started && attempt_here < self.config.sandbox_attempts => {
                    // Nothing of the user's program ran and nothing of it was streamed: try
                    // again on a fresh sandbox, without the user seeing it.
                    tracing::warn!(run = %run_id, attempt_here, error = %source, "sandbox failed before the program started; using another");
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    if let Some(sb) = sandbox.take() {
                        destroy(sb).await;
                    }
                    attempt_here += 1;
                    acquired = self.pool.acquire_for(&language.id).await;
                }
                Err(RunError::Sandbox { run_id, source }) if !started => {
                    return Err(RunError::SandboxBeforeStart { run_id, attempts: attempt_here, source });
                }
                other => return other,
            }
        }
    }

    /// One try of a run in `sb`: the result, and whether the user's program was started
    /// (after that, a sandbox failure is the run's end, never a silent re-run).
    async fn run_in(
        &self,
        sb: &mut Sandbox,
        run_id: &str,
        req: &hearth_proto::api::RunRequest,
        agent_run: &hearth_proto::frame::AgentRun,
        output_bytes: u64,
        sink: &mut EventSink,
    ) -> (Result<RunResult, RunError>, bool) {
        let (events_tx, events_rx) = mpsc::channel(256);
        let (control_tx, control_rx) = mpsc::channel(16);
        let control = self.listen_for_control(run_id, control_tx).await;
        let run = sb.run(agent_run, Some(events_tx), Some(control_rx));
        let streamed = forward(sink, &req.session_id, run_id, events_rx, self.config.coalesce, output_bytes);
        let (outcome, streamed) = tokio::join!(run, streamed);
        drop(control);
        let started = streamed.as_ref().map_or(true, |f| f.started);
        let result = match (outcome, streamed) {
            (Err(source), _) => Err(RunError::Sandbox { run_id: run_id.to_string(), source }),
            (Ok(_), Err(e)) => Err(e),
            (Ok(outcome), Ok(_)) => Ok(outcome.to_api(run_id, &req.session_id, &req.lang)),
        };
        (result, started)
    }

    /// Forwards `stdin`/`kill` requests on the run's control subject to the sandbox.
    async fn listen_for_control(&self, run_id: &str, tx: mpsc::Sender<Control>) -> Option<AbortOnDrop<()>> {
        let mut sub = match self.bus.client.subscribe(names::control_subject(run_id)).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::warn!(run = %run_id, error = %e, "no control subscription: kill will not reach this run");
                return None;
            }
        };
        Some(AbortOnDrop(tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) else {
                    continue;
                };
                let control = match v.get("type").and_then(|t| t.as_str()) {
                    Some("kill") => Control::Kill,
                    Some("stdin") => {
                        Control::Stdin(v.get("data").and_then(|d| d.as_str()).unwrap_or("").as_bytes().to_vec())
                    }
                    Some("close_stdin") => Control::CloseStdin,
                    _ => continue,
                };
                if tx.send(control).await.is_err() {
                    return;
                }
            }
        })))
    }
}

/// Destroys a used sandbox (the pool makes a fresh one in its place).
async fn destroy(sb: Sandbox) {
    let id = sb.id().to_string();
    if let Err(e) = sb.destroy().await {
        tracing::warn!(sandbox = %id, error = %e, "destroying a used sandbox failed");
    }
}

/// Where single-file `code` goes: the language's entry file name, hidden (`.main.py`), so
/// the work dir a program lists holds only what the program itself made (the
/// `concurrent-isolation` field case lists it and expects only its own file).
fn code_file(language: &Language) -> String {
    format!(".{}", language.file)
}

/// The request's files (or its code under [`code_file`]).
fn files(req: &hearth_proto::api::RunRequest, language: &Language) -> Result<Vec<FileSpec>, RunError> {
    let mut out = Vec::new();
    if let Some(code) = &req.code {
        out.push(FileSpec { path: code_file(language), data: code.clone().into_bytes(), executable: false });
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
