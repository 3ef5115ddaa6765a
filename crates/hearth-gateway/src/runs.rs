//! `POST /v1/runs` and `GET /v1/runs/{id}`: validation (ids first, before any subject is
//! built), submission to the `RUNS` queue with a confirmed publish, and the `?wait=true`
//! answer, which subscribes to the session's events *before* it publishes so the result
//! cannot slip past.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::PublishErrorKind;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hearth_bus::control::Done;
use hearth_bus::event::{self, EventHead};
use hearth_bus::{names, retry, Job};
use hearth_proto::api::{Encoding, RunRequest, RunResult, Timing};
use hearth_proto::{ids, Limits, Status};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::limits::{Over, Tier};
use crate::metrics::Metrics;
use crate::AppState;

/// How long a submission rides out a cluster's leader election before it answers 503.
const PATIENCE: Duration = Duration::from_secs(10);

/// Most files in one request.
const MAX_FILES: usize = 64;
/// Most program arguments.
const MAX_ARGS: usize = 256;

#[derive(Debug, Deserialize)]
pub struct RunQuery {
    #[serde(default)]
    wait: Option<String>,
}

/// A queued run, as answered with 202.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub run_id: String,
    pub session_id: String,
}

impl Accepted {
    pub fn body(&self, status: Status) -> serde_json::Value {
        json!({"run_id": self.run_id, "session_id": self.session_id, "status": status})
    }
}

/// Most bytes read and dropped past the body limit before a 413 is answered.
const DRAIN_MAX: usize = 64 << 20;
/// Longest time a request body may take to arrive (a slow sender cannot hold a task forever).
const BODY_TIME: Duration = Duration::from_secs(60);

/// Reads a request body of at most `limit` bytes. An oversized body is still read to its end
/// (up to [`DRAIN_MAX`] more bytes) before the 413 goes out: a server that stops reading
/// mid-body and closes makes the client's kernel see a reset, which can destroy the answer
/// before the client reads it, so the client would see a dropped connection instead of a
/// clear 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut chunks = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    let read = tokio::time::timeout(BODY_TIME, async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
            seen += chunk.len();
            if seen <= limit {
                kept.extend_from_slice(&chunk);
            } else if seen > limit.saturating_add(DRAIN_MAX) {
                break;
            }
        }
        Ok::<_, ApiError>(())
    })
    .await;
    if seen > limit {
        return Err(ApiError::TooLarge(format!("request body is over the {limit}-byte limit")));
    }
    match read {
        Ok(Ok(())) => Ok(Bytes::from(kept)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::BadRequest(format!("the request body did not arrive within {BODY_TIME:?}"))),
    }
}

/// Parses a run request body.
pub fn parse_body(body: &[u8]) -> Result<RunRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid run request: {e}")))
}

/// Checks everything about `req` the gateway can know: ids, language, files.
pub fn validate(state: &AppState, req: &RunRequest) -> Result<(), ApiError> {
    validate_request(req, |lang| state.executors.offers(lang))
}

/// [`validate`] with the executors' languages given as `offers` (`Some(false)`: no executor
/// ever offered it; `None`: none was seen yet), so that it runs without a gateway (the fuzz
/// target `api_request`).
pub fn validate_request(req: &RunRequest, offers: impl Fn(&str) -> Option<bool>) -> Result<(), ApiError> {
    ids::validate("user_id", &req.user_id)?;
    ids::validate("session_id", &req.session_id)?;
    if req.lang.is_empty() {
        return Err(ApiError::BadRequest("lang is required".into()));
    }
    if offers(&req.lang) == Some(false) {
        return Err(ApiError::UnknownLanguage(req.lang.clone()));
    }
    if req.code.is_none() && req.files.is_empty() {
        return Err(ApiError::BadRequest("give code or files".into()));
    }
    if req.files.len() > MAX_FILES || req.args.len() > MAX_ARGS {
        return Err(ApiError::BadRequest(format!("at most {MAX_FILES} files and {MAX_ARGS} args")));
    }
    for f in &req.files {
        let bad_name = f.name.is_empty()
            || f.name.len() > 255
            || f.name.starts_with('/')
            || f.name.contains('\0')
            || f.name.split('/').any(|part| part.is_empty() || part == "." || part == "..");
        if bad_name {
            return Err(ApiError::BadRequest(format!("file name {:?} must be a relative path without '..'", f.name)));
        }
        if f.encoding == Encoding::Base64 && hearth_proto::b64::decode(&f.content).is_err() {
            return Err(ApiError::BadRequest(format!("file {:?}: content is not valid base64", f.name)));
        }
    }
    if let Some(entry) = &req.entry {
        if !req.files.iter().any(|f| f.name == *entry) {
            return Err(ApiError::BadRequest(format!("entry {entry:?} is not one of the files")));
        }
    }
    if req.args.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::BadRequest("args may not contain NUL bytes".into()));
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("{what}: {e}"))
}

