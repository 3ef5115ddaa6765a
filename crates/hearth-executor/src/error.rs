//! Executor errors. [`ExecutorError`] stops the executor; [`RunError`] ends or retries one
//! run, and says which ([`RunError::next`]).

use hearth_bus::BusError;
use hearth_proto::Status;
use hearth_sandbox::{PoolError, SandboxError};
use thiserror::Error;

/// Why the executor could not start or go on.
#[derive(Debug, Error)]
pub enum ExecutorError {
    #[error("invalid executor config: {0}")]
    Config(String),
    #[error("no hearth-agent binary: build the workspace, pass --agent or set HEARTH_AGENT")]
    NoAgent,
    #[error("sandbox driver: {0}")]
    Driver(SandboxError),
    #[error("languages: {0}")]
    Languages(String),
    #[error("guest image: {0}")]
    Image(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why one run did not produce a verdict of its program.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("language {lang} is not offered by this executor")]
    UnknownLanguage { lang: String },
    #[error("file {name}: {why}")]
    BadFile { name: String, why: String },
    #[error("run {run_id}: {message}")]
    Job { run_id: String, message: String },
    #[error("no sandbox for run {run_id}: {source}")]
    NoSandbox { run_id: String, source: PoolError },
    #[error("run {run_id}: {source}")]
    Sandbox { run_id: String, source: SandboxError },
    #[error("run {run_id}: {attempts} sandboxes in a row failed before the program started; the last: {source}")]
    SandboxBeforeStart { run_id: String, attempts: u32, source: SandboxError },
    #[error("run {run_id}: publishing its events: {message}")]
    Publish { run_id: String, message: String },
}

/// What to do with a run after a [`RunError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// End the run with this status and tell the user why.
    Report(Status),
    /// Infrastructure trouble here: let the run be redelivered (maybe elsewhere).
    Retry,
}

impl RunError {
    pub fn next(&self) -> Next {
        match self {
            RunError::UnknownLanguage { .. } | RunError::BadFile { .. } | RunError::Job { .. } => {
                Next::Report(Status::InternalError)
            }
            RunError::Sandbox { .. } | RunError::SandboxBeforeStart { .. } => Next::Report(Status::SandboxError),
            RunError::NoSandbox { .. } | RunError::Publish { .. } => Next::Retry,
        }
    }
}
