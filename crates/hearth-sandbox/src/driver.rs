//! The seam every isolation level plugs into.

use crate::error::SandboxError;
use crate::sandbox::{BoxFuture, Sandbox};

/// Makes sandboxes. One driver per executor; the pool calls `create` to keep warm ones.
pub trait Driver: Send + Sync + 'static {
    /// `process`, `qemu` or `firecracker`.
    fn name(&self) -> &'static str;
    /// Creates a sandbox whose agent has said Ready.
    fn create(&self) -> BoxFuture<'_, Result<Sandbox, SandboxError>>;
    /// How long an idle sandbox may take to answer a health check (an emulated guest on a
    /// busy host is slow to answer, and must not be replaced for it).
    fn ping_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
}
