//! cgroup v1: one hierarchy per controller (`/sys/fs/cgroup/memory/...`, `pids/`, ...).

use std::path::{Path, PathBuf};

use super::{keyed, read, write, CgroupError, CgroupLimits};

/// Controllers a sandbox is placed in, in this order (memory first: it is the one read most).
pub const CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "cpuacct"];

const PERIOD_US: u64 = 100_000;

pub fn prepare_parent(mount: &Path, parent: &str) -> Result<(), CgroupError> {
    for c in CONTROLLERS {
        let dir = mount.join(c).join(parent);
        std::fs::create_dir_all(&dir).map_err(|source| CgroupError::Io { path: dir.clone(), source })?;
    }
    // Every sandbox competes for CPU like one process of the host (1024 shares each): the
    // parent weighs as much as `cpus` of them, not as one process for all sandboxes
    // together (which made sandboxed programs several times slower than the same program
    // outside whenever anything else kept the host busy).
    let shares = mount.join("cpu").join(parent).join("cpu.shares");
    write(&shares, &(1024 * super::host_cpus()).to_string())
}

fn dir<'a>(dirs: &'a [PathBuf], controller: &str) -> &'a Path {
    let i = CONTROLLERS.iter().position(|c| *c == controller).expect("known controller");
    &dirs[i]
}

pub fn init_group(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let mem = dir(dirs, "memory");
    // Swapping would hide a memory bomb behind slowness; not every kernel has the file.
    let _ = write(&mem.join("memory.swappiness"), "0");
    Ok(())
}

pub fn set_limits(dirs: &[PathBuf], l: &CgroupLimits) -> Result<(), CgroupError> {
    let mem = dir(dirs, "memory");
    let bytes = l.memory_bytes.to_string();
    let memsw = mem.join("memory.memsw.limit_in_bytes");
    let limit = mem.join("memory.limit_in_bytes");
    // memsw must stay >= memory: order the two writes by direction of change.
    if write(&limit, &bytes).is_err() {
        if memsw.exists() {
            write(&memsw, &bytes)?;
        }
        write(&limit, &bytes)?;
    } else if memsw.exists() {
        write(&memsw, &bytes)?;
    }
    write(&dir(dirs, "pids").join("pids.max"), &l.pids.to_string())?;
    let cpu = dir(dirs, "cpu");
    write(&cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
    write(&cpu.join("cpu.cfs_quota_us"), &((l.cpus * PERIOD_US as f64) as u64).max(1000).to_string())
}

pub fn oom_kills(dirs: &[PathBuf]) -> u64 {
    read(&dir(dirs, "memory").join("memory.oom_control")).ok().and_then(|t| keyed(&t, "oom_kill")).unwrap_or(0)
}

pub fn peak_kb(dirs: &[PathBuf]) -> u64 {
    read(&dir(dirs, "memory").join("memory.max_usage_in_bytes"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(|b| b / 1024)
        .unwrap_or(0)
}
