//! The connection every hearth process holds: a NATS client checked to be new enough, its
//! JetStream context, and handles on the streams and the bucket, created when missing.
//!
//! Replicas ([`Replicas::Auto`]): on a single server, 1. On a cluster (the server's INFO names
//! one), 3: a stream then survives the loss of any one node with nothing acknowledged lost.
//! A cluster that cannot place three copies (fewer than three JetStream servers) is taken at
//! its word once the set-up's patience (30 s, for a cluster still forming) is spent: 1, with
//! a warning. An existing stream, bucket or consumer is never scaled down by a later process,
//! and one with fewer copies than wanted is scaled up (so a cluster that booted short of a
//! node heals when a process starts on the full cluster). `--replicas N` insists on N.

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, kv};

use std::time::{Duration, Instant};

use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::ErrorCode;

use crate::config::{BusConfig, Replicas};
use crate::error::BusError;
use crate::names;

/// Oldest nats-server hearth works with (JetStream key-value as async-nats creates it).
pub const MIN_SERVER: (u64, u64) = (2, 10);

/// A connected client with the streams and the bucket in place.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub runs: stream::Stream,
    pub events: stream::Stream,
    pub results: kv::Store,
    pub config: BusConfig,
    /// Copies of `RUNS` kept by the cluster, as found or created.
    pub replicas: usize,
    /// Counts the connections made (it changes on every reconnect, to the same server or
    /// another of the cluster): what lives on one connection's server can be rebuilt then.
    pub connects: tokio::sync::watch::Receiver<u64>,
}

