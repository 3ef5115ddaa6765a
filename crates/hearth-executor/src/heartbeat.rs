//! The executor's heartbeat on core NATS: who it is, how many slots it has and uses, its
//! warm sandboxes and the languages it offers. The gateway counts an executor online while
//! its heartbeats keep coming.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hearth_bus::{names, Heartbeat, LanguageInfo};
use tokio::time::MissedTickBehavior;

use crate::worker::Worker;

/// This executor's heartbeat now.
pub async fn current(worker: &Worker) -> Heartbeat {
    let ready = worker.pool.status().await.map(|s| s.ready).unwrap_or(0);
    Heartbeat {
        id: worker.config.id.clone(),
        driver: worker.driver.to_string(),
        slots: worker.config.slots,
        busy: worker.busy.load(Ordering::Relaxed),
        warm: worker.config.warm,
        ready,
        languages: worker
            .languages
            .list()
            .iter()
            .map(|l| LanguageInfo {
                id: l.id.clone(),
                name: l.name.clone(),
                version: l.version.clone(),
                aliases: l.aliases.clone(),
                compiled: l.compiled,
            })
            .collect(),
        runs_done: worker.done.load(Ordering::Relaxed),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Publishes the heartbeat every `config.heartbeat_every`, forever.
pub async fn beat(worker: Arc<Worker>) {
    let subject = names::heartbeat_subject(&worker.config.id);
    let mut tick = tokio::time::interval(worker.config.heartbeat_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let hb = current(&worker).await;
        let payload = serde_json::to_vec(&hb).expect("a heartbeat encodes");
        if let Err(e) = worker.bus.client.publish(subject.clone(), payload.into()).await {
            tracing::warn!(error = %e, "heartbeat not sent");
        }
    }
}
