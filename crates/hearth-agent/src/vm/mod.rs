//! The agent as a VM's init (`/init` of the guest's initramfs, under the qemu and
//! firecracker drivers). It mounts what it needs, loads the few kernel modules the image
//! carries (virtio transport, disk, console, vsock), mounts the image's root file system
//! read-only and switches into it with fresh tmpfs `/work`, `/tmp` and a minimal `/dev`,
//! makes one cgroup for the runs (memory, pids: the memory verdict comes from its OOM
//! count), opens the host transport and serves frames on it. The VM is single-use: when the
//! host is done with it, it reboots, which ends the VM (`-no-reboot`, Firecracker's reset).
//!
//! Layout:
//! - [`params`]: `hearth.*` settings from the kernel command line.
//! - [`modules`]: loading the image's modules in order (`finit_module`).
//! - [`mounts`]: early mounts, the root switch, the guest's `/dev`, `/work`, `/tmp`.
//! - [`cgroup`]: the runs' cgroup (limits, OOM kills, peak memory).
//! - [`transport`]: the byte stream to the host (virtio-serial port or vsock).

pub mod cgroup;
mod modules;
mod mounts;
pub mod params;
mod transport;

use crate::channel::log;
use crate::serve;

/// Boots the guest and serves the host; never returns (the VM ends with a reboot).
pub fn boot() -> ! {
    if let Err(e) = mounts::early() {
        halt(&format!("early mounts: {e}"));
    }
    let params = params::Params::from_cmdline(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    if let Err(e) = modules::load_all(&params) {
        halt(&format!("loading modules: {e}"));
    }
    // The serial port's device node lives in the initramfs's devtmpfs: open it before the
    // root switch (the fd stays valid after it).
    let mut link = match transport::Link::open(&params) {
        Ok(l) => l,
        Err(e) => halt(&format!("opening the host transport: {e}")),
    };
    if let Err(e) = mounts::switch_root(&params) {
        halt(&format!("switching to the image's root: {e}"));
    }
    let _ = nix::unistd::sethostname("hearth");
    // Allocations succeed and the runs' cgroup limit decides, as on a host with room: a
    // guest's small RAM must not turn an over-limit allocation into a MemoryError where
    // the process driver gives `memory_limit`.
    let _ = std::fs::write("/proc/sys/vm/overcommit_memory", "1");
    if let Err(e) = crate::jail::loopback_up() {
        log(&format!("loopback stays down: {e}"));
    }
    if let Err(e) = cgroup::init() {
        halt(&format!("setting up the runs' cgroup: {e}"));
    }
    loop {
        if let Err(e) = link.connect() {
            halt(&format!("waiting for the host: {e}"));
        }
        let ended = serve::session();
        // A session that ran nothing (a host that only checked we are up, or a connection
        // reset by a snapshot restore) leaves the VM unused: wait for the next host.
        if ended.ran || !link.reconnects() {
            break;
        }
    }
    halt("done")
}

/// Ends the VM: reboot, which the drivers turn into the VM's exit.
fn halt(why: &str) -> ! {
    if why != "done" {
        log(why);
    }
    nix::unistd::sync();
    // SAFETY: reboot(2) with a documented command; it does not return on success.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_RESTART) };
    // Not allowed (not PID 1 of a VM, no CAP_SYS_BOOT): exiting is all that is left.
    std::process::exit(1)
}
