//! What this host can do, for `hearth doctor` and executor start-up: namespaces, cgroups,
//! seccomp, KVM, and which drivers can work here (and why not).

use std::path::Path;

use serde::Serialize;

use crate::cgroup::{CgroupRoot, Version};

/// One fact about the host.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check { name, ok, detail: detail.into() }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The kernel facts the process driver needs; all must be ok for it to work.
pub fn probe(cgroup_mount: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(check("kernel", true, read("/proc/sys/kernel/osrelease").unwrap_or_default()));
    let root = nix::unistd::geteuid().is_root();
    out.push(check(
        "root",
        root,
        if root { "running as root" } else { "the process driver needs root (uid maps, cgroups)" },
    ));
    let userns = read("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    out.push(check("user namespaces", userns > 0, format!("max_user_namespaces = {userns}")));
    out.push(match CgroupRoot::detect(cgroup_mount, "hearth") {
        Ok(cg) => {
            let detail = match cg.version {
                Version::V1 => "v1 (memory, pids, cpu, cpuacct hierarchies)",
                Version::V2 => "v2 (unified; memory, pids, cpu enabled for hearth)",
            };
            check("cgroups", true, detail)
        }
        Err(e) => check("cgroups", false, e.to_string()),
    });
    let seccomp = read("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    out.push(check(
        "seccomp",
        seccomp.contains("errno"),
        if seccomp.is_empty() { "not available".into() } else { format!("actions: {seccomp}") },
    ));
    out
}

/// Whether /dev/kvm can be opened; a stock guest kernel may still fail to boot on hosts
/// where KVM only runs specially built guests, so a driver must still probe a real boot.
pub fn kvm() -> Check {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => check("kvm", true, "/dev/kvm opens read-write (a guest boot probe decides if it is usable)"),
        Err(e) => check("kvm", false, format!("/dev/kvm: {e}")),
    }
}

/// The first `name` found in the fixed search dirs or on PATH.
pub fn find_binary(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    crate::languages::SEARCH_DIRS
        .iter()
        .map(|d| d.to_string())
        .chain(path.split(':').map(String::from))
        .map(|d| Path::new(&d).join(name))
        .find(|p| p.is_file())
}
