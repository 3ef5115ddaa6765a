//! The final verdict of a run, as the API and the agent report it.

use serde::{Deserialize, Serialize};

/// Final status of a run. `Queued` and `Running` are only ever seen in status events and in
/// `GET /v1/runs/{id}` before the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    /// Exited with code 0.
    Ok,
    /// Exited with a non-zero code.
    RuntimeError,
    /// Killed by a signal it did not get from hearth's limits.
    Signaled,
    /// The compile step failed; the program never ran.
    CompileError,
    /// Wall-clock limit reached.
    Timeout,
    /// CPU-time limit reached.
    CpuLimit,
    /// Memory limit reached (from the cgroup's OOM accounting).
    MemoryLimit,
    /// stdout + stderr reached the output limit; output is cut at the exact byte.
    OutputLimit,
    /// The sandbox failed (agent died, VM crashed); not the program's fault.
    SandboxError,
    /// hearth failed (e.g. a run that exhausted its deliveries).
    InternalError,
    /// Killed on the user's request.
    Cancelled,
}

impl Status {
    /// True once the run has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Ok => "ok",
            Status::RuntimeError => "runtime_error",
            Status::Signaled => "signaled",
            Status::CompileError => "compile_error",
            Status::Timeout => "timeout",
            Status::CpuLimit => "cpu_limit",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::SandboxError => "sandbox_error",
            Status::InternalError => "internal_error",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
