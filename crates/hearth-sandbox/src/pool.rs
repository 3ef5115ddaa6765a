//! The warm pool: an actor that keeps `warm` sandboxes whose agents said Ready, hands one
//! out per [`Pool::acquire`] (at once, or when one is ready: that wait is the executor's
//! backpressure), refills in the background, and health-checks idle sandboxes on an
//! interval, replacing any that died or stopped answering. Sandboxes are single-use: the
//! caller destroys what it acquired.
//!
//! Besides the plain warm set, the pool can keep per-language sets ([`WarmSet`]): sandboxes
//! whose interpreter is already started and waiting for its code. [`Pool::acquire_for`]
//! takes one of those when there is one, else a plain sandbox; the run works either way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval_at, sleep_until, MissedTickBehavior};

use hearth_proto::frame::Prepare;

use crate::driver::Driver;
use crate::error::{PoolError, SandboxError};
use crate::sandbox::Sandbox;

/// Sandboxes kept prepared for one language.
#[derive(Debug, Clone)]
pub struct WarmSet {
    /// The language id runs ask for.
    pub key: String,
    pub prepare: Prepare,
    pub warm: usize,
}

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
    /// Per-language sets of prepared sandboxes, on top of the `warm` plain ones.
    pub sets: Vec<WarmSet>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            warm: 2,
            health_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(1),
            max_creating: 2,
            fail_after: 3,
            sets: Vec::new(),
        }
    }
}

/// What the pool holds now, and what it has done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    pub ready: usize,
    /// Of `ready`, those holding a prepared interpreter.
    pub prepared: usize,
    pub creating: usize,
    pub waiting: usize,
    pub created: u64,
    pub create_failures: u64,
    /// Idle sandboxes found dead or unresponsive and replaced.
    pub replaced: u64,
    pub last_error: Option<String>,
}

type Reply = oneshot::Sender<Result<Sandbox, PoolError>>;

/// Which queue a sandbox belongs to: `None` plain, `Some(i)` the i-th warm set.
type Slot = Option<usize>;

enum Cmd {
    Acquire(Option<String>, Reply),
    Status(oneshot::Sender<PoolStatus>),
    Created(Slot, Result<Sandbox, SandboxError>),
    Checked { healthy: Vec<(Slot, Sandbox)>, failed: u64 },
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
        let sets = config.sets.iter().map(|_| Queue::default()).collect();
        let actor = Actor {
            driver,
            config,
            me: tx.downgrade(),
            plain: Queue::default(),
            sets,
            waiters: VecDeque::new(),
            checking: false,
            failures_in_row: 0,
            retry_at: None,
            status: PoolStatus::default(),
        };
        tokio::spawn(actor.run(rx));
        Pool { tx }
    }

    /// A ready sandbox, now or as soon as one is.
    pub async fn acquire(&self) -> Result<Sandbox, PoolError> {
        self.acquire_key(None).await
    }

    /// A sandbox prepared for `lang` when the pool holds one, else a plain one.
    pub async fn acquire_for(&self, lang: &str) -> Result<Sandbox, PoolError> {
        self.acquire_key(Some(lang.to_string())).await
    }

    async fn acquire_key(&self, key: Option<String>) -> Result<Sandbox, PoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Acquire(key, reply)).await.map_err(|_| PoolError::Closed)?;
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

/// Ready sandboxes of one kind, and how many of that kind are being made.
#[derive(Default)]
struct Queue {
    ready: VecDeque<Sandbox>,
    creating: usize,
    /// Out for a health check (they count as ready for refilling).
    checking: usize,
}

struct Actor {
    driver: Arc<dyn Driver>,
    config: PoolConfig,
    me: mpsc::WeakSender<Cmd>,
    plain: Queue,
    /// One queue per `config.sets` entry, same order.
    sets: Vec<Queue>,
    /// Who waits, and for which warm set (if the language has one).
    waiters: VecDeque<(Slot, Reply)>,
    /// A health check is under way.
    checking: bool,
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

    fn queue(&mut self, slot: Slot) -> &mut Queue {
        match slot {
            Some(i) => &mut self.sets[i],
            None => &mut self.plain,
        }
    }

    fn queues(&self) -> impl Iterator<Item = &Queue> {
        std::iter::once(&self.plain).chain(&self.sets)
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Acquire(key, reply) => {
                let slot = key.and_then(|k| self.config.sets.iter().position(|s| s.key == k));
                self.waiters.push_back((slot, reply));
            }
            Cmd::Status(reply) => {
                let mut s = self.status.clone();
                s.prepared = self.sets.iter().map(|q| q.ready.len()).sum();
                s.ready = self.queues().map(|q| q.ready.len() + q.checking).sum();
                s.creating = self.queues().map(|q| q.creating).sum();
                s.waiting = self.waiters.len();
                let _ = reply.send(s);
            }
            Cmd::Created(slot, result) => {
                self.queue(slot).creating -= 1;
                match result {
                    Ok(sb) => {
                        self.status.created += 1;
                        self.failures_in_row = 0;
                        self.queue(slot).ready.push_back(sb);
                    }
                    Err(e) => self.creation_failed(e),
                }
            }
            Cmd::Checked { healthy, failed } => {
                self.checking = false;
                self.plain.checking = 0;
                self.sets.iter_mut().for_each(|q| q.checking = 0);
                self.status.replaced += failed;
                for (slot, sb) in healthy {
                    self.queue(slot).ready.push_back(sb);
                }
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
            for (_, w) in self.waiters.drain(..) {
                let _ = w.send(Err(PoolError::Create(e.to_string())));
            }
        }
    }

