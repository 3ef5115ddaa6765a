//! The warm pool: an actor that keeps `warm` sandboxes whose agents said Ready, hands one
//! out per [`Pool::acquire`] (at once, or when one is ready: that wait is the executor's
//! backpressure), refills in the background, and health-checks idle sandboxes on an
//! interval, replacing any that died or stopped answering. Sandboxes are single-use: the
//! caller destroys what it acquired.
//!
//! A later per-language warm set (an interpreter already started, waiting for its code)
//! fits here as a key on `Acquire` and one ready queue per key.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval_at, sleep_until, MissedTickBehavior};

use crate::driver::Driver;
use crate::error::{PoolError, SandboxError};
use crate::sandbox::Sandbox;

/// How the pool behaves.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Ready sandboxes to keep.
    pub warm: usize,
    /// How often idle sandboxes are pinged.
    pub health_interval: Duration,
    /// How long a ping may take.
    pub ping_timeout: Duration,
    /// Sandboxes created at once (creation costs CPU).
    pub max_creating: usize,
    /// Consecutive creation failures after which waiting acquirers are failed.
    pub fail_after: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            warm: 2,
            health_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(1),
            max_creating: 2,
            fail_after: 3,
        }
    }
}

/// What the pool holds now, and what it has done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    pub ready: usize,
    pub creating: usize,
    pub waiting: usize,
    pub created: u64,
    pub create_failures: u64,
    /// Idle sandboxes found dead or unresponsive and replaced.
    pub replaced: u64,
    pub last_error: Option<String>,
}

enum Cmd {
    Acquire(oneshot::Sender<Result<Sandbox, PoolError>>),
    Status(oneshot::Sender<PoolStatus>),
    Created(Result<Sandbox, SandboxError>),
    Checked { healthy: Vec<Sandbox>, failed: u64 },
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable handle on the pool actor.
#[derive(Clone)]
pub struct Pool {
    tx: mpsc::Sender<Cmd>,
}

impl Pool {
    /// Starts the actor; it begins filling at once.
    pub fn start(driver: Arc<dyn Driver>, config: PoolConfig) -> Pool {
        let (tx, rx) = mpsc::channel(256);
        let actor = Actor {
            driver,
            config,
            me: tx.downgrade(),
            ready: VecDeque::new(),
            waiters: VecDeque::new(),
            creating: 0,
            checking: 0,
            failures_in_row: 0,
            retry_at: None,
            status: PoolStatus::default(),
        };
        tokio::spawn(actor.run(rx));
        Pool { tx }
    }

    /// A ready sandbox, now or as soon as one is.
    pub async fn acquire(&self) -> Result<Sandbox, PoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Acquire(reply)).await.map_err(|_| PoolError::Closed)?;
        rx.await.map_err(|_| PoolError::Closed)?
    }

    pub async fn status(&self) -> Result<PoolStatus, PoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Status(reply)).await.map_err(|_| PoolError::Closed)?;
        rx.await.map_err(|_| PoolError::Closed)
    }

    /// Destroys every idle sandbox and stops the actor.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Actor {
    driver: Arc<dyn Driver>,
    config: PoolConfig,
    me: mpsc::WeakSender<Cmd>,
    ready: VecDeque<Sandbox>,
    waiters: VecDeque<oneshot::Sender<Result<Sandbox, PoolError>>>,
    creating: usize,
    /// Sandboxes out for a health check (they count as ready for refilling).
    checking: usize,
    failures_in_row: u32,
    /// No creation before this instant (back-off after failures).
    retry_at: Option<Instant>,
    status: PoolStatus,
}

