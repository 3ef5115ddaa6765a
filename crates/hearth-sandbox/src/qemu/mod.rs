//! The `qemu` driver: each sandbox is a QEMU `-M microvm` guest booting the image's ELF
//! `vmlinux` directly, with the agent as the initramfs's `/init`, the root file system as
//! a read-only virtio disk, and the agent's stream on a virtio-serial port. KVM where it
//! really works (probed: a boot that must reach Ready in time, see [`accel`]), TCG
//! otherwise, with `tsc_early_khz=` so the guest does not hang calibrating its TSC. The
//! host listens on two Unix sockets in the VM's own state directory and QEMU connects to
//! both at start: the agent port and QMP (status, quit). Destroying a VM quits QEMU over
//! QMP (SIGKILL if it does not go), reaps it and removes the state directory: nothing of
//! it is left. The warm pool, health checks and replacement are the same as for every
//! driver.
//!
//! Layout:
//! - [`accel`]: choosing KVM or TCG (the boot probe).
//! - [`qmp`]: the QMP client.

pub mod accel;
pub mod qmp;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hearth_proto::Limits;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::time::timeout;

use crate::conn::AgentConn;
use crate::driver::Driver;
use crate::error::SandboxError;
use crate::sandbox::{Backend, BoxFuture, Sandbox};
use crate::vm::{base_cmdline, next_number, tsc_khz, StateDir, VmImage, VmResources};

pub use accel::Accel;
use qmp::Qmp;

/// How the qemu driver builds VMs.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    pub image: VmImage,
    pub resources: VmResources,
    /// `Auto` probes KVM once and falls back to TCG.
    pub accel: Accel,
    /// From spawning QEMU to the agent's Ready (TCG boots take a few seconds, more on a
    /// loaded host).
    pub ready_timeout: Duration,
    /// How long the KVM probe's guest may take to say Ready before KVM is declared unusable.
    pub kvm_probe_timeout: Duration,
    /// Where VM state directories are made.
    pub state_base: PathBuf,
    /// Added to sandbox names after the executor's pid, to tell drivers of one process apart.
    pub tag: String,
    /// Under TCG, a run's wall and CPU limits are multiplied by this (the emulated CPU is
    /// that much slower than the host's): a verdict means the same amount of work.
    pub tcg_time_scale: u64,
}

impl QemuConfig {
    pub fn new(image: VmImage) -> QemuConfig {
        QemuConfig {
            qemu: crate::host::find_binary("qemu-system-x86_64").unwrap_or_else(|| "qemu-system-x86_64".into()),
            image,
            resources: VmResources::default(),
            accel: Accel::Auto,
            ready_timeout: Duration::from_secs(60),
            kvm_probe_timeout: Duration::from_secs(10),
            state_base: std::env::temp_dir(),
            tag: String::new(),
            tcg_time_scale: 4,
        }
    }
}

/// The qemu driver.
pub struct QemuDriver {
    config: QemuConfig,
    /// KVM or TCG, decided once.
    accel: Accel,
    prefix: String,
}

impl QemuDriver {
    /// Checks QEMU and the image, and decides KVM or TCG (which may boot a probe VM).
    pub async fn new(config: QemuConfig) -> Result<QemuDriver, SandboxError> {
        let unavailable = |why: String| SandboxError::Unavailable { driver: "qemu", why };
        if !config.qemu.is_file() {
            return Err(unavailable(format!("{} not found (apt-get install qemu-system-x86)", config.qemu.display())));
        }
        for f in [&config.image.kernel, &config.image.initrd, &config.image.rootfs] {
            if !f.is_file() {
                return Err(unavailable(format!("image file {} missing (run `hearth image build`)", f.display())));
            }
        }
        let prefix = format!("hq-{}-{}", std::process::id(), config.tag);
        let mut driver = QemuDriver { accel: Accel::Tcg, config, prefix };
        driver.accel = match driver.config.accel {
            Accel::Auto => accel::choose(&driver).await,
            forced => forced,
        };
        tracing::info!(accel = ?driver.accel, "qemu driver ready");
        Ok(driver)
    }

    /// KVM or TCG, as decided.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// What runs' wall and CPU limits are multiplied by (1 under KVM).
    pub fn time_scale(&self) -> u64 {
        if self.accel == Accel::Kvm {
            1
        } else {
            self.config.tcg_time_scale.max(1)
        }
    }

