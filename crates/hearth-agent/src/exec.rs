//! One process tree: fork and exec with its limits ([`Exec::spawn`]), then one poll loop
//! ([`Exec::wait`]) that streams its output (cut at the exact byte of the output limit),
//! feeds its stdin, takes the host's frames (stdin, kill, ping), enforces the wall and CPU
//! limits on the whole tree, and reaps every process. The verdict follows from what it saw.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use hearth_proto::frame::{AgentFrame, HostFrame, Stream};
use hearth_proto::{Limits, Status};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use crate::channel::{log, Channel, INPUT_FD};
use crate::child::{self, ChildPlan};
use crate::runner::drop_to;
use crate::seccomp;

/// How long output may keep arriving after the program ended and the rest of its tree was
/// killed, before the pipes are closed regardless.
const DRAIN: Duration = Duration::from_secs(1);
/// How often the CPU time of the whole tree is summed while a program runs.
const CPU_CHECK: Duration = Duration::from_millis(50);
/// Stdin from the host that the program has not read yet is kept up to this many bytes;
/// a program that does not read loses what comes beyond (the agent's memory stays bounded).
pub const MAX_PENDING_STDIN: usize = 8 << 20;

/// True when the agent is PID 1 of its own PID namespace (or VM).
pub fn is_init() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// What to start.
pub struct Spawn<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub work: &'a str,
    /// Limits applied at fork (rlimits); [`Exec::begin`] sets the ones the loop enforces.
    pub limits: Limits,
    /// Merge stdout and stderr and keep them (a compile step) instead of streaming.
    pub collect: bool,
}

/// What one process tree came to.
pub struct Outcome {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub wall_ms: u64,
    pub wall_us: u64,
    pub cpu_ms: u64,
    pub memory_kb: u64,
    pub truncated: bool,
    pub collected: Vec<u8>,
    pub message: Option<String>,
    /// Stdin the host sent during a compile step, for the program that runs next.
    pub later_stdin: Vec<u8>,
    /// The host closed stdin during a compile step.
    pub later_eof: bool,
}

/// A running process tree and everything the poll loop tracks about it.
pub struct Exec {
    pid: Pid,
    step_limits: hearth_proto::Limits,
    start: Instant,
    deadline: Instant,
    sigchld: SignalFd,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_pos: usize,
    stdin_closing: bool,
    /// `Some` for a compile step: stdout and stderr merged and kept, never streamed.
    collected: Option<Vec<u8>>,
    out_total: u64,
    truncated: bool,
    /// A verdict the agent itself caused (limits, kill); it wins over the exit status.
    verdict: Option<Status>,
    main_status: Option<libc::c_int>,
    main_end: Option<Instant>,
    killing: bool,
    children_left: bool,
    max_rss_kb: u64,
    cpu_base_ms: u64,
    next_cpu_check: Instant,
    exec_error: Option<String>,
    /// What [`Outcome::later_stdin`] and [`Outcome::later_eof`] report.
    later_stdin: Vec<u8>,
    later_eof: bool,
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn set_nonblocking(fd: &OwnedFd) {
    let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
}

fn cstrings<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<CString>, String> {
    items.map(|s| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"))).collect()
}

fn children_cpu_ms() -> u64 {
    let ru = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    ru.map(|ru| {
        let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1000 + t.tv_usec() as u64 / 1000;
        tv(ru.user_time()) + tv(ru.system_time())
    })
    .unwrap_or(0)
}

/// CPU time of every live process but the agent, in ms (only meaningful as PID 1, where
/// every other process of the namespace belongs to the run).
fn live_cpu_ms() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut ticks = 0u64;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    ticks * 1000 / tck
}

impl Exec {
    /// Forks and execs; returns once the exec succeeded (or failed, recorded as a
    /// `sandbox_error` verdict). With `go`, the child gets a pipe to read on fd 3 and one to
    /// write on fd 4, whose other ends are returned: a prepared interpreter says it is ready
    /// on fd 4, then waits for its program on fd 3.
    pub fn spawn(s: &Spawn, go: bool) -> Result<(Exec, Option<(OwnedFd, OwnedFd)>), String> {
        if s.argv.is_empty() {
            return Err("empty command".into());
        }
        let argv = cstrings(s.argv.iter().map(String::as_str))?;
        let env_pairs: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let env = cstrings(env_pairs.iter().map(String::as_str))?;
        let filters = seccomp::filters()?;
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None).map_err(|e| e.to_string())?;
        let sigchld = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("signalfd: {e}"))?;

