//! Sandboxes for hearth: the seam every isolation level plugs into ([`Driver`]), the live
//! [`Sandbox`] a run happens in, the warm [`Pool`], and the languages on offer.
//!
//! Layout:
//! - [`driver`]: the `Driver` trait (create a sandbox whose agent said Ready).
//! - [`sandbox`]: a live sandbox: agent connection + driver backend; one run; the verdict.
//! - [`conn`]: the framed agent protocol over async byte streams.
//! - [`process`]: the `process` driver (namespaces + cgroups + seccomp, via the agent).
//! - [`vm`]: what the VM drivers share (image paths, guest resources, state directories).
//! - [`qemu`]: the `qemu` driver (QEMU microvm, KVM or TCG, virtio-serial, QMP).
//! - [`firecracker`]: the `firecracker` driver (API socket, vsock, snapshot restore).
//! - [`ids`]: host uid ranges for process sandboxes, unique per host (a lock-file-claimed
//!   block per driver, a lease per live sandbox).
//! - [`cgroup`]: cgroup v1 and v2 behind one type, rooted at a path (fakeable in tests).
//! - [`pool`]: the warm pool actor (acquire, refill, health checks, replacement).
//! - [`languages`]: the languages data file, resolved against the host.
//! - [`versions`]: the host's cache of the runtimes' version strings.
//! - [`host`]: what this host can do (for `hearth doctor`).
//! - [`error`]: `SandboxError`, `PoolError`.

#![deny(unsafe_code)]

pub mod cgroup;
pub mod conn;
pub mod driver;
pub mod error;
pub mod firecracker;
pub mod host;
pub mod ids;
pub mod languages;
pub mod pool;
pub mod process;
pub mod qemu;
pub mod sandbox;
pub mod versions;
pub mod vm;

pub use driver::Driver;
pub use error::{PoolError, SandboxError};
pub use firecracker::{FirecrackerConfig, FirecrackerDriver};
pub use languages::{JobInput, Language, Languages};
pub use pool::{Pool, PoolConfig, PoolStatus, WarmSet};
pub use process::{locate_agent, ProcessConfig, ProcessDriver};
pub use qemu::{Accel, QemuConfig, QemuDriver};
pub use sandbox::{Control, RunEvent, RunOutcome, Sandbox};
pub use vm::{VmImage, VmResources};
