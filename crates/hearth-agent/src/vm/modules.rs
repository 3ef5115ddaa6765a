//! Loading the kernel modules the image carries (`/lib/modules/hearth/`, in the order its
//! `order` file gives: dependencies first), with `finit_module`. There is no modprobe in
//! the guest's initramfs, and no need for one.

use std::ffi::CString;
use std::os::fd::AsRawFd;

use super::params::Params;

/// Where the image's initramfs keeps its modules.
pub const DIR: &str = "/lib/modules/hearth";

/// Loads every module listed in `DIR/order`; a module already loaded (or built in) is fine.
pub fn load_all(params: &Params) -> Result<(), String> {
    let order = match std::fs::read_to_string(format!("{DIR}/order")) {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // all built in
        Err(e) => return Err(format!("{DIR}/order: {e}")),
    };
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let args = if name.starts_with("virtio_mmio") {
            params.mmio_devices.iter().map(|d| format!("device={d}")).collect::<Vec<_>>().join(" ")
        } else {
            String::new()
        };
        load(&format!("{DIR}/{name}"), &args)?;
    }
    Ok(())
}

fn load(path: &str, args: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let args = CString::new(args).map_err(|_| format!("{path}: NUL in module arguments"))?;
    // SAFETY: finit_module reads the open file and the NUL-terminated argument string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), args.as_ptr(), 0) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("{path}: {err}"));
        }
    }
    let _ = std::fs::remove_file(path); // its memory is better spent on runs
    Ok(())
}
