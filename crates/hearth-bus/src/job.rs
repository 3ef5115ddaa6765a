//! A run request as it waits on `code.run`: the client's request plus what the gateway
//! decided about it. The message also carries the [`QUEUED_REVISION`] header: the
//! `RESULTS` revision of the `queued` state the gateway stored. The executor claims the
//! run by replacing exactly that revision with `running`; if the run was cancelled
//! meanwhile (or already ended on an earlier delivery), the claim fails and the run is not
//! started. (A header, so the job is encoded once, before that revision is known.)

use hearth_proto::api::RunRequest;
use hearth_proto::Limits;
use serde::{Deserialize, Serialize};

/// Header of a `code.run` message: the revision of the run's stored `queued` state.
pub const QUEUED_REVISION: &str = "Hearth-Queued-Revision";

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
    /// Core-NATS subject told `{"run_id","user_id"}` when the run has ended (the accepting
    /// gateway counts each user's runs in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// The most this run may get, when the user's tier caps it below the server's maxima
    /// (the executor takes the lower of these and its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_max: Option<Limits>,
}