    /// Hands ready, living sandboxes to waiters in arrival order: a prepared one for the
    /// waiter's language if there is one, else a plain one.
    fn serve_waiters(&mut self) {
        while let Some((slot, waiter)) = self.waiters.pop_front() {
            if waiter.is_closed() {
                continue;
            }
            let found = slot.and_then(|i| self.next_alive(Some(i)).map(|sb| (Some(i), sb)));
            let Some((from, sb)) = found.or_else(|| self.next_alive(None).map(|sb| (None, sb))) else {
                self.waiters.push_front((slot, waiter));
                return;
            };
            if let Err(Ok(sb)) = waiter.send(Ok(sb)) {
                // The acquirer gave up just now: the sandbox is still fresh.
                self.queue(from).ready.push_front(sb);
            }
        }
    }

    fn next_alive(&mut self, slot: Slot) -> Option<Sandbox> {
        while let Some(mut sb) = self.queue(slot).ready.pop_front() {
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
        // Waiters can always be served by a plain sandbox: count them there.
        let wants: Vec<(Slot, usize)> = std::iter::once((None, self.config.warm + self.waiters.len()))
            .chain(self.config.sets.iter().enumerate().map(|(i, s)| (Some(i), s.warm)))
            .collect();
        let max_creating = self.config.max_creating;
        for (slot, want) in wants {
            loop {
                let creating_now: usize = self.queues().map(|q| q.creating).sum();
                let q = self.queue(slot);
                if q.ready.len() + q.creating + q.checking >= want || creating_now >= max_creating {
                    break;
                }
                q.creating += 1;
                self.spawn_create(slot);
            }
        }
    }

    fn spawn_create(&self, slot: Slot) {
        let driver = self.driver.clone();
        let me = self.me.clone();
        let prepare = slot.map(|i| self.config.sets[i].prepare.clone());
        let within = self.config.ping_timeout.max(Duration::from_secs(5));
        tokio::spawn(async move {
            let mut result = driver.create().await;
            if let (Ok(sb), Some(p)) = (&mut result, &prepare) {
                if let Err(e) = sb.prepare(p, within).await {
                    if let Ok(sb) = result {
                        destroy_later(sb);
                    }
                    result = Err(e);
                }
            }
            report(&me, Cmd::Created(slot, result)).await;
        });
    }

    fn check_health(&mut self) {
        if self.checking {
            return;
        }
        let mut idle: Vec<(Slot, Sandbox)> = Vec::new();
        for slot in std::iter::once(None).chain((0..self.sets.len()).map(Some)) {
            let q = self.queue(slot);
            q.checking = q.ready.len();
            idle.extend(q.ready.drain(..).map(|sb| (slot, sb)));
        }
        if idle.is_empty() {
            return;
        }
        self.checking = true;
        let me = self.me.clone();
        let within = self.config.ping_timeout;
        tokio::spawn(async move {
            let mut healthy = Vec::with_capacity(idle.len());
            let mut failed = 0;
            for (slot, mut sb) in idle {
                match sb.ping(within).await {
                    Ok(()) => healthy.push((slot, sb)),
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
        for (_, w) in self.waiters.drain(..) {
            let _ = w.send(Err(PoolError::Closed));
        }
        let mut doomed: Vec<Sandbox> = self.plain.ready.drain(..).collect();
        for q in &mut self.sets {
            doomed.extend(q.ready.drain(..));
        }
        while self.queues().map(|q| q.creating).sum::<usize>() > 0 || self.checking {
            match rx.recv().await {
                Some(Cmd::Created(slot, r)) => {
                    self.queue(slot).creating -= 1;
                    doomed.extend(r.ok());
                }
                Some(Cmd::Checked { healthy, .. }) => {
                    self.checking = false;
                    doomed.extend(healthy.into_iter().map(|(_, sb)| sb));
                }
                Some(Cmd::Acquire(_, w)) => {
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
        Cmd::Created(_, Ok(sb)) => vec![sb],
        Cmd::Checked { healthy, .. } => healthy.into_iter().map(|(_, sb)| sb).collect(),
        _ => Vec::new(),
    };
    for sb in leftovers {
        let _ = sb.destroy().await;
    }
}
