//! The `firecracker` driver: each sandbox is a Firecracker microVM booted through its HTTP
//! API on a Unix socket ([`api`]) from the same guest image as the qemu driver, with the
//! agent listening on a vsock port that the host reaches through Firecracker's Unix-socket
//! vsock ([`vsock`], `CONNECT <port>`). With snapshots on (the default), the driver boots
//! one template VM when it starts, waits for its agent, pauses it and takes a full snapshot;
//! every sandbox after that is a fresh Firecracker process restoring that snapshot, which
//! takes milliseconds instead of a boot. Each VM runs in its own state directory (its API
//! socket, its vsock socket, given by a relative path so that clones of one snapshot do not
//! collide); destroying a VM kills its process and removes that directory.
//!
//! Needs KVM that boots stock kernels, and the `firecracker` binary (see docs/microvm.md).

pub mod api;
pub mod vsock;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hearth_proto::Limits;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::conn::AgentConn;
use crate::driver::Driver;
use crate::error::SandboxError;
use crate::sandbox::{Backend, BoxFuture, Sandbox};
use crate::vm::{base_cmdline, next_number, StateDir, VmImage, VmResources};

use api::{Api, BootPlan};

/// The guest port the agent listens on.
pub const AGENT_PORT: u32 = 52;
/// The vsock device's host socket, relative to each VM's state directory.
const VSOCK_UDS: &str = "v.sock";

/// How the firecracker driver builds VMs.
#[derive(Debug, Clone)]
pub struct FirecrackerConfig {
    pub firecracker: PathBuf,
    pub image: VmImage,
    pub resources: VmResources,
    /// Restore every VM from a snapshot of a booted one (else boot each).
    pub snapshots: bool,
    pub ready_timeout: Duration,
    pub state_base: PathBuf,
    pub tag: String,
}

impl FirecrackerConfig {
    pub fn new(image: VmImage) -> FirecrackerConfig {
        FirecrackerConfig {
            firecracker: crate::host::find_binary("firecracker").unwrap_or_else(|| "firecracker".into()),
            image,
            resources: VmResources::default(),
            snapshots: true,
            ready_timeout: Duration::from_secs(20),
            state_base: std::env::temp_dir(),
            tag: String::new(),
        }
    }
}

/// The template's snapshot files.
struct Snapshot {
    /// Owns the files; removed with the driver.
    _dir: StateDir,
    state: PathBuf,
    memory: PathBuf,
}

/// The firecracker driver.
pub struct FirecrackerDriver {
    config: FirecrackerConfig,
    prefix: String,
    snapshot: Option<Snapshot>,
}

