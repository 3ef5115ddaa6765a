//! `hearth executor`: takes runs off NATS and runs them in warm sandboxes. Also home of
//! what `hearth gateway` and `hearth up` share: the NATS bounds flags and the shutdown
//! signal.

use std::path::PathBuf;
use std::time::Duration;

use hearth_bus::{BusConfig, NatsSecurity, Replicas};
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
    /// Copies JetStream keeps of the streams and the results bucket: 0 chooses (3 on a
    /// cluster of three or more servers, 1 on a single server); existing ones never shrink.
    #[arg(long, default_value_t = 0, env = "HEARTH_REPLICAS")]
    pub replicas: usize,
    /// NATS user (with its password).
    #[arg(long, env = "HEARTH_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password (prefer the environment variable).
    #[arg(long, env = "HEARTH_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS token (prefer the environment variable).
    #[arg(long, env = "HEARTH_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// File with an nkey seed to authenticate with.
    #[arg(long, env = "HEARTH_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// NATS credentials file (user JWT + nkey seed).
    #[arg(long, env = "HEARTH_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for NATS's TLS (implies --nats-tls).
    #[arg(long, env = "HEARTH_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS with NATS (with --nats-tls-key).
    #[arg(long, env = "HEARTH_NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM key of that client certificate.
    #[arg(long, env = "HEARTH_NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,
    /// Require TLS to NATS (the system's CA roots unless --nats-tls-ca).
    #[arg(long, env = "HEARTH_NATS_TLS")]
    pub nats_tls: bool,
}

impl BusArgs {
    pub fn config(&self) -> BusConfig {
        BusConfig {
            runs_max_msgs: self.queue_max,
            events_max_age: Duration::from_secs(self.events_max_age_s),
            results_ttl: Duration::from_secs(self.results_ttl_s),
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            max_deliver: self.max_deliver,
            replicas: match self.replicas {
                0 => Replicas::Auto,
                n => Replicas::Fixed(n),
            },
            security: NatsSecurity {
                user: self.nats_user.clone(),
                password: self.nats_password.clone(),
                token: self.nats_token.clone(),
                nkey_seed: None,
                nkey_file: self.nats_nkey_file.clone(),
                creds_file: self.nats_creds.clone(),
                tls_ca: self.nats_tls_ca.clone(),
                tls_cert: self.nats_tls_cert.clone(),
                tls_key: self.nats_tls_key.clone(),
                require_tls: self.nats_tls,
            },
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
    /// On SIGTERM: how long runs in hand may take to finish before they are handed back
    /// for redelivery, in seconds.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_s: u64,
    #[command(flatten)]
    pub driver: DriverArgs,
}

/// Which isolation driver, and what the VM drivers need.
#[derive(clap::Args, Debug, Clone)]
pub struct DriverArgs {
    /// Isolation: process (namespaces, cgroups, seccomp), qemu (microVM; KVM or TCG) or
    /// firecracker (microVM; KVM, snapshot restore).
    #[arg(long, default_value = "process", env = "HEARTH_DRIVER")]
    pub driver: hearth_executor::driver::DriverKind,
    /// Guest image for qemu and firecracker (default: $HEARTH_IMAGE, else the last one
    /// `hearth image build` made).
    #[arg(long, env = "HEARTH_IMAGE")]
    pub image: Option<PathBuf>,
    /// Guest memory of each VM, in MiB.
    #[arg(long, default_value_t = 512)]
    pub vm_memory_mb: u64,
    /// vCPUs of each VM.
    #[arg(long, default_value_t = 1)]
    pub vm_vcpus: u32,
    /// qemu's accelerator: auto (probe KVM, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto")]
    pub accel: hearth_sandbox::Accel,
    /// The firecracker binary (default: on PATH).
    #[arg(long)]
    pub firecracker: Option<PathBuf>,
}

impl DriverArgs {
    pub fn spec(&self, agent: Option<PathBuf>) -> hearth_executor::driver::DriverSpec {
        hearth_executor::driver::DriverSpec {
            kind: self.driver,
            agent,
            image: self.image.clone(),
            vm: hearth_sandbox::VmResources {
                memory_mb: self.vm_memory_mb,
                vcpus: self.vm_vcpus,
                ..hearth_sandbox::VmResources::default()
            },
            accel: self.accel,
            firecracker: self.firecracker.clone(),
            tag: String::new(),
        }
    }
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
        c.driver = self.driver.spec(self.agent.clone());
        c.drain_timeout = Duration::from_secs(self.drain_timeout_s);
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
    eprintln!(
        "hearth executor {} on {} ({} slots, {} driver)",
        config.id, config.nats_url, config.slots, config.driver.kind
    );
    let signal = async {
        shutdown_signal().await;
        eprintln!("hearth executor: stopping: no more runs taken; the runs in hand finish first");
    };
    hearth_executor::run(config, signal).await?;
    eprintln!("hearth executor: stopped");
    Ok(0)
}
