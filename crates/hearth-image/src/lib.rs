//! Guest images for hearth's VM drivers (qemu, firecracker), built from Debian's packages
//! only: the Debian cloud kernel (decompressed to the ELF `vmlinux` both drivers boot), an
//! initramfs holding the agent as `/init` and the kernel modules the guest needs, and a
//! read-only ext4 root file system with the language runtimes (made by `mmdebstrap` and
//! `mkfs.ext4 -d`: no loop mounts). Every part is cached on its inputs; `manifest.json`
//! says what is in an image (`hearth image info`).
//!
//! Layout:
//! - [`build`]: `BuildConfig` and `build()`, the steps with progress, the initramfs.
//! - [`kernel`]: fetching the kernel package, `vmlinux` from the bzImage, module selection.
//! - [`rootfs`]: the root file system, its packages and recorded runtimes.
//! - [`image`]: a built image on disk: `Manifest`, `Image::open`, `info`, default paths.
//! - [`cpio`]: the `newc` archive writer for the initramfs.
//! - [`tools`]: running the Debian tools, hashes.
//! - [`error`]: why a build or an open failed (`ImageError`).

#![deny(unsafe_code)]

pub mod build;
pub mod cpio;
pub mod error;
pub mod image;
pub mod kernel;
pub mod rootfs;
pub mod tools;

pub use build::{build, BuildConfig, DEFAULT_IMAGE_LANGUAGES};
pub use error::ImageError;
pub use image::{default_cache, default_image, Image, Manifest};
