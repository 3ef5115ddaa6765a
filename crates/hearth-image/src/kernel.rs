//! The guest kernel: Debian's cloud kernel package (made for VMs: small, virtio), fetched
//! with `apt-get download`, unpacked with `dpkg-deb`, its compressed payload decompressed to
//! the ELF `vmlinux` that QEMU's microvm boots directly (PVH entry, no real-mode set-up)
//! and Firecracker needs, plus the few modules the guest loads (virtio-mmio, disk, serial
//! port, vsock) with what they depend on, in load order. Cached by package and version.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{io, ImageError};
use crate::tools::{self, run};

/// Modules the guest needs; their dependencies come along.
pub const WANTED_MODULES: &[&str] = &["virtio_mmio", "virtio_blk", "virtio_console", "vmw_vsock_virtio_transport"];

/// A kernel ready in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kernel {
    /// The versioned package, e.g. `linux-image-6.1.0-57-cloud-amd64`.
    pub package: String,
    pub version: String,
    /// `uname -r` of the guest.
    pub release: String,
    /// Module files in load order (dependencies first).
    pub modules: Vec<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Kernel {
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }

    pub fn module_dir(&self) -> PathBuf {
        self.dir.join("modules")
    }
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8_lossy(&out).into_owned()
}

/// The package `meta` (e.g. `linux-image-cloud-amd64`) depends on, and its version.
pub fn resolve(meta: &str) -> Result<(String, String), ImageError> {
    let deps = text(run(Command::new("apt-cache").args(["depends", "--no-recommends", "--no-suggests", meta]))?);
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .unwrap_or_else(|| meta.to_string());
    let show = text(run(Command::new("apt-cache").args(["show", "--no-all-versions", &package]))?);
    let version = show.lines().find_map(|l| l.strip_prefix("Version: ")).map(str::trim).map(String::from);
    let version = version.ok_or_else(|| ImageError::Kernel {
        path: PathBuf::from(&package),
        why: "apt knows no version of it (run `apt-get update`)".into(),
    })?;
    Ok((package, version))
}

/// The kernel of `meta`'s current version, from the cache or fetched now.
pub fn ensure(cache: &Path, meta: &str, progress: &mut dyn FnMut(&str)) -> Result<Kernel, ImageError> {
    let (package, version) = resolve(meta)?;
    let dir = cache.join("kernel").join(format!("{package}_{version}"));
    let done = dir.join("kernel.json");
    if let Ok(text) = std::fs::read_to_string(&done) {
        if let Ok(mut k) = serde_json::from_str::<Kernel>(&text) {
            progress(&format!("kernel {package} {version}: cached"));
            k.dir = dir;
            return Ok(k);
        }
    }
    progress(&format!("kernel {package} {version}: downloading"));
    let tmp = cache.join("kernel").join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let result = fetch(&tmp, &dir, &package, &version, progress);
    let _ = std::fs::remove_dir_all(&tmp);
    let mut k = result?;
    k.dir = dir;
    std::fs::write(&done, serde_json::to_vec_pretty(&k).expect("serializes")).map_err(io("writing kernel.json"))?;
    Ok(k)
}

