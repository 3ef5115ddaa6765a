//! The guest's file systems. Early: `/proc`, `/sys` and a devtmpfs `/dev` in the initramfs
//! (to find the devices). Then the image's root, read-only, with what a run needs on top:
//! a fresh `/proc`, a read-only `/sys` with the cgroup2 tree, a minimal `/dev` (only the
//! harmless nodes, as in the process driver's jail: the disk and the host port stay out of
//! reach), and size-capped tmpfs `/work` (owned by the runner), `/tmp` and `/dev/shm`.

use std::path::Path;
use std::time::{Duration, Instant};

use hearth_proto::jail::{RUNNER_ID, WORK_DIR};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::params::Params;

/// Where the image's root is mounted before the switch.
const NEW_ROOT: &str = "/newroot";
/// How long devices may take to appear after their drivers were loaded.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, String>;

fn mount_fs(fstype: &str, target: &str, flags: MsFlags, data: &str) -> Result<()> {
    let _ = std::fs::create_dir_all(target);
    mount(Some(fstype), target, Some(fstype), flags, Some(data))
        .map_err(|e| format!("mounting {fstype} on {target}: {e}"))
}

fn secure() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

/// `/proc`, `/sys` and `/dev` of the initramfs.
pub fn early() -> Result<()> {
    mount_fs("proc", "/proc", secure(), "")?;
    mount_fs("sysfs", "/sys", secure(), "")?;
    mount_fs("devtmpfs", "/dev", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "mode=0755")
}

/// Waits until `path` exists (a device node the kernel is still creating).
pub fn wait_for(path: &Path) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > DEVICE_WAIT {
            return Err(format!("{} did not appear within {DEVICE_WAIT:?}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Mounts the image's root with the run's file systems on it and makes it `/`.
pub fn switch_root(p: &Params) -> Result<()> {
    wait_for(Path::new(&p.root))?;
    let _ = std::fs::create_dir_all(NEW_ROOT);
    mount(Some(p.root.as_str()), NEW_ROOT, Some("ext4"), MsFlags::MS_RDONLY | MsFlags::MS_NODEV, Some("noload"))
        .map_err(|e| format!("mounting {} (ext4, read-only) on {NEW_ROOT}: {e}", p.root))?;
    let at = |p: &str| format!("{NEW_ROOT}{p}");
    mount_fs("proc", &at("/proc"), secure(), "")?;
    mount_fs("sysfs", &at("/sys"), secure() | MsFlags::MS_RDONLY, "")?;
    mount_fs("cgroup2", &at("/sys/fs/cgroup"), secure(), "")?;
    build_dev(&at("/dev"), p.tmp_mb)?;
    let work = format!("mode=0755,size={}m,uid={RUNNER_ID},gid={RUNNER_ID}", p.work_mb);
    mount_fs("tmpfs", &at(WORK_DIR), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &work)?;
    mount_fs("tmpfs", &at("/tmp"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &format!("mode=1777,size={}m", p.tmp_mb))?;

    nix::unistd::chdir(NEW_ROOT).map_err(|e| format!("chdir {NEW_ROOT}: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| format!("moving the root: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

fn build_dev(dev: &str, shm_mb: u64) -> Result<()> {
    mount_fs("tmpfs", dev, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "mode=0755,size=64k")?;
    for (name, minor) in [("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)] {
        let path = format!("{dev}/{name}");
        mknod(path.as_str(), SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(1, minor))
            .map_err(|e| format!("mknod {path}: {e}"))?;
        // mknod honours the umask; the nodes must be usable by the runner.
        let _ = nix::sys::stat::fchmodat(
            None,
            path.as_str(),
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        );
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, format!("{dev}/{name}")).map_err(|e| format!("symlink /dev/{name}: {e}"))?;
    }
    mount_fs(
        "tmpfs",
        &format!("{dev}/shm"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        &format!("mode=1777,size={shm_mb}m"),
    )
}