fn destroy_later(sb: Sandbox) {
    tokio::spawn(async move {
        let id = sb.id().to_string();
        if let Err(e) = sb.destroy().await {
            tracing::warn!(sandbox = %id, error = %e, "destroying a sandbox failed");
        }
    });
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let start = tokio::time::Instant::now() + self.config.health_interval;
        let mut health = interval_at(start, self.config.health_interval);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.refill();
        loop {
            let retry = async {
                match self.retry_at {
                    Some(t) => sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Shutdown(reply)) => {
                        self.shutdown(&mut rx).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                _ = health.tick() => self.check_health(),
                _ = retry => {
                    self.retry_at = None;
                    self.refill();
                }
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Acquire(reply) => {
                self.waiters.push_back(reply);
                self.serve_waiters();
            }
            Cmd::Status(reply) => {
                let mut s = self.status.clone();
                s.ready = self.ready.len() + self.checking;
                s.creating = self.creating;
                s.waiting = self.waiters.len();
                let _ = reply.send(s);
            }
            Cmd::Created(result) => {
                self.creating -= 1;
                match result {
                    Ok(sb) => {
                        self.status.created += 1;
                        self.failures_in_row = 0;
                        self.ready.push_back(sb);
                    }
                    Err(e) => self.creation_failed(e),
                }
            }
            Cmd::Checked { healthy, failed } => {
                self.checking = 0;
                self.status.replaced += failed;
                self.ready.extend(healthy);
            }
            Cmd::Shutdown(_) => unreachable!("handled in run"),
        }
        self.serve_waiters();
        self.refill();
    }

    fn creation_failed(&mut self, e: SandboxError) {
        tracing::warn!(error = %e, "creating a sandbox failed");
        self.status.create_failures += 1;
        self.status.last_error = Some(e.to_string());
        self.failures_in_row += 1;
        let backoff = Duration::from_millis(100 << self.failures_in_row.min(6)).min(Duration::from_secs(5));
        self.retry_at = Some(Instant::now() + backoff);
        if self.failures_in_row >= self.config.fail_after {
            for w in self.waiters.drain(..) {
                let _ = w.send(Err(PoolError::Create(e.to_string())));
            }
        }
    }

    /// Hands ready, living sandboxes to waiters in arrival order.
    fn serve_waiters(&mut self) {
        while let Some(waiter) = self.waiters.pop_front() {
            if waiter.is_closed() {
                continue;
            }
            let Some(sb) = self.next_alive() else {
                self.waiters.push_front(waiter);
                return;
            };
            if let Err(Ok(sb)) = waiter.send(Ok(sb)) {
                // The acquirer gave up just now: the sandbox is still fresh.
                self.ready.push_front(sb);
            }
        }
    }

    fn next_alive(&mut self) -> Option<Sandbox> {
        while let Some(mut sb) = self.ready.pop_front() {
            if sb.alive() {
                return Some(sb);
            }
            self.status.replaced += 1;
            destroy_later(sb);
        }
        None
    }

    fn refill(&mut self) {
        if self.retry_at.is_some() {
            return;
        }
        let want = self.config.warm + self.waiters.len();
        while self.ready.len() + self.checking + self.creating < want && self.creating < self.config.max_creating {
            self.creating += 1;
            let driver = self.driver.clone();
            let me = self.me.clone();
            tokio::spawn(async move {
                let result = driver.create().await;
                report(&me, Cmd::Created(result)).await;
            });
        }
    }

    fn check_health(&mut self) {
        if self.checking > 0 || self.ready.is_empty() {
            return;
        }
        let idle: Vec<Sandbox> = self.ready.drain(..).collect();
        self.checking = idle.len();
        let me = self.me.clone();
        let within = self.config.ping_timeout;
        tokio::spawn(async move {
            let mut healthy = Vec::with_capacity(idle.len());
            let mut failed = 0;
            for mut sb in idle {
                match sb.ping(within).await {
                    Ok(()) => healthy.push(sb),
                    Err(e) => {
                        tracing::warn!(sandbox = %sb.id(), error = %e, "idle sandbox failed its health check");
                        failed += 1;
                        destroy_later(sb);
                    }
                }
            }
            report(&me, Cmd::Checked { healthy, failed }).await;
        });
    }

    /// Fails waiters, destroys idle sandboxes, and waits for sandboxes still being created
    /// or checked so that none outlives the pool.
    async fn shutdown(&mut self, rx: &mut mpsc::Receiver<Cmd>) {
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(PoolError::Closed));
        }
        let mut doomed: Vec<Sandbox> = self.ready.drain(..).collect();
        while self.creating + self.checking > 0 {
            match rx.recv().await {
                Some(Cmd::Created(r)) => {
                    self.creating -= 1;
                    doomed.extend(r.ok());
                }
                Some(Cmd::Checked { healthy, .. }) => {
                    self.checking = 0;
                    doomed.extend(healthy);
                }
                Some(Cmd::Acquire(w)) => {
                    let _ = w.send(Err(PoolError::Closed));
                }
                Some(Cmd::Status(reply)) => {
                    let _ = reply.send(self.status.clone());
                }
                Some(Cmd::Shutdown(reply)) => {
                    let _ = reply.send(());
                }
                None => break,
            }
        }
        for sb in doomed {
            let _ = sb.destroy().await;
        }
    }
}

/// Sends a result back to the actor; if the actor is gone, cleans up what it carried.
async fn report(me: &mpsc::WeakSender<Cmd>, cmd: Cmd) {
    let cmd = match me.upgrade() {
        Some(tx) => match tx.send(cmd).await {
            Ok(()) => return,
            Err(mpsc::error::SendError(cmd)) => cmd,
        },
        None => cmd,
    };
    let leftovers = match cmd {
        Cmd::Created(Ok(sb)) => vec![sb],
        Cmd::Checked { healthy, .. } => healthy,
        _ => Vec::new(),
    };
    for sb in leftovers {
        let _ = sb.destroy().await;
    }
}
