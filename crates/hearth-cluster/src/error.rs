//! Errors of the local cluster and the load client.

use thiserror::Error;

/// Something of the local cluster that could not be started, reached or stopped.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what} is not ready: {why}{}", if log.is_empty() { String::new() } else { format!("\n--- last lines of its log ---\n{log}") })]
    NotReady { what: String, why: String, log: String },
    #[error("{what}: {why}")]
    Http { what: String, why: String },
    #[error("invalid cluster spec: {0}")]
    Spec(String),
}
