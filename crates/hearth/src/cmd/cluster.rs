//! `hearth cluster up`: a whole cluster on this machine, on loopback: three clustered
//! nats-servers with JetStream (streams and bucket with three replicas), two gateways and two
//! executors, each its own process (so any one can be killed to see what happens).
//! `hearth cluster load`: a steady load of runs against gateways, every answer checked, with
//! the counts printed at the end (sent, finished, lost, duplicates).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hearth_cluster::{ClusterSpec, Load, LoadSpec, LocalCluster, Ports, Program};

use super::executor::shutdown_signal;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Start nats-servers (clustered), gateways and executors here, on loopback.
    Up(UpArgs),
    /// Send a steady load of runs to gateways and check every answer.
    Load(LoadArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Configs, JetStream stores and logs of every part.
    #[arg(long, default_value = ".hearth/cluster")]
    pub dir: PathBuf,
    /// Remove the stores and logs of an earlier run first.
    #[arg(long)]
    pub fresh: bool,
    /// The nats-server binary (default: $HEARTH_NATS_SERVER, .hearth/tools/bin, then PATH).
    #[arg(long, env = "HEARTH_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    pub nats: usize,
    #[arg(long, default_value_t = 2)]
    pub gateways: usize,
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Slots of each executor.
    #[arg(long, default_value_t = 2)]
    pub slots: usize,
    /// First NATS client port (routes from 6222, monitoring from 8222; a busy port is
    /// replaced by a free one).
    #[arg(long, default_value_t = 4222)]
    pub nats_port: u16,
    /// First gateway port.
    #[arg(long, default_value_t = 8080)]
    pub gateway_port: u16,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Gateway addresses, comma-separated (host:port).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8080,127.0.0.1:8081")]
    pub gateways: Vec<std::net::SocketAddr>,
    /// The cluster's NATS URLs, comma-separated (to compare what sockets got with the stream).
    #[arg(long, default_value = "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224")]
    pub nats: String,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// One run every this many milliseconds.
    #[arg(long, default_value_t = 200)]
    pub every_ms: u64,
    /// Each run sleeps this long (python) before it answers; 0 runs `echo` (bash).
    #[arg(long, default_value_t = 0)]
    pub sleep_ms: u64,
    /// Sessions (one WebSocket each).
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
}

pub async fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Load(args) => load(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<u8> {
    let nats_server = super::up::find_nats_server(args.nats_server.as_deref(), std::path::Path::new(".hearth"))?;
    if args.fresh {
        for i in 1..=args.nats.max(3) {
            let _ = std::fs::remove_dir_all(args.dir.join(format!("nats-{i}")));
        }
        if let Ok(entries) = std::fs::read_dir(&args.dir) {
            for e in entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "log")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let dir = std::path::absolute(&args.dir)?;
    let mut spec = ClusterSpec::new(dir.clone(), std::env::current_exe()?, nats_server);
    spec.nats = args.nats;
    spec.gateways = args.gateways;
    spec.executors = args.executors;
    spec.slots = args.slots;
    // The parts log what `HEARTH_LOG` says (info when unset).
    spec.log = std::env::var("HEARTH_LOG").ok().filter(|l| !l.is_empty()).unwrap_or_else(|| "info".into());
    spec.ports = Ports::From {
        nats_client: args.nats_port,
        nats_cluster: args.nats_port + 2000,
        nats_http: args.nats_port + 4000,
        gateway: args.gateway_port,
    };
    eprintln!(
        "starting {} nats-servers, {} gateways, {} executors (logs in {})",
        spec.nats,
        spec.gateways,
        spec.executors,
        dir.display()
    );
    let mut cluster = tokio::select! {
        c = LocalCluster::start(spec) => c.context("starting the local cluster")?,
        _ = shutdown_signal() => return Ok(130),
    };
    println!("hearth cluster is up:");
    for g in &cluster.gateways {
        println!(
            "  {:<10} http://{}  (pid {})",
            g.name,
            g.addr.map(|a| a.to_string()).unwrap_or_default(),
            g.proc.pid()
        );
    }
    for e in &cluster.executors {
        println!("  {:<10} executor (pid {})", e.name, e.proc.pid());
    }
    for n in &cluster.nats {
        println!("  {:<10} {}  (pid {})", n.name, n.url(), n.pid().unwrap_or(0));
    }
    println!("  NATS URLs for more parts: --nats {}", cluster.nats_urls());
    println!("Kill any of them (kill -9 PID) and watch: `hearth cluster load` checks every answer. Ctrl-C stops all.");
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut reported = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let parts = cluster.gateways.iter_mut().chain(cluster.executors.iter_mut());
        for p in parts {
            if let Some(status) = p.proc.exit_status() {
                if reported.insert(p.name.clone()) {
                    eprintln!("{} exited ({status}); see {}", p.name, p.proc.log.display());
                }
            }
        }
        for n in &mut cluster.nats {
            if !n.running() && reported.insert(n.name.clone()) {
                eprintln!("{} is down", n.name);
            }
        }
    }
    eprintln!("stopping: gateways and executors drain, then the nats-servers");
    cluster.stop(Duration::from_secs(40)).await;
    Ok(0)
}

async fn load(args: LoadArgs) -> anyhow::Result<u8> {
    let mut spec = LoadSpec::new("load", args.gateways.clone(), &args.nats);
    spec.name = format!("load-{}", std::process::id());
    spec.sessions = args.sessions.max(1);
    spec.every = Duration::from_millis(args.every_ms.max(1));
    spec.program = match args.sleep_ms {
        0 => Program::Echo,
        ms => Program::Sleepy { ms },
    };
    let load = Load::start(spec).await.context("opening the sessions")?;
    eprintln!("sending one run every {} ms for {} s to {:?}", args.every_ms, args.seconds, args.gateways);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.seconds)) => {}
        _ = shutdown_signal() => {}
    }
    eprintln!("sent {}; waiting for the last answers", load.sent());
    let report = load.finish(Duration::from_secs(60)).await;
    println!("{report}");
    for p in &report.problems {
        println!("  {p}");
    }
    Ok(if report.lost == 0 && report.wrong == 0 { 0 } else { 1 })
}
