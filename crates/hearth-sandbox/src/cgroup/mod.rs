//! Cgroups for sandboxes, v1 and v2 behind one type. Every path starts from the mount
//! point given to [`CgroupRoot::detect`], so a temp dir can stand in for `/sys/fs/cgroup`
//! in tests (the v2 code is tested that way; this host runs v1).
//!
//! Layout: [`v1`] and [`v2`] hold each version's file names and quirks.

mod v1;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

/// A cgroup operation that failed, with the file it was about.
#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("no usable cgroup hierarchy under {0} (need v2 with memory and pids, or v1 memory/pids/cpu)")]
    NotFound(PathBuf),
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup {0} still has processes after being killed")]
    Busy(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path))
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(io_err(path))
}

/// Value of `key` in a flat-keyed file such as `memory.events` or `memory.oom_control`.
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The host's CPUs (the sandboxes' parent cgroup weighs as much as this many processes).
pub(crate) fn host_cpus() -> u64 {
    std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1)
}

/// Which cgroup version a hierarchy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The hierarchy sandboxes are created in: `<mount>/[<controller>/]<parent>/<name>`.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    pub version: Version,
    mount: PathBuf,
    parent: String,
}

/// Limits written to a sandbox's cgroup before a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    pub pids: u64,
    /// CPUs the sandbox may use at once (CFS quota), e.g. 1.0.
    pub cpus: f64,
}

/// One sandbox's cgroup (one directory per controller on v1, one directory on v2).
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    dirs: Vec<PathBuf>,
}

impl CgroupRoot {
    /// Finds the hierarchy under `mount` (normally `/sys/fs/cgroup`) and makes sure the
    /// parent group `parent` exists with the controllers enabled.
    pub fn detect(mount: &Path, parent: &str) -> Result<CgroupRoot, CgroupError> {
        let version = if mount.join("cgroup.controllers").exists() {
            Version::V2
        } else if v1::CONTROLLERS.iter().all(|c| mount.join(c).is_dir()) {
            Version::V1
        } else {
            return Err(CgroupError::NotFound(mount.to_path_buf()));
        };
        let root = CgroupRoot { version, mount: mount.to_path_buf(), parent: parent.to_string() };
        match version {
            Version::V1 => v1::prepare_parent(mount, parent)?,
            Version::V2 => v2::prepare_parent(mount, parent)?,
        }
        Ok(root)
    }

    fn dirs(&self, name: &str) -> Vec<PathBuf> {
        match self.version {
            Version::V1 => v1::CONTROLLERS.iter().map(|c| self.mount.join(c).join(&self.parent).join(name)).collect(),
            Version::V2 => vec![self.mount.join(&self.parent).join(name)],
        }
    }

    /// Creates the cgroup `name` (a fresh one: a leftover of that name is removed first).
    pub fn create(&self, name: &str) -> Result<Cgroup, CgroupError> {
        let cg = Cgroup { version: self.version, dirs: self.dirs(name) };
        if cg.dirs.iter().any(|d| d.exists()) {
            cg.destroy()?;
        }
        for d in &cg.dirs {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        if self.version == Version::V1 {
            v1::init_group(&cg.dirs)?;
        }
        Ok(cg)
    }

    /// Names of the sandbox cgroups that exist now (leftovers after a crash, or live ones).
    pub fn list(&self) -> Vec<String> {
        let base = match self.version {
            Version::V1 => self.mount.join(v1::CONTROLLERS[0]).join(&self.parent),
            Version::V2 => self.mount.join(&self.parent),
        };
        let Ok(entries) = fs::read_dir(base) else {
            return Vec::new();
        };
        entries.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()).collect()
    }

    /// Kills and removes every cgroup under the parent whose name starts with `prefix`:
    /// what a crashed executor left behind.
    pub fn remove_stale(&self, prefix: &str) -> usize {
        let stale: Vec<String> = self.list().into_iter().filter(|n| n.starts_with(prefix)).collect();
        for name in &stale {
            let cg = Cgroup { version: self.version, dirs: self.dirs(name) };
            if let Err(e) = cg.destroy() {
                tracing::warn!(cgroup = %name, error = %e, "could not remove a stale cgroup");
            }
        }
        stale.len()
    }
}

impl Cgroup {
    /// The `cgroup.procs` files a process writes itself into to join this cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Writes memory (no swap), process and CPU limits.
    pub fn set_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        match self.version {
            Version::V1 => v1::set_limits(&self.dirs, limits),
            Version::V2 => v2::set_limits(&self.dirs[0], limits),
        }
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V1 => v1::oom_kills(&self.dirs),
            Version::V2 => v2::oom_kills(&self.dirs[0]),
        }
    }

    /// Peak memory use of the cgroup in KiB (0 where the kernel does not keep it).
    pub fn peak_kb(&self) -> u64 {
        match self.version {
            Version::V1 => v1::peak_kb(&self.dirs),
            Version::V2 => v2::peak_kb(&self.dirs[0]),
        }
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .procs_files()
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<_>>())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the cgroup (`cgroup.kill` on v2 where present).
    pub fn kill_all(&self) {
        if self.version == Version::V2 && v2::kill(&self.dirs[0]) {
            return;
        }
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Kills what is left and removes the directories, waiting (bounded) for the kernel
    /// to let the last processes go.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in &self.dirs {
            loop {
                if !d.exists() {
                    break;
                }
                self.kill_all();
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => return Err(CgroupError::Busy(d.clone())),
                }
            }
        }
        Ok(())
    }

    /// The directories of this cgroup (one per controller on v1).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n";
        assert_eq!(keyed(events, "oom_kill"), Some(2));
        assert_eq!(keyed(events, "oom"), Some(3));
        assert_eq!(keyed(events, "nope"), None);
    }

    #[test]
    fn an_empty_dir_is_no_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(CgroupRoot::detect(dir.path(), "hearth"), Err(CgroupError::NotFound(_))));
    }
}
