//! The forked child's last steps before it becomes the user's program: its own session,
//! stdio on the run's pipes, the work dir, rlimits, the unprivileged runner ids, no new
//! privileges, the seccomp filter, default signals, then `execve`. The agent is
//! single-threaded, so the child may allocate freely. Any failure is written to the error
//! pipe (close-on-exec: EOF there means exec succeeded) and the child exits 127.

use std::ffi::CString;
use std::os::fd::RawFd;

use hearth_proto::limits::Limits;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{chdir, dup2, execve, fchown, setgroups, setresgid, setresuid, setsid, Gid, Uid};

use crate::seccomp::Filters;

/// Everything the child needs, prepared by the parent before fork.
pub struct ChildPlan<'a> {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub work: &'a str,
    pub limits: Limits,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Becomes fd 3: where a prepared interpreter waits for its program.
    pub go: Option<RawFd>,
    /// Becomes fd 4: where a prepared interpreter says it is ready.
    pub ready: Option<RawFd>,
    pub err_pipe: RawFd,
    /// `cgroup.procs` of the runs' cgroup, which the child joins first (inside a VM, where
    /// the agent owns the cgroups).
    pub cgroup_procs: Option<RawFd>,
    /// Switch to this uid/gid (inside the sandbox) before exec; `None` when the agent is not
    /// root (a developer running it by hand), where rlimits on processes would count the
    /// developer's own processes too.
    pub drop_to: Option<u32>,
    pub filters: &'a Filters,
}

/// Never returns: becomes the program or exits 127.
pub fn exec(plan: &ChildPlan) -> ! {
    let Err((stage, err)) = setup(plan);
    let message = format!("{stage}: {err}");
    let _ = nix::unistd::write(borrow(plan.err_pipe), message.as_bytes());
    // SAFETY: `_exit` ends the forked child without running the parent's atexit handlers.
    unsafe { libc::_exit(127) }
}

fn borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the fds in a plan stay open for the child's whole (short) life.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

type Failure = (&'static str, String);

fn fail<E: std::fmt::Display>(stage: &'static str) -> impl Fn(E) -> Failure {
    move |e| (stage, e.to_string())
}

fn setup(plan: &ChildPlan) -> Result<std::convert::Infallible, Failure> {
    if let Some(fd) = plan.cgroup_procs {
        // "0" moves the writer: everything the program allocates from here is counted.
        nix::unistd::write(borrow(fd), b"0").map_err(fail("joining the runs' cgroup"))?;
    }
    setsid().map_err(fail("setsid"))?;
    dup2(plan.stdin, 0).map_err(fail("dup2 stdin"))?;
    dup2(plan.stdout, 1).map_err(fail("dup2 stdout"))?;
    dup2(plan.stderr, 2).map_err(fail("dup2 stderr"))?;
    if let Some(go) = plan.go {
        dup2(go, 3).map_err(fail("dup2 go"))?;
    }
    if let Some(ready) = plan.ready {
        dup2(ready, 4).map_err(fail("dup2 ready"))?;
    }
    chdir(plan.work).map_err(fail("chdir to the work dir"))?;
    // Raising is always allowed: the program, not the agent, is the OOM killer's choice.
    let _ = std::fs::write("/proc/self/oom_score_adj", "500");

    let l = &plan.limits;
    let cpu_s = l.cpu_ms.div_ceil(1000).max(1);
    setrlimit(Resource::RLIMIT_CPU, cpu_s, cpu_s + 1).map_err(fail("RLIMIT_CPU"))?;
    setrlimit(Resource::RLIMIT_FSIZE, l.file_bytes, l.file_bytes).map_err(fail("RLIMIT_FSIZE"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(fail("RLIMIT_CORE"))?;
    if let Some(id) = plan.drop_to {
        // The pipes were made by the agent: give them to the runner, so that reopening
        // them (`/dev/stdin`, `/proc/self/fd/1`) works as it does in a terminal.
        for fd in 0..3 {
            fchown(fd, Some(Uid::from_raw(id)), Some(Gid::from_raw(id))).map_err(fail("fchown stdio"))?;
        }
        setrlimit(Resource::RLIMIT_NPROC, l.pids, l.pids).map_err(fail("RLIMIT_NPROC"))?;
        setgroups(&[]).map_err(fail("setgroups"))?;
        let (gid, uid) = (Gid::from_raw(id), Uid::from_raw(id));
        setresgid(gid, gid, gid).map_err(fail("setresgid"))?;
        setresuid(uid, uid, uid).map_err(fail("setresuid"))?;
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(("no_new_privs", std::io::Error::last_os_error().to_string()));
    }
    plan.filters.apply().map_err(fail("seccomp"))?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(fail("sigprocmask"))?;
    // SAFETY: resetting a disposition to the default is async-signal-safe and has no handler.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map_err(fail("signal"))?;
    execve(&plan.argv[0], &plan.argv, &plan.env).map_err(fail("exec"))
}
