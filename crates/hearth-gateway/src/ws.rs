//! `GET /v1/ws?session_id=..[&since=SEQ]`: a session's events, replayed from the `EVENTS`
//! stream through an ordered consumer that starts right after `since` (or at the start of
//! what is retained), so a reconnect gets every later event in order, without gap or
//! duplicate. Each event goes out as a text frame with `seq` = its stream sequence. The
//! client may send `run`, `stdin` and `kill` frames. When the gateway stops, every socket is
//! closed with code 1012 ("service restart"): reconnect, with `since=`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hearth_bus::{event, names};
use hearth_proto::api::RunRequest;
use hearth_proto::{ids, Status};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::runs;
use crate::AppState;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    session_id: Option<String>,
    since: Option<u64>,
}

/// Validates the session, opens its event consumer, then upgrades.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let session_id = query.session_id.ok_or_else(|| ApiError::BadRequest("session_id is required".into()))?;
    ids::validate("session_id", &session_id)?;
    let ws = ws.map_err(|r| ApiError::BadRequest(format!("not a websocket upgrade: {}", r.body_text())))?;
    let since = query.since.unwrap_or(0);
    let events = open_events(&state, &session_id, since).await?;
    Ok(ws
        .max_message_size(state.config.body_limit)
        .on_upgrade(move |socket| session(socket, state, session_id, events, since)))
}

/// The session's events after seq `after` (all of them for 0), through an ordered consumer.
async fn open_events(state: &AppState, session_id: &str, after: u64) -> Result<Ordered, ApiError> {
    let deliver_policy = match after {
        0 => DeliverPolicy::All,
        seq => DeliverPolicy::ByStartSequence { start_sequence: seq.saturating_add(1) },
    };
    let config = OrderedConfig {
        filter_subject: names::events_subject(session_id),
        deliver_policy,
        // The consumer's heartbeat is half of this (async-nats): when the node holding the
        // consumer dies, it is recreated from the last event sent after two missed beats
        // were noticed twice, about twice this.
        max_expires: state.config.events_pull_expires,
        ..OrderedConfig::default()
    };
    let unavailable = |e: &dyn std::fmt::Display| ApiError::Unavailable(format!("opening the session's events: {e}"));
    let consumer = state.bus.events.create_consumer(config).await.map_err(|e| unavailable(&e))?;
    consumer.messages().await.map_err(|e| unavailable(&e))
}

