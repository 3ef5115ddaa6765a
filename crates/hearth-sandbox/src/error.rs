//! Errors of sandboxes and the pool. Each says whether the run is to blame or the sandbox.

use std::time::Duration;

use hearth_proto::FrameError;
use thiserror::Error;

use crate::cgroup::CgroupError;

/// A sandbox that could not be made, spoken to or run in.
#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("spawning the agent {agent}: {source}")]
    Spawn { agent: String, source: std::io::Error },
    #[error("sandbox {id}: agent not ready after {waited:?}")]
    NotReady { id: String, waited: Duration },
    #[error("sandbox {id}: agent closed the connection{during}")]
    Closed { id: String, during: &'static str },
    #[error("sandbox {id}: agent sent {what} when it should not")]
    Unexpected { id: String, what: String },
    #[error("sandbox {id}: agent protocol: {source}")]
    Protocol { id: String, source: FrameError },
    #[error("sandbox {id}: agent reported an error: {message}")]
    Agent { id: String, message: String },
    #[error("sandbox {id}: no result {waited:?} after the run's limits expired")]
    Hung { id: String, waited: Duration },
    #[error("sandbox {id}: i/o: {source}")]
    Io { id: String, source: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("driver {driver} is not available here: {why}")]
    Unavailable { driver: &'static str, why: String },
}

/// Why the pool could not hand out a sandbox.
#[derive(Debug, Error)]
pub enum PoolError {
    #[error("the pool is shut down")]
    Closed,
    #[error("no sandbox could be created: {0}")]
    Create(String),
}
