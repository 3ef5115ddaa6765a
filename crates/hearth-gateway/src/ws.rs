//! `GET /v1/ws?session_id=..[&since=SEQ]`: a session's events, from the gateway's
//! [`crate::hub`]: the socket subscribes, catches up on what the `EVENTS` stream holds
//! after `since` (or all it retains), then sends what the hub pushes, skipping what it sent
//! already; so a reconnect gets every later event in order, without gap or duplicate. Each
//! event goes out as a text frame with `seq` = its stream sequence. The client may send
//! `run`, `stdin` and `kill` frames. When the gateway stops, every socket is closed with
//! code 1012 ("service restart"): reconnect, with `since=`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hearth_bus::event;
use hearth_proto::api::RunRequest;
use hearth_proto::{ids, Status};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::control::{self, Asker};
use crate::error::ApiError;
use crate::hub::{catch_up, Event};
use crate::runs;
use crate::AppState;

/// Bytes a socket reads from the network at a time (tungstenite's default is 128 KiB per
/// socket, allocated up front: 1.3 GB for ten thousand idle sockets). Larger client frames
/// still arrive whole: the buffer grows for them.
const READ_BUFFER: usize = 4 << 10;

/// `{"type":"stdin","run_id","data"?,"eof"?}` (the `type` already taken off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinFrame {
    run_id: String,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    eof: bool,
}

/// `{"type":"kill","run_id"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillFrame {
    run_id: String,
}

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    session_id: Option<String>,
    since: Option<u64>,
}

/// Validates the session, checks that its events can be read, then upgrades.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let session_id = caller.ws_session(query.session_id)?;
    ids::validate("session_id", &session_id)?;
    let ws = ws.map_err(|r| ApiError::BadRequest(format!("not a websocket upgrade: {}", r.body_text())))?;
    if state.bus.client.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::Unavailable("opening the session's events: not connected to nats".into()));
    }
    Ok(ws
        .max_message_size(state.config.body_limit)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| session(socket, state, Asker::new(session_id, caller), query.since.unwrap_or(0))))
}

/// Counts an open socket while it lives.
struct Open<'a>(&'a std::sync::atomic::AtomicI64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn error_frame(e: &ApiError) -> String {
    let mut body = e.body();
    body["type"] = "error".into();
    body.to_string()
}

/// Notes what the socket's asker needs of an event going out: runs it remembers end with
/// their `result`.
fn seen(asker: &mut Asker, ev: &Event) {
    if asker.remembers_any() {
        match serde_json::from_str::<event::EventHead>(ev.text.as_str()) {
            Ok(head) if head.is_result() => asker.forget(&head.run_id),
            _ => {}
        }
    }
}

/// How long until `caller`'s credentials expire (a session token's lifetime).
fn expiry(caller: &Caller) -> Option<std::time::Duration> {
    let Caller::Session(c) = caller else { return None };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Some(std::time::Duration::from_secs(c.exp).saturating_sub(now))
}

/// One socket: events of the asker's session after `since` out, client frames in.
async fn session(socket: WebSocket, state: Arc<AppState>, mut asker: Asker, since: u64) {
    let session_id = asker.session_id.clone();
    state.metrics.ws_open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(&state.metrics.ws_open);
    // Subscribed before the history is read: whatever is stored after the read is pushed.
    let mut subscription = state.hub.subscribe(&session_id);
    let (mut out, mut incoming) = socket.split();
    let sent = &state.metrics.ws_events_sent;
    let mut last = since;
    let mut behind = true;
    let mut closing = state.closing.clone();
    let expires = expiry(&asker.caller);
    let expired = async {
        match expires {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        if behind {
            behind = false;
            let caught_up =
                catch_up(&state.bus.events, &session_id, &mut last, &mut out, sent, |ev| seen(&mut asker, ev));
            match caught_up.await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(session = %session_id, error = %e, "session events failed");
                    let _ = out.send(Message::Text(error_frame(&ApiError::Unavailable(e.to_string())).into())).await;
                    break;
                }
            }
        }
        tokio::select! {
            _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
                // 1012 "service restart": the client reconnects (to another gateway behind
                // the balancer) with `since=` and misses nothing.
                let frame = CloseFrame { code: close_code::RESTART, reason: "service restart".into() };
                let _ = out.send(Message::Close(Some(frame))).await;
                break;
            }
            _ = &mut expired => {
                // A socket lives no longer than the token that opened it.
                let e = ApiError::Unauthorized("the session token expired: open a new socket with a new token".into());
                let _ = out.send(Message::Text(error_frame(&e).into())).await;
                let _ = out.send(Message::Close(None)).await;
                break;
            }
            ev = subscription.inbox.recv() => {
                // The hub holds the sender while the subscription lives: never `None` here.
                let Some(ev) = ev else { break };
                if subscription.sub.take_lagged() {
                    // Events were dropped for this socket: this one may come after the gap.
                    behind = true;
                    continue;
                }
                if ev.seq <= last {
                    continue;
                }
                seen(&mut asker, &ev);
                if out.send(Message::Text(ev.text)).await.is_err() {
                    break;
                }
                last = ev.seq;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            frame = incoming.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let reply = client_frame(&state, &mut asker, text.as_str()).await;
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
async fn client_frame(state: &AppState, asker: &mut Asker, text: &str) -> String {
    match client_frame_inner(state, asker, text).await {
        Ok(reply) => reply.to_string(),
        Err(e) => error_frame(&e),
    }
}

fn frame_of<T: serde::de::DeserializeOwned>(kind: &str, frame: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(frame).map_err(|e| ApiError::BadRequest(format!("invalid {kind} frame: {e}")))
}

async fn client_frame_inner(state: &AppState, asker: &mut Asker, text: &str) -> Result<serde_json::Value, ApiError> {
    if let Caller::Session(c) = &asker.caller {
        // A token holder's frames count against its user's request rate, like requests.
        runs::hit(state, &c.u, state.config.tiers.get(&c.t))?;
    }
    let session_id = asker.session_id.clone();
    let mut frame: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ApiError::BadRequest(format!("frame is not JSON: {e}")))?;
    let obj = frame.as_object_mut().ok_or_else(|| ApiError::BadRequest("frame is not a JSON object".into()))?;
    let kind = obj.remove("type").and_then(|t| t.as_str().map(str::to_owned)).unwrap_or_default();
    match kind.as_str() {
        "run" => {
            obj.entry("session_id").or_insert_with(|| session_id.clone().into());
            let req: RunRequest = frame_of("run", frame)?;
            if req.session_id != session_id {
                return Err(ApiError::BadRequest("a run frame's session_id must be the socket's".into()));
            }
            let accepted = runs::accept(state, &asker.caller, req).await?;
            let mut body = accepted.body(Status::Queued);
            body["type"] = "accepted".into();
            Ok(body)
        }
        "stdin" => {
            let f: StdinFrame = frame_of("stdin", frame)?;
            if f.data.is_none() && !f.eof {
                return Err(ApiError::BadRequest("a stdin frame needs data, eof: true, or both".into()));
            }
            control::stdin(state, asker, &f.run_id, f.data.unwrap_or_default(), f.eof).await?;
            Ok(json!({"type": "sent", "run_id": f.run_id, "what": "stdin"}))
        }
        "kill" => {
            let f: KillFrame = frame_of("kill", frame)?;
            control::kill(state, asker, &f.run_id).await?;
            Ok(json!({"type": "sent", "run_id": f.run_id, "what": "kill"}))
        }
        other => Err(ApiError::BadRequest(format!("unknown frame type {other:?}: expected run, stdin or kill"))),
    }
}
