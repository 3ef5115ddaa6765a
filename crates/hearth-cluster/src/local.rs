//! A whole hearth cluster on one machine, on loopback: `nats` nats-servers (clustered when
//! more than one), `gateways` gateways and `executors` executors, each its own process of the
//! real binaries, each with its log under `dir`. What `hearth cluster up` starts and what the
//! chaos tests break. Dropping it SIGKILLs everything it started; [`LocalCluster::stop`]
//! stops it gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::ClusterError;
use crate::http;
use crate::nats::{free_port, NatsNode, NodePorts};
use crate::proc::Proc;

/// Where the parts listen: fixed first ports (each part takes the next one; a busy port is
/// replaced by a free one), or free ports throughout (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    Free,
    From { nats_client: u16, nats_cluster: u16, nats_http: u16, gateway: u16 },
}

impl Ports {
    /// 4222.., 6222.., 8222.. for the nats nodes and 8080.. for the gateways.
    pub const USUAL: Ports = Ports::From { nats_client: 4222, nats_cluster: 6222, nats_http: 8222, gateway: 8080 };
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Configs, stores and logs go here.
    pub dir: PathBuf,
    /// The `hearth` binary the gateways and executors run.
    pub hearth: PathBuf,
    pub nats_server: PathBuf,
    pub nats: usize,
    pub gateways: usize,
    pub executors: usize,
    /// Slots (and warm sandboxes) per executor.
    pub slots: usize,
    pub ports: Ports,
    /// Flags for gateways and executors alike (the NATS bounds: `--ack-wait-ms=..`).
    pub bus_args: Vec<String>,
    pub gateway_args: Vec<String>,
    pub executor_args: Vec<String>,
    /// `HEARTH_LOG` of the parts.
    pub log: String,
    /// How long the whole start may take.
    pub ready_within: Duration,
}

impl ClusterSpec {
    /// Three nats-servers, two gateways, two executors of two slots.
    pub fn new(dir: impl Into<PathBuf>, hearth: impl Into<PathBuf>, nats_server: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            dir: dir.into(),
            hearth: hearth.into(),
            nats_server: nats_server.into(),
            nats: 3,
            gateways: 2,
            executors: 2,
            slots: 2,
            ports: Ports::Free,
            bus_args: Vec::new(),
            gateway_args: Vec::new(),
            executor_args: Vec::new(),
            log: "info".into(),
            ready_within: Duration::from_secs(90),
        }
    }
}

/// A gateway or an executor.
#[derive(Debug)]
pub struct Part {
    /// `gateway-1`, or the executor's id (`ex-1`).
    pub name: String,
    /// Where a gateway listens.
    pub addr: Option<SocketAddr>,
    pub proc: Proc,
}

/// The running cluster. Field order is drop order: executors, gateways, then NATS.
#[derive(Debug)]
pub struct LocalCluster {
    pub executors: Vec<Part>,
    pub gateways: Vec<Part>,
    pub nats: Vec<NatsNode>,
    pub spec: ClusterSpec,
    next_executor: usize,
}

/// `port` if it is free on loopback, else a free one.
fn port_or_free(port: u16) -> Result<u16, ClusterError> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(port),
        Err(_) => free_port(),
    }
}

