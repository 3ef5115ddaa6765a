//! The frame loop: say Ready, answer pings, run what the host sends.

use hearth_proto::frame::{AgentFrame, HostFrame, Ready, VERSION};

use crate::channel::{log, Channel};
use crate::runner;

/// How a session with the host ended.
pub struct Ended {
    /// A run was served (the sandbox is spent).
    pub ran: bool,
    /// The host sent something that is not a frame.
    pub bad_frame: bool,
}

/// Serves frames on stdin/stdout until the host closes the stream, then exits.
pub fn serve() -> ! {
    let ended = session();
    std::process::exit(if ended.bad_frame { 1 } else { 0 })
}

/// One session with the host on fds 0 and 1: Ready, then frames until the host closes.
pub fn session() -> Ended {
    // SAFETY: plain signal-disposition change at start-up, before any other thread exists;
    // writes to a closed host pipe become EPIPE errors instead of killing the agent.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if nix::unistd::getpid().as_raw() == 1 {
        // PID 1 of its own world: never the OOM killer's choice over the program it runs.
        let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    }
    // Built now, before Ready: a run then only installs them.
    if let Err(e) = crate::seccomp::filters() {
        log(&e);
    }
    let mut chan = Channel::new();
    chan.send(&AgentFrame::Ready(Ready { protocol: VERSION, agent_version: env!("CARGO_PKG_VERSION").to_string() }));
    let mut prepared = None;
    let mut ended = Ended { ran: false, bad_frame: false };
    loop {
        match chan.recv() {
            Ok(Some(HostFrame::Ping)) => chan.send(&AgentFrame::Pong),
            Ok(Some(HostFrame::Prepare(p))) => {
                if let Some(old) = prepared.take() {
                    runner::Prepared::discard(old);
                }
                match runner::prepare(&p) {
                    Ok(ready) => {
                        prepared = Some(ready);
                        chan.send(&AgentFrame::Prepared);
                    }
                    Err(message) => chan.send(&AgentFrame::Error { message }),
                }
            }
            Ok(Some(HostFrame::Run(run))) => {
                ended.ran = true;
                let result = runner::run(&run, &mut chan, prepared.take());
                chan.send(&AgentFrame::Result(Box::new(result)));
            }
            // Stdin, CloseStdin and Kill only mean something during a run.
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                log(&format!("bad frame from host: {e}"));
                chan.send(&AgentFrame::Error { message: e.to_string() });
                ended.bad_frame = true;
                break;
            }
        }
    }
    if let Some(p) = prepared {
        p.discard();
    }
    ended
}
