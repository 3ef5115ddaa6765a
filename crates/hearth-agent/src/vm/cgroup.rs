//! The runs' cgroup inside the guest (cgroup v2): every process of a run joins it before it
//! execs, its limits are the step's (memory without swap, processes), and its OOM count and
//! peak go into the agent's result, from which the host gives the `memory_limit` verdict,
//! exactly as it does from its own cgroups under the process driver. The agent itself stays
//! in the root cgroup, outside the run's limit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_proto::Limits;

const ROOT: &str = "/sys/fs/cgroup";

/// The runs' cgroup of this VM.
pub struct RunCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, open for the forked child to write itself into.
    procs: File,
}

static RUN: OnceLock<RunCgroup> = OnceLock::new();

/// Enables the controllers and makes the runs' cgroup.
pub fn init() -> Result<(), String> {
    let root = Path::new(ROOT);
    write(&root.join("cgroup.subtree_control"), "+memory +pids")?;
    let dir = root.join("run");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let procs =
        OpenOptions::new().write(true).open(dir.join("cgroup.procs")).map_err(|e| format!("cgroup.procs: {e}"))?;
    let _ = RUN.set(RunCgroup { dir, procs });
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    let mut f = OpenOptions::new().write(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(value.as_bytes()).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

/// The runs' cgroup, when the agent is a VM's init.
pub fn get() -> Option<&'static RunCgroup> {
    RUN.get()
}

impl RunCgroup {
    /// Limits for the next step.
    pub fn set_limits(&self, l: &Limits) -> Result<(), String> {
        write(&self.dir.join("memory.max"), &(l.memory_mb << 20).to_string())?;
        // There is no swap in the guest; the file exists only with swap accounting.
        let _ = write(&self.dir.join("memory.swap.max"), "0");
        write(&self.dir.join("pids.max"), &l.pids.to_string())
    }

    /// The fd a forked child writes "0" into to join the cgroup.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Processes the OOM killer killed in the cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        let text = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    /// The cgroup's peak memory in KiB.
    pub fn peak_kb(&self) -> u64 {
        let text = std::fs::read_to_string(self.dir.join("memory.peak")).unwrap_or_default();
        text.trim().parse::<u64>().map(|b| b >> 10).unwrap_or(0)
    }
}
