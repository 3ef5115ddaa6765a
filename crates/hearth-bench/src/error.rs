//! Why a benchmark could not run.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("bad url {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("connecting to hearth: {0}")]
    Connect(String),
    #[error("http: {0}")]
    Http(String),
    #[error("{what} answered {status}")]
    Status { what: String, status: u16 },
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("the bare baseline {command:?} failed: {why}")]
    Bare { command: Vec<String>, why: String },
    #[error("no bare baseline for language {0:?}: pass --bare 'CMD {{file}}'")]
    NoBare(String),
    #[error(
        "{needed} sockets need {needed} file descriptors and more; this process may open {limit} (raise RLIMIT_NOFILE)"
    )]
    FdLimit { needed: usize, limit: u64 },
    #[error("writing the report to {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
}
