//! Finding and killing live process sandboxes from outside, as a fault would: every
//! process sandbox lives in a cgroup named `hs-<executor pid>-...` under `hearth/`, so
//! `/proc/<pid>/cgroup` tells which sandbox a process belongs to (on cgroup v1 and v2 alike).
//! Shared by the test suites (`#[path]`-included).

#![allow(dead_code)]

use std::collections::BTreeSet;

/// A process on the host, as far as a test needs to know it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    /// `comm` (the kernel's short name, e.g. `cc1`, `sleep`).
    pub comm: String,
    /// argv joined with spaces.
    pub cmdline: String,
    /// The sandbox cgroup it is in (`hs-...`), if any.
    pub sandbox: Option<String>,
    /// Real uid on the host.
    pub uid: u32,
}

fn sandbox_of(cgroup_file: &str) -> Option<String> {
    cgroup_file.lines().find_map(|l| {
        let path = l.rsplit(':').next()?;
        let mut parts = path.trim_start_matches('/').split('/');
        (parts.next()? == "hearth").then_some(())?;
        parts.next().filter(|n| n.starts_with("hs-")).map(str::to_owned)
    })
}

/// Every process on the host that is in a sandbox.
pub fn sandboxed() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let dir = entry.path();
        let Some(sandbox) = std::fs::read_to_string(dir.join("cgroup")).ok().as_deref().and_then(sandbox_of) else {
            continue;
        };
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().next()?.parse().ok()))
            })
            .flatten()
            .unwrap_or(0);
        out.push(Proc { pid, comm, cmdline, sandbox: Some(sandbox), uid });
    }
    out
}

/// True when `p` is in a sandbox of the executor process `pid` (its cgroup is `hs-<pid>-...`).
pub fn owned_by(p: &Proc, pid: u32) -> bool {
    p.sandbox.as_deref().is_some_and(|s| s.starts_with(&format!("hs-{pid}-")))
}

/// The sandbox (cgroup name) of the first sandboxed process matching `pred`.
pub fn find(pred: impl Fn(&Proc) -> bool) -> Option<String> {
    sandboxed().into_iter().find(|p| pred(p)).and_then(|p| p.sandbox)
}

/// SIGKILLs every process of sandbox `name` (its launcher, its agent, the program: all of
/// it, as when a sandbox's processes crash); returns how many were signalled.
pub fn kill(name: &str) -> usize {
    let mut n = 0;
    // Processes may fork while we look: go over it until none is left (bounded).
    for _ in 0..20 {
        let pids: Vec<i32> =
            sandboxed().into_iter().filter(|p| p.sandbox.as_deref() == Some(name)).map(|p| p.pid).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                n += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    n
}

/// Names of the sandboxes that have a process now.
pub fn names() -> BTreeSet<String> {
    sandboxed().into_iter().filter_map(|p| p.sandbox).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_names_come_from_either_cgroup_version() {
        assert_eq!(sandbox_of("5:memory:/hearth/hs-12-3\n4:pids:/hearth/hs-12-3\n").as_deref(), Some("hs-12-3"));
        assert_eq!(sandbox_of("0::/hearth/hs-9-x1\n").as_deref(), Some("hs-9-x1"));
        assert_eq!(sandbox_of("0::/user.slice\n"), None);
        assert_eq!(sandbox_of("5:memory:/hearth\n"), None);
    }
}