fn fetch(
    tmp: &Path,
    dir: &Path,
    package: &str,
    version: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Kernel, ImageError> {
    run(Command::new("apt-get")
        .args(["download", "-q", "-o", "APT::Sandbox::User=root", &format!("{package}={version}")])
        .current_dir(tmp))?;
    let deb = std::fs::read_dir(tmp)
        .map_err(io("listing the download"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| ImageError::Kernel { path: tmp.into(), why: "apt-get download gave no .deb".into() })?;
    let root = tmp.join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let boot = root.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(io(format!("listing {}", boot.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .ok_or_else(|| ImageError::Kernel { path: boot.clone(), why: "no vmlinuz in the package".into() })?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    progress(&format!("kernel {release}: decompressing vmlinuz to the ELF vmlinux"));
    let bz = std::fs::read(&vmlinuz).map_err(io(format!("reading {}", vmlinuz.display())))?;
    let elf = vmlinux_from_bzimage(&bz).map_err(|why| ImageError::Kernel { path: vmlinuz.clone(), why })?;

    let _ = std::fs::remove_dir_all(dir);
    let mods_out = dir.join("modules");
    std::fs::create_dir_all(&mods_out).map_err(io(format!("creating {}", mods_out.display())))?;
    std::fs::write(dir.join("vmlinux"), &elf).map_err(io("writing vmlinux"))?;
    let _ = std::fs::copy(boot.join(format!("config-{release}")), dir.join("config"));

    let mod_root = root.join("lib/modules").join(&release);
    let modules =
        select_modules(&mod_root, WANTED_MODULES).map_err(|why| ImageError::Kernel { path: mod_root, why })?;
    let mut names = Vec::new();
    for (name, path) in &modules {
        let data = read_module(path)?;
        let file = format!("{name}.ko");
        std::fs::write(mods_out.join(&file), data).map_err(io(format!("writing module {file}")))?;
        names.push(file);
    }
    progress(&format!("kernel {release}: modules {}", names.join(" ")));
    Ok(Kernel { package: package.into(), version: version.into(), release, modules: names, dir: dir.into() })
}

/// The ELF kernel inside a bzImage: the payload the boot header points at, decompressed
/// with the tool its magic names.
pub fn vmlinux_from_bzimage(bz: &[u8]) -> Result<Vec<u8>, String> {
    if bz.starts_with(b"\x7fELF") {
        return Ok(bz.to_vec());
    }
    if bz.len() < 0x250 || &bz[0x202..0x206] != b"HdrS" {
        return Err("not a bzImage (no HdrS boot header)".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes([bz[o], bz[o + 1], bz[o + 2], bz[o + 3]]) as usize;
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248);
    let end = start + u32_at(0x24c);
    let payload = bz.get(start..end).ok_or("payload outside the file")?;
    let tool: &[&str] = match payload {
        [0x1f, 0x8b, ..] => &["gzip", "-dc"],
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => &["xz", "-dc"],
        [0x02, 0x21, 0x4c, 0x18, ..] => &["lz4", "-dc"],
        [0x28, 0xb5, 0x2f, 0xfd, ..] => &["zstd", "-dcq"],
        [b'B', b'Z', b'h', ..] => &["bzip2", "-dc"],
        [0x5d, 0, 0, ..] => &["xz", "--format=lzma", "-dc"],
        _ => return Err(format!("unknown payload compression (magic {:02x?})", &payload[..4.min(payload.len())])),
    };
    let elf = pipe_through(tool, payload)?;
    if !elf.starts_with(b"\x7fELF") {
        return Err(format!("{} did not give an ELF file", tool[0]));
    }
    Ok(elf)
}

fn pipe_through(tool: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e} (install it)", tool[0]))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", tool[0]))?;
    let _ = writer.join();
    // lz4's legacy frames end without an end mark: it may complain after the last block.
    if out.stdout.is_empty() {
        return Err(format!("{} gave nothing ({})", tool[0], out.status));
    }
    Ok(out.stdout)
}

fn read_module(path: &Path) -> Result<Vec<u8>, ImageError> {
    let data = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    let name = path.to_string_lossy();
    let tool: Option<&[&str]> = if name.ends_with(".xz") {
        Some(&["xz", "-dc"])
    } else if name.ends_with(".zst") {
        Some(&["zstd", "-dcq"])
    } else if name.ends_with(".gz") {
        Some(&["gzip", "-dc"])
    } else {
        None
    };
    match tool {
        Some(t) => pipe_through(t, &data).map_err(|why| ImageError::Kernel { path: path.into(), why }),
        None => Ok(data),
    }
}

/// `wanted` and their dependencies (from each module's `depends=`), dependencies first.
/// Modules built into the kernel (`modules.builtin`) are left out.
pub fn select_modules(root: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>, String> {
    let mut index = BTreeMap::new();
    let mut stack = vec![root.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = module_name(&path) {
                index.insert(name, path);
            }
        }
    }
    let builtin: Vec<String> = std::fs::read_to_string(root.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name(Path::new(l)))
        .collect();
    let mut order = Vec::new();
    for w in wanted {
        visit(w, &index, &builtin, &mut order, 0)?;
    }
    Ok(order.into_iter().map(|n| (n.clone(), index[&n].clone())).collect())
}

fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_string_lossy().to_string();
    let stem = file.split(".ko").next().filter(|_| file.contains(".ko"))?;
    Some(stem.replace('-', "_"))
}

fn visit(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    builtin: &[String],
    order: &mut Vec<String>,
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Err(format!("module dependencies of {name} loop"));
    }
    if order.iter().any(|n| n == name) || builtin.iter().any(|b| b == name) {
        return Ok(());
    }
    let path = index.get(name).ok_or_else(|| format!("module {name} is neither built in nor in the package"))?;
    let data = read_module(path).map_err(|e| e.to_string())?;
    for dep in depends(&data) {
        visit(&dep, index, builtin, order, depth + 1)?;
    }
    order.push(name.to_string());
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` section.
fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).split(',').filter(|s| !s.is_empty()).map(|s| s.replace('-', "_")).collect()
}

/// The kernel's tools, checked before a build starts.
pub fn need_tools() -> Result<(), ImageError> {
    for t in ["apt-get", "apt-cache", "dpkg-deb"] {
        tools::need(t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_are_read() {
        let ko = b"\x7fELF....\0license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0";
        assert_eq!(depends(ko), ["virtio", "virtio_ring"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"nothing").is_empty());
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel/drivers");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("virtio.ko"), b"\0depends=\0").unwrap();
        std::fs::write(k.join("virtio_ring.ko"), b"\0depends=virtio\0").unwrap();
        std::fs::write(k.join("virtio_blk.ko"), b"\0depends=virtio,virtio_ring,blk\0").unwrap();
        std::fs::write(dir.path().join("modules.builtin"), "kernel/block/blk.ko\n").unwrap();
        let order: Vec<String> =
            select_modules(dir.path(), &["virtio_blk"]).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["virtio", "virtio_ring", "virtio_blk"]);
        assert!(select_modules(dir.path(), &["nope"]).is_err());
    }

    #[test]
    fn a_bzimage_without_header_is_refused() {
        assert!(vmlinux_from_bzimage(&[0u8; 4096]).is_err());
        assert_eq!(vmlinux_from_bzimage(b"\x7fELFrest").unwrap(), b"\x7fELFrest");
    }
}
