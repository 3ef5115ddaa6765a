//! A run request as it waits on `code.run`: the client's request plus what the gateway
//! decided about it.

use hearth_proto::api::RunRequest;
use serde::{Deserialize, Serialize};

/// One queued run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Made by the gateway (time-ordered).
    pub run_id: String,
    /// Validated by the gateway (ids, language, sizes).
    pub request: RunRequest,
    /// When the gateway accepted it, in milliseconds since the Unix epoch.
    pub accepted_ms: u64,
    /// When the request reached the gateway, in microseconds since the Unix epoch (the
    /// start of the run's `timing`).
    #[serde(default)]
    pub received_us: u64,
}
