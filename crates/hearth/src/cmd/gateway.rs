//! `hearth gateway`: the HTTP and WebSocket API, against a given NATS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hearth_gateway::GatewayConfig;

use super::access::{announce, AccessArgs};
use super::executor::{shutdown_signal, BusArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NATS server URL.
    #[arg(long, env = "HEARTH_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Address to listen on.
    #[arg(long, env = "HEARTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest request body, in bytes (413 beyond).
    #[arg(long, default_value_t = hearth_gateway::config::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// The browser UI's directory (default: web/dist of this checkout; see docs/ui.md).
    #[arg(long, env = "HEARTH_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub access: AccessArgs,
}

/// The UI directory to serve (`flag`, else found), saying so when there is none.
pub fn web_dir(flag: Option<&Path>) -> Option<PathBuf> {
    let dir = hearth_gateway::ui::find_dir(flag);
    match &dir {
        Some(d) if !hearth_gateway::ui::is_ui_dir(d) => {
            eprintln!("warning: {} holds no built UI (index.html); `/` will say so", d.display())
        }
        None => eprintln!("warning: no browser UI found (web/dist): run scripts/setup to build it; the API works"),
        Some(_) => {}
    }
    dir
}

impl Args {
    pub fn config(&self) -> anyhow::Result<GatewayConfig> {
        let mut c = GatewayConfig::new(self.nats.clone());
        c.bus = self.bus.config();
        c.body_limit = self.body_limit;
        c.web_dir = web_dir(self.web_dir.as_deref());
        (c.auth, c.tiers) = self.access.build(false)?;
        Ok(c)
    }
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    super::raise_fd_limit(super::GATEWAY_FILES);
    let config = args.config()?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    eprintln!("hearth gateway on {url} (nats {})", args.nats);
    announce(&config.auth, &url);
    let signal = async {
        shutdown_signal().await;
        eprintln!("hearth gateway: stopping: sockets closed with 1012 (service restart)");
    };
    hearth_gateway::serve(listener, config, signal).await?;
    eprintln!("hearth gateway: stopped");
    Ok(0)
}
