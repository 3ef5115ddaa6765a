//! A built image: a directory holding `vmlinux`, `initrd.cpio` (the agent as `/init` and the
//! guest's modules), `rootfs.ext4` and `manifest.json`, which says what is in it.

use std::path::{Path, PathBuf};

use hearth_sandbox::languages::DEFAULT_LANGUAGES;
use hearth_sandbox::Languages;
use serde::{Deserialize, Serialize};

use crate::error::{io, ImageError};
use crate::kernel::Kernel;
use crate::rootfs::RecordedRuntimes;

/// Format of `manifest.json`.
pub const FORMAT: u32 = 1;

/// A language as found in the image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageLanguage {
    pub id: String,
    pub name: String,
    pub version: String,
}

/// A file of the image and its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What is in an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// Hash of the kernel, root file system and initramfs: the same inputs, the same id.
    pub id: String,
    pub suite: String,
    pub kernel: Kernel,
    /// The languages asked for, and the packages that gave them.
    pub requested_languages: Vec<String>,
    pub requested_packages: Vec<String>,
    /// Every installed package with its version.
    pub packages: Vec<(String, String)>,
    pub languages: Vec<ImageLanguage>,
    pub runtimes: RecordedRuntimes,
    pub agent_sha256: String,
    pub vmlinux: ImageFile,
    pub initrd: ImageFile,
    pub rootfs: ImageFile,
    pub hearth_version: String,
}

/// An image on disk.
#[derive(Debug, Clone)]
pub struct Image {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Image {
    /// Opens the image in `dir` (a directory or the `current` link), checking its files.
    pub fn open(dir: &Path) -> Result<Image, ImageError> {
        let dir =
            std::fs::canonicalize(dir).map_err(|e| ImageError::Missing { path: dir.into(), why: e.to_string() })?;
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ImageError::Missing { path: path.clone(), why: e.to_string() })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| ImageError::Manifest { path: path.clone(), why: e.to_string() })?;
        if manifest.format != FORMAT {
            return Err(ImageError::Manifest {
                path,
                why: format!("format {} (this hearth reads {FORMAT})", manifest.format),
            });
        }
        let image = Image { dir, manifest };
        for f in [image.vmlinux(), image.initrd(), image.rootfs()] {
            if !f.is_file() {
                return Err(ImageError::Missing { path: f, why: "file missing".into() });
            }
        }
        Ok(image)
    }

    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join(&self.manifest.vmlinux.name)
    }

    pub fn initrd(&self) -> PathBuf {
        self.dir.join(&self.manifest.initrd.name)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(&self.manifest.rootfs.name)
    }

    /// The languages the image offers, resolved as its runtimes were found when it was built.
    pub fn languages(&self) -> Result<Languages, ImageError> {
        Languages::from_toml_with(DEFAULT_LANGUAGES, &self.manifest.runtimes)
            .map_err(|e| ImageError::Languages(e.to_string()))
    }

    /// The paths the VM drivers boot.
    pub fn vm_image(&self) -> hearth_sandbox::VmImage {
        hearth_sandbox::VmImage { kernel: self.vmlinux(), initrd: self.initrd(), rootfs: self.rootfs() }
    }

    /// `hearth image info`: what is in the image, for people.
    pub fn info(&self) -> String {
        let m = &self.manifest;
        let mut out = String::new();
        let mb = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        out.push_str(&format!("image      {}\n", self.dir.display()));
        out.push_str(&format!("id         {}  (Debian {}, built by hearth {})\n", m.id, m.suite, m.hearth_version));
        out.push_str(&format!(
            "kernel     {} {} (release {}), vmlinux {}\n",
            m.kernel.package,
            m.kernel.version,
            m.kernel.release,
            mb(m.vmlinux.bytes)
        ));
        out.push_str(&format!("modules    {}\n", m.kernel.modules.join(" ")));
        out.push_str(&format!(
            "initrd     {} (the agent as /init, sha256 {}...)\n",
            mb(m.initrd.bytes),
            &m.agent_sha256[..12]
        ));
        out.push_str(&format!("rootfs     {} ext4, read-only, {} packages\n", mb(m.rootfs.bytes), m.packages.len()));
        out.push_str(&format!(
            "asked for  languages {}; packages {}\n",
            m.requested_languages.join(" "),
            m.requested_packages.join(" ")
        ));
        out.push_str("languages\n");
        for l in &m.languages {
            out.push_str(&format!("  {:<12} {:<28} {}\n", l.id, l.name, l.version));
        }
        out
    }
}

/// Where images and their parts are cached: `$HEARTH_IMAGE_CACHE`, else
/// `/var/cache/hearth` (outside any one checkout, so every clone on the host shares it).
pub fn default_cache() -> PathBuf {
    std::env::var_os("HEARTH_IMAGE_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache/hearth"))
}

/// The image to use when none is named: `$HEARTH_IMAGE`, else the last one built.
pub fn default_image() -> PathBuf {
    std::env::var_os("HEARTH_IMAGE").map(PathBuf::from).unwrap_or_else(|| default_cache().join("images/current"))
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ImageError> {
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("serializes"))
        .map_err(io(format!("writing {}", path.display())))
}
