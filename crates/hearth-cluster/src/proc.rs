//! One child process of the cluster: spawned with its output in a log file, signalled by
//! pid, and killed (SIGKILL) when its handle is dropped, so a failing test leaves nothing
//! running.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::ClusterError;

/// A running child.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, ClusterError> {
        let io = |source| ClusterError::Io { what: format!("log file {}", log.display()), source };
        let out = File::options().create(true).append(true).open(log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| ClusterError::Io { what: format!("starting {name}"), source })?;
        Ok(Proc { name: name.to_string(), log: log.to_path_buf(), child, exited: None })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (nothing happens once the process is gone).
    pub fn signal(&mut self, signal: Signal) {
        if self.running() {
            let _ = kill(Pid::from_raw(self.pid() as i32), signal);
        }
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// How it exited, once it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.running();
        self.exited
    }

    /// Waits (polling, without blocking the runtime) until the process exits.
    pub async fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, ClusterError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: self.name.clone(),
                    why: format!("still running {within:?} after it was asked to stop"),
                    log: self.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then reap: the process is gone when this returns.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// The last `lines` lines of a file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
