//! cgroup v2: one unified tree; controllers are enabled for children through
//! `cgroup.subtree_control` of every ancestor.

use std::path::Path;

use super::{keyed, read, write, CgroupError, CgroupLimits};

const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
const PERIOD_US: u64 = 100_000;

pub fn prepare_parent(mount: &Path, parent: &str) -> Result<(), CgroupError> {
    let available = read(&mount.join("cgroup.controllers"))?;
    for needed in ["memory", "pids"] {
        if !available.split_whitespace().any(|c| c == needed) {
            return Err(CgroupError::NotFound(mount.to_path_buf()));
        }
    }
    let dir = mount.join(parent);
    std::fs::create_dir_all(&dir).map_err(|source| CgroupError::Io { path: dir.clone(), source })?;
    let enable: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    let enable = enable.join(" ");
    write(&mount.join("cgroup.subtree_control"), &enable)?;
    write(&dir.join("cgroup.subtree_control"), &enable)?;
    if available.split_whitespace().any(|c| c == "cpu") {
        // Every sandbox competes for CPU like one process of the host: the parent weighs as
        // much as `cpus` of them (100 each), not as one process for all sandboxes together.
        write(&dir.join("cpu.weight"), &(100 * super::host_cpus()).min(10_000).to_string())?;
    }
    Ok(())
}

pub fn set_limits(dir: &Path, l: &CgroupLimits) -> Result<(), CgroupError> {
    write(&dir.join("memory.max"), &l.memory_bytes.to_string())?;
    let swap = dir.join("memory.swap.max");
    if swap.exists() {
        write(&swap, "0")?;
    }
    write(&dir.join("pids.max"), &l.pids.to_string())?;
    let quota = ((l.cpus * PERIOD_US as f64) as u64).max(1000);
    write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))
}

pub fn oom_kills(dir: &Path) -> u64 {
    read(&dir.join("memory.events")).ok().and_then(|t| keyed(&t, "oom_kill")).unwrap_or(0)
}

pub fn peak_kb(dir: &Path) -> u64 {
    read(&dir.join("memory.peak")).ok().and_then(|t| t.trim().parse::<u64>().ok()).map(|b| b / 1024).unwrap_or(0)
}

/// Kills the whole cgroup at once where the kernel has `cgroup.kill` (5.14+).
pub fn kill(dir: &Path) -> bool {
    let file = dir.join("cgroup.kill");
    file.exists() && write(&file, "1").is_ok()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::{CgroupLimits, CgroupRoot, Version};

    /// A fake v2 mount: the files a real one has, as plain files in a temp dir.
    fn fake_v2() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").unwrap();
        fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        dir
    }

    #[test]
    fn v2_is_detected_and_the_parent_enables_controllers() {
        let mount = fake_v2();
        let root = CgroupRoot::detect(mount.path(), "hearth").unwrap();
        assert_eq!(root.version, Version::V2);
        let enabled = fs::read_to_string(mount.path().join("hearth/cgroup.subtree_control")).unwrap();
        assert_eq!(enabled, "+memory +pids +cpu");
        assert_eq!(fs::read_to_string(mount.path().join("cgroup.subtree_control")).unwrap(), enabled);
        let weight: u64 = fs::read_to_string(mount.path().join("hearth/cpu.weight")).unwrap().parse().unwrap();
        assert_eq!(weight, 100 * super::super::host_cpus());
    }

    #[test]
    fn v2_without_the_memory_controller_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        assert!(CgroupRoot::detect(dir.path(), "hearth").is_err());
    }

    #[test]
    fn v2_limits_accounting_and_removal() {
        let mount = fake_v2();
        let root = CgroupRoot::detect(mount.path(), "hearth").unwrap();
        let cg = root.create("sb-1").unwrap();
        let dir = mount.path().join("hearth/sb-1");
        assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);
        fs::write(dir.join("memory.swap.max"), "max").unwrap();
        cg.set_limits(&CgroupLimits { memory_bytes: 128 << 20, pids: 66, cpus: 1.5 }).unwrap();
        assert_eq!(fs::read_to_string(dir.join("memory.max")).unwrap(), (128u64 << 20).to_string());
        assert_eq!(fs::read_to_string(dir.join("memory.swap.max")).unwrap(), "0");
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "66");
        assert_eq!(fs::read_to_string(dir.join("cpu.max")).unwrap(), "150000 100000");

        assert_eq!(cg.oom_kills(), 0);
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\n").unwrap();
        assert_eq!(cg.oom_kills(), 1);
        fs::write(dir.join("memory.peak"), "134217728\n").unwrap();
        assert_eq!(cg.peak_kb(), 131072);
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        assert!(cg.pids().is_empty());
        assert_eq!(root.list(), vec!["sb-1".to_string()]);

        // A real cgroupfs removes its interface files with the directory; a fake one needs
        // them gone first.
        for f in fs::read_dir(&dir).unwrap() {
            fs::remove_file(f.unwrap().path()).unwrap();
        }
        cg.destroy().unwrap();
        assert!(!dir.exists());
        assert!(root.list().is_empty());
    }
}
