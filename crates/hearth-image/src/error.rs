//! Why an image could not be built or read.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{command} failed ({status}): {output}")]
    Command { command: String, status: String, output: String },
    #[error("{tool} is needed to build images and was not found (scripts/setup installs it)")]
    Tool { tool: &'static str },
    #[error("kernel {path}: {why}")]
    Kernel { path: PathBuf, why: String },
    #[error("no image at {path}: {why} (build one with `hearth image build`)")]
    Missing { path: PathBuf, why: String },
    #[error("bad manifest {path}: {why}")]
    Manifest { path: PathBuf, why: String },
    #[error("languages: {0}")]
    Languages(String),
    #[error("image builds need root (mmdebstrap, chroot and file ownership)")]
    NotRoot,
}

/// `Io` with what was being done.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}
