//! A small QMP client (QEMU's JSON control protocol): the greeting, capability negotiation,
//! then one command at a time, skipping the asynchronous events QEMU sends in between.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::timeout;

/// Why QMP failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("qmp i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("qmp: no answer within {0:?}")]
    Timeout(Duration),
    #[error("qmp: connection closed")]
    Closed,
    #[error("qmp: bad message {0:?}")]
    Bad(String),
    #[error("qmp command {command} failed: {desc}")]
    Command { command: String, desc: String },
}

/// A negotiated QMP connection.
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    wait: Duration,
}

impl Qmp {
    /// Reads the greeting and leaves negotiation mode.
    pub async fn handshake(stream: UnixStream, wait: Duration) -> Result<Qmp, QmpError> {
        let (r, w) = stream.into_split();
        let mut qmp = Qmp { reader: BufReader::new(r), writer: w, wait };
        let greeting = qmp.read().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Bad(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities").await?;
        Ok(qmp)
    }

    async fn read(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n =
            timeout(self.wait, self.reader.read_line(&mut line)).await.map_err(|_| QmpError::Timeout(self.wait))??;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Bad(line.trim().to_string()))
    }

    /// Runs `command` and returns its `return` value.
    pub async fn execute(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command }).to_string();
        msg.push('\n');
        self.writer.write_all(msg.as_bytes()).await?;
        loop {
            let v = self.read().await?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                let desc = e.get("desc").and_then(Value::as_str).unwrap_or("").to_string();
                return Err(QmpError::Command { command: command.into(), desc });
            }
            // {"event": ...}: not ours.
        }
    }

    /// The VM's run state (`running`, `paused`, `shutdown`...).
    pub async fn status(&mut self) -> Result<String, QmpError> {
        let v = self.execute("query-status").await?;
        Ok(v.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string())
    }

    /// Asks QEMU to exit now (no guest shutdown: the VM is disposable).
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit").await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QMP peer played by the test: QEMU's greeting, the negotiation, an event in the
    /// way of an answer, an error.
    #[tokio::test]
    async fn commands_get_their_answers_past_events() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let peer = tokio::spawn(async move {
            let (r, mut w) = theirs.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").await.unwrap();
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            assert!(line.contains("qmp_capabilities"));
            w.write_all(b"{\"return\": {}}\n").await.unwrap();
            line.clear();
            r.read_line(&mut line).await.unwrap();
            assert!(line.contains("query-status"));
            w.write_all(b"{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\", \"running\": true}}\n")
                .await
                .unwrap();
            line.clear();
            r.read_line(&mut line).await.unwrap();
            w.write_all(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n").await.unwrap();
        });
        let mut qmp = Qmp::handshake(ours, Duration::from_secs(5)).await.unwrap();
        assert_eq!(qmp.status().await.unwrap(), "running");
        assert!(matches!(qmp.execute("stop").await, Err(QmpError::Command { desc, .. }) if desc == "no"));
        peer.await.unwrap();
    }
}