/// True when a publish was refused because the `RUNS` stream is at its bounds.
fn is_queue_full(e: &async_nats::jetstream::context::PublishError) -> bool {
    if e.kind() != PublishErrorKind::Other {
        return false;
    }
    let Some(js) = e.source().and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>()) else { return false };
    let text = js.to_string();
    js.code() == 503
        && (text.contains("maximum messages") || text.contains("maximum bytes") || text.contains("resource limits"))
}

/// Takes one request of `user` from its bucket (429 `rate_limited` when spent).
pub fn hit(state: &AppState, user: &str, tier: &Tier) -> Result<(), ApiError> {
    match state.limiter.hit(user, tier, Instant::now()) {
        Ok(()) => Ok(()),
        Err(Over::Rate { retry_after_s }) => {
            Metrics::inc(&state.metrics.runs_rejected_limits);
            Err(ApiError::RateLimited { user: user.to_string(), retry_after_s })
        }
        Err(Over::Runs { .. }) => unreachable!("a bucket says only Rate"),
    }
}

/// Counts `run_id` as in flight for `user` (429 `too_many_runs` at the tier's cap). At the
/// cap, runs counted for a while are looked up first: an end this gateway was not told of
/// frees its place.
async fn reserve(state: &AppState, user: &str, run_id: &str, tier: &Tier) -> Result<(), ApiError> {
    for attempt in 0..2 {
        let Err(over) = state.limiter.reserve(user, run_id, tier, Instant::now()) else { return Ok(()) };
        let Over::Runs { active, max, stale } = over else { unreachable!("reserve says only Runs") };
        if attempt == 1 || stale.is_empty() {
            Metrics::inc(&state.metrics.runs_rejected_limits);
            return Err(ApiError::TooManyRuns { user: user.to_string(), active, max });
        }
        for id in stale.iter().take(16) {
            let ended = match state.bus.results.get(id).await {
                Ok(None) => true,
                Ok(Some(bytes)) => {
                    serde_json::from_slice::<RunResult>(&bytes).map_or(true, |r| r.status.is_some_and(Status::is_final))
                }
                Err(_) => false,
            };
            if ended {
                state.limiter.release(user, id);
            }
        }
    }
    unreachable!("the second attempt returns")
}

/// Accepts a run from `caller`: makes it the caller's (a session token's user and
/// session), validates it, applies the user's limits (request rate, runs in flight, the
/// tier's caps on the run's limits) and queues it.
pub async fn accept(state: &AppState, caller: &Caller, mut req: RunRequest) -> Result<Accepted, ApiError> {
    caller.own_run(&mut req)?;
    validate(state, &req)?;
    let tier = state.config.tiers.get(caller.tier());
    if !matches!(caller, Caller::Session(_)) {
        // A session token's requests are counted as they come in, whatever they are.
        hit(state, &req.user_id, tier)?;
    }
    let run_id = uuid::Uuid::now_v7().to_string();
    let user = req.user_id.clone();
    reserve(state, &user, &run_id, tier).await?;
    let capped = tier.max_limits != hearth_proto::LimitsRequest::default();
    let max = capped.then(|| tier.cap(&state.config.limits_max));
    let submitted = submit(state, req, run_id.clone(), max).await;
    if submitted.is_err() {
        state.limiter.release(&user, &run_id);
    }
    submitted
}

