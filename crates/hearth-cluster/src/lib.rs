//! A hearth cluster on one machine, for trying it and for the chaos tests: three clustered
//! nats-servers with JetStream, gateways and executors, each its own process of the real
//! binaries on loopback ports, each killable on its own; and a load client that keeps a
//! steady stream of runs going and checks every answer, so a test can break a part and
//! count what was sent, finished, lost and seen twice.
//!
//! Layout:
//! - [`nats`]: nats-server node configs (alone or clustered), processes, health.
//! - [`local`]: `LocalCluster`: the nodes, gateways and executors; start, wait, stop.
//! - [`load`]: the checking load client and its `Report`.
//! - [`http`]: a small HTTP/1.1 and WebSocket client, every call bounded.
//! - [`proc`]: one child process, logged to a file, killed on drop.
//! - [`error`]: the `ClusterError`.

#![deny(unsafe_code)]

pub mod error;
pub mod http;
pub mod load;
pub mod local;
pub mod nats;
pub mod proc;

pub use error::ClusterError;
pub use load::{Load, LoadSpec, Program, Report};
pub use local::{ClusterSpec, LocalCluster, Part, Ports};
pub use nats::NatsNode;
