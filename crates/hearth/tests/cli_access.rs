//! The `hearth` binary's access modes, as a person starting it sees them: `hearth gateway`
//! refuses to start without API keys unless `--dev`, refuses anonymous access off loopback,
//! serves anonymous callers with `--dev` (and says so loudly) but not with keys alone, and
//! `hearth up` starts in dev mode and says so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
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

/// A child process that is killed when dropped (a failing assert must not leave it behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A nats-server with JetStream on a port it picks itself, and its client URL.
fn nats_server(dir: &Path) -> (Killed, String) {
    let binary = std::env::var_os("HEARTH_NATS_SERVER").expect("HEARTH_NATS_SERVER (scripts/test sets it)");
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "--ports_file_dir"])
        .arg(dir)
        .arg("-sd")
        .arg(dir.join("js"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let ports = dir.join(format!("nats-server_{}.ports", child.id()));
    let server = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ports) {
            if let Some(url) = text.split('"').find(|p| p.starts_with("nats://")) {
                return (server, url.to_string());
            }
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// stderr lines of `child`, as they come.
fn lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The HTTP status of an anonymous `GET path` (one request, bounded).
fn anonymous_get(addr: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("the gateway listens");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok());
    status.unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

/// Starts `hearth gateway` with `args` against `nats`; returns it, its address and what it
/// said on stderr up to and including its "hearth gateway on" line (and the lines after it
/// for a moment: the banner).
fn gateway(nats: &str, args: &[&str], env: &[(&str, &str)]) -> (Killed, String, String) {
    let mut cmd = hearth();
    cmd.args(["gateway", "--listen", "127.0.0.1:0", "--nats", nats]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("hearth gateway starts");
    let rx = lines(&mut child);
    let child = Killed(child);
    let mut said = String::new();
    let addr = loop {
        let line =
            rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no 'hearth gateway on' line: {said}"));
        said.push_str(&line);
        said.push('\n');
        if let Some(rest) = line.strip_prefix("hearth gateway on http://") {
            break rest.split_whitespace().next().expect("an address").to_string();
        }
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
        said.push_str(&line);
        said.push('\n');
    }
    (child, addr, said)
}

#[test]
fn dev_mode_serves_anonymous_callers_and_says_so_and_keys_alone_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, url) = nats_server(dir.path());
    let unknown = "/v1/runs/0190aaaa-0000-7000-8000-000000000000";

    let (_dev, addr, said) = gateway(&url, &["--dev"], &[]);
    assert!(said.contains("DEV MODE: anonymous access") && said.contains(&addr), "{said}");
    // Served: an unknown run is a 404, not a 401.
    assert_eq!(anonymous_get(&addr, unknown), 404, "{said}");

    let (_keyed, addr, said) = gateway(&url, &[], &[("HEARTH_API_KEYS", "backend=a-key-0123456789abcdef")]);
    assert!(!said.contains("DEV MODE") && said.contains("1 API key(s) accepted"), "{said}");
    assert_eq!(anonymous_get(&addr, unknown), 401, "{said}");
    assert_eq!(anonymous_get(&addr, "/healthz"), 200, "public endpoints stay public");
}
