//! Per-run limits: what a client may ask for ([`LimitsRequest`], every field optional),
//! and what a run gets after defaults and server maxima are applied ([`Limits`]).

use serde::{Deserialize, Serialize};

/// Limits as a client sends them; a missing field takes the server's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub wall_ms: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub pids: Option<u64>,
    pub output_bytes: Option<u64>,
}

/// Limits in force for one run. Every field is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time from exec to the kill of the whole process tree.
    pub wall_ms: u64,
    /// CPU time of the whole process tree.
    pub cpu_ms: u64,
    /// Memory of the sandbox's cgroup, without swap.
    pub memory_mb: u64,
    /// Processes and threads at once.
    pub pids: u64,
    /// stdout + stderr together, counted in bytes; the output is cut at exactly this byte.
    pub output_bytes: u64,
    /// Largest file the program may write (RLIMIT_FSIZE).
    pub file_bytes: u64,
}

impl Limits {
    /// Defaults for a run that asks for nothing.
    pub const DEFAULT: Limits =
        Limits { wall_ms: 5_000, cpu_ms: 3_000, memory_mb: 256, pids: 64, output_bytes: 1 << 20, file_bytes: 16 << 20 };

    /// The most any run may ask for.
    pub const MAX: Limits = Limits {
        wall_ms: 60_000,
        cpu_ms: 30_000,
        memory_mb: 2_048,
        pids: 512,
        output_bytes: 16 << 20,
        file_bytes: 64 << 20,
    };

    /// Limits for a compile step: compilers need more than most programs.
    pub const COMPILE: Limits = Limits {
        wall_ms: 20_000,
        cpu_ms: 15_000,
        memory_mb: 1_024,
        pids: 64,
        output_bytes: 64 << 10,
        file_bytes: 64 << 20,
    };

    /// Applies `req` over `defaults`, each field capped by `max` (a zero request counts as
    /// the smallest sensible value, 1).
    pub fn resolve(req: &LimitsRequest, defaults: &Limits, max: &Limits) -> Limits {
        let pick = |asked: Option<u64>, default: u64, max: u64| asked.unwrap_or(default).clamp(1, max);
        Limits {
            wall_ms: pick(req.wall_ms, defaults.wall_ms, max.wall_ms),
            cpu_ms: pick(req.cpu_ms, defaults.cpu_ms, max.cpu_ms),
            memory_mb: pick(req.memory_mb, defaults.memory_mb, max.memory_mb),
            pids: pick(req.pids, defaults.pids, max.pids),
            output_bytes: pick(req.output_bytes, defaults.output_bytes, max.output_bytes),
            file_bytes: defaults.file_bytes.min(max.file_bytes),
        }
    }
}

impl Limits {
    /// Each field the lower of `self`'s and `other`'s.
    pub fn lower(&self, other: &Limits) -> Limits {
        Limits {
            wall_ms: self.wall_ms.min(other.wall_ms),
            cpu_ms: self.cpu_ms.min(other.cpu_ms),
            memory_mb: self.memory_mb.min(other.memory_mb),
            pids: self.pids.min(other.pids),
            output_bytes: self.output_bytes.min(other.output_bytes),
            file_bytes: self.file_bytes.min(other.file_bytes),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults_and_requests_are_capped() {
        let req = LimitsRequest { wall_ms: Some(999_999), memory_mb: Some(0), ..Default::default() };
        let l = Limits::resolve(&req, &Limits::DEFAULT, &Limits::MAX);
        assert_eq!(l.wall_ms, Limits::MAX.wall_ms);
        assert_eq!(l.memory_mb, 1);
        assert_eq!(l.cpu_ms, Limits::DEFAULT.cpu_ms);
        assert_eq!(l.output_bytes, Limits::DEFAULT.output_bytes);
    }

    #[test]
    fn unknown_limit_fields_are_refused() {
        let err = serde_json::from_str::<LimitsRequest>(r#"{"wall":5}"#);
        assert!(err.is_err());
    }
}
