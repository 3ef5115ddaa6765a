//! The `hearth` binary's access modes, as a person starting it sees them: `hearth gateway`
//! refuses to start without API keys unless `--dev`, refuses anonymous access off loopback,
//! and `hearth up` starts in dev mode and says so.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for var in ["HEARTH_API_KEYS", "HEARTH_AUTH_FILE", "HEARTH_SESSION_SECRET", "HEARTH_LISTEN", "HEARTH_NATS"] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end (bounded) and returns (exit code, stderr).
fn finish(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("hearth starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hearth did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_gateway_wants_keys_or_an_explicit_dev_mode_and_dev_mode_only_on_loopback() {
    let mut cmd = hearth();
    cmd.args(["gateway", "--listen", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1"]);
    let (code, err) = finish(cmd);
    assert_ne!(code, Some(0));
    assert!(err.contains("no API keys configured") && err.contains("--dev"), "{err}");

    let mut cmd = hearth();
    cmd.args(["gateway", "--dev", "--listen", "0.0.0.0:0", "--nats", "nats://127.0.0.1:1"]);
    let (code, err) = finish(cmd);
    assert_ne!(code, Some(0));
    assert!(err.contains("DEV MODE"), "{err}");
    assert!(err.contains("refusing anonymous access"), "{err}");
}

#[test]
fn hearth_up_starts_in_dev_mode_and_says_so() {
    let (Some(agent), Some(nats)) = (std::env::var_os("HEARTH_AGENT"), std::env::var_os("HEARTH_NATS_SERVER")) else {
        panic!("HEARTH_AGENT and HEARTH_NATS_SERVER must be set (scripts/test sets them)");
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = hearth()
        .args(["up", "--listen", "127.0.0.1:0", "--slots", "1", "--prepared", "0"])
        .arg("--nats-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .env("HEARTH_AGENT", agent)
        .env("HEARTH_NATS_SERVER", nats)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hearth up starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(90));
    // Stop it as a person would (SIGTERM, via the `kill` command), then wait.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(40);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let line = line.unwrap_or_else(|_| panic!("hearth up printed nothing within 90 s; stderr: {err}"));
    assert!(line.starts_with("hearth is up: http://127.0.0.1:"), "{line}");
    assert!(line.contains("dev mode: anonymous, loopback only"), "{line}");
    assert!(err.contains("DEV MODE: anonymous access"), "{err}");
}
