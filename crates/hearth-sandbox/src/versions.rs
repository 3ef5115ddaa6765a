//! A host-wide cache of the runtimes' version strings.
//!
//! Asking every runtime its version starts each of them once: 30-odd processes, four of them
//! JVMs, which costs seconds of CPU at every executor start (and tens of seconds on a loaded
//! host, when several executors start at once). The answer only changes when the runtime
//! does, so it is kept in `<cache dir>/versions.json`, keyed by the version command and the
//! identity of the file that runs (its resolved path, size and modification time): an upgraded
//! package is probed again. The cache is best effort: unreadable or unwritable, it is ignored,
//! and concurrent writers at worst drop each other's new entries (they are probed again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use crate::languages::Runtimes;

/// Where the cache lives: `$HEARTH_CACHE_DIR`, else `/var/cache/hearth` (the guest images'
/// cache too).
pub fn default_dir() -> PathBuf {
    std::env::var_os("HEARTH_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache/hearth"))
}

/// [`Runtimes`] whose `version` answers from the cache when the runtime is unchanged.
pub struct CachedVersions<'a> {
    inner: &'a dyn Runtimes,
    file: PathBuf,
    entries: Mutex<(BTreeMap<String, String>, bool)>,
}

impl<'a> CachedVersions<'a> {
    /// Loads `dir/versions.json` (an empty cache if it is missing or unreadable).
    pub fn open(inner: &'a dyn Runtimes, dir: &Path) -> CachedVersions<'a> {
        let file = dir.join("versions.json");
        let entries = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        CachedVersions { inner, file, entries: Mutex::new((entries, false)) }
    }

    /// Writes the cache back if a probe added to it (atomically: a temp file renamed).
    pub fn save(&self) {
        let (entries, dirty) = &*self.entries.lock().expect("the versions lock");
        if !dirty {
            return;
        }
        let tmp = self.file.with_extension(format!("json.{}", std::process::id()));
        let written = self
            .file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec_pretty(entries).expect("a map encodes")))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(file = %self.file.display(), error = %e, "the versions cache was not written");
        }
    }
}

/// The cache key of `argv`: the command and what its program file is now.
fn key(argv: &[String]) -> Option<String> {
    let exe = std::fs::canonicalize(argv.first()?).ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{} | {} {} {mtime}", argv.join(" "), exe.display(), meta.len()))
}

impl Runtimes for CachedVersions<'_> {
    fn find(&self, word: &str) -> Option<String> {
        self.inner.find(word)
    }

    fn version(&self, argv: &[String]) -> String {
        let Some(key) = key(argv) else { return self.inner.version(argv) };
        if let Some(v) = self.entries.lock().expect("the versions lock").0.get(&key) {
            return v.clone();
        }
        let version = self.inner.version(argv);
        if version != "unknown" && !version.is_empty() {
            let mut guard = self.entries.lock().expect("the versions lock");
            guard.0.insert(key, version.clone());
            guard.1 = true;
        }
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the probes that reach it.
    struct Counting(AtomicUsize);

    impl Runtimes for Counting {
        fn find(&self, word: &str) -> Option<String> {
            Some(word.to_string())
        }
        fn version(&self, _argv: &[String]) -> String {
            self.0.fetch_add(1, Ordering::Relaxed);
            "1.2.3".into()
        }
    }

    #[test]
    fn a_runtime_is_probed_once_until_its_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("rt");
        std::fs::write(&exe, "v1").unwrap();
        let argv = vec![exe.display().to_string(), "--version".to_string()];
        let probes = Counting(AtomicUsize::new(0));

        let first = CachedVersions::open(&probes, dir.path());
        assert_eq!(first.version(&argv), "1.2.3");
        assert_eq!(first.version(&argv), "1.2.3");
        first.save();
        assert_eq!(probes.0.load(Ordering::Relaxed), 1, "the second answer came from memory");

        let again = CachedVersions::open(&probes, dir.path());
        assert_eq!(again.version(&argv), "1.2.3");
        assert_eq!(probes.0.load(Ordering::Relaxed), 1, "a new process reads the file");

        std::fs::write(&exe, "version two").unwrap(); // an upgrade: another size
        let upgraded = CachedVersions::open(&probes, dir.path());
        assert_eq!(upgraded.version(&argv), "1.2.3");
        assert_eq!(probes.0.load(Ordering::Relaxed), 2, "a changed runtime is probed again");
    }

    #[test]
    fn a_missing_or_garbled_cache_is_only_slower() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("versions.json"), "not json").unwrap();
        let probes = Counting(AtomicUsize::new(0));
        let argv = vec!["/bin/sh".to_string()];
        let cache = CachedVersions::open(&probes, &dir.path().join("missing").join("deeper"));
        assert_eq!(cache.version(&argv), "1.2.3");
        cache.save();
        let broken = CachedVersions::open(&probes, dir.path());
        assert_eq!(broken.version(&argv), "1.2.3");
        assert_eq!(probes.0.load(Ordering::Relaxed), 2);
    }
}