/// `major.minor` of a server version string ("2.15.1", "v2.10.0-beta.3").
pub fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Bus {
    /// Connects to `url` (one server, or a comma-separated list of a cluster's) as `name`,
    /// refuses servers older than [`MIN_SERVER`], and creates the streams, the bucket and the
    /// executors' consumer where they are missing.
    pub async fn connect(url: &str, name: &str, config: BusConfig) -> Result<Bus, BusError> {
        let urls: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        let (connects_tx, connects) = tokio::sync::watch::channel(0u64);
        let options = config.security.apply(async_nats::ConnectOptions::new().name(name)).await?;
        let client = options
            .event_callback(move |event| {
                let connects_tx = connects_tx.clone();
                async move {
                    tracing::info!(%event, "nats");
                    if matches!(event, async_nats::Event::Connected) {
                        connects_tx.send_modify(|n| *n += 1);
                    }
                }
            })
            .connect(urls.as_slice())
            .await
            .map_err(|source| BusError::Connect { url: url.to_string(), source })?;
        let version = client.server_info().version;
        match parse_version(&version) {
            Some(v) if v >= MIN_SERVER => {}
            _ => return Err(BusError::OldServer { url: url.to_string(), version }),
        }
        let js = jetstream::new(client.clone());
        wait_for_jetstream(&client, &js, url).await?;
        let info = client.server_info();
        let clustered = info.cluster.as_deref().is_some_and(|c| !c.is_empty());
        let (runs, events, results, replicas) = ensure(&js, &config, clustered).await?;
        Ok(Bus { client, js, runs, events, results, config, replicas, connects })
    }

    /// Largest message the server takes.
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    /// The executors' durable pull consumer (created where missing).
    pub async fn executors_consumer(&self) -> Result<jetstream::consumer::Consumer<pull::Config>, BusError> {
        let config = pull::Config {
            durable_name: Some(names::EXECUTORS_CONSUMER.into()),
            description: Some("hearth executors: one shared work queue".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: self.config.max_deliver,
            max_ack_pending: -1,
            // As many copies as the stream (set, not inherited: a stream scaled up later
            // takes its consumer along when the next executor starts).
            num_replicas: self.replicas,
            ..Default::default()
        };
        // Create or update: the bounds of the executor started last are in force. A cluster
        // still placing its peers answers "insufficient resources" or times out for a while.
        let deadline = Instant::now() + SETUP_PATIENCE;
        loop {
            match self.runs.create_consumer(config.clone()).await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() < deadline && consumer_transient(&e) => {
                    tracing::info!(error = %e, "creating the executors' consumer; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(BusError::Consumer { name: names::EXECUTORS_CONSUMER, message: e.to_string() }),
            }
        }
    }
}

/// True for the server's "cannot place that many copies" answers.
fn cannot_replicate(e: &async_nats::jetstream::context::CreateStreamError) -> bool {
    match e.kind() {
        CreateStreamErrorKind::JetStream(js) => {
            js.error_code() == ErrorCode::INSUFFICIENT_RESOURCES
                || js.error_code() == ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED
        }
        _ => false,
    }
}

/// True for answers a forming cluster gives (no meta leader yet, a time-out, a stream made
/// by another process a moment ago): worth a retry.
fn is_transient(e: &async_nats::jetstream::context::CreateStreamError) -> bool {
    match e.kind() {
        CreateStreamErrorKind::JetStreamUnavailable | CreateStreamErrorKind::TimedOut => true,
        CreateStreamErrorKind::JetStream(js) => [
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::STREAM_NAME_EXIST,
            ErrorCode::STREAM_NOT_FOUND,
            // A cluster whose peers are not all current yet; for good only after the patience.
            ErrorCode::INSUFFICIENT_RESOURCES,
        ]
        .contains(&js.error_code()),
        _ => false,
    }
}

/// Waits until JetStream answers. A server whose INFO says it has JetStream but cannot
/// answer yet (a cluster still electing its metadata leader, or short of a majority) is
/// asked again for [`SETUP_PATIENCE`]; one without JetStream is refused at once.
async fn wait_for_jetstream(client: &async_nats::Client, js: &jetstream::Context, url: &str) -> Result<(), BusError> {
    let deadline = Instant::now() + SETUP_PATIENCE;
    loop {
        let error = match js.query_account().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if !client.server_info().jetstream {
            return Err(BusError::NoJetStream { url: url.to_string() });
        }
        if Instant::now() >= deadline {
            return Err(BusError::JetStreamNotReady { url: url.to_string(), message: error.to_string() });
        }
        tracing::info!(%error, "jetstream not answering yet (a cluster electing its leader?); retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// True for the consumer-creation answers of a cluster still forming or electing.
fn consumer_transient(e: &async_nats::jetstream::stream::ConsumerError) -> bool {
    use async_nats::jetstream::stream::ConsumerErrorKind;
    match e.kind() {
        ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => true,
        // The last one: the stream was just scaled up and its new copies are catching up.
        ConsumerErrorKind::JetStream(js) => [
            ErrorCode::INSUFFICIENT_RESOURCES,
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::CONSUMER_REPLICAS_EXCEEDS_STREAM,
        ]
        .contains(&js.error_code()),
        _ => false,
    }
}

/// How long the set-up retries while a cluster elects its leaders.
const SETUP_PATIENCE: Duration = Duration::from_secs(30);

/// Creates the stream, or updates its bounds to `config`'s (the process started last wins),
/// never lowering the replicas it already has. Retries while the cluster is forming.
async fn ensure_stream(
    js: &jetstream::Context,
    mut config: stream::Config,
) -> Result<stream::Stream, async_nats::jetstream::context::CreateStreamError> {
    if let Ok(mut existing) = js.get_stream(&config.name).await {
        if let Ok(info) = existing.info().await {
            config.num_replicas = config.num_replicas.max(info.config.num_replicas);
        }
    }
    let deadline = Instant::now() + SETUP_PATIENCE;
    loop {
        // The stream just created may not be known yet to the node asked next: "not found"
        // then is one more reason to wait.
        let made = match js.create_or_update_stream(config.clone()).await {
            Ok(_) => js.get_stream(&config.name).await.map_err(|e| {
                async_nats::jetstream::context::CreateStreamError::with_source(CreateStreamErrorKind::NotFound, e)
            }),
            Err(e) => Err(e),
        };
        match made {
            Ok(stream) => return Ok(stream),
            Err(e)
                if (is_transient(&e) || e.kind() == CreateStreamErrorKind::NotFound) && Instant::now() < deadline =>
            {
                tracing::info!(stream = %config.name, error = %e, "jetstream not ready; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Raises the copies of an existing stream (a bucket's, here) to `replicas` when it has
/// fewer; a failure is only logged (the bucket works as it is).
async fn scale_up(js: &jetstream::Context, stream: &str, replicas: usize) {
    let Ok(mut existing) = js.get_stream(stream).await else { return };
    let Ok(info) = existing.info().await else { return };
    if info.config.num_replicas >= replicas {
        return;
    }
    let config = stream::Config { num_replicas: replicas, ..info.config.clone() };
    match js.update_stream(config).await {
        Ok(_) => tracing::info!(stream, replicas, "scaled up"),
        Err(e) => tracing::warn!(stream, replicas, error = %e, "could not scale up"),
    }
}

fn stream_error(name: &str) -> impl Fn(async_nats::jetstream::context::CreateStreamError) -> BusError + '_ {
    move |e| BusError::Stream { name: name.to_string(), message: e.to_string() }
}

async fn ensure(
    js: &jetstream::Context,
    config: &BusConfig,
    clustered: bool,
) -> Result<(stream::Stream, stream::Stream, kv::Store, usize), BusError> {
    let wanted = match config.replicas {
        Replicas::Fixed(n) => n,
        Replicas::Auto if clustered => 3,
        Replicas::Auto => 1,
    };
    let runs_config = |replicas: usize| stream::Config {
        name: names::RUNS_STREAM.into(),
        description: Some("hearth run requests (work queue)".into()),
        subjects: vec![names::RUN_SUBJECT.into()],
        retention: RetentionPolicy::WorkQueue,
        max_messages: config.runs_max_msgs,
        max_bytes: config.runs_max_bytes,
        discard: DiscardPolicy::New,
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    // The first stream settles the count: where the server cannot place `wanted` copies and
    // nothing asked for them explicitly, it is 1.
    let runs = match ensure_stream(js, runs_config(wanted)).await {
        Err(e) if cannot_replicate(&e) && config.replicas == Replicas::Auto && wanted > 1 => {
            tracing::warn!(error = %e, "the cluster cannot keep {wanted} copies; streams get 1 (pass --replicas to insist)");
            ensure_stream(js, runs_config(1)).await
        }
        other => other,
    }
    .map_err(stream_error(names::RUNS_STREAM))?;
    let replicas = runs.cached_info().config.num_replicas.max(1);
    let events = ensure_stream(
        js,
        stream::Config {
            name: names::EVENTS_STREAM.into(),
            description: Some("hearth session events (replayable)".into()),
            subjects: vec![names::EVENTS_WILDCARD.into()],
            retention: RetentionPolicy::Limits,
            max_age: config.events_max_age,
            max_bytes: config.events_max_bytes,
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await
    .map_err(stream_error(names::EVENTS_STREAM))?;
    let bucket = kv::Config {
        bucket: names::RESULTS_BUCKET.into(),
        description: "hearth final results by run id".into(),
        history: 1,
        max_age: config.results_ttl,
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let deadline = Instant::now() + SETUP_PATIENCE;
    let results = loop {
        if let Ok(store) = js.get_key_value(names::RESULTS_BUCKET).await {
            scale_up(js, &format!("KV_{}", names::RESULTS_BUCKET), replicas).await;
            break store;
        }
        match js.create_key_value(bucket.clone()).await {
            Ok(store) => break store,
            Err(e) if Instant::now() < deadline => {
                // A forming cluster, or another process creating it at the same moment.
                tracing::info!(error = %e, "creating the results bucket; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(BusError::Bucket { name: names::RESULTS_BUCKET, message: e.to_string() }),
        }
    };
    Ok((runs, events, results, replicas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("v2.10.0-beta.3"), Some((2, 10)));
        assert!(parse_version("2.9.10").unwrap() < MIN_SERVER);
        assert!(parse_version("2.10.0").unwrap() >= MIN_SERVER);
        assert!(parse_version("3.0.0").unwrap() >= MIN_SERVER);
        assert_eq!(parse_version("garbage"), None);
    }
}