        let (in_r, in_w) = cloexec_pipe()?;
        let (out_r, out_w) = cloexec_pipe()?;
        let (err_r, err_w) = if s.collect { (None, None) } else { cloexec_pipe().map(|(r, w)| (Some(r), Some(w)))? };
        let (fail_r, fail_w) = cloexec_pipe()?;
        let (go_r, go_w) = if go { cloexec_pipe().map(|(r, w)| (Some(r), Some(w)))? } else { (None, None) };
        let (ready_r, ready_w) = if go { cloexec_pipe().map(|(r, w)| (Some(r), Some(w)))? } else { (None, None) };
        let plan = ChildPlan {
            argv,
            env,
            work: s.work,
            limits: s.limits,
            stdin: in_r.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_ref().unwrap_or(&out_w).as_raw_fd(),
            go: go_r.as_ref().map(|fd| fd.as_raw_fd()),
            ready: ready_w.as_ref().map(|fd| fd.as_raw_fd()),
            err_pipe: fail_w.as_raw_fd(),
            cgroup_procs: crate::vm::cgroup::get().map(|cg| cg.procs_fd()),
            drop_to: drop_to(),
            filters,
        };
        let start = Instant::now();
        // SAFETY: the agent is single-threaded, so the child owns a consistent copy of the
        // whole process and may allocate before it execs.
        let pid = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => child::exec(&plan),
            ForkResult::Parent { child } => child,
        };
        drop((in_r, out_w, err_w, fail_w, go_r, ready_w));

        let mut message = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = nix::unistd::read(fail_r.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            message.extend_from_slice(&buf[..n]);
        }
        for fd in [&in_w, &out_r].into_iter().chain(err_r.as_ref()) {
            set_nonblocking(fd);
        }
        let mut exec = Exec {
            pid,
            step_limits: s.limits,
            start,
            deadline: start + Duration::from_millis(s.limits.wall_ms),
            sigchld,
            stdout: Some(out_r),
            stderr: err_r,
            stdin: Some(in_w),
            stdin_buf: Vec::new(),
            stdin_pos: 0,
            stdin_closing: true,
            collected: s.collect.then(Vec::new),
            out_total: 0,
            truncated: false,
            verdict: None,
            main_status: None,
            main_end: None,
            killing: false,
            children_left: true,
            max_rss_kb: 0,
            cpu_base_ms: children_cpu_ms(),
            next_cpu_check: start + CPU_CHECK,
            exec_error: None,
            later_stdin: Vec::new(),
            later_eof: false,
        };
        if !message.is_empty() {
            exec.exec_error = Some(String::from_utf8_lossy(&message).into_owned());
            exec.verdict = Some(Status::SandboxError);
            exec.kill_all();
        }
        Ok((exec, go_w.zip(ready_r)))
    }

    /// Starts the clocks: the wall deadline and CPU budget of `limits` count from now.
    pub fn begin(&mut self, limits: Limits) {
        let now = Instant::now();
        self.step_limits = limits;
        self.start = now;
        self.deadline = now + Duration::from_millis(limits.wall_ms);
        self.next_cpu_check = now + CPU_CHECK;
        self.cpu_base_ms = children_cpu_ms();
    }

    /// Lowers the rlimits set at fork to `limits` (a prepared interpreter started under the
    /// maxima; raising them would need privileges the agent does not have, and no need).
    pub fn lower_limits(&self, limits: &Limits) -> Result<(), String> {
        let cpu_s = limits.cpu_ms.div_ceil(1000).max(1);
        let mut set =
            vec![(libc::RLIMIT_CPU, cpu_s, cpu_s + 1), (libc::RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes)];
        if drop_to().is_some() {
            set.push((libc::RLIMIT_NPROC, limits.pids, limits.pids));
        }
        for (resource, soft, hard) in set {
            let new = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            // SAFETY: prlimit reads `new` and writes nothing (null old-limit pointer).
            if unsafe { libc::prlimit(self.pid.as_raw(), resource, &new, std::ptr::null_mut()) } != 0 {
                return Err(format!("prlimit: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Kills and reaps a process tree that will not be used.
    pub fn discard(mut self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
        self.killing = true;
        self.stdout = None;
        self.stderr = None;
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }

    fn kill_all(&mut self) {
        self.killing = true;
        if is_init() {
            // From PID 1, -1 means every other process of this PID namespace (or VM).
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        } else {
            let _ = killpg(self.pid, Signal::SIGKILL);
        }
    }

    fn main_running(&self) -> bool {
        self.main_status.is_none()
    }

    /// The poll loop; returns when the whole tree is gone and the pipes are drained.
    /// `stdin` is fed to the program, then its stdin is closed unless `keep_stdin_open`.
    pub fn wait(mut self, chan: &mut Channel, stdin: Vec<u8>, keep_stdin_open: bool) -> Outcome {
        self.stdin_buf = stdin;
        self.stdin_closing = !keep_stdin_open;
        self.feed_stdin();
        loop {
            self.reap();
            if !self.main_running() && self.stdout.is_none() && self.stderr.is_none() && !self.children_left {
                break;
            }
            let now = Instant::now();
            if self.main_running() && now >= self.deadline && self.verdict.is_none() {
                self.verdict = Some(Status::Timeout);
                self.kill_all();
            }
            if self.main_running() && now >= self.next_cpu_check {
                self.check_cpu();
                self.next_cpu_check = now + CPU_CHECK;
            }
            if let Some(end) = self.main_end {
                if now >= end + DRAIN {
                    // Something still holds the pipes open: stop waiting for it.
                    self.stdout = None;
                    self.stderr = None;
                    self.kill_all();
                }
            }
            if self.killing && self.children_left {
                self.kill_all();
            }
            self.poll_once(chan, now);
        }
        self.finish()
    }

    fn poll_once(&mut self, chan: &mut Channel, now: Instant) {
        let timeout = if self.main_running() {
            self.deadline.min(self.next_cpu_check).saturating_duration_since(now)
        } else {
            Duration::from_millis(10)
        };
        let want_stdin = self.stdin.is_some() && self.stdin_pos < self.stdin_buf.len();
        let mut fds = Vec::with_capacity(5);
        let mut push = |fd: i32, events: libc::c_short| {
            fds.push(libc::pollfd { fd, events, revents: 0 });
            fds.len() - 1
        };
        let host = (!chan.is_eof()).then(|| push(INPUT_FD, libc::POLLIN));
        let sig = push(self.sigchld.as_fd().as_raw_fd(), libc::POLLIN);
        let out = self.stdout.as_ref().map(|fd| push(fd.as_raw_fd(), libc::POLLIN));
        let err = self.stderr.as_ref().map(|fd| push(fd.as_raw_fd(), libc::POLLIN));
        let inp = if want_stdin { self.stdin.as_ref().map(|fd| push(fd.as_raw_fd(), libc::POLLOUT)) } else { None };
        let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        let ready = |i: Option<usize>| i.is_some_and(|i| fds[i].revents != 0);
        if ready(Some(sig)) {
            while self.sigchld.read_signal().ok().flatten().is_some() {}
        }
        if ready(out) {
            self.read_output(Stream::Stdout, chan);
        }
        if ready(err) {
            self.read_output(Stream::Stderr, chan);
        }
        if ready(inp) {
            self.feed_stdin();
        }
        if ready(host) {
            self.take_host_frames(chan);
        }
    }

    fn read_output(&mut self, stream: Stream, chan: &mut Channel) {
        let slot = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let Some(fd) = slot.as_ref() else { return };
        let mut buf = vec![0u8; 64 << 10];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => *slot = None,
            Ok(n) => self.deliver(stream, &buf[..n], chan),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => *slot = None,
        }
    }

    /// Passes output on, counting bytes against the output limit and cutting at its byte.
    fn deliver(&mut self, stream: Stream, data: &[u8], chan: &mut Channel) {
        let room = self.step_limits.output_bytes.saturating_sub(self.out_total);
        let take = (data.len() as u64).min(room) as usize;
        if take > 0 {
            match &mut self.collected {
                Some(buf) => buf.extend_from_slice(&data[..take]),
                None => chan.send(&AgentFrame::Output { stream, data: data[..take].to_vec() }),
            }
            self.out_total += take as u64;
        }
        if take < data.len() {
            self.truncated = true;
            if self.collected.is_none() && self.verdict.is_none() {
                self.verdict = Some(Status::OutputLimit);
                self.kill_all();
            }
        }
    }

    fn feed_stdin(&mut self) {
        let Some(fd) = self.stdin.as_ref() else {
            return;
        };
        while self.stdin_pos < self.stdin_buf.len() {
            let end = self.stdin_buf.len().min(self.stdin_pos + (64 << 10));
            match nix::unistd::write(fd, &self.stdin_buf[self.stdin_pos..end]) {
                Ok(n) => self.stdin_pos += n,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(_) => {
                    // The program closed its stdin: the rest has nowhere to go.
                    self.stdin = None;
                    return;
                }
            }
        }
        self.stdin_buf.clear();
        self.stdin_pos = 0;
        if self.stdin_closing {
            self.stdin = None;
        }
    }

    fn take_host_frames(&mut self, chan: &mut Channel) {
        if chan.fill().is_err() || chan.is_eof() {
            // The host is gone; so is every reason to go on.
            self.kill_all();
            std::process::exit(0);
        }
        loop {
            match chan.next() {
                Ok(Some(HostFrame::Kill)) => {
                    self.verdict.get_or_insert(Status::Cancelled);
                    self.kill_all();
                }
                Ok(Some(HostFrame::Stdin(data))) if self.collected.is_some() => {
                    // A compile step: the input is for the program that runs next.
                    push_bounded(&mut self.later_stdin, &data);
                }
                Ok(Some(HostFrame::CloseStdin)) if self.collected.is_some() => self.later_eof = true,
                Ok(Some(HostFrame::Stdin(data))) => {
                    if self.stdin.is_some() {
                        self.stdin_buf.drain(..self.stdin_pos);
                        self.stdin_pos = 0;
                        push_bounded(&mut self.stdin_buf, &data);
                        self.feed_stdin();
                    }
                }
                Ok(Some(HostFrame::CloseStdin)) => {
                    self.stdin_closing = true;
                    self.feed_stdin();
                }
                Ok(Some(HostFrame::Ping)) => chan.send(&AgentFrame::Pong),
                Ok(Some(HostFrame::Run(_) | HostFrame::Prepare(_))) => {
                    log("ignoring a run or prepare frame during a run")
                }
                Ok(None) => return,
                Err(e) => {
                    log(&format!("bad frame from host: {e}"));
                    self.kill_all();
                    std::process::exit(1);
                }
            }
        }
    }

    fn check_cpu(&mut self) {
        if !is_init() {
            return; // RLIMIT_CPU alone, per process, outside a sandbox of our own
        }
        let used = children_cpu_ms().saturating_sub(self.cpu_base_ms) + live_cpu_ms();
        if used >= self.step_limits.cpu_ms && self.verdict.is_none() {
            self.verdict = Some(Status::CpuLimit);
            self.kill_all();
        }
    }

    /// Reaps every exited child without blocking; notes the main process's status.
    fn reap(&mut self) {
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 writes only into the two locals passed by pointer.
            let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut ru) };
            if pid > 0 {
                self.max_rss_kb = self.max_rss_kb.max(ru.ru_maxrss.max(0) as u64);
                if pid == self.pid.as_raw() {
                    self.main_status = Some(status);
                    self.main_end = Some(Instant::now());
                    // Whatever the program left behind (daemons, stragglers) dies with it.
                    self.kill_all();
                }
                continue;
            }
            if pid < 0 {
                self.children_left = false;
            }
            return;
        }
    }

    fn finish(self) -> Outcome {
        let end = self.main_end.unwrap_or_else(Instant::now);
        let cpu_ms = children_cpu_ms().saturating_sub(self.cpu_base_ms);
        let status = self.main_status.unwrap_or(0);
        let (exit_code, signal) = if libc::WIFEXITED(status) {
            (Some(libc::WEXITSTATUS(status)), None)
        } else if libc::WIFSIGNALED(status) {
            (None, Some(libc::WTERMSIG(status)))
        } else {
            (None, None)
        };
        let verdict = self.verdict.unwrap_or(match (exit_code, signal) {
            (Some(0), _) => Status::Ok,
            (Some(_), _) => Status::RuntimeError,
            (_, Some(libc::SIGXCPU)) => Status::CpuLimit,
            (_, Some(libc::SIGKILL)) if cpu_ms >= self.step_limits.cpu_ms => Status::CpuLimit,
            _ => Status::Signaled,
        });
        let wall = end.duration_since(self.start);
        Outcome {
            status: verdict,
            exit_code,
            signal,
            wall_ms: wall.as_millis() as u64,
            wall_us: wall.as_micros() as u64,
            cpu_ms,
            memory_kb: self.max_rss_kb,
            truncated: self.truncated,
            collected: self.collected.unwrap_or_default(),
            message: self.exec_error,
            later_stdin: self.later_stdin,
            later_eof: self.later_eof,
        }
    }
}

/// Appends `data` to `buf`, keeping it at most [`MAX_PENDING_STDIN`] bytes; says so in the
/// log when it has to drop some.
fn push_bounded(buf: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_PENDING_STDIN.saturating_sub(buf.len());
    let take = data.len().min(room);
    if take < data.len() {
        log(&format!(
            "stdin: the program has not read {MAX_PENDING_STDIN} bytes yet; dropping {} more",
            data.len() - take
        ));
    }
    buf.extend_from_slice(&data[..take]);
}
