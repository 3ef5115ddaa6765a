//! Operations endpoints: liveness, readiness, metrics, and the languages on offer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::metrics;
use crate::AppState;

pub fn nats_connected(state: &AppState) -> bool {
    state.bus.client.connection_state() == async_nats::connection::State::Connected
}

/// The process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// NATS is connected and at least one executor's heartbeat is fresh.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    if !nats_connected(&state) {
        return Err(ApiError::NotReady("not connected to nats".into()));
    }
    let totals = state.executors.totals();
    if totals.online == 0 {
        return Err(ApiError::NotReady("no executor online".into()));
    }
    Ok(Json(json!({"status": "ready", "executors": totals.online, "slots": totals.slots, "busy": totals.busy})))
}

/// Runs waiting for an executor and runs being worked on, from the executors' consumer
/// (before any executor made it, every stored run waits); `None` when NATS does not say
/// within a second.
async fn queue(state: &AppState) -> Option<metrics::Queue> {
    let within = std::time::Duration::from_secs(1);
    let consumer = tokio::time::timeout(within, state.bus.runs.consumer_info(hearth_bus::names::EXECUTORS_CONSUMER));
    match consumer.await.ok()? {
        Ok(info) => Some(metrics::Queue { waiting: info.num_pending, in_flight: info.num_ack_pending as u64 }),
        Err(_) => {
            let info = tokio::time::timeout(within, state.bus.runs.get_info()).await.ok()?.ok()?;
            Some(metrics::Queue { waiting: info.state.messages, in_flight: 0 })
        }
    }
}

/// Prometheus text (API key holders only, when keys are configured).
pub async fn metrics(State(state): State<Arc<AppState>>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.require_server()?;
    let queue = queue(&state).await;
    let text = metrics::render(&state.metrics, &state.hub, state.executors.totals(), nats_connected(&state), queue);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// The languages the executors online really offer.
pub async fn languages(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(state.executors.languages())
}
