//! The sandbox's root file system, built inside its own mount namespace: a small tmpfs
//! holding read-only binds of only the host paths the runtimes need (never /root, /home,
//! the host's /etc, sockets or service state), a generated /etc, a minimal /dev, a fresh
//! /proc, and size-capped tmpfs for /work, /tmp and /dev/shm. Then `pivot_root` into it,
//! detach the host's tree and make the root itself read-only.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use hearth_proto::jail::{JailSpec, RUNNER_ID, WORK_DIR};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Where the new root is assembled (inside our private mount namespace only).
const NEW_ROOT: &str = "/tmp";

type Result<T> = std::result::Result<T, String>;

fn ctx<E: std::fmt::Display>(what: impl Fn() -> String) -> impl Fn(E) -> String {
    move |e| format!("{}: {e}", what())
}

fn mount_fs(fstype: &str, target: &Path, flags: MsFlags, data: &str) -> Result<()> {
    mount(Some(fstype), target, Some(fstype), flags, Some(data))
        .map_err(ctx(|| format!("mounting {fstype} on {}", target.display())))
}

/// Bind `src` onto `dst` and make that bind read-only, keeping the flags the kernel locks
/// for a mount seen from a user namespace (atime, nosuid, nodev, noexec).
fn bind_ro(src: &Path, dst: &Path) -> Result<()> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(ctx(|| format!("binding {}", src.display())))?;
    let have = mount_flags(dst)?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
    // statvfs(3) ST_* bits (not all named by every libc): nodev, noexec, noatime,
    // nodiratime, relatime.
    for (st_bit, ms_flag) in [
        (4, MsFlags::MS_NODEV),
        (8, MsFlags::MS_NOEXEC),
        (1024, MsFlags::MS_NOATIME),
        (2048, MsFlags::MS_NODIRATIME),
        (4096, MsFlags::MS_RELATIME),
    ] {
        if have & st_bit != 0 {
            flags |= ms_flag;
        }
    }
    mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)
        .map_err(ctx(|| format!("making {} read-only", dst.display())))
}

/// The `f_flag` word of statvfs(2) for `path`.
fn mount_flags(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: an all-zero statvfs is a valid value for the kernel to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    Ok(st.f_flag as u64)
}

fn inside(root: &Path, host_path: &str) -> PathBuf {
    root.join(host_path.trim_start_matches('/'))
}

fn mkdirs(p: &Path) -> Result<()> {
    fs::create_dir_all(p).map_err(ctx(|| format!("mkdir {}", p.display())))
}

fn touch(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        mkdirs(parent)?;
    }
    fs::write(p, b"").map_err(ctx(|| format!("creating {}", p.display())))
}

/// Recreates one host path read-only inside `root` (a symlink as the same symlink).
fn expose(root: &Path, host_path: &str) -> Result<()> {
    let src = Path::new(host_path);
    let Ok(meta) = fs::symlink_metadata(src) else {
        return Ok(());
    };
    let dst = inside(root, host_path);
    if meta.file_type().is_symlink() {
        if let Some(parent) = dst.parent() {
            mkdirs(parent)?;
        }
        let target = fs::read_link(src).map_err(ctx(|| format!("readlink {host_path}")))?;
        return symlink(&target, &dst).map_err(ctx(|| format!("symlink {}", dst.display())));
    }
    if meta.is_dir() {
        mkdirs(&dst)?;
    } else {
        touch(&dst)?;
    }
    bind_ro(src, &dst)
}

fn build_dev(root: &Path, spec: &JailSpec) -> Result<()> {
    let dev = root.join("dev");
    mkdirs(&dev)?;
    mount_fs("tmpfs", &dev, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "mode=0755,size=64k")?;
    for node in &spec.devices {
        let name = Path::new(node).file_name().ok_or_else(|| format!("bad device {node}"))?;
        let dst = dev.join(name);
        touch(&dst)?;
        mount(Some(node.as_str()), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(ctx(|| format!("binding {node}")))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(ctx(|| format!("symlink /dev/{name}")))?;
    }
    let shm = dev.join("shm");
    mkdirs(&shm)?;
    let data = format!("mode=1777,size={}m", spec.tmp_mb);
    mount_fs("tmpfs", &shm, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &data)
}

fn write_etc(root: &Path, spec: &JailSpec) -> Result<()> {
    let etc = root.join("etc");
    mkdirs(&etc)?;
    for (name, content) in &spec.etc_files {
        if name.contains('/') || name.starts_with('.') {
            return Err(format!("bad /etc file name {name:?}"));
        }
        fs::write(etc.join(name), content).map_err(ctx(|| format!("writing /etc/{name}")))?;
    }
    Ok(())
}

/// Builds the root and pivots into it. Runs as root of the sandbox's user namespace.
pub fn build_root(spec: &JailSpec) -> Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(ctx(|| "making / private".to_string()))?;
    let root = Path::new(NEW_ROOT);
    mount_fs("tmpfs", root, MsFlags::MS_NOSUID, "mode=0755,size=4m")?;
    for p in &spec.ro_paths {
        expose(root, p)?;
    }
    write_etc(root, spec)?;
    build_dev(root, spec)?;
    let proc_dir = root.join("proc");
    mkdirs(&proc_dir)?;
    mount_fs("proc", &proc_dir, MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, "")?;
    let work = inside(root, WORK_DIR);
    mkdirs(&work)?;
    let data = format!("mode=0755,size={}m,uid={RUNNER_ID},gid={RUNNER_ID}", spec.work_mb);
    mount_fs("tmpfs", &work, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &data)?;
    let tmp = root.join("tmp");
    mkdirs(&tmp)?;
    let data = format!("mode=1777,size={}m", spec.tmp_mb);
    mount_fs("tmpfs", &tmp, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &data)?;

    let old = root.join(".old");
    mkdirs(&old)?;
    nix::unistd::pivot_root(root, &old).map_err(ctx(|| "pivot_root".to_string()))?;
    nix::unistd::chdir("/").map_err(ctx(|| "chdir /".to_string()))?;
    umount2("/.old", MntFlags::MNT_DETACH).map_err(ctx(|| "detaching the host's tree".to_string()))?;
    fs::remove_dir("/.old").map_err(ctx(|| "removing /.old".to_string()))?;
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
    mount(None::<&str>, "/", None::<&str>, ro, None::<&str>).map_err(ctx(|| "making / read-only".to_string()))
}
