//! The guest's root file system: Debian's packages for the chosen languages, installed by
//! `mmdebstrap` (variant `essential` plus those packages, no docs or man pages) into a
//! directory, given a runner user and an `/etc` without secrets, its language runtimes and
//! their versions recorded (run in a chroot of the tree), then packed into an ext4 file
//! system by `mkfs.ext4 -d` (no loop mount, no journal: it is mounted read-only). Cached by
//! suite, sources and package list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use hearth_sandbox::languages::{version_from_output, Runtimes, SEARCH_DIRS};
use serde::{Deserialize, Serialize};

use crate::error::{io, ImageError};
use crate::tools::{self, run, run_streaming};

/// chroot(8), by path: version probes run with an empty environment.
const CHROOT: &str = "/usr/sbin/chroot";
/// Bump when what is built changes, so old cached trees are not reused.
const FORMAT: &str = "rootfs-v1";
/// Timestamps given to the file system (reproducible bytes where e2fsprogs honours it).
const EPOCH: &str = "1700000000";

/// What a root file system is built from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RootfsSpec {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// A deb822 sources file (the host's), or `None` for mmdebstrap's default mirror.
    pub sources: Option<PathBuf>,
    pub packages: Vec<String>,
}

/// The runtimes of the built image, as recorded while it was built: which binaries exist
/// in its search dirs and what each version command printed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedRuntimes {
    pub found: BTreeMap<String, String>,
    pub versions: BTreeMap<String, String>,
}

impl Runtimes for RecordedRuntimes {
    fn find(&self, word: &str) -> Option<String> {
        if word.starts_with('/') || word.starts_with("./") {
            return Some(word.to_string());
        }
        self.found.get(word).cloned()
    }

    fn version(&self, argv: &[String]) -> String {
        self.versions.get(&argv.join(" ")).cloned().unwrap_or_else(|| "unknown".into())
    }
}

/// A built root file system in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rootfs {
    pub key: String,
    pub spec: RootfsSpec,
    /// Every installed package and its version.
    pub packages: Vec<(String, String)>,
    pub runtimes: RecordedRuntimes,
    pub size_bytes: u64,
    pub sha256: String,
    #[serde(skip)]
    pub file: PathBuf,
}

impl RootfsSpec {
    /// The cache key: what was asked for (suite, sources, packages), not when.
    pub fn key(&self) -> Result<String, ImageError> {
        let mut packages = self.packages.clone();
        packages.sort();
        packages.dedup();
        let sources = match &self.sources {
            Some(p) => std::fs::read_to_string(p).map_err(io(format!("reading {}", p.display())))?,
            None => String::new(),
        };
        let text = format!("{FORMAT}\n{}\n{sources}\n{}", self.suite, packages.join(","));
        Ok(tools::sha256_hex(text.as_bytes())[..16].to_string())
    }
}

/// The root file system for `spec`, from the cache or built now.
pub fn ensure(cache: &Path, spec: &RootfsSpec, progress: &mut dyn FnMut(&str)) -> Result<Rootfs, ImageError> {
    let key = spec.key()?;
    let dir = cache.join("rootfs").join(&key);
    let meta = dir.join("rootfs.json");
    if let Ok(text) = std::fs::read_to_string(&meta) {
        if let Ok(mut r) = serde_json::from_str::<Rootfs>(&text) {
            r.file = dir.join("rootfs.ext4");
            if r.file.is_file() {
                progress(&format!("root file system {key} ({} packages): cached", r.packages.len()));
                return Ok(r);
            }
        }
    }
    for t in ["mmdebstrap", "mkfs.ext4", "chroot", "unshare", "dpkg-query"] {
        tools::need(t)?;
    }
    let tree = cache.join("rootfs").join(format!(".tree-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(cache.join("rootfs")).map_err(io("creating the rootfs cache"))?;
    let result = build(&tree, &dir, &key, spec, progress);
    let _ = std::fs::remove_dir_all(&tree);
    let r = result?;
    std::fs::write(&meta, serde_json::to_vec_pretty(&r).expect("serializes")).map_err(io("writing rootfs.json"))?;
    Ok(r)
}

fn build(
    tree: &Path,
    dir: &Path,
    key: &str,
    spec: &RootfsSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<Rootfs, ImageError> {
    progress(&format!("root file system {key}: mmdebstrap {} with {}", spec.suite, spec.packages.join(" ")));
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=essential", "--mode=root", "--format=directory"])
        .arg(format!("--include={}", spec.packages.join(",")))
        .args(["--aptopt=Acquire::Languages \"none\"", "--dpkgopt=path-exclude=/usr/share/doc/*"])
        .args(["--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-exclude=/usr/share/man/*"])
        .args(["--dpkgopt=path-exclude=/usr/share/info/*", "--dpkgopt=path-exclude=/usr/share/locale/*"])
        // Some maintainer scripts (openjdk's update-alternatives) link man pages into
        // /usr/share/man/man1 and fail when it does not exist.
        .arg("--setup-hook=mkdir -p \"$1/usr/share/man/man1\"")
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .arg(&spec.suite)
        .arg(tree);
    if let Some(s) = &spec.sources {
        cmd.arg(s);
    }
    run_streaming(&mut cmd, &mut |line| progress(&format!("  {line}")))?;
    tweak(tree)?;
    progress("root file system: recording the language runtimes");
    let runtimes = record_runtimes(tree)?;
    let packages = installed(tree)?;
    let size = tree_bytes(tree);
    // Room for inodes and metadata; the file is sparse, so the slack costs no disk.
    let fs_bytes = (size + size / 4 + (64 << 20)).div_ceil(1 << 20) << 20;
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let file = dir.join("rootfs.ext4");
    let _ = std::fs::remove_file(&file);
    progress(&format!("root file system: mkfs.ext4 -d ({} MiB of files)", size >> 20));
    let uuid = uuid_from(key);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "hearth-root", "-m", "0", "-b", "4096", "-O", "^has_journal", "-U", &uuid])
        .arg("-E")
        .arg(format!("root_owner=0:0,hash_seed={uuid}"))
        .arg("-d")
        .arg(tree)
        .arg(&file)
        .arg(format!("{}k", fs_bytes >> 10))
        .env("E2FSPROGS_FAKE_TIME", EPOCH))?;
    let sha256 = tools::sha256_file(&file)?;
    Ok(Rootfs { key: key.into(), spec: spec.clone(), packages, runtimes, size_bytes: fs_bytes, sha256, file })
}

