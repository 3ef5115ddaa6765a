//! KVM or TCG. `/dev/kvm` opening is not enough: on some hosts (nested, PVM) KVM runs only
//! specially built guest kernels and a stock kernel hangs. So the probe boots the real
//! image under KVM and waits for the agent's Ready, with a timeout; only then is KVM used.
//! Anything else (no /dev/kvm, QEMU refusing, a hang) falls back to TCG. The outcome is
//! remembered for the host's boot (a file in the temp dir named by the boot id), so every
//! executor and test on the host probes once.

use std::path::{Path, PathBuf};

use super::QemuDriver;

/// How guests are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Probe KVM, fall back to TCG.
    Auto,
    Kvm,
    /// QEMU's software emulation: works anywhere, slower.
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Accel, String> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("unknown accelerator {other:?} (auto, kvm or tcg)")),
        }
    }
}

/// What the probe found, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kvm: bool,
    pub why: String,
}

fn memo_path(kernel: &Path) -> PathBuf {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let kernel = kernel.display().to_string();
    let key: u64 = kernel
        .bytes()
        .chain(boot.trim().bytes())
        .fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    std::env::temp_dir().join(format!("hearth-kvm-probe-{key:016x}"))
}

/// What the probe found on this boot for the guest kernel `kernel`, if it ran.
pub fn probe_memo(kernel: &Path) -> Option<Probe> {
    let text = std::fs::read_to_string(memo_path(kernel)).ok()?;
    let (verdict, why) = text.split_once('\n')?;
    Some(Probe { kvm: verdict == "kvm", why: why.to_string() })
}

/// Boots the image under KVM once (or reads what an earlier probe on this boot found).
pub async fn probe(d: &QemuDriver) -> Probe {
    let memo = memo_path(&d.config.image.kernel);
    if let Some(p) = probe_memo(&d.config.image.kernel) {
        return Probe { why: format!("{} (probed earlier on this boot)", p.why), ..p };
    }
    let found = probe_now(d).await;
    let _ = std::fs::write(&memo, format!("{}\n{}", if found.kvm { "kvm" } else { "tcg" }, found.why));
    found
}

async fn probe_now(d: &QemuDriver) -> Probe {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Probe { kvm: false, why: format!("/dev/kvm: {e}") };
    }
    let wait = d.config.kvm_probe_timeout;
    match d.boot(Accel::Kvm, wait).await {
        Ok(sandbox) => {
            let _ = sandbox.destroy().await;
            Probe { kvm: true, why: "a guest booted under KVM and its agent answered".into() }
        }
        Err(e) => Probe { kvm: false, why: format!("a guest under KVM did not get ready: {e}") },
    }
}

/// KVM if the probe booted, else TCG.
pub async fn choose(d: &QemuDriver) -> Accel {
    let p = probe(d).await;
    tracing::info!(kvm = p.kvm, why = %p.why, "kvm probe");
    if p.kvm {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}
