//! The host end of the agent protocol over any async byte stream pair.

use hearth_proto::frame::{self, AgentFrame, HostFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::SandboxError;

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A framed connection to one agent.
pub struct AgentConn {
    id: String,
    reader: Reader,
    writer: Writer,
    buf: Vec<u8>,
}

impl AgentConn {
    pub fn new(id: String, reader: Reader, writer: Writer) -> AgentConn {
        AgentConn { id, reader, writer, buf: Vec::with_capacity(64 << 10) }
    }

    /// Sends one frame.
    pub async fn send(&mut self, f: &HostFrame) -> Result<(), SandboxError> {
        let mut out = Vec::new();
        frame::encode(f, &mut out).map_err(|source| SandboxError::Protocol { id: self.id.clone(), source })?;
        self.writer.write_all(&out).await.map_err(|source| self.io(source))?;
        self.writer.flush().await.map_err(|source| self.io(source))
    }

    fn io(&self, source: std::io::Error) -> SandboxError {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            SandboxError::Closed { id: self.id.clone(), during: " (broken pipe)" }
        } else {
            SandboxError::Io { id: self.id.clone(), source }
        }
    }

    /// Receives the next frame; `Ok(None)` when the agent closed the stream. Cancel-safe:
    /// bytes read are kept in the connection's buffer.
    pub async fn recv(&mut self) -> Result<Option<AgentFrame>, SandboxError> {
        loop {
            match frame::decode::<AgentFrame>(&self.buf) {
                Ok(Some((f, used))) => {
                    self.buf.drain(..used);
                    return Ok(Some(f));
                }
                Ok(None) => {}
                Err(source) => return Err(SandboxError::Protocol { id: self.id.clone(), source }),
            }
            let mut chunk = [0u8; 64 << 10];
            let n = self.reader.read(&mut chunk).await.map_err(|source| self.io(source))?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
