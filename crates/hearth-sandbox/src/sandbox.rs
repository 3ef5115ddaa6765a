//! A live sandbox, whatever the driver: a connection to its agent plus the driver's
//! [`Backend`] (how to limit it from outside, read its accounting, check and destroy it).
//! [`Sandbox::run`] drives one run and turns the agent's report into the final verdict.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use hearth_proto::frame::{AgentFrame, AgentResult, AgentRun, HostFrame, Prepare, Ready, Stream};
use hearth_proto::{Limits, Status};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout};

use crate::conn::AgentConn;
use crate::error::SandboxError;

/// A boxed, sendable future (drivers return these from trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long the host waits past a run's own limits before it calls the sandbox hung.
const GRACE: Duration = Duration::from_secs(3);

/// What a driver does outside the agent.
pub trait Backend: Send {
    /// Applies limits enforced outside the agent (cgroup memory, processes, CPU share).
    fn prepare(&mut self, limits: &Limits) -> Result<(), SandboxError>;
    /// OOM kills seen so far (the memory verdict comes from here, not from exit codes).
    fn oom_kills(&self) -> u64;
    /// Peak memory of the whole sandbox in KiB, where known.
    fn peak_kb(&self) -> u64;
    /// False once the sandbox's process or VM is gone.
    fn alive(&mut self) -> bool;
    /// Kills everything and removes every trace (processes, cgroups, files).
    fn destroy(self: Box<Self>) -> BoxFuture<'static, Result<(), SandboxError>>;
    /// How long past a run's own limits the host waits for the agent's result before it
    /// calls the sandbox hung (an emulated guest needs longer to wind a run down).
    fn grace(&self) -> Duration {
        GRACE
    }
    /// How much slower than the host's the sandbox's CPU is (an emulated guest): a run's wall
    /// and CPU limits are multiplied by it, so a verdict means the same amount of work.
    fn time_scale(&self) -> u64 {
        1
    }
}

/// `job` with its wall and CPU limits multiplied by `scale`.
fn scaled(job: &AgentRun, scale: u64) -> AgentRun {
    let mut job = job.clone();
    for limits in job.compile.iter_mut().map(|c| &mut c.limits).chain([&mut job.run.limits]) {
        limits.wall_ms = limits.wall_ms.saturating_mul(scale);
        limits.cpu_ms = limits.cpu_ms.saturating_mul(scale);
    }
    job
}

/// Something the run's owner asks for while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Stdin(Vec<u8>),
    CloseStdin,
    Kill,
}

/// Streamed while a run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The user's program was started (after any compile step).
    Started,
    Output {
        stream: Stream,
        data: Vec<u8>,
    },
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub result: AgentResult,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// When the agent's `Started` arrived (the program was launched), if it did.
    pub started_at: Option<SystemTime>,
    /// When the agent's verdict arrived.
    pub ended_at: SystemTime,
    /// The program went to the interpreter this sandbox had prepared.
    pub prepared: bool,
}

/// One single-use sandbox.
pub struct Sandbox {
    id: String,
    conn: AgentConn,
    backend: Box<dyn Backend>,
    created: Instant,
    /// An interpreter is started and waiting in it ([`Sandbox::prepare`]).
    prepared: bool,
}