/// Releases the runs executors say have ended (on this gateway's `done` subject).
pub async fn listen_for_ends(state: Arc<AppState>, mut notices: async_nats::Subscriber) {
    while let Some(m) = notices.next().await {
        if let Ok(done) = serde_json::from_slice::<Done>(&m.payload) {
            state.limiter.release(&done.user_id, &done.run_id);
        }
    }
}

/// Queues a validated run: `queued` event and stored state first (so the session never sees
/// `running` before `queued`), then the confirmed publish to `RUNS`.
async fn submit(
    state: &AppState,
    req: RunRequest,
    run_id: String,
    limits_max: Option<Limits>,
) -> Result<Accepted, ApiError> {
    let received_us = Timing::now_us();
    let started = std::time::Instant::now();
    let accepted = Accepted { run_id: run_id.clone(), session_id: req.session_id.clone() };
    let (lang, user_id) = (req.lang.clone(), req.user_id.clone());
    let notify = Some(names::done_subject(&state.id));
    let job = Job { run_id: run_id.clone(), request: req, accepted_ms: now_ms(), received_us, notify, limits_max };
    let payload = serde_json::to_vec(&job).map_err(|e| ApiError::Internal(format!("encoding a job: {e}")))?;
    if payload.len() > state.bus.max_payload() {
        return Err(ApiError::TooLarge(format!(
            "the run is {} bytes; this server takes at most {}",
            payload.len(),
            state.bus.max_payload()
        )));
    }
    let subject = names::events_subject(&accepted.session_id);
    let queued = RunResult {
        run_id: run_id.clone(),
        session_id: accepted.session_id.clone(),
        user_id,
        lang,
        status: Some(Status::Queued),
        ..RunResult::default()
    };
    let queued_bytes = serde_json::to_vec(&queued).expect("a result encodes");
    // Every publish rides out a cluster's leader election (bounded) and carries a message id,
    // so a retried one is stored once: above all the run itself (id = run id).
    let js = &state.bus.js;
    let queued_id = format!("{run_id}.q");
    let event = retry::publish(js, &subject, event::queued(&accepted.session_id, &run_id), &queued_id, PATIENCE);
    let stored = retry::put(&state.bus.results, &run_id, queued_bytes.into(), PATIENCE);
    let (event, stored) = tokio::join!(event, stored);
    event.map_err(|e| unavailable("publishing the queued event", e))?;
    let revision = stored.map_err(|e| unavailable("storing the queued state", e))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(hearth_bus::job::QUEUED_REVISION, revision.to_string().as_str());
    // Counted before the publish: a quick run's result can pass before the publish's ack.
    state.latency.accepted(&run_id, started);
    match retry::publish_with_headers(js, names::RUN_SUBJECT, Some(&headers), payload.into(), &run_id, PATIENCE).await {
        Ok(_) => {
            Metrics::inc(&state.metrics.runs_accepted);
            Ok(accepted)
        }
        Err(e) => {
            state.latency.forget(&run_id);
            // After a lost confirmation (time-out, broken connection) the run may be queued
            // all the same: then it is not ended here, its events will come.
            let surely_not_queued = is_queue_full(&e)
                || matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::StreamNotFound);
            let refused = if is_queue_full(&e) {
                Metrics::inc(&state.metrics.runs_rejected_full);
                ApiError::QueueFull
            } else if e.kind() == PublishErrorKind::MaxPayloadExceeded {
                ApiError::TooLarge("the run is larger than the server's largest message".into())
            } else {
                unavailable("queueing the run", e)
            };
            if !surely_not_queued {
                return Err(refused);
            }
            // The session saw `queued`: end the run there, so nothing waits for it forever.
            let ended = RunResult {
                status: Some(Status::InternalError),
                message: Some(format!("not queued: {}", refused.public_message())),
                ..queued
            };
            let _ = retry::publish(js, &subject, event::result(&ended), &format!("{run_id}.end"), PATIENCE).await;
            let ended = serde_json::to_vec(&ended).expect("a result encodes");
            let _ = retry::put(&state.bus.results, &run_id, ended.into(), PATIENCE).await;
            Err(refused)
        }
    }
}

