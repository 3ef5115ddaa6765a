//! One run: write the files, compile if the language needs it, then run the program —
//! either a fresh exec, or by handing the program to an interpreter prepared ahead of time
//! ([`prepare`]), which then costs no start-up. [`crate::exec`] runs each process tree.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use hearth_proto::frame::{AgentFrame, AgentResult, AgentRun, CompileResult, Prepare};
use hearth_proto::jail::{RUNNER_ID, WORK_DIR};
use hearth_proto::{Limits, Status};

use crate::channel::Channel;
use crate::exec::{is_init, Exec, Outcome, Spawn};
use crate::files;

fn work_dir() -> String {
    if is_init() {
        WORK_DIR.to_string()
    } else {
        std::env::var("HEARTH_AGENT_WORK").unwrap_or_else(|_| ".".into())
    }
}

/// The uid (inside) programs run as, when the agent can switch to it.
pub fn drop_to() -> Option<u32> {
    nix::unistd::geteuid().is_root().then_some(RUNNER_ID)
}

fn blank(status: Status, message: Option<String>) -> AgentResult {
    AgentResult {
        status,
        exit_code: None,
        signal: None,
        wall_ms: 0,
        wall_us: 0,
        cpu_ms: 0,
        memory_kb: 0,
        truncated: false,
        compile: None,
        message,
        oom_kills: 0,
        cgroup_peak_kb: 0,
    }
}

/// An interpreter started ahead of a run, blocked reading its program's argv on fd 3.
pub struct Prepared {
    exec: Exec,
    go: OwnedFd,
}

/// How long an interpreter may take to start and say it is ready.
const PREPARE_TIMEOUT_MS: i32 = 10_000;

/// Starts `p`'s interpreter under the most generous limits (a run lowers them) and waits
/// until its loader says it is ready (a byte on its fd 4).
pub fn prepare(p: &Prepare) -> Result<Prepared, String> {
    let work = work_dir();
    let spawn = Spawn { argv: &p.argv, env: &p.env, work: &work, limits: Limits::MAX, collect: false };
    let (exec, pipes) = Exec::spawn(&spawn, true)?;
    let (go, ready) = pipes.expect("prepare pipes were asked for");
    let mut fds = [libc::pollfd { fd: ready.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    // SAFETY: one valid pollfd, exclusively borrowed.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, PREPARE_TIMEOUT_MS) };
    let mut byte = [0u8; 1];
    let said_ready = n == 1 && matches!(nix::unistd::read(ready.as_raw_fd(), &mut byte), Ok(1));
    if !said_ready {
        exec.discard();
        return Err(format!("interpreter {:?} did not get ready", p.argv.first()));
    }
    Ok(Prepared { exec, go })
}

impl Prepared {
    /// Lets the interpreter go: the run's limits, then the argv (NUL-separated) on fd 3.
    fn launch(mut self, argv: &[String], limits: Limits) -> Result<Exec, String> {
        self.exec.lower_limits(&limits)?;
        self.exec.begin(limits);
        let message = argv.join("\0");
        let mut rest = message.as_bytes();
        while !rest.is_empty() {
            match nix::unistd::write(&self.go, rest) {
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("handing the program to the interpreter: {e}")),
            }
        }
        drop(self.go);
        Ok(self.exec)
    }

    /// Kills an interpreter that will not be used.
    pub fn discard(self) {
        self.exec.discard();
    }
}

fn finish(out: Outcome, compile: Option<CompileResult>) -> AgentResult {
    AgentResult {
        status: out.status,
        exit_code: out.exit_code,
        signal: out.signal,
        wall_ms: out.wall_ms,
        wall_us: out.wall_us,
        cpu_ms: out.cpu_ms,
        memory_kb: out.memory_kb,
        truncated: out.truncated,
        compile,
        message: out.message,
        oom_kills: 0,
        cgroup_peak_kb: 0,
    }
}

/// Sets the next step's limits on the runs' cgroup, where the agent owns one (in a VM).
fn guest_limits(limits: &Limits) -> Result<(), String> {
    crate::vm::cgroup::get().map_or(Ok(()), |cg| cg.set_limits(limits))
}

/// Runs `req` to the end and returns the agent's verdict; output was streamed on `chan`.
/// A `prepared` interpreter is used when the request says how (`warm_argv`), else killed.
/// Inside a VM the result carries the runs' cgroup's OOM kills and peak.
pub fn run(req: &AgentRun, chan: &mut Channel, prepared: Option<Prepared>) -> AgentResult {
    let mut result = run_steps(req, chan, prepared);
    if let Some(cg) = crate::vm::cgroup::get() {
        result.oom_kills = cg.oom_kills();
        result.cgroup_peak_kb = cg.peak_kb();
    }
    result
}

fn run_steps(req: &AgentRun, chan: &mut Channel, prepared: Option<Prepared>) -> AgentResult {
    let work = work_dir();
    let owner = drop_to().map(|id| (id, id));
    let warm = match (prepared, &req.warm_argv) {
        (Some(p), Some(argv)) if req.compile.is_none() => Some((p, argv)),
        (p, _) => {
            if let Some(p) = p {
                p.discard();
            }
            None
        }
    };
    if let Err(m) = files::write_all(Path::new(&work), &req.files, owner) {
        if let Some((p, _)) = warm {
            p.discard();
        }
        return blank(Status::InternalError, Some(m));
    }
    let mut compile = None;
    let (mut stdin, mut keep_stdin_open) = (req.stdin.clone(), req.keep_stdin_open);
    if let Some(step) = &req.compile {
        if let Err(m) = guest_limits(&step.limits) {
            return blank(Status::SandboxError, Some(m));
        }
        let spawn = Spawn { argv: &step.argv, env: &req.env, work: &work, limits: step.limits, collect: true };
        // The clocks run from the fork: a step's time includes its exec, as a shell's would.
        let out = match Exec::spawn(&spawn, false) {
            Ok((exec, _)) => exec.wait(chan, Vec::new(), false),
            Err(m) => return blank(Status::SandboxError, Some(m)),
        };
        let failed = out.status != Status::Ok;
        let status = out.status;
        stdin.extend_from_slice(&out.later_stdin);
        keep_stdin_open &= !out.later_eof;
        compile = Some(CompileResult {
            status,
            exit_code: out.exit_code,
            signal: out.signal,
            output: out.collected,
            wall_ms: out.wall_ms,
            cpu_ms: out.cpu_ms,
        });
        if failed {
            let mut r = blank(if status == Status::Cancelled { Status::Cancelled } else { Status::CompileError }, None);
            r.compile = compile;
            return r;
        }
    }
    chan.send(&AgentFrame::Started);
    let limits = req.run.limits;
    if let Err(m) = guest_limits(&limits) {
        let mut r = blank(Status::SandboxError, Some(m));
        r.compile = compile;
        return r;
    }
    let exec = match warm {
        Some((p, argv)) => p.launch(argv, limits),
        None => {
            let spawn = Spawn { argv: &req.run.argv, env: &req.env, work: &work, limits, collect: false };
            Exec::spawn(&spawn, false).map(|(exec, _)| exec)
        }
    };
    match exec {
        Ok(exec) => finish(exec.wait(chan, stdin, keep_stdin_open), compile),
        Err(m) => {
            let mut r = blank(Status::SandboxError, Some(m));
            r.compile = compile;
            r
        }
    }
}
