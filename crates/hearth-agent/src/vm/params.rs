//! The guest's settings, given by the driver on the kernel command line as `hearth.KEY=VALUE`.

/// How the host talks to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A virtio-serial port named [`Params::port_name`] (QEMU).
    Serial,
    /// A vsock port the agent listens on (Firecracker, QEMU with vhost-vsock).
    Vsock(u32),
}

/// What the driver asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub transport: Transport,
    pub port_name: String,
    /// The block device holding the image's root file system.
    pub root: String,
    pub work_mb: u64,
    pub tmp_mb: u64,
    /// `virtio_mmio.device=` entries (devices the kernel cannot discover itself), handed to
    /// the virtio_mmio module when it is loaded.
    pub mmio_devices: Vec<String>,
}

impl Params {
    pub fn from_cmdline(cmdline: &str) -> Params {
        let mut p = Params {
            transport: Transport::Serial,
            port_name: "hearth.agent".into(),
            root: "/dev/vda".into(),
            work_mb: 64,
            tmp_mb: 64,
            mmio_devices: Vec::new(),
        };
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else { continue };
            match key {
                "hearth.transport" if value == "serial" => p.transport = Transport::Serial,
                "hearth.vsock_port" => {
                    if let Ok(port) = value.parse() {
                        p.transport = Transport::Vsock(port);
                    }
                }
                "hearth.port_name" => p.port_name = value.into(),
                "hearth.root" => p.root = value.into(),
                "hearth.work_mb" => p.work_mb = value.parse().unwrap_or(p.work_mb),
                "hearth.tmp_mb" => p.tmp_mb = value.parse().unwrap_or(p.tmp_mb),
                "virtio_mmio.device" => p.mmio_devices.push(value.into()),
                _ => {}
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_command_line() {
        let p = Params::from_cmdline(
            "console=ttyS0 hearth.vsock_port=52 hearth.work_mb=32 virtio_mmio.device=4K@0xd0000000:5 \
             virtio_mmio.device=4K@0xd0001000:6 hearth.root=/dev/vdb",
        );
        assert_eq!(p.transport, Transport::Vsock(52));
        assert_eq!(p.work_mb, 32);
        assert_eq!(p.tmp_mb, 64);
        assert_eq!(p.root, "/dev/vdb");
        assert_eq!(p.mmio_devices, ["4K@0xd0000000:5", "4K@0xd0001000:6"]);
        assert_eq!(Params::from_cmdline("quiet").transport, Transport::Serial);
    }
}
