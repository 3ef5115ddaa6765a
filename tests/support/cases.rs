//! The field cases of `tests/cases/runs.json` (a copy of `../shared/cases/runs.json`) and
//! the checks their `expect` blocks name. Shared by the sandbox-level and end-to-end tests
//! through `#[path]`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hearth_proto::api::RunResult;
use hearth_proto::{LimitsRequest, Status};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Fill {
    pub char: String,
    pub bytes: usize,
}

impl Fill {
    pub fn make(&self) -> String {
        self.char.repeat(self.bytes)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunSpec {
    pub lang: String,
    pub code: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<Status>,
    pub status_in: Option<Vec<Status>>,
    pub http: Option<u16>,
    pub stdout: Option<String>,
    pub stdout_contains: Option<String>,
    pub stdout_not_contains: Option<String>,
    pub stdout_len: Option<usize>,
    pub stdout_b64: Option<String>,
    pub stderr: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub compile_output_contains: Option<String>,
    pub max_ms: Option<u64>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    pub why: String,
    pub lang: Option<String>,
    pub code: Option<String>,
    pub runs: Option<Vec<RunSpec>>,
    pub stdin: Option<String>,
    pub limits: Option<LimitsRequest>,
    pub session_id: Option<String>,
    pub code_fill: Option<Fill>,
    pub stdin_fill: Option<Fill>,
    pub requests: Option<Vec<serde_json::Value>>,
    pub parallel: Option<usize>,
    pub ws_drop_after_ms: Option<u64>,
    pub ws_reconnect_after_ms: Option<u64>,
    pub expect: Expect,
}

impl Case {
    /// A case about one run's verdict (not about HTTP refusals, concurrency or sockets).
    pub fn is_single_run(&self) -> bool {
        self.expect.http.is_none()
            && self.requests.is_none()
            && self.parallel.is_none()
            && self.ws_drop_after_ms.is_none()
    }

    /// The (lang, code) of each run of the case, in order.
    pub fn programs(&self) -> Vec<(String, String)> {
        match &self.runs {
            Some(runs) => runs.iter().map(|r| (r.lang.clone(), r.code.clone())).collect(),
            None => {
                let code = self.code.clone().or_else(|| self.code_fill.as_ref().map(Fill::make)).unwrap_or_default();
                vec![(self.lang.clone().unwrap_or_default(), code)]
            }
        }
    }

    pub fn stdin_bytes(&self) -> Vec<u8> {
        self.stdin.clone().or_else(|| self.stdin_fill.as_ref().map(Fill::make)).unwrap_or_default().into_bytes()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/cases/runs.json").exists())
        .expect("repo root")
        .to_path_buf()
}

/// Every case of the repository's copy.
pub fn load() -> Vec<Case> {
    let text = std::fs::read_to_string(repo_root().join("tests/cases/runs.json")).expect("tests/cases/runs.json");
    serde_json::from_str(&text).expect("cases parse")
}

/// `../shared/cases/runs.json` beside the repository, when present (it is the source).
pub fn shared_copy() -> Option<String> {
    std::fs::read_to_string(repo_root().parent()?.join("shared/cases/runs.json")).ok()
}

/// Everything in `e` that `r` (which arrived `elapsed_ms` after the request) breaks.
pub fn check(e: &Expect, r: &RunResult, elapsed_ms: u64) -> Vec<String> {
    let mut bad = Vec::new();
    let stdout = r.stdout_bytes();
    let text = String::from_utf8_lossy(&stdout);
    if let Some(s) = e.status {
        if r.status != Some(s) {
            bad.push(format!("status {:?}, expected {s}", r.status));
        }
    }
    if let Some(any) = &e.status_in {
        if !r.status.is_some_and(|s| any.contains(&s)) {
            bad.push(format!("status {:?}, expected one of {any:?}", r.status));
        }
    }
    if let Some(s) = &e.stdout {
        if text != *s {
            bad.push(format!("stdout {:?}, expected {s:?}", truncate(&text)));
        }
    }
    if let Some(s) = &e.stdout_contains {
        if !text.contains(s.as_str()) {
            bad.push(format!("stdout {:?} lacks {s:?}", truncate(&text)));
        }
    }
    if let Some(s) = &e.stdout_not_contains {
        if text.contains(s.as_str()) {
            bad.push(format!("stdout {:?} contains {s:?}", truncate(&text)));
        }
    }
    if let Some(n) = e.stdout_len {
        if stdout.len() != n {
            bad.push(format!("stdout is {} bytes, expected {n}", stdout.len()));
        }
    }
    if let Some(b) = &e.stdout_b64 {
        if r.stdout_b64.as_deref() != Some(b.as_str()) {
            bad.push(format!("stdout_b64 {:?}, expected {b:?}", r.stdout_b64));
        }
    }
    if let Some(s) = &e.stderr {
        if r.stderr != *s {
            bad.push(format!("stderr {:?}, expected {s:?}", truncate(&r.stderr)));
        }
    }
    if let Some(c) = e.exit_code {
        if r.exit_code != Some(c) {
            bad.push(format!("exit code {:?}, expected {c}", r.exit_code));
        }
    }
    if let Some(s) = e.signal {
        if r.signal != Some(s) {
            bad.push(format!("signal {:?}, expected {s}", r.signal));
        }
    }
    if let Some(s) = &e.compile_output_contains {
        if !r.compile_output.contains(s.as_str()) {
            bad.push(format!("compile output {:?} lacks {s:?}", truncate(&r.compile_output)));
        }
    }
    if let Some(ms) = e.max_ms {
        if elapsed_ms > ms {
            bad.push(format!("answered after {elapsed_ms} ms, bound {ms} ms"));
        }
    }
    bad
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}
