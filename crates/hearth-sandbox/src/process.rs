//! The `process` driver: a sandbox is the agent started as `hearth-agent jail SPEC`, which
//! joins a fresh cgroup and builds its own namespaces and root file system (see the agent's
//! `jail` module). The host keeps the launcher's pipes (the agent protocol) and the cgroup
//! (limits, OOM accounting, and a kill switch for everything inside).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_proto::jail::JailSpec;
use hearth_proto::Limits;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cgroup::{Cgroup, CgroupLimits, CgroupRoot};
use crate::conn::AgentConn;
use crate::driver::Driver;
use crate::error::SandboxError;
use crate::ids::{IdBlock, IdLease, IdPlan, DEFAULT_LOCK_DIR};
use crate::sandbox::{Backend, BoxFuture, Sandbox};

/// Memory on top of the run's own limit for the agent and the sandbox's small tmpfs files.
const AGENT_MEMORY_BYTES: u64 = 8 << 20;
/// Processes on top of the run's own limit: the launcher and the agent.
const AGENT_PIDS: u64 = 2;

/// How the process driver builds sandboxes.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The `hearth-agent` binary.
    pub agent: PathBuf,
    /// Where cgroups are mounted (`/sys/fs/cgroup`; a temp dir in tests).
    pub cgroup_mount: PathBuf,
    /// Parent cgroup of all sandboxes.
    pub cgroup_parent: String,
    /// First host uid used for sandboxes; each takes two (its root and its runner).
    pub id_base: u32,
    /// Id pairs in the host's whole range (shared by every executor of the host).
    pub id_pairs: u32,
    /// Id pairs one driver claims for itself (see [`crate::ids`]): the most sandboxes it
    /// holds alive at once.
    pub id_block_pairs: u32,
    /// Where the executors of this host divide the id range among themselves.
    pub id_lock_dir: PathBuf,
    /// Host paths visible read-only inside (what the runtimes need, nothing more).
    pub ro_paths: Vec<String>,
    pub devices: Vec<String>,
    pub work_mb: u64,
    pub tmp_mb: u64,
    /// CPUs one sandbox may use at once.
    pub cpus: f64,
    pub ready_timeout: Duration,
    /// Added to sandbox names after the executor's pid, to tell drivers of one process apart.
    pub tag: String,
}

impl ProcessConfig {
    /// Defaults for this host, with the agent binary at `agent`.
    pub fn new(agent: PathBuf) -> ProcessConfig {
        let paths = [
            "/usr",
            "/bin",
            "/sbin",
            "/lib",
            "/lib32",
            "/lib64",
            "/libx32",
            "/etc/alternatives",
            "/etc/ld.so.cache",
            // Runtime data Debian keeps outside /usr (configuration the runtimes cannot start
            // without; no secrets). A path missing on the host is skipped.
            "/etc/java-17-openjdk", // the JVM's java.security, jvm.cfg
            "/etc/mono",            // Mono's machine.config
            "/etc/R",               // R_HOME/etc: Renviron, ldpaths
            "/var/lib/ghc",         // GHC's package database
            "/etc/nim",             // nim.cfg: the standard library's search paths
            "/etc/gnucobol",        // cobc's default.conf
        ];
        ProcessConfig {
            agent,
            cgroup_mount: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "hearth".into(),
            id_base: 200_000,
            id_pairs: 50_000,
            id_block_pairs: 1_000,
            id_lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
            ro_paths: paths.iter().map(|s| s.to_string()).collect(),
            devices: ["null", "zero", "full", "random", "urandom"].iter().map(|d| format!("/dev/{d}")).collect(),
            work_mb: 64,
            tmp_mb: 64,
            cpus: 1.0,
            ready_timeout: Duration::from_secs(10),
            tag: String::new(),
        }
    }
}

/// Files of the sandbox's generated /etc.
fn etc_files() -> Vec<(String, String)> {
    [
        ("passwd", "root:x:0:0:root:/:/bin/sh\nrunner:x:1000:1000:runner:/work:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"),
        ("group", "root:x:0:\nrunner:x:1000:\nnogroup:x:65534:\n"),
        ("hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        ("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), c.to_string()))
    .collect()
}

