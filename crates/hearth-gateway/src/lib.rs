//! The gateway: hearth's HTTP and WebSocket face (DESIGN.md §2). It validates a run
//! (ids before anything touches a subject, size, language), queues it on `RUNS` with a
//! confirmed JetStream publish (503 + Retry-After when the queue is full), answers at once
//! or, with `?wait=true`, with the final result; and streams a session's events over a
//! WebSocket from the replayable `EVENTS` stream, with `seq` = the stream sequence so a
//! reconnect with `since=` resumes exactly. One consumer per gateway feeds every socket
//! ([`hub`]), so idle sockets cost the NATS server nothing.
//!
//! Layout:
//! - [`config`]: `GatewayConfig` with explicit defaults.
//! - [`auth`]: callers (API keys, signed session tokens, dev mode), `POST /v1/sessions`.
//! - [`access`]: the access file: keys, the token secret, limits tiers.
//! - [`limits`]: per-user request rate and runs in flight, per tier.
//! - [`runs`]: `POST /v1/runs`, `GET /v1/runs/{id}`, validation and submission.
//! - [`ws`]: `GET /v1/ws`: session events out, `run`/`stdin`/`kill` frames in.
//! - [`hub`]: one feed of every session's events per gateway, fanned out to its sockets.
//! - [`control`]: `stdin` and `kill` for a run of the asker's own session.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, `GET /v1/languages`.
//! - [`executors`]: executor heartbeats: who is online, what languages exist.
//! - [`status`]: `GET /v1/status` (executors, queue depth, recent latency) for the status page.
//! - [`ui`]: the browser UI's files (`web/dist`) at `/`, `/status` and `/ui/<file>`.
//! - [`metrics`]: counters, rendered as Prometheus text.
//! - [`error`]: the `ApiError`, the one mapping of errors to HTTP.
//!
//! Choices where DESIGN.md is silent:
//! - `run_id` is a UUIDv7 (time-ordered, 36 characters).
//! - `seq` is the `EVENTS` stream sequence: it increases within a session but is not
//!   contiguous (sessions share the stream); `since=` takes any seq seen.
//! - The gateway publishes `status: queued` (and stores the queued state) *before* the run,
//!   so a session never sees `running` first; a run then refused (queue full) gets a final
//!   `internal_error` event, so nothing waits for it.
//! - `output` events carry `output` when the chunk is UTF-8, else only `output_b64`; the
//!   `result` event is the whole `RunResult` with `type: "result"`.
//! - `?wait=true` answers 200 with the result; if the run outlives its limits plus
//!   `wait_margin`, it answers what is stored (202 while queued or running).
//!   `GET /v1/runs/{id}` answers 200 once final, 202 before.
//! - A language is refused (422) when no executor ever seen offers it; before any executor
//!   was seen, nothing can be judged and the run is queued.
//! - 503s (queue full, NATS trouble, not ready) all carry `Retry-After: 1`.

#![deny(unsafe_code)]

pub mod access;
pub mod auth;
pub mod config;
pub mod control;
pub mod error;
pub mod executors;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod runs;
pub mod status;
pub mod ui;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use hearth_bus::{Bus, BusError};
use thiserror::Error;

pub use config::GatewayConfig;
pub use error::ApiError;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("serving http: {0}")]
    Serve(std::io::Error),
    #[error("refusing anonymous access on {0}: dev mode (no API keys) serves loopback only; configure API keys or listen on 127.0.0.1")]
    AnonymousNotLoopback(std::net::SocketAddr),
    #[error("reading the events stream: {0}")]
    Feed(String),
}

/// What every handler shares.
pub struct AppState {
    pub bus: Bus,
    pub config: GatewayConfig,
    pub executors: Arc<executors::Executors>,
    pub metrics: metrics::Metrics,
    /// Per-user request buckets and runs in flight.
    pub limiter: limits::Limiter,
    /// This gateway's id: executors tell it on `hearth.gateway.<id>.done` when its runs end.
    pub id: String,
    /// The sockets open here by session, fed from one consumer of `EVENTS`.
    pub hub: Arc<hub::Hub>,
    /// Runs this gateway accepted and how long they took (for `/v1/status`).
    pub latency: Arc<status::Latency>,
    pub queue_cache: status::QueueCache,
    /// Turns true when the gateway stops: open WebSockets close (graceful shutdown would
    /// otherwise wait for them forever).
    pub closing: tokio::sync::watch::Receiver<bool>,
}

/// The routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/v1/runs", post(runs::create))
        .route("/v1/sessions", post(auth::create_session))
        .route("/v1/runs/{run_id}", get(runs::get_one))
        .route("/v1/languages", get(ops::languages))
        .route("/v1/ws", get(ws::upgrade))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/status", get(status::status))
        .route("/", get(ui::index))
        .route("/status", get(ui::status_page))
        .route("/ui/{file}", get(ui::asset))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Connects to NATS (creating the streams where missing), then serves on `listener` until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let local = listener.local_addr().map_err(GatewayError::Serve)?;
    if config.auth.anonymous && !local.ip().is_loopback() {
        return Err(GatewayError::AnonymousNotLoopback(local));
    }
    let bus = Bus::connect(&config.nats_url, "hearth-gateway", config.bus.clone()).await?;
    let executors = Arc::new(executors::Executors::new(config.executor_stale));
    let _heartbeats = AbortOnDrop(tokio::spawn(executors::listen(bus.client.clone(), executors.clone())));
    let latency = Arc::new(status::Latency::default());
    // The feed starts after what is stored now; a socket reads anything older itself.
    let from = bus.events.get_info().await.map_err(|e| GatewayError::Feed(e.to_string()))?.state.last_sequence;
    let hub = Arc::new(hub::Hub::new(config.ws_inbox));
    let _feed = AbortOnDrop(tokio::spawn(hub::feed(
        hub.clone(),
        bus.events.clone(),
        from,
        bus.connects.clone(),
        latency.clone(),
    )));
    let (close, closing) = tokio::sync::watch::channel(false);
    let id = uuid::Uuid::now_v7().simple().to_string();
    let subject = hearth_bus::names::done_subject(&id);
    let done = bus
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|e| GatewayError::Bus(BusError::Subscribe { subject, message: e.to_string() }))?;
    let state = Arc::new(AppState {
        bus,
        config,
        executors,
        metrics: metrics::Metrics::default(),
        limiter: limits::Limiter::default(),
        id,
        hub,
        latency,
        queue_cache: status::QueueCache::default(),
        closing,
    });
    let _notices = AbortOnDrop(tokio::spawn(runs::listen_for_ends(state.clone(), done)));
    let shutdown = async move {
        shutdown.await;
        let _ = close.send(true);
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gateway listening");
    }
    let result = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await;
    result.map_err(GatewayError::Serve)
}

/// A background task that ends with the gateway, also when its future is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
