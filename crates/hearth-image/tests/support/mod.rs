//! Helpers for the VM tests: the guest image (built once and cached: `hearth image build`
//! does the same), a qemu driver on it, and the no-leftovers check for VMs.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hearth_image::{BuildConfig, Image};
use hearth_sandbox::{locate_agent, QemuConfig, QemuDriver};

/// The default image with the agent this workspace built (its parts come from the cache
/// after the first build; only the initramfs changes with the agent).
pub fn image() -> Image {
    static IMAGE: std::sync::OnceLock<Image> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let agent = locate_agent().expect("hearth-agent binary: build it for musl or set HEARTH_AGENT");
            let config = BuildConfig::new(agent);
            hearth_image::build(&config, &mut |line| eprintln!("image: {line}")).expect("the guest image builds")
        })
        .clone()
}

/// A qemu driver on [`image`] whose sandbox names carry `tag`.
pub async fn qemu(tag: &str) -> Arc<QemuDriver> {
    let config = QemuConfig { tag: tag.into(), ..QemuConfig::new(image().vm_image()) };
    Arc::new(QemuDriver::new(config).await.expect("qemu driver"))
}

/// Processes whose command line names `needle` (a VM's state directory).
pub fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

/// What VM `id` left on the host: its QEMU process, its state directory.
pub fn vm_leftovers(id: &str) -> Vec<String> {
    let mut found = processes_naming(&format!("hearth-vm-{id}/"));
    let dir = std::env::temp_dir().join(format!("hearth-vm-{id}"));
    if dir.exists() {
        found.push(format!("state directory {}", dir.display()));
    }
    found
}

/// Time TCG needs: generous, never hit on a working VM.
pub const VM_TIMEOUT: Duration = Duration::from_secs(120);
