//! A local cluster of the real binaries for the chaos and shutdown tests: this package's
//! `hearth` binary as gateways and executors, real nats-servers. One cluster at a time (they
//! are heavy for a 2-core machine), each in its own temp dir whose logs are printed when a
//! test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_cluster::{http, ClusterSpec, LocalCluster, Report};
use serde_json::Value;

/// The nats-server binary: `$HEARTH_NATS_SERVER`, else the checkout's `.hearth/tools/bin`.
pub fn nats_server() -> PathBuf {
    if let Some(p) = std::env::var_os("HEARTH_NATS_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.hearth/tools/bin/nats-server")
}

/// A temp dir for one cluster; kept (and named on stderr) when `HEARTH_TEST_KEEP` is set.
pub fn dir() -> anyhow::Result<tempfile::TempDir> {
    let keep = std::env::var_os("HEARTH_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new().prefix("hearth-cluster-").disable_cleanup(keep).tempdir()?;
    if keep {
        eprintln!("cluster dir kept: {}", dir.path().display());
    }
    Ok(dir)
}

/// One cluster at a time in this test binary.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A spec for `nats` nodes, `gateways` gateways and `executors` executors of two slots, with
/// a quick redelivery (`ack_wait` 3 s).
pub fn spec(dir: &Path, nats: usize, gateways: usize, executors: usize) -> ClusterSpec {
    let mut spec = ClusterSpec::new(dir, env!("CARGO_BIN_EXE_hearth"), nats_server());
    spec.nats = nats;
    spec.gateways = gateways;
    spec.executors = executors;
    spec.slots = 2;
    spec.bus_args = vec!["--ack-wait-ms=3000".into()];
    // `HEARTH_TEST_LOG` overrides the parts' log filter (e.g. `debug`) when digging.
    spec.log = std::env::var("HEARTH_TEST_LOG").unwrap_or_else(|_| "info,async_nats=warn".into());
    spec
}

/// Prints the tails of every log under a dir when dropped, unless [`LogsOnFailure::passed`]
/// was called: a failing test shows what each process said.
pub struct LogsOnFailure {
    dir: PathBuf,
    passed: bool,
}

impl LogsOnFailure {
    pub fn new(dir: &Path) -> LogsOnFailure {
        LogsOnFailure { dir: dir.to_path_buf(), passed: false }
    }

    pub fn passed(mut self) {
        self.passed = true;
    }
}

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        // `HEARTH_TEST_LOGS=1` shows them for passing tests too.
        if self.passed && std::env::var_os("HEARTH_TEST_LOGS").is_none() {
            return;
        }
        let mut logs: Vec<PathBuf> =
            walk(&self.dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
        logs.sort();
        for log in logs {
            eprintln!("--- {} ---\n{}", log.display(), hearth_cluster::proc::tail(&log, 40));
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "js") {
                    out.extend(walk(&p));
                }
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Prints the counts of a chaos test and checks what must hold of every one of them.
pub fn check(test: &str, report: &Report) {
    eprintln!("chaos {test}: {report}");
    // Kept for scripts/test to print: cargo test shows a passing test's output to nobody.
    if let Some(dir) = std::env::var_os("HEARTH_TEST_REPORTS") {
        use std::io::Write;
        let _ = std::fs::create_dir_all(&dir);
        let file =
            std::fs::OpenOptions::new().create(true).append(true).open(std::path::Path::new(&dir).join("chaos.txt"));
        if let Ok(mut file) = file {
            let _ = writeln!(file, "chaos {test}: {report}");
        }
    }
    for p in &report.problems {
        eprintln!("  {p}");
    }
    assert!(report.sent > 0, "{test}: nothing was sent");
    assert_eq!(report.lost, 0, "{test}: runs lost: {report}");
    assert_eq!(report.wrong, 0, "{test}: wrong answers: {report}");
    assert_eq!(report.finished, report.sent, "{test}: {report}");
}

/// The server name (`n1`..) leading stream `name`, from a node's monitoring port.
pub async fn stream_leader(cluster: &mut LocalCluster, name: &str) -> anyhow::Result<String> {
    for node in &mut cluster.nats {
        if !node.running() {
            continue;
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.ports.http));
        let Ok(a) = http::get(addr, "/jsz?streams=true").await else { continue };
        let v: Value = a.json();
        for account in v["account_details"].as_array().into_iter().flatten() {
            for s in account["stream_detail"].as_array().into_iter().flatten() {
                if s["name"] == name {
                    if let Some(leader) = s["cluster"]["leader"].as_str() {
                        return Ok(leader.to_string());
                    }
                }
            }
        }
    }
    anyhow::bail!("no node names a leader of {name}")
}

/// Executor `id`'s next heartbeat (from NATS), within 10 s.
pub async fn heartbeat(nats_url: &str, id: &str) -> anyhow::Result<Value> {
    use futures_util::StreamExt;
    let urls: Vec<&str> = nats_url.split(',').collect();
    let client = async_nats::connect(urls.as_slice()).await?;
    let mut sub = client.subscribe(format!("hearth.executor.{id}.status")).await?;
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next()).await?.context("no heartbeat")?;
    Ok(serde_json::from_slice(&msg.payload)?)
}

/// Polls `cond` every 50 ms until it holds, within `within`.
pub async fn until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !cond() {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
