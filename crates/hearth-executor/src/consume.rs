//! The pull loop. Backpressure lives here: a semaphore holds one permit per slot, and each
//! pull request asks for exactly as many runs as there are free permits, so a busy
//! executor leaves the queue to the others. Graceful shutdown lives here too: stop pulling,
//! drain the runs in hand (bounded), hand back the rest.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, Consumer};
use async_nats::jetstream::message::AckKind;
use futures_util::StreamExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::error::ExecutorError;
use crate::worker::Worker;

/// Pulls and runs until `shutdown` resolves; then stops pulling (runs the server delivers
/// after that are handed straight back, for another executor to take at once), waits up to
/// `drain_timeout` for the runs in hand, and gives back (naks) any still going then, so they
/// are redelivered at once rather than after `ack_wait`.
pub async fn pull_until(
    worker: Arc<Worker>,
    consumer: Consumer<pull::Config>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ExecutorError> {
    let slots = Arc::new(Semaphore::new(worker.config.slots));
    let mut runs = JoinSet::new();
    let (stop_tx, stop) = watch::channel(false);
    let stopped = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    // Joined, not raced: a pull in progress is never dropped halfway (see `pull_once`).
    let pulling = async {
        loop {
            while runs.try_join_next().is_some() {}
            pull_once(&worker, &consumer, &slots, &mut runs, stop.clone()).await;
            if *stop.borrow() {
                break;
            }
        }
    };
    tokio::join!(stopped, pulling);
    let drain = worker.config.drain_timeout;
    tracing::info!(runs = runs.len(), "shutting down: no more pulls; waiting up to {drain:?} for the runs in hand");
    if tokio::time::timeout(drain, async { while runs.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(runs = runs.len(), "runs still going after {drain:?}; giving them back for redelivery");
        let _ = worker.abandon.send(true);
        if tokio::time::timeout(Duration::from_secs(10), async { while runs.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            runs.shutdown().await;
        }
    }
    Ok(())
}

/// Waits for a free slot, then asks for as many runs as slots are free and starts each
/// one as it arrives. Once `stop` turns true it asks for nothing more, and what the current
/// pull request still delivers is naked at once.
async fn pull_once(
    worker: &Arc<Worker>,
    consumer: &Consumer<pull::Config>,
    slots: &Arc<Semaphore>,
    runs: &mut JoinSet<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
    let first = tokio::select! {
        p = slots.clone().acquire_owned() => p.expect("the slots semaphore is never closed"),
        // Finished runs are reaped while every slot is busy.
        Some(_) = runs.join_next(), if !runs.is_empty() => return,
        _ = until_true(&mut stop) => return,
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
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = until_true(&mut stop) => {}
            }
            return;
        }
    };
    // The pull request lives until it has its messages or expires (`pull_expires`), so
    // it is drained to its end even when stopping: a message dropped here would wait
    // `ack_wait` before anyone else could take it.
    while let Some(msg) = batch.next().await {
        match msg {
            Ok(msg) if *stop.borrow() => {
                if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
                    tracing::warn!(error = %e, "handing back a run while stopping failed; it will be redelivered later");
                }
            }
            Ok(msg) => {
                let Some(permit) = permits.pop() else {
                    tracing::error!("the server sent more runs than asked for; leaving it for redelivery");
                    continue;
                };
                let worker = worker.clone();
                runs.spawn(async move {
                    Box::pin(worker.handle(msg)).await;
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

/// Resolves once `rx` holds true (or its sender is gone). Yields nothing: the borrow guard
/// of `wait_for` must not live in a future that crosses threads.
pub(crate) async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}
