//! The gateway's configuration, with explicit defaults.

use std::time::Duration;

use hearth_bus::BusConfig;
use hearth_proto::Limits;

/// Largest request body (and WebSocket message) taken.
pub const DEFAULT_BODY_LIMIT: usize = 10 << 20;

/// How a gateway serves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub nats_url: String,
    pub bus: BusConfig,
    /// Bodies over this are answered 413.
    pub body_limit: usize,
    /// An executor whose last heartbeat is older than this counts as gone.
    pub executor_stale: Duration,
    /// `?wait=true` waits for the run's own limits (compile + run) plus this.
    pub wait_margin: Duration,
    /// Runs' limits as the executors resolve them (for the `?wait=true` bound).
    pub limits_default: Limits,
    pub limits_max: Limits,
    /// Longest pull of a socket's event consumer. Its idle heartbeat is half of it and the
    /// consumer is recreated after four missed beats, so this bounds how long a socket goes
    /// quiet when the nats-server holding its consumer dies (~2x this); shorter costs more
    /// pulls and heartbeats per idle socket.
    pub events_pull_expires: Duration,
}

impl GatewayConfig {
    pub fn new(nats_url: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            nats_url: nats_url.into(),
            bus: BusConfig::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            executor_stale: Duration::from_secs(5),
            wait_margin: Duration::from_secs(60),
            limits_default: Limits::DEFAULT,
            limits_max: Limits::MAX,
            events_pull_expires: Duration::from_secs(6),
        }
    }
}
