//! The real thing, in-process: a nats-server on a free port, the gateway on port 0 and an
//! executor with the process driver, plus HTTP and WebSocket clients.

#![allow(dead_code)]

pub mod http;
pub mod nats;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use hearth_bus::BusConfig;
use hearth_executor::ExecutorConfig;
use hearth_gateway::GatewayConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[allow(unused_imports)] // each test binary uses its own part
pub use http::{get, post_json, ws_connect, ws_next};
#[allow(unused_imports)]
pub use nats::NatsServer;

struct Task {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// A nats-server, a gateway and (when started) an executor.
pub struct Stack {
    pub nats: NatsServer,
    pub addr: SocketAddr,
    pub bus: BusConfig,
    gateway: Task,
    executors: Vec<Task>,
}

/// A bus configuration that redelivers fast (tests wait for redeliveries).
pub fn quick_bus() -> BusConfig {
    BusConfig { ack_wait: Duration::from_secs(2), ..BusConfig::default() }
}

impl Stack {
    /// nats-server and gateway; an executor too when `executor` is set (then waits for ready).
    pub async fn start(bus: BusConfig, executor: bool) -> anyhow::Result<Stack> {
        Stack::start_with(bus, executor, |_| {}).await
    }

    /// As [`Stack::start`], with the gateway's configuration changed by `configure` first.
    pub async fn start_with(
        bus: BusConfig,
        executor: bool,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> anyhow::Result<Stack> {
        Stack::start_on(NatsServer::start()?, bus, executor, configure).await
    }

    /// As [`Stack::start_with`], on a given nats-server (with auth or TLS, say).
    pub async fn start_on(
        nats: NatsServer,
        bus: BusConfig,
        executor: bool,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> anyhow::Result<Stack> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = GatewayConfig::new(nats.url.clone());
        config.bus = bus.clone();
        config.executor_stale = Duration::from_secs(2);
        configure(&mut config);
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(async move {
            hearth_gateway::serve(listener, config, async {
                let _ = stopped.await;
            })
            .await?;
            Ok(())
        });
        let mut stack = Stack { nats, addr, bus, gateway: Task { stop: Some(stop), handle }, executors: Vec::new() };
        if executor {
            stack.start_executor("ex1").await?;
        }
        Ok(stack)
    }

    /// Starts an in-process executor (2 slots) and waits until the gateway sees one.
    pub async fn start_executor(&mut self, id: &str) -> anyhow::Result<()> {
        self.start_executor_configured(id, |_| {}).await
    }

    /// Starts an in-process executor with `slots` slots (and as many warm sandboxes).
    pub async fn start_executor_with(&mut self, id: &str, slots: usize) -> anyhow::Result<()> {
        self.start_executor_configured(id, |c| {
            c.slots = slots;
            c.warm = slots;
        })
        .await
    }

    /// As [`Stack::start_executor_with`], on the driver `driver` names.
    pub async fn start_executor_on(
        &mut self,
        id: &str,
        slots: usize,
        driver: hearth_executor::driver::DriverSpec,
    ) -> anyhow::Result<()> {
        self.start_executor_configured(id, |c| {
            c.slots = slots;
            c.warm = slots;
            c.driver = driver;
        })
        .await
    }

    /// Starts an in-process executor (2 slots) with its configuration changed by
    /// `configure`, and waits until the gateway sees it.
    pub async fn start_executor_configured(
        &mut self,
        id: &str,
        configure: impl FnOnce(&mut ExecutorConfig),
    ) -> anyhow::Result<()> {
        let mut config = ExecutorConfig::new(self.nats.url.clone());
        config.id = id.into();
        config.slots = 2;
        config.warm = 2;
        config.bus = self.bus.clone();
        config.heartbeat_every = Duration::from_millis(300);
        config.drain_timeout = Duration::from_secs(20);
        configure(&mut config);
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(async move {
            hearth_executor::run(config, async {
                let _ = stopped.await;
            })
            .await?;
            Ok(())
        });
        self.executors.push(Task { stop: Some(stop), handle });
        self.wait_online(self.executors.len()).await
    }

    /// Polls `/readyz` until the gateway counts `n` executors online, within 60 s (an
    /// executor probes 31 runtimes' versions as it starts: slow on a loaded machine).
    pub async fn wait_online(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(a) = get(self.addr, "/readyz").await {
                if a.status == 200 && a.json()["executors"].as_u64() >= Some(n as u64) {
                    return Ok(());
                }
            }
            if self.executors.iter().any(|ex| ex.handle.is_finished()) {
                bail!("an executor stopped by itself");
            }
            if Instant::now() > deadline {
                bail!("the gateway did not see {n} executors within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks every executor to stop and waits until they have.
    pub async fn stop_executor(&mut self) -> anyhow::Result<()> {
        for mut task in self.executors.drain(..) {
            let _ = task.stop.take().map(|s| s.send(()));
            tokio::time::timeout(Duration::from_secs(30), task.handle).await???;
        }
        Ok(())
    }

    /// Asks the gateway to stop; returns once it has (bounded by `within`).
    pub async fn stop_gateway(&mut self, within: Duration) -> anyhow::Result<()> {
        let _ = self.gateway.stop.take().map(|s| s.send(()));
        tokio::time::timeout(within, &mut self.gateway.handle).await???;
        Ok(())
    }

    /// Drops every executor mid-whatever: each task (and so its runs, its heartbeat and its NATS
    /// connection) is aborted without any goodbye, as a crash would.
    pub async fn kill_executor(&mut self) {
        for task in self.executors.drain(..) {
            task.handle.abort();
            let _ = tokio::time::timeout(Duration::from_secs(10), task.handle).await;
        }
    }

    /// Polls `/readyz` until it says `ready` (or not), within 20 s.
    pub async fn wait_ready(&self, ready: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(a) = get(self.addr, "/readyz").await {
                if (a.status == 200) == ready {
                    return Ok(());
                }
            }
            if self.executors.iter().any(|ex| ex.handle.is_finished()) {
                bail!("an executor stopped by itself");
            }
            if Instant::now() > deadline {
                bail!("/readyz did not turn {} within 20 s", if ready { "ready" } else { "unready" });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for ex in self.executors.drain(..) {
            ex.handle.abort();
        }
        self.gateway.handle.abort();
    }
}

/// A run request body.
pub fn run_body(session_id: &str, lang: &str, code: &str) -> serde_json::Value {
    serde_json::json!({"user_id": "u1", "session_id": session_id, "lang": lang, "code": code})
}

/// Elapsed milliseconds since `start`.
pub fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
