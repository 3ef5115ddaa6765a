//! Every NATS name hearth uses, in one place. Session and run ids are validated
//! (`hearth_proto::ids`) before they are put into a subject here.

/// The work-queue stream of run requests.
pub const RUNS_STREAM: &str = "RUNS";
/// The subject run requests are published on.
pub const RUN_SUBJECT: &str = "code.run";
/// The limits-retention stream of every session's events.
pub const EVENTS_STREAM: &str = "EVENTS";
/// Every session's events.
pub const EVENTS_WILDCARD: &str = "code.out.>";
/// The key-value bucket of results (key = run id).
pub const RESULTS_BUCKET: &str = "RESULTS";
/// The durable pull consumer every executor shares.
pub const EXECUTORS_CONSUMER: &str = "executors";
/// Every executor's heartbeat.
pub const HEARTBEAT_WILDCARD: &str = "hearth.executor.*.status";

/// The events subject of one (validated) session.
pub fn events_subject(session_id: &str) -> String {
    format!("code.out.{session_id}")
}

/// The heartbeat subject of one executor.
pub fn heartbeat_subject(executor_id: &str) -> String {
    format!("hearth.executor.{executor_id}.status")
}

/// Where stdin and kill requests for a running run go (core NATS; the executor that runs it
/// listens while it runs).
pub fn control_subject(run_id: &str) -> String {
    format!("hearth.control.{run_id}")
}

/// Where executors tell one gateway (a validated id) that a run it accepted has ended.
pub fn done_subject(gateway_id: &str) -> String {
    format!("hearth.gateway.{gateway_id}.done")
}