    /// Name prefix of this driver's sandboxes (their state directories carry it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    fn command(&self, accel: Accel, agent_sock: &std::path::Path, qmp_sock: &std::path::Path) -> Command {
        let c = &self.config;
        let r = &c.resources;
        let mut append = base_cmdline(r);
        append.push_str(" reboot=t pci=off hearth.transport=serial hearth.port_name=hearth.agent");
        if accel != Accel::Kvm {
            append.push_str(&format!(" tsc_early_khz={}", tsc_khz()));
        }
        let mut cmd = Command::new(&c.qemu);
        cmd.args(["-M", "microvm,acpi=on,pcie=off", "-nodefaults", "-no-user-config"])
            .args([
                "-display",
                "none",
                "-no-reboot",
                "-chardev",
                "stdio,id=console,signal=off",
                "-serial",
                "chardev:console",
            ])
            .args(["-m", &format!("{}M", r.memory_mb), "-smp", &r.vcpus.to_string()]);
        match accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            _ => cmd.args(["-accel", "tcg"]),
        };
        cmd.arg("-kernel")
            .arg(&c.image.kernel)
            .arg("-initrd")
            .arg(&c.image.initrd)
            .arg("-append")
            .arg(append)
            .arg("-drive")
            .arg(format!("id=root,file={},format=raw,if=none,readonly=on", c.image.rootfs.display()))
            .args(["-device", "virtio-blk-device,drive=root"])
            .args(["-device", "virtio-serial-device,max_ports=2"])
            .arg("-chardev")
            .arg(format!("socket,id=agent,path={}", agent_sock.display()))
            .args(["-device", "virtserialport,chardev=agent,name=hearth.agent"])
            .arg("-chardev")
            .arg(format!("socket,id=qmp,path={}", qmp_sock.display()))
            .args(["-mon", "chardev=qmp,mode=control"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Boots one VM with `accel` and waits (at most `ready`) for its agent.
    pub(crate) async fn boot(&self, accel: Accel, ready: Duration) -> Result<Sandbox, SandboxError> {
        let id = format!("{}{}", self.prefix, next_number());
        let io = |source| SandboxError::Io { id: id.clone(), source };
        let state = StateDir::create(&self.config.state_base, &id).map_err(io)?;
        let agent_sock = state.path().join("agent.sock");
        let qmp_sock = state.path().join("qmp.sock");
        let agent_l = UnixListener::bind(&agent_sock).map_err(io)?;
        let qmp_l = UnixListener::bind(&qmp_sock).map_err(io)?;
        let mut child = self
            .command(accel, &agent_sock, &qmp_sock)
            .spawn()
            .map_err(|source| SandboxError::Spawn { agent: self.config.qemu.display().to_string(), source })?;
        log_lines(id.clone(), child.stdout.take(), false);
        log_lines(id.clone(), child.stderr.take(), true);
        // QEMU connects to both sockets while it starts, before the guest runs.
        let connect = async {
            let (agent, _) = agent_l.accept().await?;
            let (qmp, _) = qmp_l.accept().await?;
            Ok::<_, std::io::Error>((agent, qmp))
        };
        let connected = tokio::select! {
            c = timeout(Duration::from_secs(20), connect) => c,
            status = child.wait() => {
                let why = format!("qemu exited at start ({})", status.map(|s| s.to_string()).unwrap_or_default());
                return Err(SandboxError::Unavailable { driver: "qemu", why });
            }
        };
        let (agent, qmp) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(io(e)),
            Err(_) => return Err(SandboxError::NotReady { id, waited: Duration::from_secs(20) }),
        };
        drop((agent_l, qmp_l));
        let qmp = Qmp::handshake(qmp, Duration::from_secs(5)).await.ok();
        let (r, w) = agent.into_split();
        let conn = AgentConn::new(id.clone(), Box::new(r), Box::new(w));
        // Under TCG the guest winds a run down slowly, and more so on a loaded host.
        let grace = if accel == Accel::Kvm { Duration::from_secs(5) } else { Duration::from_secs(30) };
        let time_scale = if accel == Accel::Kvm { 1 } else { self.config.tcg_time_scale.max(1) };
        let backend = QemuBackend { child: Some(child), qmp, state: Some(state), grace, time_scale };
        let mut sandbox = Sandbox::new(id, conn, Box::new(backend));
        match sandbox.wait_ready(ready).await {
            Ok(_) => Ok(sandbox),
            Err(e) => {
                let _ = sandbox.destroy().await;
                Err(e)
            }
        }
    }
}

/// QEMU's console (the guest kernel's and the agent's messages) and its own errors.
fn log_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(id: String, r: Option<R>, stderr: bool) {
    let Some(r) = r else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if stderr {
                tracing::warn!(sandbox = %id, "qemu: {line}");
            } else {
                tracing::debug!(sandbox = %id, "guest: {line}");
            }
        }
    });
}

impl Driver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn create(&self) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(self.boot(self.accel, self.config.ready_timeout))
    }

    fn ping_timeout(&self) -> Duration {
        if self.accel == Accel::Kvm {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        }
    }
}

/// The host's handles on one VM.
struct QemuBackend {
    child: Option<Child>,
    qmp: Option<Qmp>,
    state: Option<StateDir>,
    grace: Duration,
    time_scale: u64,
}

impl Backend for QemuBackend {
    /// The guest's agent applies every limit itself (its own cgroup): nothing to do here.
    fn prepare(&mut self, _limits: &Limits) -> Result<(), SandboxError> {
        Ok(())
    }

    /// The guest's OOM kills arrive in the agent's result.
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
        self.grace
    }

    fn time_scale(&self) -> u64 {
        self.time_scale
    }

    fn destroy(mut self: Box<Self>) -> BoxFuture<'static, Result<(), SandboxError>> {
        let child = self.child.take();
        let qmp = self.qmp.take();
        let state = self.state.take();
        Box::pin(async move {
            if let Some(mut child) = child {
                if let Some(mut qmp) = qmp {
                    let _ = timeout(Duration::from_secs(1), qmp.quit()).await;
                }
                if timeout(Duration::from_secs(2), child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
            if let Some(mut state) = state {
                state.remove().map_err(|source| SandboxError::Io { id: String::new(), source })?;
            }
            Ok(())
        })
    }
}

impl Drop for QemuBackend {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
