//! What the VM drivers (qemu, firecracker) share: the guest image's paths, the guest's
//! resources, the kernel command line, a per-VM state directory that is removed with the
//! VM, and the host facts a guest kernel needs (the TSC frequency under TCG).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The files a VM boots (see `hearth image build`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmImage {
    /// The ELF `vmlinux`.
    pub kernel: PathBuf,
    /// The initramfs with the agent as `/init`.
    pub initrd: PathBuf,
    /// The read-only ext4 root file system with the runtimes.
    pub rootfs: PathBuf,
}

/// What each guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmResources {
    pub memory_mb: u64,
    pub vcpus: u32,
    /// Sizes of the guest's `/work` and `/tmp` tmpfs.
    pub work_mb: u64,
    pub tmp_mb: u64,
}

impl Default for VmResources {
    fn default() -> Self {
        VmResources { memory_mb: 512, vcpus: 1, work_mb: 64, tmp_mb: 64 }
    }
}

/// The guest kernel's command line shared by both drivers; each adds its own.
pub fn base_cmdline(r: &VmResources) -> String {
    format!(
        "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init nomodeset random.trust_cpu=on \
         hearth.work_mb={} hearth.tmp_mb={}",
        r.work_mb, r.tmp_mb
    )
}

/// The host's TSC frequency in kHz, for `tsc_early_khz=` under TCG (where the guest's TSC
/// runs at the host's rate and calibrating it can hang the boot).
pub fn tsc_khz() -> u64 {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz").and_then(|r| r.split(':').nth(1)))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0) as u64)
        .filter(|k| *k > 0)
        .unwrap_or(2_000_000)
}

/// Sandbox numbers of the VM drivers, unique in this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn next_number() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A VM's own directory (sockets, console log): created empty, removed with the VM.
#[derive(Debug)]
pub struct StateDir {
    path: Option<PathBuf>,
}

impl StateDir {
    pub fn create(base: &Path, id: &str) -> std::io::Result<StateDir> {
        let path = base.join(format!("hearth-vm-{id}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(StateDir { path: Some(path) })
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("present until removed")
    }

    /// Removes the directory and all in it.
    pub fn remove(&mut self) -> std::io::Result<()> {
        match self.path.take() {
            Some(p) => match std::fs::remove_dir_all(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_goes_with_its_owner() {
        let base = tempfile::tempdir().unwrap();
        let dir = StateDir::create(base.path(), "t1").unwrap();
        let p = dir.path().to_path_buf();
        std::fs::write(p.join("agent.sock"), b"").unwrap();
        drop(dir);
        assert!(!p.exists());
        assert!(tsc_khz() > 0);
        assert!(base_cmdline(&VmResources::default()).contains("hearth.work_mb=64"));
    }
}
