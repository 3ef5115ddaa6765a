//! `hearth image build`: kernel, root file system and initramfs, each cached on its own
//! inputs (kernel package version; suite, sources and packages; agent and modules), then put
//! together in `images/<id>/` under the cache, and `images/current` pointed at it. A build
//! whose parts are all cached takes about a second.

use std::path::{Path, PathBuf};

use hearth_sandbox::languages::DEFAULT_LANGUAGES;
use hearth_sandbox::Languages;

use crate::cpio::Cpio;
use crate::error::{io, ImageError};
use crate::image::{write_json, Image, ImageFile, ImageLanguage, Manifest, FORMAT};
use crate::kernel::{self, Kernel};
use crate::rootfs::{self, RootfsSpec};
use crate::tools;

/// The languages of an image when none are asked for.
pub const DEFAULT_IMAGE_LANGUAGES: &[&str] = &["python", "javascript", "bash", "c"];

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    pub cache: PathBuf,
    /// Language ids (of `languages.toml`); empty means every language it names.
    pub languages: Vec<String>,
    /// Debian packages to add besides the languages'.
    pub extra_packages: Vec<String>,
    /// The agent binary (static) that becomes `/init`.
    pub agent: PathBuf,
    /// Debian suite; the host's when `None`.
    pub suite: Option<String>,
    /// deb822 sources for mmdebstrap; the host's `debian.sources` when `None` and present.
    pub sources: Option<PathBuf>,
    /// The kernel meta package.
    pub kernel_package: String,
}

impl BuildConfig {
    pub fn new(agent: PathBuf) -> BuildConfig {
        BuildConfig {
            cache: crate::image::default_cache(),
            languages: DEFAULT_IMAGE_LANGUAGES.iter().map(|s| s.to_string()).collect(),
            extra_packages: Vec::new(),
            agent,
            suite: None,
            sources: None,
            kernel_package: "linux-image-cloud-amd64".into(),
        }
    }
}

fn host_suite() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bookworm".into())
}

/// The packages of the asked-for languages (all of them for an empty list).
pub fn packages_for(languages: &[String]) -> Result<(Vec<String>, Vec<String>), ImageError> {
    let table = Languages::packages(DEFAULT_LANGUAGES).map_err(|e| ImageError::Languages(e.to_string()))?;
    let ids: Vec<String> =
        if languages.is_empty() { table.iter().map(|(id, _)| id.clone()).collect() } else { languages.to_vec() };
    let mut packages = Vec::new();
    for id in &ids {
        let (_, p) = table
            .iter()
            .find(|(t, _)| t == id)
            .ok_or_else(|| ImageError::Languages(format!("unknown language {id:?} (see languages.toml)")))?;
        packages.extend(p.iter().cloned());
    }
    packages.sort();
    packages.dedup();
    Ok((ids, packages))
}

