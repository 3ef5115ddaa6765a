//! The gateway's configuration, with explicit defaults.

use std::path::PathBuf;
use std::time::Duration;

use hearth_bus::BusConfig;
use hearth_proto::Limits;

use crate::access::Tiers;
use crate::auth::Auth;
use crate::limits::Tier;

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
    /// Who may call (default: dev mode, anonymous callers on loopback only).
    pub auth: Auth,
    /// Per-user limits by tier (default: none).
    pub tiers: Tiers,
    /// Events a WebSocket may hold unsent before it stops being fed live and catches up
    /// from the stream instead (a slow client costs bounded memory).
    pub ws_inbox: usize,
    /// The browser UI's directory (`web/dist`); `None`: `/` says the UI is not built.
    pub web_dir: Option<PathBuf>,
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
            auth: Auth::dev(),
            tiers: Tiers::single(Tier::UNLIMITED),
            ws_inbox: crate::hub::INBOX,
            web_dir: None,
        }
    }
}
