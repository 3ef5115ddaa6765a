//! Bounds and retention of the streams and the bucket. Whoever connects first creates
//! them with these values; later processes use what exists.

use std::time::Duration;

use crate::security::NatsSecurity;

/// How many copies JetStream keeps of each stream and of the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replicas {
    /// 3 on a cluster of three or more servers, 1 on a single server (see
    /// [`crate::connect`]); an existing stream is never scaled down.
    #[default]
    Auto,
    /// This many (1..=5) for what is created, and at least this many for what exists (no
    /// process scales a stream down; an operator does, with the `nats` CLI). The server
    /// refuses what it cannot place.
    Fixed(usize),
}

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
    /// Copies of the streams and the bucket.
    pub replicas: Replicas,
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
            replicas: Replicas::Auto,
            security: NatsSecurity::default(),
        }
    }
}
