//! `hearth-agent`: the small static binary that is PID 1 of every hearth sandbox.
//!
//! It speaks the framed agent protocol (`hearth_proto::frame`) on its stdin/stdout, which
//! the sandbox connects to the host (pipes for the process driver; virtio-serial or vsock
//! in a VM), and applies every limit it can itself so all drivers enforce them alike.
//!
//! Modes:
//! - `hearth-agent` (or `serve`): serve frames on stdin/stdout; used as a VM's init.
//! - `hearth-agent jail '<JailSpec JSON>'`: build a namespace sandbox first, then serve
//!   inside it as its PID 1; used by the process driver.
//! - `/init` (the agent under that name in a guest's initramfs) or `hearth-agent vm`: boot a
//!   VM's user space and serve the host over virtio-serial or vsock (qemu, firecracker).
//!
//! Layout:
//! - [`channel`]: frame I/O with the host.
//! - [`serve`]: the frame loop (Ready, Ping/Pong, Run).
//! - [`runner`]: one run: files, compile step, program (cold, or a prepared interpreter).
//! - [`exec`]: one process tree: fork/exec, the poll loop, limits, reaping, the verdict.
//! - [`files`]: writing the request's files safely into the work dir.
//! - [`child`]: what the forked child does before exec (rlimits, ids, seccomp).
//! - [`seccomp`]: the syscall filter.
//! - [`jail`]: namespaces, uid maps, the root file system, loopback.
//! - [`vm`]: the agent as a VM's init: modules, mounts, the runs' cgroup, the host link.

mod channel;
mod child;
mod exec;
mod files;
mod jail;
mod runner;
mod seccomp;
mod serve;
mod vm;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| a == "/init") && nix::unistd::getpid().as_raw() == 1 {
        vm::boot();
    }
    match args.get(1).map(String::as_str) {
        Some("vm") => vm::boot(),
        None | Some("serve") => serve::serve(),
        Some("jail") => {
            let spec = args.get(2).map(|s| serde_json::from_str(s));
            match spec {
                Some(Ok(spec)) => jail::launch(&spec),
                Some(Err(e)) => fail(&format!("bad jail spec: {e}")),
                None => fail("jail needs a JSON spec argument"),
            }
        }
        Some("--version") => println!("hearth-agent {}", env!("CARGO_PKG_VERSION")),
        Some(other) => {
            fail(&format!("unknown mode {other:?}; usage: hearth-agent [serve | jail SPEC | vm | --version]"))
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("hearth-agent: {message}");
    std::process::exit(2)
}