/// Opens the session's events again after `after`, retrying while the cluster recovers
/// (a leader election takes seconds), within [`REOPEN_PATIENCE`].
async fn reopen_events(state: &AppState, session_id: &str, after: u64) -> Result<Ordered, ApiError> {
    let deadline = tokio::time::Instant::now() + REOPEN_PATIENCE;
    loop {
        match open_events(state, session_id, after).await {
            Ok(events) => return Ok(events),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(session = %session_id, error = %e, "reopening the session's events; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long a socket tries to get its events back after NATS trouble before it closes.
const REOPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Counts an open socket while it lives.
struct Open<'a>(&'a std::sync::atomic::AtomicI64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn error_frame(e: &ApiError) -> String {
    json!({"type": "error", "error": {"code": e.code(), "message": e.public_message()}}).to_string()
}

/// Serves one socket. `last_sent` is the highest seq the client has (its `since`): the
/// consumer may start over from the beginning after it recreates itself (async-nats does
/// when that happens before its first message), so anything at or below it is skipped and
/// the client never gets an event twice.
async fn session(socket: WebSocket, state: Arc<AppState>, session_id: String, mut events: Ordered, mut last_sent: u64) {
    state.metrics.ws_open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(&state.metrics.ws_open);
    let (mut out, mut incoming) = socket.split();
    let mut closing = state.closing.clone();
    let mut connects = state.bus.connects.clone();
    connects.borrow_and_update();
    loop {
        tokio::select! {
            // After a reconnect (the server this gateway used may be gone, and the consumer
            // with it), the consumer is made afresh from the last event sent rather than
            // trusted to notice by itself; nothing is lost or repeated (`last_sent`).
            Ok(()) = connects.changed() => match reopen_events(&state, &session_id, last_sent).await {
                Ok(fresh) => events = fresh,
                Err(e) => {
                    let _ = out.send(Message::Text(error_frame(&e).into())).await;
                    break;
                }
            },
            _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
                // 1012 "service restart": the client reconnects (to another gateway behind
                // the balancer) with `since=` and misses nothing.
                let frame = CloseFrame { code: close_code::RESTART, reason: "service restart".into() };
                let _ = out.send(Message::Close(Some(frame))).await;
                break;
            }
            ev = events.next() => match ev {
                Some(Ok(msg)) => {
                    let Ok(info) = msg.info() else { continue };
                    let seq = info.stream_sequence;
                    if seq <= last_sent {
                        continue;
                    }
                    let Some(text) = event::with_seq(&msg.payload, seq) else { continue };
                    if out.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                    last_sent = seq;
                    state.metrics.ws_events_sent.fetch_add(1, Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    tracing::warn!(session = %session_id, error = %e, "session events failed; reopening them");
                    match reopen_events(&state, &session_id, last_sent).await {
                        Ok(fresh) => events = fresh,
                        Err(e) => {
                            let _ = out.send(Message::Text(error_frame(&e).into())).await;
                            break;
                        }
                    }
                }
                None => break,
            },
            frame = incoming.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let reply = client_frame(&state, &session_id, text.as_str()).await;
                    if out.send(Message::Text(reply.into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = ApiError::BadRequest("frames are JSON text".into());
                    if out.send(Message::Text(error_frame(&e).into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Handles one client frame; answers with an `accepted`, `sent` or `error` frame.
async fn client_frame(state: &AppState, session_id: &str, text: &str) -> String {
    match client_frame_inner(state, session_id, text).await {
        Ok(reply) => reply.to_string(),
        Err(e) => error_frame(&e),
    }
}

async fn client_frame_inner(state: &AppState, session_id: &str, text: &str) -> Result<serde_json::Value, ApiError> {
    let mut frame: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ApiError::BadRequest(format!("frame is not JSON: {e}")))?;
    let obj = frame.as_object_mut().ok_or_else(|| ApiError::BadRequest("frame is not a JSON object".into()))?;
    let kind = obj.remove("type").and_then(|t| t.as_str().map(str::to_owned)).unwrap_or_default();
    match kind.as_str() {
        "run" => {
            obj.entry("session_id").or_insert_with(|| session_id.into());
            let req: RunRequest =
                serde_json::from_value(frame).map_err(|e| ApiError::BadRequest(format!("invalid run frame: {e}")))?;
            if req.session_id != session_id {
                return Err(ApiError::BadRequest("a run frame's session_id must be the socket's".into()));
            }
            runs::validate(state, &req)?;
            let accepted = runs::submit(state, req).await?;
            let mut body = accepted.body(Status::Queued);
            body["type"] = "accepted".into();
            Ok(body)
        }
        "stdin" | "kill" => {
            let run_id = obj.get("run_id").and_then(|r| r.as_str()).unwrap_or_default().to_owned();
            ids::validate("run_id", &run_id)?;
            let mut control = json!({"type": kind});
            if kind == "stdin" {
                control["data"] = obj.get("data").cloned().unwrap_or_else(|| "".into());
            }
            state
                .bus
                .client
                .publish(names::control_subject(&run_id), control.to_string().into())
                .await
                .map_err(|e| ApiError::Unavailable(format!("sending {kind}: {e}")))?;
            Ok(json!({"type": "sent", "run_id": run_id, "what": kind}))
        }
        other => Err(ApiError::BadRequest(format!("unknown frame type {other:?}: expected run, stdin or kill"))),
    }
}
