//! The host end of Firecracker's vsock: connect to the device's Unix socket, ask for the
//! agent's port with `CONNECT <port>\n`, and read `OK <host port>\n`; from then on the
//! stream is the guest's. Until the agent listens, Firecracker closes such connections, so
//! the connect is retried until the deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Connects to guest `port` through the vsock device at `uds`, retrying until `within`.
pub async fn connect(uds: &Path, port: u32, within: Duration) -> std::io::Result<UnixStream> {
    let deadline = Instant::now() + within;
    loop {
        match try_connect(uds, port).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn try_connect(uds: &Path, port: u32) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(uds).await?;
    s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
    // Read the answer byte by byte: what follows the newline is the agent's.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        if tokio::time::timeout(Duration::from_secs(2), s.read(&mut b))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??
            == 0
        {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "vsock: closed before OK"));
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    if line.starts_with(b"OK ") {
        Ok(s)
    } else {
        Err(std::io::Error::other(format!("vsock: answer {:?}", String::from_utf8_lossy(&line))))
    }
}
