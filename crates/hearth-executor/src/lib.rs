//! The executor: takes runs off the shared `RUNS` work queue, only as many as it has free
//! worker slots, runs each in a warm single-use sandbox, streams its output to the
//! session's events subject while it runs, stores the final result and acks. A run whose
//! executor dies is redelivered; its last delivery is answered with `internal_error`
//! instead of being run again, so nothing stays queued forever.
//!
//! Layout:
//! - [`config`]: `ExecutorConfig` with explicit defaults, validated once.
//! - [`driver`]: choosing the driver (process, qemu, firecracker) and its languages.
//! - [`consume`]: the pull loop (a semaphore of slots; each fetch sized to free slots).
//! - [`worker`]: one run: status, sandbox, job, progress acks, result, ack.
//! - [`output`]: coalesces sandbox output into `output` events, in order, never held.
//! - [`heartbeat`]: `hearth.executor.<id>.status` every second or two.
//! - [`error`]: the `ExecutorError` (start-up) and `RunError` (one run, with what to do next).

#![deny(unsafe_code)]

pub mod config;
pub mod consume;
pub mod driver;
pub mod error;
pub mod heartbeat;
pub mod output;
pub mod worker;

use std::future::Future;
use std::sync::Arc;

use hearth_bus::Bus;
use hearth_sandbox::{Driver, Languages, Pool, PoolConfig, WarmSet};

pub use config::ExecutorConfig;
pub use error::{ExecutorError, RunError};

/// A task that ends with its owner: dropping the executor's future (an aborted task, a
/// runtime shut down) must not leave a heartbeat or a control listener behind.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs an executor with the driver `config.driver` names (and the languages its sandboxes
/// offer) until `shutdown` resolves, then stops pulling and lets the runs in hand finish
/// (bounded by `config.drain_timeout`).
pub async fn run(config: ExecutorConfig, shutdown: impl Future<Output = ()>) -> Result<(), ExecutorError> {
    config.validate()?;
    let mut spec = config.driver.clone();
    spec.agent = spec.agent.or_else(|| config.agent.clone());
    let (driver, languages) = driver::open(&spec).await?;
    run_with(config, driver, languages, shutdown).await
}

/// [`run`] with a given driver and languages.
pub async fn run_with(
    config: ExecutorConfig,
    driver: Arc<dyn Driver>,
    languages: Languages,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ExecutorError> {
    config.validate()?;
    let name = format!("hearth-executor-{}", config.id);
    let bus = Bus::connect(&config.nats_url, &name, config.bus.clone()).await?;
    let consumer = bus.executors_consumer().await?;
    let sets = languages
        .list()
        .iter()
        .filter_map(|l| Some(WarmSet { key: l.id.clone(), prepare: l.prepare()?, warm: config.prepared }))
        .filter(|set| set.warm > 0)
        .collect();
    let pool_config =
        PoolConfig { warm: config.warm, sets, ping_timeout: driver.ping_timeout(), ..PoolConfig::default() };
    let pool = Pool::start(driver.clone(), pool_config);
    tracing::info!(id = %config.id, slots = config.slots, warm = config.warm, driver = driver.name(), languages = languages.list().len(), "executor started");
    let worker = Arc::new(worker::Worker::new(bus, pool.clone(), languages, config, driver.name()));
    let heartbeat = AbortOnDrop(tokio::spawn(heartbeat::beat(worker.clone())));
    let result = consume::pull_until(worker.clone(), consumer, shutdown).await;
    drop(heartbeat);
    pool.shutdown().await;
    tracing::info!(id = %worker.config.id, "executor stopped");
    result
}