impl Sandbox {
    pub fn new(id: String, conn: AgentConn, backend: Box<dyn Backend>) -> Sandbox {
        Sandbox { id, conn, backend, created: Instant::now(), prepared: false }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the sandbox was created.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Waits for the agent's `Ready`.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<Ready, SandboxError> {
        let id = self.id.clone();
        match timeout(within, self.conn.recv()).await {
            Err(_) => Err(SandboxError::NotReady { id, waited: within }),
            Ok(Ok(Some(AgentFrame::Ready(r)))) => Ok(r),
            Ok(Ok(Some(other))) => Err(SandboxError::Unexpected { id, what: format!("{other:?}") }),
            Ok(Ok(None)) => Err(SandboxError::Closed { id, during: " before it was ready" }),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Health check: the agent answers a ping in time.
    pub async fn ping(&mut self, within: Duration) -> Result<(), SandboxError> {
        if !self.backend.alive() {
            return Err(SandboxError::Closed { id: self.id.clone(), during: " (process gone)" });
        }
        self.conn.send(&HostFrame::Ping).await?;
        let id = self.id.clone();
        match timeout(within, self.conn.recv()).await {
            Err(_) => Err(SandboxError::NotReady { id, waited: within }),
            Ok(Ok(Some(AgentFrame::Pong))) => Ok(()),
            Ok(Ok(Some(other))) => Err(SandboxError::Unexpected { id, what: format!("{other:?}") }),
            Ok(Ok(None)) => Err(SandboxError::Closed { id, during: " during a health check" }),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Starts an interpreter in the sandbox that waits for its program (see
    /// [`crate::Language::prepare`]); a later run with `warm_argv` skips its start-up.
    pub async fn prepare(&mut self, p: &Prepare, within: Duration) -> Result<(), SandboxError> {
        self.conn.send(&HostFrame::Prepare(Box::new(p.clone()))).await?;
        let id = self.id.clone();
        match timeout(within, self.conn.recv()).await {
            Err(_) => Err(SandboxError::NotReady { id, waited: within }),
            Ok(Ok(Some(AgentFrame::Prepared))) => {
                self.prepared = true;
                Ok(())
            }
            Ok(Ok(Some(AgentFrame::Error { message }))) => Err(SandboxError::Agent { id, message }),
            Ok(Ok(Some(other))) => Err(SandboxError::Unexpected { id, what: format!("{other:?}") }),
            Ok(Ok(None)) => Err(SandboxError::Closed { id, during: " while preparing" }),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Cheap liveness check (no round trip).
    pub fn alive(&mut self) -> bool {
        self.backend.alive()
    }

    /// Runs `job`, streaming [`RunEvent`]s to `events` and taking [`Control`]s from
    /// `control`. The sandbox is spent afterwards: destroy it.
    pub async fn run(
        &mut self,
        job: &AgentRun,
        events: Option<mpsc::Sender<RunEvent>>,
        mut control: Option<mpsc::Receiver<Control>>,
    ) -> Result<RunOutcome, SandboxError> {
        let scale = self.backend.time_scale();
        let scaled_job;
        let job = if scale > 1 {
            scaled_job = scaled(job, scale);
            &scaled_job
        } else {
            job
        };
        // The agent hands the program to a prepared interpreter exactly when this holds.
        let prepared = self.prepared && job.warm_argv.is_some() && job.compile.is_none();
        let first = job.compile.as_ref().map(|c| c.limits).unwrap_or(job.run.limits);
        self.backend.prepare(&first)?;
        self.conn.send(&HostFrame::Run(Box::new(job.clone()))).await?;
        let compile_ms = job.compile.as_ref().map_or(0, |c| c.limits.wall_ms);
        let grace = self.backend.grace();
        let mut deadline = Instant::now() + Duration::from_millis(compile_ms + job.run.limits.wall_ms) + grace;
        let cap = job.run.limits.output_bytes as usize;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut started_at = None;
        loop {
            let next_control = async {
                match control.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = self.conn.recv() => match frame? {
                    Some(AgentFrame::Output { stream, data }) => {
                        let sink = if stream == Stream::Stdout { &mut stdout } else { &mut stderr };
                        let room = cap.saturating_sub(sink.len());
                        sink.extend_from_slice(&data[..data.len().min(room)]);
                        if let Some(tx) = &events {
                            let _ = tx.send(RunEvent::Output { stream, data }).await;
                        }
                    }
                    Some(AgentFrame::Started) => {
                        started_at = Some(SystemTime::now());
                        if job.compile.is_some() {
                            self.backend.prepare(&job.run.limits)?;
                        }
                        deadline = Instant::now() + Duration::from_millis(job.run.limits.wall_ms) + grace;
                        if let Some(tx) = &events {
                            let _ = tx.send(RunEvent::Started).await;
                        }
                    }
                    Some(AgentFrame::Result(result)) => {
                        let ended_at = SystemTime::now();
                        let result = self.judge(*result);
                        return Ok(RunOutcome { result, stdout, stderr, started_at, ended_at, prepared });
                    }
                    Some(AgentFrame::Pong | AgentFrame::Prepared) => {}
                    Some(AgentFrame::Error { message }) => {
                        return Err(SandboxError::Agent { id: self.id.clone(), message });
                    }
                    Some(other @ AgentFrame::Ready(_)) => {
                        return Err(SandboxError::Unexpected { id: self.id.clone(), what: format!("{other:?}") });
                    }
                    None => {
                        return Err(SandboxError::Closed { id: self.id.clone(), during: " during a run" });
                    }
                },
                c = next_control => match c {
                    Some(Control::Stdin(data)) => self.conn.send(&HostFrame::Stdin(data)).await?,
                    Some(Control::CloseStdin) => self.conn.send(&HostFrame::CloseStdin).await?,
                    Some(Control::Kill) => self.conn.send(&HostFrame::Kill).await?,
                    None => control = None,
                },
                _ = sleep_until(deadline.into()) => {
                    return Err(SandboxError::Hung { id: self.id.clone(), waited: grace });
                }
            }
        }
    }

    /// Adds what only the host can see to the agent's report: an OOM kill in the sandbox's
    /// cgroup (or, in a VM, in the guest's run cgroup, as the agent reports it) turns a death
    /// by signal or a failure into `memory_limit`.
    fn judge(&self, mut r: AgentResult) -> AgentResult {
        // The host's cgroup (process driver) or the agent's own in the guest (VM drivers).
        let oom = self.backend.oom_kills() + r.oom_kills > 0;
        if oom && matches!(r.status, Status::Signaled | Status::RuntimeError | Status::CpuLimit) {
            r.status = Status::MemoryLimit;
            r.memory_kb = r.memory_kb.max(self.backend.peak_kb()).max(r.cgroup_peak_kb);
        }
        if oom && r.status == Status::CompileError {
            r.message.get_or_insert_with(|| "the compiler ran out of memory".into());
        }
        r
    }

    /// Kills the sandbox and removes every trace of it.
    pub async fn destroy(self) -> Result<(), SandboxError> {
        drop(self.conn);
        self.backend.destroy().await
    }
}

impl RunOutcome {
    /// The API's result body for this outcome.
    pub fn to_api(&self, run_id: &str, session_id: &str, lang: &str) -> hearth_proto::api::RunResult {
        let r = &self.result;
        let mut out = hearth_proto::api::RunResult {
            run_id: run_id.into(),
            session_id: session_id.into(),
            lang: lang.into(),
            status: Some(r.status),
            exit_code: r.exit_code,
            signal: r.signal,
            wall_ms: r.wall_ms,
            cpu_ms: r.cpu_ms,
            memory_kb: r.memory_kb,
            truncated: r.truncated,
            message: r.message.clone(),
            ..Default::default()
        };
        let compile_output = r.compile.as_ref().map(|c| c.output.as_slice()).unwrap_or_default();
        out.set_outputs(&self.stdout, &self.stderr, compile_output);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::frame::Step;

    #[test]
    fn scaling_multiplies_only_time_limits_of_both_steps() {
        let step = |wall_ms, cpu_ms| Step {
            argv: vec!["/bin/true".into()],
            limits: Limits { wall_ms, cpu_ms, ..Limits::DEFAULT },
        };
        let job = AgentRun {
            files: Vec::new(),
            compile: Some(step(20_000, 15_000)),
            run: step(1_000, 500),
            env: Vec::new(),
            stdin: Vec::new(),
            keep_stdin_open: false,
            warm_argv: None,
        };
        let s = scaled(&job, 4);
        assert_eq!((s.run.limits.wall_ms, s.run.limits.cpu_ms), (4_000, 2_000));
        let c = s.compile.unwrap().limits;
        assert_eq!((c.wall_ms, c.cpu_ms), (80_000, 60_000));
        assert_eq!(s.run.limits.memory_mb, Limits::DEFAULT.memory_mb);
        assert_eq!(scaled(&job, 1), job);
    }
}
