//! The connection every hearth process holds: a NATS client checked to be new enough, its
//! JetStream context, and handles on the streams and the bucket, created when missing.

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, kv};

use crate::config::BusConfig;
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
}

/// `major.minor` of a server version string ("2.15.1", "v2.10.0-beta.3").
pub fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Bus {
    /// Connects to `url` as `name`, refuses servers older than [`MIN_SERVER`], and creates
    /// the streams, the bucket and the executors' consumer where they are missing.
    pub async fn connect(url: &str, name: &str, config: BusConfig) -> Result<Bus, BusError> {
        let options = config.security.apply(async_nats::ConnectOptions::new().name(name)).await?;
        let client = options.connect(url).await.map_err(|source| BusError::Connect { url: url.to_string(), source })?;
        let version = client.server_info().version;
        match parse_version(&version) {
            Some(v) if v >= MIN_SERVER => {}
            _ => return Err(BusError::OldServer { url: url.to_string(), version }),
        }
        let js = jetstream::new(client.clone());
        if js.query_account().await.is_err() {
            return Err(BusError::NoJetStream { url: url.to_string() });
        }
        let (runs, events, results) = ensure(&js, &config).await?;
        Ok(Bus { client, js, runs, events, results, config })
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
            ..Default::default()
        };
        // Create or update: the bounds of the executor started last are in force.
        self.runs
            .create_consumer(config)
            .await
            .map_err(|e| BusError::Consumer { name: names::EXECUTORS_CONSUMER, message: e.to_string() })
    }
}

/// Creates the stream, or updates its bounds to `config`'s (the process started last wins).
async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<stream::Stream, BusError> {
    let name = config.name.clone();
    let error = |e: &dyn std::fmt::Display| BusError::Stream { name: name.clone(), message: e.to_string() };
    js.create_or_update_stream(config).await.map_err(|e| error(&e))?;
    js.get_stream(&name).await.map_err(|e| error(&e))
}

async fn ensure(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<(stream::Stream, stream::Stream, kv::Store), BusError> {
    let runs = ensure_stream(
        js,
        stream::Config {
            name: names::RUNS_STREAM.into(),
            description: Some("hearth run requests (work queue)".into()),
            subjects: vec![names::RUN_SUBJECT.into()],
            retention: RetentionPolicy::WorkQueue,
            max_messages: config.runs_max_msgs,
            max_bytes: config.runs_max_bytes,
            discard: DiscardPolicy::New,
            storage: StorageType::File,
            ..Default::default()
        },
    )
    .await?;
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
            ..Default::default()
        },
    )
    .await?;
    let results = match js.get_key_value(names::RESULTS_BUCKET).await {
        Ok(store) => store,
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: names::RESULTS_BUCKET.into(),
                description: "hearth final results by run id".into(),
                history: 1,
                max_age: config.results_ttl,
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::Bucket { name: names::RESULTS_BUCKET, message: e.to_string() })?,
    };
    Ok((runs, events, results))
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
