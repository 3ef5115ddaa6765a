//! The pull loop. Backpressure lives here: a semaphore holds one permit per slot, and each
//! pull request asks for exactly as many runs as there are free permits, so a busy
//! executor leaves the queue to the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, Consumer};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::error::ExecutorError;
use crate::worker::Worker;

/// Pulls and runs until `shutdown` resolves, then waits (bounded) for the runs in hand.
pub async fn pull_until(
    worker: Arc<Worker>,
    consumer: Consumer<pull::Config>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ExecutorError> {
    let slots = Arc::new(Semaphore::new(worker.config.slots));
    let mut runs = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while runs.try_join_next().is_some() {}
        tokio::select! {
            _ = &mut shutdown => break,
            () = pull_once(&worker, &consumer, &slots, &mut runs) => {}
        }
    }
    let drain = worker.config.drain_timeout;
    if !runs.is_empty() {
        tracing::info!(runs = runs.len(), "waiting for runs in hand to finish");
    }
    if tokio::time::timeout(drain, async { while runs.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(
            runs = runs.len(),
            "runs still going after {drain:?}; abandoning them (they will be redelivered)"
        );
        runs.shutdown().await;
    }
    Ok(())
}

/// Waits for a free slot, then asks for as many runs as slots are free and starts each
/// one as it arrives.
async fn pull_once(
    worker: &Arc<Worker>,
    consumer: &Consumer<pull::Config>,
    slots: &Arc<Semaphore>,
    runs: &mut JoinSet<()>,
) {
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
    let first = tokio::select! {
        p = slots.clone().acquire_owned() => p.expect("the slots semaphore is never closed"),
        // Finished runs are reaped while every slot is busy.
        Some(_) = runs.join_next(), if !runs.is_empty() => return,
    };
    permits.push(first);
    while let Ok(p) = slots.clone().try_acquire_owned() {
        permits.push(p);
    }
    let batch = consumer.batch().max_messages(permits.len()).expires(worker.config.pull_expires).messages().await;
    let mut batch = match batch {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "pull request failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
    };
    while let Some(msg) = batch.next().await {
        match msg {
            Ok(msg) => {
                let Some(permit) = permits.pop() else {
                    tracing::error!("the server sent more runs than asked for; leaving it for redelivery");
                    continue;
                };
                let worker = worker.clone();
                runs.spawn(async move {
                    worker.handle(msg).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "pull request ended with an error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        }
    }
}