impl LocalCluster {
    /// Starts NATS (and waits until every node is healthy), then the gateways and the
    /// executors, and returns once every gateway counts every executor online.
    pub async fn start(spec: ClusterSpec) -> Result<LocalCluster, ClusterError> {
        if spec.nats == 0 || spec.gateways == 0 {
            return Err(ClusterError::Spec("at least one nats-server and one gateway".into()));
        }
        std::fs::create_dir_all(&spec.dir)
            .map_err(|source| ClusterError::Io { what: format!("creating {}", spec.dir.display()), source })?;
        let deadline = Instant::now() + spec.ready_within;
        let mut ports = Vec::new();
        for i in 0..spec.nats as u16 {
            ports.push(match spec.ports {
                Ports::Free => NodePorts { client: free_port()?, cluster: free_port()?, http: free_port()? },
                Ports::From { nats_client, nats_cluster, nats_http, .. } => NodePorts {
                    client: port_or_free(nats_client + i)?,
                    cluster: port_or_free(nats_cluster + i)?,
                    http: port_or_free(nats_http + i)?,
                },
            });
        }
        let mut nats = Vec::new();
        for i in 0..spec.nats {
            let mut node = NatsNode::prepare(&spec.nats_server, &spec.dir, i, &ports)?;
            node.start()?;
            nats.push(node);
        }
        let mut cluster = LocalCluster { executors: Vec::new(), gateways: Vec::new(), nats, spec, next_executor: 0 };
        for node in &mut cluster.nats {
            node.wait_healthy(deadline.saturating_duration_since(Instant::now())).await?;
        }
        if cluster.nats.len() > 1 {
            crate::nats::wait_meta_group(&cluster.nats, deadline.saturating_duration_since(Instant::now())).await?;
        }
        for i in 0..cluster.spec.gateways {
            let port = match cluster.spec.ports {
                Ports::Free => free_port()?,
                Ports::From { gateway, .. } => port_or_free(gateway + i as u16)?,
            };
            cluster.start_gateway_on(port)?;
        }
        for _ in 0..cluster.spec.executors {
            cluster.spawn_executor(&[])?;
        }
        cluster.wait_ready(cluster.spec.executors, deadline.saturating_duration_since(Instant::now())).await?;
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated (what `--nats` takes).
    pub fn nats_urls(&self) -> String {
        self.nats.iter().map(NatsNode::url).collect::<Vec<_>>().join(",")
    }

    /// The URL list rotated by `k`, so the parts spread over the nodes.
    fn nats_urls_from(&self, k: usize) -> String {
        let mut urls: Vec<String> = self.nats.iter().map(NatsNode::url).collect();
        let n = urls.len();
        urls.rotate_left(k % n);
        urls.join(",")
    }

    /// Where the gateways listen.
    pub fn gateway_addrs(&self) -> Vec<SocketAddr> {
        self.gateways.iter().filter_map(|g| g.addr).collect()
    }

    /// `hearth <sub> --nats <urls> <bus args>`, with the parts' log filter.
    fn command(&self, sub: &str, k: usize) -> Command {
        let mut cmd = Command::new(&self.spec.hearth);
        cmd.arg(sub);
        cmd.env("HEARTH_LOG", &self.spec.log);
        cmd.env_remove("HEARTH_NATS").env_remove("HEARTH_LISTEN");
        cmd.arg("--nats").arg(self.nats_urls_from(k));
        cmd.args(&self.spec.bus_args);
        cmd
    }

    fn start_gateway_on(&mut self, port: u16) -> Result<(), ClusterError> {
        let k = self.gateways.len();
        let name = format!("gateway-{}", k + 1);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = self.command("gateway", k);
        // A cluster on loopback, for trying hearth and for tests: anonymous use, said loudly
        // in each gateway's log (a real deployment gives API keys: docs/api-auth.md).
        cmd.arg("--listen").arg(addr.to_string()).arg("--dev").args(&self.spec.gateway_args);
        let proc = Proc::spawn(&name, cmd, &self.spec.dir.join(format!("{name}.log")))?;
        self.gateways.push(Part { name, addr: Some(addr), proc });
        Ok(())
    }

    /// Starts one more executor (`ex-<n>`) with `extra` flags; returns its id.
    pub fn spawn_executor(&mut self, extra: &[String]) -> Result<String, ClusterError> {
        self.next_executor += 1;
        let id = format!("ex-{}", self.next_executor);
        let mut cmd = self.command("executor", self.next_executor);
        cmd.arg("--id")
            .arg(&id)
            .arg("--slots")
            .arg(self.spec.slots.to_string())
            .args(&self.spec.executor_args)
            .args(extra);
        let proc = Proc::spawn(&id, cmd, &self.spec.dir.join(format!("{id}.log")))?;
        self.executors.push(Part { name: id.clone(), addr: None, proc });
        Ok(id)
    }

    /// The executor named `id`.
    pub fn executor(&mut self, id: &str) -> Option<&mut Part> {
        self.executors.iter_mut().find(|p| p.name == id)
    }

    /// Waits until every running gateway answers `/readyz` with `executors` executors online.
    pub async fn wait_ready(&mut self, executors: usize, within: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + within;
        for i in 0..self.gateways.len() {
            let Some(addr) = self.gateways[i].addr else { continue };
            if !self.gateways[i].proc.running() {
                continue;
            }
            loop {
                // With no executor to wait for, a gateway that answers at all will do.
                let path = if executors == 0 { "/healthz" } else { "/readyz" };
                if let Ok(a) = http::get(addr, path).await {
                    if a.status == 200 && (executors == 0 || a.json()["executors"].as_u64() >= Some(executors as u64)) {
                        break;
                    }
                }
                if let Some(dead) = self.first_dead() {
                    return Err(ClusterError::NotReady {
                        what: dead.name.clone(),
                        why: "the process exited".into(),
                        log: dead.proc.log_tail(30),
                    });
                }
                if Instant::now() >= deadline {
                    return Err(ClusterError::NotReady {
                        what: self.gateways[i].name.clone(),
                        why: format!("/readyz did not count {executors} executors within {within:?}"),
                        log: self.gateways[i].proc.log_tail(30),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    fn first_dead(&mut self) -> Option<&mut Part> {
        self.gateways.iter_mut().chain(self.executors.iter_mut()).find_map(|p| (!p.proc.running()).then_some(p))
    }

    /// The last lines of every part's log, for a failing test to show.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let parts = self.gateways.iter().chain(&self.executors).map(|p| (p.name.clone(), p.proc.log.clone()));
        let nodes = self.nats.iter().map(|n| (n.name.clone(), n.dir.join("nats.log")));
        for (name, log) in parts.chain(nodes) {
            out.push_str(&format!("--- {name} ({}) ---\n{}\n", log.display(), crate::proc::tail(&log, lines)));
        }
        out
    }

    /// Stops gracefully: SIGTERM to the gateways and executors (they drain, bounded by
    /// `within`; whatever is left then is killed), then to the nats-servers.
    pub async fn stop(mut self, within: Duration) {
        for p in self.gateways.iter_mut().chain(self.executors.iter_mut()) {
            p.proc.signal(Signal::SIGTERM);
        }
        for p in self.gateways.iter_mut().chain(self.executors.iter_mut()) {
            if p.proc.wait_exit(within).await.is_err() {
                p.proc.kill();
            }
        }
        for n in &mut self.nats {
            if let Some(p) = n.proc_mut() {
                p.signal(Signal::SIGTERM);
                if p.wait_exit(Duration::from_secs(10)).await.is_err() {
                    p.kill();
                }
            }
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
}
