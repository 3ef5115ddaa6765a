//! Choosing the isolation driver (`--driver process|qemu|firecracker`) and the languages
//! that go with it: the host's for the process driver, the guest image's for the VM
//! drivers (what the image's manifest recorded when it was built).

use std::path::PathBuf;
use std::sync::Arc;

use hearth_sandbox::{locate_agent, Accel, Driver, Languages, ProcessConfig, ProcessDriver, VmResources};

use crate::error::ExecutorError;

/// The isolation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverKind {
    /// Namespaces, cgroups, seccomp: any Linux host, no KVM.
    #[default]
    Process,
    /// QEMU microvm (KVM, else TCG) on the guest image.
    Qemu,
    /// Firecracker (KVM), snapshots for the fastest start.
    Firecracker,
}

impl std::str::FromStr for DriverKind {
    type Err = String;
    fn from_str(s: &str) -> Result<DriverKind, String> {
        match s {
            "process" => Ok(DriverKind::Process),
            "qemu" => Ok(DriverKind::Qemu),
            "firecracker" => Ok(DriverKind::Firecracker),
            other => Err(format!("unknown driver {other:?} (process, qemu or firecracker)")),
        }
    }
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DriverKind::Process => "process",
            DriverKind::Qemu => "qemu",
            DriverKind::Firecracker => "firecracker",
        })
    }
}

/// Which driver, and what it needs.
#[derive(Debug, Clone)]
pub struct DriverSpec {
    pub kind: DriverKind,
    /// The agent binary (process driver); found beside the executable when `None`.
    pub agent: Option<PathBuf>,
    /// The guest image (VM drivers); `hearth_image::default_image()` when `None`.
    pub image: Option<PathBuf>,
    pub vm: VmResources,
    /// KVM or TCG for qemu (`Auto` probes).
    pub accel: Accel,
    /// The `firecracker` binary; found on PATH when `None`.
    pub firecracker: Option<PathBuf>,
    /// Sandbox names carry it (tests running several drivers in one process).
    pub tag: String,
}

impl Default for DriverSpec {
    fn default() -> Self {
        DriverSpec {
            kind: DriverKind::Process,
            agent: None,
            image: None,
            vm: VmResources::default(),
            accel: Accel::Auto,
            firecracker: None,
            tag: String::new(),
        }
    }
}

/// Opens the driver `spec` names, with the languages its sandboxes offer.
pub async fn open(spec: &DriverSpec) -> Result<(Arc<dyn Driver>, Languages), ExecutorError> {
    let langs_err = |e: String| ExecutorError::Languages(e);
    match spec.kind {
        DriverKind::Process => {
            let agent = spec.agent.clone().or_else(locate_agent).ok_or(ExecutorError::NoAgent)?;
            let config = ProcessConfig { tag: spec.tag.clone(), ..ProcessConfig::new(agent) };
            let driver = ProcessDriver::new(config).map_err(ExecutorError::Driver)?;
            let languages = Languages::detect().map_err(|e| langs_err(e.to_string()))?;
            Ok((Arc::new(driver), languages))
        }
        DriverKind::Qemu => {
            let image = open_image(spec)?;
            let mut config = hearth_sandbox::QemuConfig::new(image.vm_image());
            config.resources = spec.vm;
            config.accel = spec.accel;
            config.tag = spec.tag.clone();
            let driver = hearth_sandbox::QemuDriver::new(config).await.map_err(ExecutorError::Driver)?;
            let languages = image.languages().map_err(|e| langs_err(e.to_string()))?;
            Ok((Arc::new(driver), languages))
        }
        DriverKind::Firecracker => {
            let image = open_image(spec)?;
            let mut config = hearth_sandbox::FirecrackerConfig::new(image.vm_image());
            config.resources = spec.vm;
            config.tag = spec.tag.clone();
            if let Some(fc) = &spec.firecracker {
                config.firecracker = fc.clone();
            }
            let driver = hearth_sandbox::FirecrackerDriver::new(config).await.map_err(ExecutorError::Driver)?;
            let languages = image.languages().map_err(|e| langs_err(e.to_string()))?;
            Ok((Arc::new(driver), languages))
        }
    }
}

fn open_image(spec: &DriverSpec) -> Result<hearth_image::Image, ExecutorError> {
    let dir = spec.image.clone().unwrap_or_else(hearth_image::default_image);
    hearth_image::Image::open(&dir).map_err(|e| ExecutorError::Image(e.to_string()))
}