/// Builds (or finds in the cache) the image `config` describes.
pub fn build(config: &BuildConfig, progress: &mut dyn FnMut(&str)) -> Result<Image, ImageError> {
    if !nix_is_root() {
        return Err(ImageError::NotRoot);
    }
    kernel::need_tools()?;
    let agent = std::fs::read(&config.agent).map_err(io(format!("reading the agent {}", config.agent.display())))?;
    let (languages, mut packages) = packages_for(&config.languages)?;
    packages.extend(config.extra_packages.iter().cloned());
    packages.sort();
    packages.dedup();
    std::fs::create_dir_all(&config.cache).map_err(io(format!("creating {}", config.cache.display())))?;

    progress("[1/3] kernel");
    let kernel = kernel::ensure(&config.cache, &config.kernel_package, progress)?;
    progress("[2/3] root file system");
    let default_sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    let sources = config.sources.clone().or_else(|| default_sources.is_file().then(|| default_sources.to_path_buf()));
    let spec =
        RootfsSpec { suite: config.suite.clone().unwrap_or_else(host_suite), sources, packages: packages.clone() };
    let rootfs = rootfs::ensure(&config.cache, &spec, progress)?;
    progress("[3/3] initramfs and manifest");
    let initrd = initramfs(&agent, &kernel)?;
    let initrd_sha = tools::sha256_hex(&initrd);
    let vmlinux = kernel.vmlinux();
    let vmlinux_file = ImageFile { name: "vmlinux".into(), bytes: file_len(&vmlinux)?, sha256: cached_sha(&vmlinux)? };
    let id_text = format!("{}\n{}\n{}", vmlinux_file.sha256, rootfs.sha256, initrd_sha);
    let id = tools::sha256_hex(id_text.as_bytes())[..16].to_string();
    let images = config.cache.join("images");
    let dir = images.join(&id);
    if Image::open(&dir).is_err() {
        let tmp = images.join(format!(".tmp-{id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        tools::link_or_copy(&vmlinux, &tmp.join("vmlinux"))?;
        tools::link_or_copy(&rootfs.file, &tmp.join("rootfs.ext4"))?;
        std::fs::write(tmp.join("initrd.cpio"), &initrd).map_err(io("writing initrd.cpio"))?;
        let langs = rootfs_languages(&rootfs.runtimes)?;
        let manifest = Manifest {
            format: FORMAT,
            id: id.clone(),
            suite: spec.suite.clone(),
            kernel: kernel.clone(),
            requested_languages: languages,
            requested_packages: packages,
            packages: rootfs.packages.clone(),
            languages: langs,
            runtimes: rootfs.runtimes.clone(),
            agent_sha256: tools::sha256_hex(&agent),
            vmlinux: vmlinux_file,
            initrd: ImageFile { name: "initrd.cpio".into(), bytes: initrd.len() as u64, sha256: initrd_sha },
            rootfs: ImageFile { name: "rootfs.ext4".into(), bytes: rootfs.size_bytes, sha256: rootfs.sha256.clone() },
            hearth_version: env!("CARGO_PKG_VERSION").into(),
        };
        write_json(&tmp.join("manifest.json"), &manifest)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(io(format!("moving the image to {}", dir.display())))?;
    }
    let current = images.join("current");
    let link_tmp = images.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(&id, &link_tmp).map_err(io("linking images/current"))?;
    std::fs::rename(&link_tmp, &current).map_err(io("linking images/current"))?;
    let image = Image::open(&dir)?;
    progress(&format!("image {id} ready in {}", image.dir.display()));
    Ok(image)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

fn file_len(p: &Path) -> Result<u64, ImageError> {
    std::fs::metadata(p).map(|m| m.len()).map_err(io(format!("reading {}", p.display())))
}

/// The SHA-256 of a large cached file, itself cached beside it (`<file>.sha256`).
fn cached_sha(p: &Path) -> Result<String, ImageError> {
    let side = p.with_extension("sha256");
    if let Ok(s) = std::fs::read_to_string(&side) {
        if s.trim().len() == 64 {
            return Ok(s.trim().to_string());
        }
    }
    let s = tools::sha256_file(p)?;
    let _ = std::fs::write(&side, &s);
    Ok(s)
}

fn rootfs_languages(rt: &rootfs::RecordedRuntimes) -> Result<Vec<ImageLanguage>, ImageError> {
    let langs = Languages::from_toml_with(DEFAULT_LANGUAGES, rt).map_err(|e| ImageError::Languages(e.to_string()))?;
    Ok(langs
        .list()
        .iter()
        .map(|l| ImageLanguage { id: l.id.clone(), name: l.name.clone(), version: l.version.clone() })
        .collect())
}

/// The initramfs: the agent as `/init`, the mount points it uses before the root switch,
/// `/dev/console` (for the kernel to open as init's stdio), and the modules in load order.
pub fn initramfs(agent: &[u8], kernel: &Kernel) -> Result<Vec<u8>, ImageError> {
    let mut c = Cpio::default();
    for d in ["dev", "proc", "sys", "newroot", "lib", "lib/modules", "lib/modules/hearth"] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.file("init", 0o755, agent);
    for m in &kernel.modules {
        let path = kernel.module_dir().join(m);
        let data = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        c.file(&format!("lib/modules/hearth/{m}"), 0o644, &data);
    }
    c.file("lib/modules/hearth/order", 0o644, format!("{}\n", kernel.modules.join("\n")).as_bytes());
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_name_their_packages() {
        let (ids, packages) = packages_for(&["python".into(), "c".into()]).unwrap();
        assert_eq!(ids, ["python", "c"]);
        assert_eq!(packages, ["gcc", "libc6-dev", "python3"]);
        assert!(packages_for(&["klingon".into()]).is_err());
        let (all, packages) = packages_for(&[]).unwrap();
        assert!(all.len() >= 20, "every language of languages.toml");
        assert!(packages.contains(&"nodejs".to_string()));
    }

    #[test]
    fn every_language_names_a_package() {
        for (id, packages) in Languages::packages(DEFAULT_LANGUAGES).unwrap() {
            assert!(!packages.is_empty(), "{id} has no packages in languages.toml");
        }
    }
}
