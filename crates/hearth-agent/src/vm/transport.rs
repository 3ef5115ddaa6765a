//! The agent's one seam to the host: a byte stream that becomes its fds 0 (host frames in)
//! and 1 (agent frames out), so the frame loop is the same under every driver.
//! - virtio-serial: the port the driver named (QEMU `virtserialport,name=hearth.agent`),
//!   found through `/sys/class/virtio-ports/*/name`. One host, one session.
//! - vsock: the agent listens on a port and serves one host connection at a time
//!   (Firecracker's host side connects through its Unix socket with `CONNECT <port>`). A
//!   session that ran nothing is followed by the next connection: a snapshot restore resets
//!   every vsock connection, and the restored VM must still be reachable.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use super::params::{Params, Transport};

/// How long the host's port may take to show up (its name arrives from the host).
const PORT_WAIT: Duration = Duration::from_secs(10);

/// The agent's link to the host.
pub struct Link {
    kind: Transport,
    /// The open serial port, or the listening vsock socket.
    fd: OwnedFd,
}

impl Link {
    pub fn open(p: &Params) -> Result<Link, String> {
        let fd = match p.transport {
            Transport::Serial => open_port(&p.port_name)?,
            Transport::Vsock(port) => listen_vsock(port)?,
        };
        Ok(Link { kind: p.transport, fd })
    }

    /// Makes fds 0 and 1 the host's stream (for vsock: waits for the host to connect).
    pub fn connect(&mut self) -> Result<(), String> {
        let stream = match self.kind {
            Transport::Serial => self.fd.as_raw_fd(),
            Transport::Vsock(_) => accept(self.fd.as_raw_fd())?,
        };
        for target in [0, 1] {
            // SAFETY: dup2 onto the standard fds; both fds are valid.
            if unsafe { libc::dup2(stream, target) } < 0 {
                return Err(format!("dup2: {}", std::io::Error::last_os_error()));
            }
        }
        if stream != self.fd.as_raw_fd() {
            // SAFETY: the accepted connection was ours alone; its copies on 0 and 1 stay.
            unsafe { libc::close(stream) };
        }
        Ok(())
    }

    /// Whether a new host connection can follow a session.
    pub fn reconnects(&self) -> bool {
        matches!(self.kind, Transport::Vsock(_))
    }
}

fn open_port(name: &str) -> Result<OwnedFd, String> {
    let start = Instant::now();
    loop {
        if let Ok(dir) = std::fs::read_dir("/sys/class/virtio-ports") {
            for entry in dir.flatten() {
                let found = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                if found.trim() == name {
                    let dev = Path::new("/dev").join(entry.file_name());
                    super::mounts::wait_for(&dev)?;
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&dev)
                        .map_err(|e| format!("{}: {e}", dev.display()))?;
                    return Ok(file.into());
                }
            }
        }
        if start.elapsed() > PORT_WAIT {
            let list = |dir: &str| {
                std::fs::read_dir(dir)
                    .map(|d| {
                        d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
                    })
                    .unwrap_or_else(|e| e.to_string())
            };
            return Err(format!(
                "no virtio-serial port named {name:?} within {PORT_WAIT:?} (ports: {}; virtio devices: {})",
                list("/sys/class/virtio-ports"),
                list("/sys/bus/virtio/devices")
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn listen_vsock(port: u32) -> Result<OwnedFd, String> {
    // SAFETY: plain socket creation; the fd is owned right after.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_error("vsock socket"));
    }
    // SAFETY: fd is a fresh socket that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_vm is valid; the fields are set below.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = libc::VMADDR_CID_ANY;
    let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_vm of `len` bytes.
    if unsafe { libc::bind(fd, &addr as *const libc::sockaddr_vm as *const libc::sockaddr, len) } != 0 {
        return Err(last_error(&format!("vsock bind to port {port}")));
    }
    // SAFETY: listen on our bound socket.
    if unsafe { libc::listen(fd, 1) } != 0 {
        return Err(last_error("vsock listen"));
    }
    Ok(owned)
}

fn accept(listener: RawFd) -> Result<RawFd, String> {
    loop {
        // SAFETY: accept4 with null address pointers (the peer's address is not wanted).
        let fd = unsafe { libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
        if fd >= 0 {
            return Ok(fd);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) && err.raw_os_error() != Some(libc::ECONNABORTED) {
            return Err(format!("vsock accept: {err}"));
        }
    }
}
