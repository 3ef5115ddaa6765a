//! Helpers for the sandbox tests: a real process driver on this host's cgroups, and the
//! no-leftovers check.

#![allow(dead_code)]

use std::sync::Arc;

use hearth_sandbox::{locate_agent, ProcessConfig, ProcessDriver};

/// A process driver with the agent this workspace built.
pub fn driver() -> Arc<ProcessDriver> {
    tagged_driver("")
}

/// A driver whose sandbox names carry `tag`, so a test can tell its sandboxes from those of
/// tests running beside it in the same process.
pub fn tagged_driver(tag: &str) -> Arc<ProcessDriver> {
    let agent = locate_agent().expect("hearth-agent binary: build the workspace or set HEARTH_AGENT");
    let config = ProcessConfig { tag: tag.into(), ..ProcessConfig::new(agent) };
    Arc::new(ProcessDriver::new(config).expect("process driver (needs root and cgroups)"))
}

/// The host's mount table, one entry per line (mount id stripped, so it compares stably).
pub fn host_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut lines: Vec<String> =
        text.lines().map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")).collect();
    lines.sort();
    lines
}

/// What sandbox `id` left on the host: processes still in its cgroup, its cgroup dirs,
/// temp files naming it, and mounts that were not there in `mounts_before`.
pub fn leftovers(driver: &ProcessDriver, id: &str, mounts_before: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    if driver.cgroups().list().iter().any(|n| n == id) {
        found.push(format!("cgroup {id} still exists"));
    }
    let needle = format!("/{id}\n");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cg) = std::fs::read_to_string(entry.path().join("cgroup")) {
            if cg.contains(&needle) {
                found.push(format!("process {name} still in sandbox {id}"));
            }
        }
    }
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().contains(id) {
            found.push(format!("temp entry {:?}", entry.path()));
        }
    }
    let now = host_mounts();
    for m in now.iter().filter(|m| !mounts_before.contains(m)) {
        found.push(format!("new host mount {m}"));
    }
    found
}