/// The process driver.
pub struct ProcessDriver {
    config: ProcessConfig,
    cgroups: CgroupRoot,
    /// This driver's own block of host ids, held while it lives.
    ids: Arc<IdBlock>,
    /// Prefix of this driver's sandbox names: `hs-<executor pid>-<tag>`.
    prefix: String,
}

/// Sandbox numbers, unique in this process (several drivers may share one, as tests do).
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl ProcessDriver {
    /// Checks the host (agent binary, cgroups) and removes what crashed executors left.
    pub fn new(config: ProcessConfig) -> Result<ProcessDriver, SandboxError> {
        if !config.agent.is_file() {
            return Err(SandboxError::Unavailable {
                driver: "process",
                why: format!("agent binary {} not found (build it, or set HEARTH_AGENT)", config.agent.display()),
            });
        }
        let cgroups = CgroupRoot::detect(&config.cgroup_mount, &config.cgroup_parent)?;
        let prefix = format!("hs-{}-{}", std::process::id(), config.tag);
        let ids = IdBlock::claim(&IdPlan {
            base: config.id_base,
            pairs: config.id_pairs,
            block_pairs: config.id_block_pairs,
            lock_dir: config.id_lock_dir.clone(),
        })?;
        tracing::debug!(block = ids.index, first_uid = ids.first, "sandbox id block claimed");
        let driver = ProcessDriver { config, cgroups, ids, prefix };
        driver.remove_orphans();
        Ok(driver)
    }

    /// Removes sandbox cgroups whose executor process no longer exists.
    fn remove_orphans(&self) {
        for name in self.cgroups.list() {
            let owner = name.strip_prefix("hs-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = owner {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let n = self.cgroups.remove_stale(&format!("hs-{pid}-"));
                    tracing::info!(pid, removed = n, "removed sandboxes of a dead executor");
                }
            }
        }
    }

    /// The cgroup hierarchy in use.
    pub fn cgroups(&self) -> &CgroupRoot {
        &self.cgroups
    }

    /// Name prefix of this driver's sandboxes (their cgroups carry it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Host uids of this driver's sandboxes: `first .. first + 2 * id_block_pairs`.
    pub fn id_range(&self) -> std::ops::Range<u32> {
        self.ids.first..self.ids.first + 2 * self.config.id_block_pairs
    }

    async fn spawn(&self) -> Result<Sandbox, SandboxError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", self.prefix);
        let ids = self.ids.lease().ok_or_else(|| SandboxError::Unavailable {
            driver: "process",
            why: format!("all {} sandbox ids of this executor are in use", self.config.id_block_pairs),
        })?;
        let cgroup = self.cgroups.create(&id)?;
        let applied = limits_for(&Limits::DEFAULT, self.config.cpus);
        cgroup.set_limits(&applied)?;
        let spec = JailSpec {
            host_id_base: ids.host_base(),
            cgroup_procs: cgroup.procs_files().iter().map(|p| p.display().to_string()).collect(),
            ro_paths: self.config.ro_paths.clone(),
            devices: self.config.devices.clone(),
            etc_files: etc_files(),
            work_mb: self.config.work_mb,
            tmp_mb: self.config.tmp_mb,
            hostname: "hearth".into(),
        };
        let spec = serde_json::to_string(&spec).expect("a jail spec serializes");
        let spawned = Command::new(&self.config.agent)
            .arg("jail")
            .arg(spec)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(source) => {
                let _ = cgroup.destroy();
                return Err(SandboxError::Spawn { agent: self.config.agent.display().to_string(), source });
            }
        };
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
            unreachable!("all three pipes were requested")
        };
        log_agent_stderr(id.clone(), stderr);
        let conn = AgentConn::new(id.clone(), Box::new(stdout), Box::new(stdin));
        let backend = ProcessBackend {
            child: Some(child),
            cgroup: Some(cgroup),
            cpus: self.config.cpus,
            ids: Some(ids),
            applied: Some(applied),
        };
        let mut sandbox = Sandbox::new(id, conn, Box::new(backend));
        match sandbox.wait_ready(self.config.ready_timeout).await {
            Ok(_) => Ok(sandbox),
            Err(e) => {
                let _ = sandbox.destroy().await;
                Err(e)
            }
        }
    }
}

