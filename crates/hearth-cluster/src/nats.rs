//! nats-server nodes with JetStream, alone or clustered on loopback: their configuration
//! (the same shape as `deploy/nats/`), their processes, and their health.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::ClusterError;
use crate::http;
use crate::proc::Proc;

/// Name of the cluster the local nodes form.
pub const CLUSTER_NAME: &str = "hearth";

/// Largest message (results carry up to the output limit, 16 MiB, as JSON).
pub const MAX_PAYLOAD: u64 = 32 << 20;

/// Where one node listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// Clients.
    pub client: u16,
    /// Routes to the other nodes (unused on a single node).
    pub cluster: u16,
    /// Monitoring (`/healthz`, `/jsz`, `/routez`).
    pub http: u16,
}

/// The configuration file of node `index` of `all` (one entry per node; one entry means no
/// cluster block).
pub fn config_text(index: usize, all: &[NodePorts], store_dir: &Path) -> String {
    let me = all[index];
    let mut text = format!(
        "# written by hearth-cluster: node {n} of {total}\n\
         server_name: n{n}\n\
         listen: 127.0.0.1:{client}\n\
         http: 127.0.0.1:{http}\n\
         max_payload: {MAX_PAYLOAD}\n\
         jetstream {{\n  store_dir: {store:?}\n}}\n",
        n = index + 1,
        total = all.len(),
        client = me.client,
        http = me.http,
        store = store_dir.display().to_string(),
    );
    if all.len() > 1 {
        let routes: Vec<String> = all.iter().map(|p| format!("nats-route://127.0.0.1:{}", p.cluster)).collect();
        text.push_str(&format!(
            "cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{}\n  routes: [\n    {}\n  ]\n}}\n",
            me.cluster,
            routes.join("\n    ")
        ));
    }
    text
}

/// A free loopback port for a node to listen on. Bound, then released, so another process
/// can take it in between (the nodes' readiness is checked, not assumed); to make that rare it
/// is picked at random below the kernel's ephemeral range (32768 and up), where no outgoing
/// connection's source port lands, and only then from the kernel.
pub fn free_port() -> Result<u16, ClusterError> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..64 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = 20_000 + (random % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| ClusterError::Io { what: "taking a free port".into(), source })
}

/// One nats-server node.
#[derive(Debug)]
pub struct NatsNode {
    pub name: String,
    pub ports: NodePorts,
    pub dir: PathBuf,
    bin: PathBuf,
    proc: Option<Proc>,
}

impl NatsNode {
    /// Writes node `index`'s config under `dir/<name>/` (its store too).
    pub fn prepare(bin: &Path, dir: &Path, index: usize, all: &[NodePorts]) -> Result<NatsNode, ClusterError> {
        let name = format!("nats-{}", index + 1);
        let dir = dir.join(&name);
        let io = |source| ClusterError::Io { what: format!("writing {}", dir.display()), source };
        std::fs::create_dir_all(&dir).map_err(io)?;
        std::fs::write(dir.join("nats.conf"), config_text(index, all, &dir.join("js"))).map_err(io)?;
        Ok(NatsNode { name, ports: all[index], dir, bin: bin.to_path_buf(), proc: None })
    }

    /// Starts (or restarts) the process; returns once it is started, not once it is healthy.
    pub fn start(&mut self) -> Result<(), ClusterError> {
        if let Some(mut old) = self.proc.take() {
            old.kill();
        }
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(self.dir.join("nats.conf"));
        self.proc = Some(Proc::spawn(&self.name, cmd, &self.dir.join("nats.log"))?);
        Ok(())
    }

    /// `nats://127.0.0.1:<client port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports.client)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::running)
    }

    /// SIGKILL: the node is gone at once, as after a crash or a power cut.
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill();
        }
    }

    /// The process, for signals and waits.
    pub fn proc_mut(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// Waits until the node's `/healthz` says ok (JetStream enabled and, in a cluster, current
    /// with its meta leader), within `within`.
    pub async fn wait_healthy(&mut self, within: Duration) -> Result<(), ClusterError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ports.http));
        let deadline = Instant::now() + within;
        loop {
            if !self.running() {
                let log = self.proc.as_ref().map(|p| p.log_tail(20)).unwrap_or_default();
                return Err(ClusterError::NotReady { what: self.name.clone(), why: "the process exited".into(), log });
            }
            if let Ok(a) = http::get(addr, "/healthz").await {
                if a.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let log = self.proc.as_ref().map(|p| p.log_tail(20)).unwrap_or_default();
                return Err(ClusterError::NotReady {
                    what: self.name.clone(),
                    why: format!("/healthz not ok within {within:?}"),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the JetStream meta group of `nodes` is formed: every node names the same
/// leader and counts them all, and the leader sees every follower current. Only then can
/// replicated streams be placed at once.
pub async fn wait_meta_group(nodes: &[NatsNode], within: Duration) -> Result<(), ClusterError> {
    let deadline = Instant::now() + within;
    let n = nodes.len();
    loop {
        let mut leaders = Vec::new();
        let mut followers_current = 0;
        for node in nodes.iter() {
            let addr = SocketAddr::from(([127, 0, 0, 1], node.ports.http));
            let Ok(a) = http::get(addr, "/jsz").await else { continue };
            let meta = &a.json()["meta_cluster"];
            if meta["cluster_size"].as_u64() != Some(n as u64) {
                continue;
            }
            let Some(leader) = meta["leader"].as_str().filter(|l| !l.is_empty()) else { continue };
            leaders.push(leader.to_string());
            if node.name == format!("nats-{}", &leader[1..]) {
                followers_current = meta["replicas"]
                    .as_array()
                    .map_or(0, |r| r.iter().filter(|p| p["current"].as_bool() == Some(true)).count());
            }
        }
        let agreed = leaders.len() == n && leaders.iter().all(|l| *l == leaders[0]);
        if agreed && followers_current + 1 >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NotReady {
                what: "the nats cluster".into(),
                why: format!("no JetStream meta group of {n} within {within:?} (leaders seen: {leaders:?})"),
                log: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_has_no_cluster_block_and_three_route_to_each_other() {
        let one = [NodePorts { client: 4222, cluster: 6222, http: 8222 }];
        let text = config_text(0, &one, Path::new("/tmp/js"));
        assert!(text.contains("listen: 127.0.0.1:4222\n") && text.contains("jetstream {"));
        assert!(!text.contains("cluster {"));
        let three: Vec<NodePorts> =
            (0..3).map(|i| NodePorts { client: 4222 + i, cluster: 6222 + i, http: 8222 + i }).collect();
        let text = config_text(1, &three, Path::new("/tmp/js2"));
        assert!(text.contains("server_name: n2\n"));
        assert!(text.contains("listen: 127.0.0.1:6223\n"));
        for port in [6222, 6223, 6224] {
            assert!(text.contains(&format!("nats-route://127.0.0.1:{port}")), "{text}");
        }
        assert!(text.contains(&format!("name: {CLUSTER_NAME}")));
    }
}
