//! `stdin` and `kill` for a run, asked for over a WebSocket. Only runs of the socket's own
//! session (and, for a session token, its own user) can be reached: the owner is read from
//! the run's stored state, and a run of anyone else is answered like an unknown one (404).
//!
//! A kill of a run still queued ends it here: the gateway replaces exactly the stored
//! `queued` revision with `cancelled` (compare-and-set) and publishes the `result` event;
//! the executor that later pulls the run finds its claim refused and never starts it. When
//! the compare-and-set loses (an executor just claimed the run), the kill goes to the run's
//! control subject, which that executor listened to before it claimed: a kill is never lost
//! between the two.

use std::collections::HashSet;

use async_nats::jetstream::kv;
use hearth_bus::control::ControlMsg;
use hearth_bus::{event, names};
use hearth_proto::api::RunResult;
use hearth_proto::{ids, Status};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// Largest `data` of one stdin frame (bounded again by the NATS server's message size).
pub const MAX_STDIN_FRAME: usize = 1 << 20;
/// Runs one socket remembers as its own and running (so stdin needs no store read).
const REMEMBERED: usize = 1024;

/// Who asks: a socket of `session_id`, opened by `caller`.
#[derive(Debug, Clone)]
pub struct Asker {
    pub session_id: String,
    pub caller: Caller,
    /// Runs of this socket's session seen running, whose ownership is already checked.
    running: HashSet<String>,
}

impl Asker {
    pub fn new(session_id: String, caller: Caller) -> Asker {
        Asker { session_id, caller, running: HashSet::new() }
    }

    fn owns(&self, r: &RunResult) -> bool {
        r.session_id == self.session_id && self.caller.may_read(r)
    }

    /// Whether any run is remembered as running (only then do events need a look).
    pub fn remembers_any(&self) -> bool {
        !self.running.is_empty()
    }

    /// `run_id` has ended (its `result` event went by on this socket).
    pub fn forget(&mut self, run_id: &str) {
        self.running.remove(run_id);
    }

    fn remember(&mut self, run_id: &str) {
        if self.running.len() >= REMEMBERED {
            self.running.clear();
        }
        self.running.insert(run_id.to_string());
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("{what}: {e}"))
}

/// The stored state of `run_id` when `asker` may control it.
async fn owned(state: &AppState, asker: &Asker, run_id: &str) -> Result<(kv::Entry, RunResult), ApiError> {
    let unknown = || ApiError::NotFound(format!("no run {run_id} in this session"));
    let entry = state.bus.results.entry(run_id).await.map_err(|e| unavailable("reading the run's state", e))?;
    let entry = entry.filter(|e| e.operation == kv::Operation::Put).ok_or_else(unknown)?;
    let stored: RunResult = serde_json::from_slice(&entry.value)
        .map_err(|e| ApiError::Internal(format!("a stored result did not parse: {e}")))?;
    if !asker.owns(&stored) {
        return Err(unknown());
    }
    Ok((entry, stored))
}

fn ended(run_id: &str, status: Status) -> ApiError {
    ApiError::RunEnded(format!("run {run_id} has already ended ({status})"))
}

async fn send(state: &AppState, run_id: &str, msg: &ControlMsg) -> Result<(), ApiError> {
    state
        .bus
        .client
        .publish(names::control_subject(run_id), msg.encode())
        .await
        .map_err(|e| unavailable("sending to the run", e))
}

/// Ends `run_id` as `cancelled`: at once when it is still queued, else by a kill to the
/// executor running it (which kills the whole process tree).
pub async fn kill(state: &AppState, asker: &mut Asker, run_id: &str) -> Result<(), ApiError> {
    ids::validate("run_id", run_id)?;
    for _ in 0..3 {
        let (entry, stored) = owned(state, asker, run_id).await?;
        match stored.status {
            Some(s) if s.is_final() => return Err(ended(run_id, s)),
            Some(Status::Queued) => {
                let cancelled = RunResult {
                    status: Some(Status::Cancelled),
                    message: Some("cancelled before it started".into()),
                    ..stored
                };
                let bytes = serde_json::to_vec(&cancelled).expect("a result encodes");
                if state.bus.results.update(run_id, bytes.into(), entry.revision).await.is_err() {
                    continue; // claimed (or changed) meanwhile: look again
                }
                let subject = names::events_subject(&cancelled.session_id);
                let ack = state.bus.js.publish(subject, event::result(&cancelled)).await;
                ack.map_err(|e| unavailable("publishing the result", e))?
                    .await
                    .map_err(|e| unavailable("publishing the result", e))?;
                state.limiter.release(&cancelled.user_id, run_id);
                return Ok(());
            }
            _ => return send(state, run_id, &ControlMsg::Kill).await,
        }
    }
    // Three changes under our feet: the run is moving; it is surely claimed by now.
    send(state, run_id, &ControlMsg::Kill).await
}

/// Writes `data` to the program's stdin (then closes it on `eof`). The run must be
/// running: stdin for a run still queued is refused (`not_running`), not held.
pub async fn stdin(state: &AppState, asker: &mut Asker, run_id: &str, data: String, eof: bool) -> Result<(), ApiError> {
    ids::validate("run_id", run_id)?;
    let max = MAX_STDIN_FRAME.min(state.bus.max_payload().saturating_sub(4096));
    if data.len() > max {
        return Err(ApiError::TooLarge(format!("a stdin frame carries at most {max} bytes of data")));
    }
    if !asker.running.contains(run_id) {
        let (_, stored) = owned(state, asker, run_id).await?;
        match stored.status {
            Some(s) if s.is_final() => return Err(ended(run_id, s)),
            Some(Status::Running) => asker.remember(run_id),
            _ => {
                return Err(ApiError::NotRunning(format!(
                    "run {run_id} has not started yet: send stdin after its `running` event (or give it in the run's `stdin`)"
                )))
            }
        }
    }
    send(state, run_id, &ControlMsg::Stdin { data, eof }).await
}
