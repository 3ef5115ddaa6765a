//! Publishing through a cluster's bad moments. When a nats-server of a cluster dies, its
//! streams elect new leaders; for a few seconds a JetStream publish gets no responders or
//! times out. Those errors are retried here with a back-off, bounded in time; every publish
//! carries a message id (`Nats-Msg-Id`), so a retry of a publish whose confirmation was lost
//! is dropped by the server's duplicate window instead of being stored twice.

use std::error::Error as _;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::kv::{PutError, PutErrorKind, Store};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{Context, ErrorCode};
use async_nats::HeaderMap;
use bytes::Bytes;

/// How long a publish keeps trying through a leader election by default.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// True for the errors a cluster gives while it elects a leader or loses a node.
pub fn is_transient(e: &PublishError) -> bool {
    match e.kind() {
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => true,
        PublishErrorKind::Other => e
            .source()
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
            .is_some_and(|js| js.error_code() == ErrorCode::CLUSTER_NOT_AVAILABLE),
        _ => false,
    }
}

/// Waits before the next try: 50 ms, doubling, at most 1 s, never past `deadline`.
async fn back_off(tries: u32, deadline: Instant) {
    let wait = Duration::from_millis(50u64 << tries.min(5)).min(Duration::from_secs(1));
    tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
}

/// Sends one message with id `msg_id` (no wait for its confirmation).
pub async fn send(js: &Context, subject: &str, payload: Bytes, msg_id: &str) -> Result<PublishAckFuture, PublishError> {
    send_with_headers(js, subject, None, payload, msg_id).await
}

async fn send_with_headers(
    js: &Context,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: Bytes,
    msg_id: &str,
) -> Result<PublishAckFuture, PublishError> {
    let mut message = PublishMessage::build().payload(payload);
    if let Some(h) = headers {
        message = message.headers(h.clone());
    }
    js.send_publish(subject.to_string(), message.message_id(msg_id)).await
}

/// Publishes and waits for the confirmation, retrying transient failures for `patience`.
pub async fn publish(
    js: &Context,
    subject: &str,
    payload: Bytes,
    msg_id: &str,
    patience: Duration,
) -> Result<PublishAck, PublishError> {
    publish_with_headers(js, subject, None, payload, msg_id, patience).await
}

/// [`publish`] with headers besides the message id.
pub async fn publish_with_headers(
    js: &Context,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: Bytes,
    msg_id: &str,
    patience: Duration,
) -> Result<PublishAck, PublishError> {
    let deadline = Instant::now() + patience;
    let mut tries = 0;
    loop {
        let outcome = match send_with_headers(js, subject, headers, payload.clone(), msg_id).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(ack) => return Ok(ack),
            Err(e) if is_transient(&e) && Instant::now() < deadline => {
                if tries == 0 {
                    tracing::info!(subject, error = %e, "publish failed; retrying (the cluster may be electing a leader)");
                }
                back_off(tries, deadline).await;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Puts `value` under `key`, retrying transient failures for `patience`.
pub async fn put(kv: &Store, key: &str, value: Bytes, patience: Duration) -> Result<u64, PutError> {
    let deadline = Instant::now() + patience;
    let mut tries = 0;
    loop {
        match kv.put(key, value.clone()).await {
            Ok(revision) => return Ok(revision),
            Err(e) if e.kind() != PutErrorKind::InvalidKey && Instant::now() < deadline => {
                if tries == 0 {
                    tracing::info!(key, error = %e, "put failed; retrying (the cluster may be electing a leader)");
                }
                back_off(tries, deadline).await;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_errors_are_transient_and_refusals_are_not() {
        assert!(is_transient(&PublishError::new(PublishErrorKind::StreamNotFound)));
        assert!(is_transient(&PublishError::new(PublishErrorKind::TimedOut)));
        assert!(!is_transient(&PublishError::new(PublishErrorKind::MaxPayloadExceeded)));
        assert!(!is_transient(&PublishError::new(PublishErrorKind::Other)));
    }
}