fn limits_for(l: &Limits, cpus: f64) -> CgroupLimits {
    CgroupLimits { memory_bytes: (l.memory_mb << 20) + AGENT_MEMORY_BYTES, pids: l.pids + AGENT_PIDS, cpus }
}

fn log_agent_stderr(id: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(sandbox = %id, "{line}");
        }
    });
}

impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    fn create(&self) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(self.spawn())
    }
}

/// The host's handles on one process sandbox. Both are `Option` only so that `Drop` can
/// clean up a sandbox that was dropped without `destroy` (a panic, a shut-down pool).
struct ProcessBackend {
    child: Option<Child>,
    cgroup: Option<Cgroup>,
    cpus: f64,
    /// Given back only once every process of the sandbox is gone.
    ids: Option<IdLease>,
    /// The limits the cgroup holds now: a run with the same ones writes nothing (five
    /// cgroup files fewer on the path of a run with default limits).
    applied: Option<CgroupLimits>,
}

impl ProcessBackend {
    fn cgroup(&self) -> &Cgroup {
        self.cgroup.as_ref().expect("cgroup is present until destroy")
    }
}

impl Backend for ProcessBackend {
    fn prepare(&mut self, limits: &Limits) -> Result<(), SandboxError> {
        let wanted = limits_for(limits, self.cpus);
        if self.applied != Some(wanted) {
            self.applied = None;
            self.cgroup().set_limits(&wanted)?;
            self.applied = Some(wanted);
        }
        Ok(())
    }

    fn oom_kills(&self) -> u64 {
        self.cgroup().oom_kills()
    }

    fn peak_kb(&self) -> u64 {
        self.cgroup().peak_kb()
    }

    fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn destroy(mut self: Box<Self>) -> BoxFuture<'static, Result<(), SandboxError>> {
        let child = self.child.take();
        let cgroup = self.cgroup.take();
        let ids = self.ids.take();
        Box::pin(async move {
            // Killing the launcher takes PID 1 with it (PDEATHSIG), and with PID 1 its
            // whole namespace; the cgroup kill catches anything in between.
            if let Some(mut child) = child {
                let _ = child.start_kill();
                if let Some(cg) = &cgroup {
                    cg.kill_all();
                }
                let _ = child.wait().await;
            }
            if let Some(cg) = cgroup {
                let destroyed = tokio::task::spawn_blocking(move || cg.destroy())
                    .await
                    .map_err(|e| SandboxError::Io { id: String::new(), source: std::io::Error::other(e) })
                    .and_then(|r| r.map_err(SandboxError::from));
                if destroyed.is_err() {
                    // Something may live on under these ids: never hand them out again.
                    std::mem::forget(ids);
                    return destroyed;
                }
            }
            drop(ids);
            Ok(())
        })
    }
}

impl Drop for ProcessBackend {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if let Some(cg) = self.cgroup.take() {
            cg.kill_all();
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "sandbox dropped without destroy left its cgroup");
                // Something may live on under these ids: never hand them out again.
                std::mem::forget(self.ids.take());
            }
        }
    }
}

/// Finds the `hearth-agent` binary: `$HEARTH_AGENT`, else beside the running executable
/// (or one directory up, for test binaries in `target/*/deps`), preferring the static
/// musl build of the same profile.
pub fn locate_agent() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEARTH_AGENT") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
            candidates.push(target.join("x86_64-unknown-linux-musl").join(profile).join("hearth-agent"));
        }
        candidates.push(dir.join("hearth-agent"));
    }
    candidates.into_iter().find(|p| p.is_file())
}