impl FirecrackerDriver {
    /// Checks the binary and KVM, and with snapshots on, boots the template and snapshots it
    /// (which also proves that VMs boot here).
    pub async fn new(config: FirecrackerConfig) -> Result<FirecrackerDriver, SandboxError> {
        let unavailable = |why: String| SandboxError::Unavailable { driver: "firecracker", why };
        if !config.firecracker.is_file() {
            return Err(unavailable(format!(
                "{} not found (install Firecracker: docs/microvm.md)",
                config.firecracker.display()
            )));
        }
        if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
            return Err(unavailable(format!("/dev/kvm: {e} (Firecracker needs KVM)")));
        }
        let prefix = format!("hf-{}-{}", std::process::id(), config.tag);
        let mut driver = FirecrackerDriver { config, prefix, snapshot: None };
        if driver.config.snapshots {
            driver.snapshot = Some(driver.make_snapshot().await.map_err(|e| unavailable(format!("template VM: {e}")))?);
        }
        Ok(driver)
    }

    /// Whether sandboxes come from a snapshot.
    pub fn restores(&self) -> bool {
        self.snapshot.is_some()
    }

    fn plan(&self) -> BootPlan {
        let r = &self.config.resources;
        BootPlan {
            kernel: self.config.image.kernel.clone(),
            initrd: self.config.image.initrd.clone(),
            boot_args: format!("{} reboot=k pci=off hearth.vsock_port={AGENT_PORT}", base_cmdline(r)),
            rootfs: self.config.image.rootfs.clone(),
            vcpus: r.vcpus,
            memory_mb: r.memory_mb,
            guest_cid: 3,
            vsock_uds: PathBuf::from(VSOCK_UDS),
        }
    }

    async fn make_snapshot(&self) -> Result<Snapshot, SandboxError> {
        let id = format!("{}template", self.prefix);
        let dir = StateDir::create(&self.config.state_base, &id)
            .map_err(|source| SandboxError::Io { id: id.clone(), source })?;
        let vm = self.cold(&format!("{id}-vm")).await?;
        let (state, memory) = (dir.path().join("vm.state"), dir.path().join("vm.mem"));
        let taken = vm.api.snapshot(&state, &memory).await;
        vm.sandbox.destroy().await?;
        taken.map_err(|e| SandboxError::Agent { id, message: e.to_string() })?;
        Ok(Snapshot { _dir: dir, state, memory })
    }

    /// Starts a Firecracker process in a new state directory and waits for its API socket.
    async fn spawn(&self, id: &str) -> Result<(Child, StateDir, Api), SandboxError> {
        let io = |source| SandboxError::Io { id: id.to_string(), source };
        let dir = StateDir::create(&self.config.state_base, id).map_err(io)?;
        let sock = dir.path().join("api.sock");
        let mut child = Command::new(&self.config.firecracker)
            .arg("--api-sock")
            .arg(&sock)
            .arg("--id")
            .arg(id)
            .current_dir(dir.path())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SandboxError::Spawn { agent: self.config.firecracker.display().to_string(), source })?;
        log_lines(id.to_string(), child.stdout.take());
        log_lines(id.to_string(), child.stderr.take());
        let start = Instant::now();
        while !sock.exists() {
            if start.elapsed() > Duration::from_secs(5) || !matches!(child.try_wait(), Ok(None)) {
                return Err(SandboxError::NotReady { id: id.to_string(), waited: start.elapsed() });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok((child, dir, Api::new(&sock)))
    }

    /// Connects to the agent and waits for Ready.
    async fn attach(&self, id: String, child: Child, dir: StateDir) -> Result<Sandbox, SandboxError> {
        let uds = dir.path().join(VSOCK_UDS);
        let backend = FirecrackerBackend { child: Some(child), state: Some(dir) };
        let stream = match vsock::connect(&uds, AGENT_PORT, self.config.ready_timeout).await {
            Ok(s) => s,
            Err(source) => {
                let _ = Box::new(backend).destroy().await;
                return Err(SandboxError::Io { id, source });
            }
        };
        let (r, w) = stream.into_split();
        let conn = AgentConn::new(id.clone(), Box::new(r), Box::new(w));
        let mut sandbox = Sandbox::new(id, conn, Box::new(backend));
        match sandbox.wait_ready(self.config.ready_timeout).await {
            Ok(_) => Ok(sandbox),
            Err(e) => {
                let _ = sandbox.destroy().await;
                Err(e)
            }
        }
    }

    async fn cold(&self, id: &str) -> Result<ColdVm, SandboxError> {
        let (child, dir, api) = self.spawn(id).await?;
        if let Err(e) = api.boot(&self.plan()).await {
            let _ = Box::new(FirecrackerBackend { child: Some(child), state: Some(dir) }).destroy().await;
            return Err(SandboxError::Agent { id: id.to_string(), message: e.to_string() });
        }
        let sandbox = self.attach(id.to_string(), child, dir).await?;
        Ok(ColdVm { sandbox, api })
    }

    async fn create_one(&self) -> Result<Sandbox, SandboxError> {
        let id = format!("{}{}", self.prefix, next_number());
        match &self.snapshot {
            None => Ok(self.cold(&id).await?.sandbox),
            Some(snap) => {
                let (child, dir, api) = self.spawn(&id).await?;
                if let Err(e) = api.restore(&snap.state, &snap.memory).await {
                    let _ = Box::new(FirecrackerBackend { child: Some(child), state: Some(dir) }).destroy().await;
                    return Err(SandboxError::Agent { id, message: e.to_string() });
                }
                self.attach(id, child, dir).await
            }
        }
    }
}

/// A freshly booted VM and its API (the template is snapshotted through it).
struct ColdVm {
    sandbox: Sandbox,
    api: Api,
}

fn log_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(id: String, r: Option<R>) {
    let Some(r) = r else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(sandbox = %id, "firecracker: {line}");
        }
    });
}

impl Driver for FirecrackerDriver {
    fn name(&self) -> &'static str {
        "firecracker"
    }

    fn create(&self) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(self.create_one())
    }
}

struct FirecrackerBackend {
    child: Option<Child>,
    state: Option<StateDir>,
}

impl Backend for FirecrackerBackend {
    /// The guest's agent applies every limit itself.
    fn prepare(&mut self, _limits: &Limits) -> Result<(), SandboxError> {
        Ok(())
    }

    fn oom_kills(&self) -> u64 {
        0
    }

    fn peak_kb(&self) -> u64 {
        0
    }

    fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn destroy(mut self: Box<Self>) -> BoxFuture<'static, Result<(), SandboxError>> {
        let child = self.child.take();
        let state = self.state.take();
        Box::pin(async move {
            if let Some(mut child) = child {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            if let Some(mut state) = state {
                state.remove().map_err(|source| SandboxError::Io { id: String::new(), source })?;
            }
            Ok(())
        })
    }
}

impl Drop for FirecrackerBackend {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Why this host cannot run the firecracker driver, if it cannot (for `hearth doctor`).
pub fn unavailable_reason(firecracker: &Path) -> Option<String> {
    if !firecracker.is_file() {
        return Some("no firecracker binary on this host (docs/microvm.md says how to install it)".into());
    }
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").err().map(|e| format!("/dev/kvm: {e}"))
}
