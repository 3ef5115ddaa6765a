//! HTTP API bodies (DESIGN.md §2): the run request and the final result. Bytes that are not
//! UTF-8 travel in `*_b64` twins beside a lossy text form, so no output is ever lost or
//! turned into an error.

use serde::{Deserialize, Serialize};

use crate::limits::LimitsRequest;
use crate::status::Status;

/// How a file's `content` is encoded in a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

/// One file of a multi-file request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    pub name: String,
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
}

/// `POST /v1/runs` body (and the `run` WebSocket frame).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Required, but may be left out by a session token holder (the token's is taken).
    #[serde(default)]
    pub user_id: String,
    /// Required, but may be left out by a session token holder or on a WebSocket.
    #[serde(default)]
    pub session_id: String,
    pub lang: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInput>,
    /// Which of `files` to compile or run (default: the first; `code`, when given, is first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(default)]
    pub stdin: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub limits: LimitsRequest,
    /// Keep the program's stdin open after `stdin`, for `stdin` frames over the WebSocket
    /// (closed by a frame with `eof: true`, or by the run's end).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
}

/// The final result of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub run_id: String,
    pub session_id: String,
    /// The run's owner (the request's `user_id`): who may read it back.
    #[serde(default)]
    pub user_id: String,
    pub lang: String,
    pub status: Option<Status>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub compile_output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_output_b64: Option<String>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub memory_kb: u64,
    pub truncated: bool,
    /// Why the run ended as a sandbox or internal error, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When each step of the run happened (final results only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// When each step of a run happened, in microseconds since the Unix epoch, each read off
/// the clock of the process that took the step (the gateway, the NATS server, the
/// executor): on one host they compare directly, across hosts only as well as the clocks
/// agree. 0 means the step did not happen (a run that failed to compile never `started`).
/// `program_us` is a duration: the program's own wall time as the agent measured it.
/// docs/benchmarks.md says what lies between each pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// The gateway had the request (before validation).
    #[serde(default)]
    pub received_us: u64,
    /// The NATS server stored the run on the `RUNS` queue.
    #[serde(default)]
    pub queued_us: u64,
    /// An executor had the run in hand.
    #[serde(default)]
    pub pulled_us: u64,
    /// The executor had a sandbox for it.
    #[serde(default)]
    pub acquired_us: u64,
    /// The agent said the program was launched (after any compile step).
    #[serde(default)]
    pub started_us: u64,
    /// The executor published the run's first `output` event.
    #[serde(default)]
    pub first_output_us: u64,
    /// The agent's verdict reached the executor.
    #[serde(default)]
    pub exited_us: u64,
    /// The result was stored; its `result` event is published right after.
    #[serde(default)]
    pub published_us: u64,
    /// The program's wall time, launch to exit, in microseconds (the agent's clock).
    #[serde(default)]
    pub program_us: u64,
    /// The program went to an interpreter started ahead of time (a prepared sandbox).
    #[serde(default)]
    pub prepared: bool,
}

impl Timing {
    /// Microseconds since the Unix epoch, now.
    pub fn now_us() -> u64 {
        Timing::epoch_us(std::time::SystemTime::now())
    }

    /// Microseconds since the Unix epoch of `t` (0 before the epoch).
    pub fn epoch_us(t: std::time::SystemTime) -> u64 {
        t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
    }
}

/// Splits bytes into the text form and, when they are not UTF-8, the exact base64 twin.
pub fn text_and_b64(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), Some(crate::b64::encode(bytes))),
    }
}

impl RunResult {
    /// Sets stdout, stderr and compile output from raw bytes (with `*_b64` twins as needed).
    pub fn set_outputs(&mut self, stdout: &[u8], stderr: &[u8], compile_output: &[u8]) {
        (self.stdout, self.stdout_b64) = text_and_b64(stdout);
        (self.stderr, self.stderr_b64) = text_and_b64(stderr);
        (self.compile_output, self.compile_output_b64) = text_and_b64(compile_output);
    }

    /// The exact stdout bytes, whichever field carries them.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        exact(&self.stdout, self.stdout_b64.as_deref())
    }

    /// The exact stderr bytes, whichever field carries them.
    pub fn stderr_bytes(&self) -> Vec<u8> {
        exact(&self.stderr, self.stderr_b64.as_deref())
    }
}

fn exact(text: &str, b64: Option<&str>) -> Vec<u8> {
    b64.and_then(|b| crate::b64::decode(b).ok()).unwrap_or_else(|| text.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_output_keeps_its_bytes() {
        let mut r = RunResult::default();
        r.set_outputs(b"\xff\xfe\n", "héllo".as_bytes(), b"");
        assert_eq!(r.stdout_b64.as_deref(), Some("//4K"));
        assert_eq!(r.stdout_bytes(), b"\xff\xfe\n");
        assert_eq!(r.stderr, "héllo");
        assert!(r.stderr_b64.is_none());
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("stderr_b64"));
    }

    #[test]
    fn requests_with_unknown_fields_are_refused() {
        let ok = r#"{"user_id":"u","session_id":"s","lang":"python","code":"print(1)"}"#;
        assert!(serde_json::from_str::<RunRequest>(ok).is_ok());
        let bad = r#"{"user_id":"u","session_id":"s","lang":"python","cod":"print(1)"}"#;
        assert!(serde_json::from_str::<RunRequest>(bad).is_err());
    }
}
