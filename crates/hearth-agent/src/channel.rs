//! Frame I/O with the host over the agent's stdin (host frames in) and stdout (agent
//! frames out). Reads are raw `read(2)` calls into our own buffer, so `poll(2)` on fd 0
//! never misses bytes hidden in a library buffer.

use std::io::{self, Write};
use std::os::fd::RawFd;

use hearth_proto::frame::{self, AgentFrame, FrameError, HostFrame};

/// The host side of the agent's world.
pub struct Channel {
    buf: Vec<u8>,
    eof: bool,
}

/// File descriptor the host's frames arrive on.
pub const INPUT_FD: RawFd = 0;

impl Channel {
    pub fn new() -> Channel {
        Channel { buf: Vec::with_capacity(64 << 10), eof: false }
    }

    /// Sends one frame. A host that went away ends the agent: nobody is left to serve.
    pub fn send(&mut self, f: &AgentFrame) {
        let mut out = io::stdout().lock();
        if frame::write_frame(&mut out, f).is_err() {
            std::process::exit(0);
        }
    }

    /// True once the host closed its end.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// One `read(2)` from the host into the buffer (call when fd 0 is readable).
    pub fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 64 << 10];
        loop {
            match nix::unistd::read(INPUT_FD, &mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next complete frame already buffered, if any.
    pub fn next(&mut self) -> Result<Option<HostFrame>, FrameError> {
        match frame::decode::<HostFrame>(&self.buf)? {
            Some((f, used)) => {
                self.buf.drain(..used);
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    /// Blocks until a whole frame arrives; `Ok(None)` when the host closed the stream.
    pub fn recv(&mut self) -> Result<Option<HostFrame>, FrameError> {
        loop {
            if let Some(f) = self.next()? {
                return Ok(Some(f));
            }
            if self.eof {
                return if self.buf.is_empty() { Ok(None) } else { Err(FrameError::Truncated) };
            }
            self.fill()?;
        }
    }
}

/// Writes a line to the agent's stderr (the host logs it); never fails.
pub fn log(message: &str) {
    let _ = writeln!(io::stderr(), "hearth-agent: {message}");
}
