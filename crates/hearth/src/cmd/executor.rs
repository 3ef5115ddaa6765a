//! `hearth executor`: takes runs off NATS and runs them in warm sandboxes. Also home of
//! what `hearth gateway` and `hearth up` share: the NATS bounds flags and the shutdown
//! signal.

use std::path::PathBuf;
use std::time::Duration;

use hearth_bus::BusConfig;
use hearth_executor::ExecutorConfig;

/// Bounds and retention of the NATS streams and bucket (used by whoever creates them).
#[derive(clap::Args, Debug, Clone)]
pub struct BusArgs {
    /// Runs waiting at most; beyond it POST /v1/runs answers 503.
    #[arg(long, default_value_t = 10_000, env = "HEARTH_QUEUE_MAX")]
    pub queue_max: i64,
    /// How long session events can be replayed, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub events_max_age_s: u64,
    /// How long final results can be read back, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub results_ttl_s: u64,
    /// Redelivery delay of a run whose executor stopped answering, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub ack_wait_ms: u64,
    /// Deliveries of one run; the last only reports `internal_error`.
    #[arg(long, default_value_t = 3)]
    pub max_deliver: i64,
}

impl BusArgs {
    pub fn config(&self) -> BusConfig {
        BusConfig {
            runs_max_msgs: self.queue_max,
            events_max_age: Duration::from_secs(self.events_max_age_s),
            results_ttl: Duration::from_secs(self.results_ttl_s),
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            max_deliver: self.max_deliver,
            ..BusConfig::default()
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NATS server URL.
    #[arg(long, env = "HEARTH_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    #[command(flatten)]
    pub executor: ExecutorArgs,
    #[command(flatten)]
    pub bus: BusArgs,
}

/// What an executor is, besides where NATS is.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecutorArgs {
    /// Executor id, unique among executors (default: hostname-pid).
    #[arg(long)]
    pub id: Option<String>,
    /// Runs at once (default: the number of CPUs).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Warm sandboxes kept ready (default: the number of slots).
    #[arg(long)]
    pub warm: Option<usize>,
    /// Ready sandboxes per language with its interpreter already started (python, node):
    /// two, so that a run right after another still finds one while the first is replaced.
    #[arg(long, default_value_t = 2)]
    pub prepared: usize,
    /// The hearth-agent binary (default: beside this executable, or $HEARTH_AGENT).
    #[arg(long, env = "HEARTH_AGENT")]
    pub agent: Option<PathBuf>,
}

impl ExecutorArgs {
    pub fn config(&self, nats: &str, bus: BusConfig) -> ExecutorConfig {
        let mut c = ExecutorConfig::new(nats);
        if let Some(id) = &self.id {
            c.id = id.clone();
        }
        if let Some(slots) = self.slots {
            c.slots = slots;
            c.warm = slots;
        }
        if let Some(warm) = self.warm {
            c.warm = warm;
        }
        c.prepared = self.prepared;
        c.agent = self.agent.clone();
        c.bus = bus;
        c
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    let config = args.executor.config(&args.nats, args.bus.config());
    eprintln!("hearth executor {} on {} ({} slots)", config.id, config.nats_url, config.slots);
    hearth_executor::run(config, shutdown_signal()).await?;
    Ok(0)
}
