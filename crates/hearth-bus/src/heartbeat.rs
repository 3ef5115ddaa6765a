//! An executor's heartbeat on `hearth.executor.<id>.status` (core NATS, every second or
//! two): the gateway's `/readyz`, `/metrics` and `/v1/languages` come from these.

use serde::{Deserialize, Serialize};

/// A language an executor offers (what `GET /v1/languages` lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanguageInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub compiled: bool,
}

impl LanguageInfo {
    /// True when `name` is this language's id or one of its aliases (case-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// What an executor says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub id: String,
    /// Sandbox driver (`process`, `qemu`, `firecracker`).
    pub driver: String,
    /// Runs it takes at once.
    pub slots: usize,
    /// Runs going on now.
    pub busy: usize,
    /// Ready sandboxes it aims to keep.
    pub warm: usize,
    /// Ready sandboxes it holds now.
    pub ready: usize,
    pub languages: Vec<LanguageInfo>,
    /// Runs finished since it started.
    #[serde(default)]
    pub runs_done: u64,
    /// hearth version of the executor.
    #[serde(default)]
    pub version: String,
}