/// A UUID made from the cache key (the same inputs name the same file system).
fn uuid_from(key: &str) -> String {
    let h = tools::sha256_hex(key.as_bytes());
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// The runner user, an `/etc` without secrets, `/work`, and no package caches.
fn tweak(tree: &Path) -> Result<(), ImageError> {
    let etc = tree.join("etc");
    let append = |file: &str, line: &str, has: &str| -> Result<(), ImageError> {
        let path = etc.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.lines().any(|l| l.contains(has)) {
            std::fs::write(&path, format!("{text}{line}\n")).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    };
    append("passwd", "runner:x:1000:1000:runner:/work:/bin/sh", ":1000:")?;
    append("group", "runner:x:1000:", ":1000:")?;
    let write =
        |file: &str, text: &str| std::fs::write(etc.join(file), text).map_err(io(format!("writing /etc/{file}")));
    write("hostname", "hearth\n")?;
    write("hosts", "127.0.0.1 localhost hearth\n::1 localhost\n")?;
    for secret in ["shadow", "shadow-", "gshadow", "gshadow-"] {
        let _ = std::fs::remove_file(etc.join(secret));
    }
    for d in ["work", "newroot"] {
        std::fs::create_dir_all(tree.join(d)).map_err(io(format!("creating /{d}")))?;
    }
    for cache in ["var/cache/apt", "var/lib/apt/lists"] {
        let p = tree.join(cache);
        if let Ok(entries) = std::fs::read_dir(&p) {
            for e in entries.flatten() {
                if e.path().is_file() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(())
}

/// Binaries looked up and versions asked in a chroot of the tree, remembered as they go.
struct ChrootRuntimes<'a> {
    tree: &'a Path,
    seen: Mutex<RecordedRuntimes>,
}

impl Runtimes for ChrootRuntimes<'_> {
    fn find(&self, word: &str) -> Option<String> {
        if word.starts_with('/') || word.starts_with("./") {
            return Some(word.to_string());
        }
        let found = SEARCH_DIRS.iter().map(|d| format!("{d}/{word}")).find(|p| {
            Command::new(CHROOT).arg(self.tree).args(["/usr/bin/test", "-f", p]).status().is_ok_and(|s| s.success())
        })?;
        self.seen.lock().unwrap().found.insert(word.into(), found.clone());
        Some(found)
    }

    fn version(&self, argv: &[String]) -> String {
        // Some runtimes need /proc to start (the JVM's launcher finds its libraries through
        // /proc/self/exe, Mono refuses without it): each probe gets a private mount
        // namespace with a /proc in the tree, gone when the probe ends.
        let out = Command::new("/usr/bin/unshare")
            .arg("--fork")
            .arg(format!("--mount-proc={}", self.tree.join("proc").display()))
            .arg(CHROOT)
            .arg(self.tree)
            .args(argv)
            .env_clear()
            .env("LANG", "C.UTF-8")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/tmp")
            .output();
        let v = match out {
            Ok(o) => version_from_output(&format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(_) => "unknown".into(),
        };
        self.seen.lock().unwrap().versions.insert(argv.join(" "), v.clone());
        v
    }
}

fn record_runtimes(tree: &Path) -> Result<RecordedRuntimes, ImageError> {
    let rt = ChrootRuntimes { tree, seen: Mutex::new(RecordedRuntimes::default()) };
    hearth_sandbox::Languages::from_toml_with(hearth_sandbox::languages::DEFAULT_LANGUAGES, &rt)
        .map_err(|e| ImageError::Languages(e.to_string()))?;
    Ok(rt.seen.into_inner().unwrap())
}

fn installed(tree: &Path) -> Result<Vec<(String, String)>, ImageError> {
    let out = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", tree.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${Package} ${Version}\n"]))?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect())
}

/// Bytes the tree's files take, in 4 KiB blocks (not following symlinks).
fn tree_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            total += meta.len().div_ceil(4096) * 4096;
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_what_was_asked_for() {
        let a = RootfsSpec { suite: "bookworm".into(), sources: None, packages: vec!["python3".into(), "bash".into()] };
        let b = RootfsSpec { packages: vec!["bash".into(), "python3".into(), "bash".into()], ..a.clone() };
        assert_eq!(a.key().unwrap(), b.key().unwrap(), "order and duplicates do not matter");
        let c = RootfsSpec { packages: vec!["bash".into()], ..a.clone() };
        assert_ne!(a.key().unwrap(), c.key().unwrap());
        assert_eq!(uuid_from("k").len(), 36);
    }

    #[test]
    fn recorded_runtimes_answer_as_the_image_did() {
        let mut r = RecordedRuntimes::default();
        r.found.insert("python3".into(), "/usr/bin/python3".into());
        r.versions.insert("/usr/bin/python3 --version".into(), "3.11.2".into());
        assert_eq!(r.find("python3").as_deref(), Some("/usr/bin/python3"));
        assert_eq!(r.find("node"), None);
        assert_eq!(r.version(&["/usr/bin/python3".into(), "--version".into()]), "3.11.2");
    }
}
