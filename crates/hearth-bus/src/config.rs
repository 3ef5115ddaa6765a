//! Bounds and retention of the streams and the bucket. Whoever connects first creates
//! them with these values; later processes use what exists.

use std::time::Duration;

use crate::security::NatsSecurity;

/// How the `RUNS`/`EVENTS` streams, the `RESULTS` bucket and the executors' consumer are
/// created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Runs waiting at most; a publish beyond it is refused (the gateway answers 503).
    pub runs_max_msgs: i64,
    /// Bytes of waiting runs at most (same refusal).
    pub runs_max_bytes: i64,
    /// How long a session's events can be replayed.
    pub events_max_age: Duration,
    /// Bytes of events kept at most (oldest go first).
    pub events_max_bytes: i64,
    /// How long a final result can be read back.
    pub results_ttl: Duration,
    /// Redelivery delay of a run whose executor stopped acking (runs send progress acks).
    pub ack_wait: Duration,
    /// Deliveries of one run; the last one is not run but answered with `internal_error`.
    pub max_deliver: i64,
    /// Credentials and TLS of the connection itself (not a stream bound, but it travels
    /// with the rest of what every process needs to reach NATS).
    pub security: NatsSecurity,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            runs_max_msgs: 10_000,
            runs_max_bytes: 1 << 30,
            events_max_age: Duration::from_secs(3600),
            events_max_bytes: 1 << 30,
            results_ttl: Duration::from_secs(3600),
            ack_wait: Duration::from_secs(15),
            max_deliver: 3,
            security: NatsSecurity::default(),
        }
    }
}
