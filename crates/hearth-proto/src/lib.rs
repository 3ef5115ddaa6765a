//! Wire types shared by every hearth component, and nothing else: no I/O runtime, no
//! policy. The agent (a static musl binary) depends on this crate, so it stays small.
//!
//! Layout:
//! - [`ids`]: validation of user and session ids before they can reach a NATS subject.
//! - [`jail`]: the process driver's request to the agent to build its own sandbox.
//! - [`limits`]: per-run limits as requested, as resolved, and the server's defaults/maxima.
//! - [`status`]: the final verdict of a run.
//! - [`frame`]: the length-prefixed, versioned agent protocol (host <-> in-sandbox agent).
//! - [`api`]: HTTP request and result bodies.
//! - [`b64`]: serde helpers for bytes carried as base64 inside JSON.

#![deny(unsafe_code)]

pub mod api;
pub mod b64;
pub mod frame;
pub mod ids;
pub mod jail;
pub mod limits;
pub mod status;

pub use frame::{AgentFrame, FrameError, HostFrame};
pub use limits::{Limits, LimitsRequest};
pub use status::Status;
