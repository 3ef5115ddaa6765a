//! Running the Debian tools an image is built with (apt-get, dpkg-deb, mmdebstrap,
//! mkfs.ext4, chroot, the decompressors), with their output kept for error messages.

use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{io, ImageError};

/// Runs `cmd`; its stdout on success, a typed error with its output otherwise.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>, ImageError> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(io(format!("starting {shown}")))?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        let output: String = output.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(ImageError::Command { command: shown, status: out.status.to_string(), output });
    }
    Ok(out.stdout)
}

/// Runs `cmd` with its stderr lines passed to `progress` as they come (long steps).
pub fn run_streaming(cmd: &mut Command, progress: &mut dyn FnMut(&str)) -> Result<(), ImageError> {
    use std::io::BufRead;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {shown}")))?;
    let mut tail = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            progress(&line);
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().map_err(io(format!("waiting for {shown}")))?;
    if !status.success() {
        return Err(ImageError::Command { command: shown, status: status.to_string(), output: tail.join("\n") });
    }
    Ok(())
}

/// Fails with a clear message when `tool` is not installed.
pub fn need(tool: &'static str) -> Result<(), ImageError> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let found = path.split(':').chain(["/usr/sbin", "/sbin"]).any(|d| Path::new(d).join(tool).is_file());
    if found {
        Ok(())
    } else {
        Err(ImageError::Tool { tool })
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The SHA-256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hard-links `src` to `dst` (same file system: the cache), else copies it.
pub fn link_or_copy(src: &Path, dst: &Path) -> Result<(), ImageError> {
    let _ = std::fs::remove_file(dst);
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ()).map_err(io(format!("copying {} to {}", src.display(), dst.display())))
}
