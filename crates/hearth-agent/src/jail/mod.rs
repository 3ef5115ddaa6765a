//! `hearth-agent jail SPEC`: the process driver's sandbox, built by the agent itself.
//!
//! The launcher starts as root on the host. It joins the sandbox's cgroups (so everything
//! after is counted and limited), then clones a child into new user, mount, PID, network,
//! IPC, UTS and cgroup namespaces. From the host side it writes the child's uid/gid maps:
//! root inside is `host_id_base` outside, the runner (uid 1000 inside) is `host_id_base+1`,
//! so nothing inside is root on the host. The child is PID 1 of its namespace: it builds a
//! read-only root ([`fs`]), brings up loopback ([`net`]) and serves frames. It dies with the
//! launcher (PDEATHSIG), and every process of its namespace dies with it.

mod fs;
mod net;

pub use net::loopback_up;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use hearth_proto::jail::{JailSpec, RUNNER_ID};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, setgroups, setresgid, setresuid, Gid, Pid, Uid};

use crate::channel::log;
use crate::serve;

/// Stack for the cloned child, which runs the whole agent on it.
const STACK_BYTES: usize = 8 << 20;

/// Runs the launcher; exits with the sandbox's exit status.
pub fn launch(spec: &JailSpec) -> ! {
    for procs in &spec.cgroup_procs {
        if let Err(e) = std::fs::write(procs, "0") {
            die(&format!("joining cgroup {procs}: {e}"));
        }
    }
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let (ready_r, ready_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| die(&format!("pipe: {e}")));
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    let mut stack = vec![0u8; STACK_BYTES];
    let write_end = ready_w.as_raw_fd();
    let mut ready_r = Some(ready_r);
    let init = Box::new(|| -> isize {
        // The child's copy of the write end must go, or the pipe never reaches EOF.
        let _ = nix::unistd::close(write_end);
        init(spec, ready_r.take().expect("clone callback runs once"))
    });
    // SAFETY: the launcher is single-threaded and the child gets its own copy of memory (no
    // CLONE_VM), so running arbitrary Rust in it is as safe as after fork.
    let child = unsafe { nix::sched::clone(init, &mut stack, flags, Some(libc::SIGCHLD)) }
        .unwrap_or_else(|e| die(&format!("clone into new namespaces: {e}")));
    if let Err(e) = write_id_maps(child, spec.host_id_base) {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        die(&format!("writing id maps: {e}"));
    }
    drop(ready_w);
    let code = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => die(&format!("waiting for the sandbox: {e}")),
        }
    };
    std::process::exit(code)
}

fn write_id_maps(child: Pid, base: u32) -> std::io::Result<()> {
    let map = format!("0 {base} 1\n{RUNNER_ID} {} 1\n", base + 1);
    std::fs::write(format!("/proc/{child}/uid_map"), &map)?;
    std::fs::write(format!("/proc/{child}/gid_map"), &map)
}

/// PID 1 of the new namespaces.
fn init(spec: &JailSpec, ready: OwnedFd) -> isize {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // Wait for the launcher to write our id maps (it closes the pipe when done).
    let mut sink = Vec::new();
    let _ = std::fs::File::from(ready).read_to_end(&mut sink);
    if let Err(e) = become_root() {
        die(&format!("taking root inside the sandbox: {e}"));
    }
    if let Err(e) = fs::build_root(spec) {
        die(&format!("building the root file system: {e}"));
    }
    let _ = nix::unistd::sethostname(&spec.hostname);
    if let Err(e) = net::loopback_up() {
        log(&format!("loopback stays down: {e}"));
    }
    serve::serve()
}

fn become_root() -> nix::Result<()> {
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    setgroups(&[])?;
    setresgid(root_gid, root_gid, root_gid)?;
    setresuid(root_uid, root_uid, root_uid)
}

fn die(message: &str) -> ! {
    log(message);
    std::process::exit(111)
}