/// How long `?wait=true` waits for a run with these limits.
fn wait_bound(state: &AppState, req: &RunRequest) -> Duration {
    let limits = Limits::resolve(&req.limits, &state.config.limits_default, &state.config.limits_max);
    Duration::from_millis(Limits::COMPILE.wall_ms + limits.wall_ms) + state.config.wait_margin
}

/// `POST /v1/runs[?wait=true]`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<RunQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let wait = match query.wait.as_deref() {
        None | Some("false" | "0" | "") => false,
        Some("true" | "1") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("wait must be true or false, not {other:?}"))),
    };
    let mut req = parse_body(&read_body(body, state.config.body_limit).await?)?;
    if !wait {
        let accepted = accept(&state, &caller, req).await?;
        return Ok((StatusCode::ACCEPTED, Json(accepted.body(Status::Queued))).into_response());
    }
    caller.own_run(&mut req)?;
    validate(&state, &req)?;
    let bound = wait_bound(&state, &req);
    let mut events = state
        .bus
        .client
        .subscribe(names::events_subject(&req.session_id))
        .await
        .map_err(|e| unavailable("subscribing to the session", e))?;
    let user = req.user_id.clone();
    let accepted = accept(&state, &caller, req).await?;
    let mut closing = state.closing.clone();
    let stopping = async move {
        let _ = closing.wait_for(|c| *c).await.map(|_| ());
    };
    let waited = tokio::time::timeout(bound, async {
        while let Some(msg) = events.next().await {
            let Ok(head) = serde_json::from_slice::<EventHead>(&msg.payload) else { continue };
            if head.run_id == accepted.run_id && head.is_result() {
                return Some(msg.payload);
            }
        }
        None
    });
    // A stopping gateway answers what is stored now (202 while the run goes on) rather than
    // holding its shutdown for the run's whole time.
    let waited = tokio::select! {
        w = waited => w,
        () = stopping => Ok(None),
    };
    Metrics::inc(&state.metrics.runs_waited);
    match waited {
        Ok(Some(payload)) => match serde_json::from_slice::<RunResult>(&payload) {
            Ok(result) => {
                state.limiter.release(&user, &accepted.run_id);
                Ok(Json(result).into_response())
            }
            Err(e) => Err(ApiError::Internal(format!("a result event did not parse: {e}"))),
        },
        // Timed out, the subscription ended, or the gateway is stopping: what is stored now.
        _ => stored_result(&state, &caller, &accepted.run_id).await,
    }
}

/// The stored result (final, or the current state) of `run_id`: 200 when final, 202 while
/// it is queued or running. A run `caller` may not read is answered like an unknown one.
async fn stored_result(state: &AppState, caller: &Caller, run_id: &str) -> Result<Response, ApiError> {
    let unknown = || ApiError::NotFound(format!("no run {run_id} (results are kept for a while only)"));
    let stored = state.bus.results.get(run_id).await.map_err(|e| unavailable("reading the result store", e))?;
    let bytes = stored.ok_or_else(unknown)?;
    let result: RunResult = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("a stored result did not parse: {e}")))?;
    if !caller.may_read(&result) {
        return Err(unknown());
    }
    let done = result.status.is_some_and(Status::is_final);
    if done {
        state.limiter.release(&result.user_id, run_id);
    }
    let status = if done { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// `GET /v1/runs/{run_id}`.
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    run_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(run_id) = run_id.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    ids::validate("run_id", &run_id)?;
    stored_result(&state, &caller, &run_id).await
}
