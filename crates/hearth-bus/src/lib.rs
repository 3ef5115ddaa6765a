//! hearth's NATS layer, shared by the gateway and the executor: the subject and stream
//! names (DESIGN.md §3), the connection with its server version check, the idempotent
//! set-up of the `RUNS` and `EVENTS` streams and the `RESULTS` bucket, and the JSON shapes
//! that travel on them (jobs, events, heartbeats).
//!
//! Layout:
//! - [`names`]: subjects, stream, bucket and consumer names.
//! - [`config`]: `BusConfig`, the bounds and retention of what is created.
//! - [`connect`]: `Bus` (client + JetStream handles), connect (one URL or a comma-separated
//!   list of a cluster's), version check, ensure with replicas chosen for the cluster.
//! - [`security`]: NATS credentials (user/password, token, nkey, creds file) and TLS.
//! - [`event`]: session events (`status`, `output`, `result`) and the `seq` splice.
//! - [`job`]: a run request as queued on `code.run`.
//! - [`control`]: stdin/kill for a running run, and the "run ended" notice to its gateway.
//! - [`heartbeat`]: what an executor says about itself every second or two.
//! - [`retry`]: publishes and puts that ride out a leader election (bounded retries, message
//!   ids so a retried publish is stored once).
//! - [`error`]: the `BusError`.

#![deny(unsafe_code)]

pub mod config;
pub mod connect;
pub mod control;
pub mod error;
pub mod event;
pub mod heartbeat;
pub mod job;
pub mod names;
pub mod retry;
pub mod security;

pub use config::{BusConfig, Replicas};
pub use connect::Bus;
pub use error::BusError;
pub use heartbeat::{Heartbeat, LanguageInfo};
pub use job::Job;
pub use security::NatsSecurity;
