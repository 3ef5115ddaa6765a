//! Errors of the NATS layer.

use thiserror::Error;

/// A NATS connection or set-up that failed.
#[derive(Debug, Error)]
pub enum BusError {
    #[error("connecting to nats at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("nats-server {version} at {url} is too old: hearth needs 2.10 or newer (JetStream key-value); install a newer nats-server")]
    OldServer { url: String, version: String },
    #[error("nats-server at {url} has JetStream disabled: start it with -js")]
    NoJetStream { url: String },
    #[error("nats-server at {url} has JetStream but it did not answer within 30 s ({message}): a cluster needs a majority of its nodes up to elect a leader")]
    JetStreamNotReady { url: String, message: String },
    #[error("creating or updating stream {name}: {message}")]
    Stream { name: String, message: String },
    #[error("creating consumer {name}: {message}")]
    Consumer { name: &'static str, message: String },
    #[error("creating bucket {name}: {message}")]
    Bucket { name: &'static str, message: String },
    #[error("nats credentials or tls: {0}")]
    Security(String),
    #[error("subscribing to {subject}: {message}")]
    Subscribe { subject: String, message: String },
}
