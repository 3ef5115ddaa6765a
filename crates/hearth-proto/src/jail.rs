//! The argument of `hearth-agent jail`: how the process driver asks the agent to build its
//! own sandbox (namespaces, root file system, cgroup membership) before serving frames.

use serde::{Deserialize, Serialize};

/// A sandbox as the process driver wants it. Passed as one JSON argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailSpec {
    /// Host uid/gid that the sandbox's root maps to; `host_id_base + 1` is the unprivileged
    /// user (uid/gid 1000 inside) that runs the program.
    pub host_id_base: u32,
    /// `cgroup.procs` files the launcher writes itself into before creating namespaces.
    pub cgroup_procs: Vec<String>,
    /// Host paths made visible read-only at the same place; a host symlink is recreated as
    /// the same symlink. Missing paths are skipped.
    pub ro_paths: Vec<String>,
    /// Device nodes bound from the host's /dev (null, zero, urandom, ...).
    pub devices: Vec<String>,
    /// Files written into the sandbox's /etc: (name, content).
    pub etc_files: Vec<(String, String)>,
    /// Size of the /work tmpfs in MiB.
    pub work_mb: u64,
    /// Size of the /tmp tmpfs (and /dev/shm) in MiB.
    pub tmp_mb: u64,
    pub hostname: String,
}

/// Where the program's files live inside every sandbox.
pub const WORK_DIR: &str = "/work";
/// The uid and gid (inside the sandbox) the program runs as.
pub const RUNNER_ID: u32 = 1000;
