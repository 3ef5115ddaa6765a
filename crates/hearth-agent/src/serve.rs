//! The frame loop: say Ready, answer pings, run what the host sends.

use hearth_proto::frame::{AgentFrame, HostFrame, Ready, VERSION};

use crate::channel::{log, Channel};
use crate::runner;

/// Serves frames on stdin/stdout until the host closes the stream.
pub fn serve() -> ! {
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
                let result = runner::run(&run, &mut chan, prepared.take());
                chan.send(&AgentFrame::Result(Box::new(result)));
            }
            // Stdin, CloseStdin and Kill only mean something during a run.
            Ok(Some(_)) => {}
            Ok(None) => std::process::exit(0),
            Err(e) => {
                log(&format!("bad frame from host: {e}"));
                chan.send(&AgentFrame::Error { message: e.to_string() });
                std::process::exit(1);
            }
        }
    }
}
