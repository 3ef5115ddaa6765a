//! `hearth cluster up` and `hearth cluster load` as the README and docs/deploy.md show them:
//! the command prints every part's address and pid, runs answer on every gateway, the load
//! client finishes with nothing lost, and Ctrl-C (SIGINT) stops every process it started.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_cluster::http;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// SIGKILLs what is left of the cluster when the test ends early.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still answers kill(0); its state in /proc says it is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_up_serves_runs_on_every_gateway_and_ctrl_c_stops_every_part() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = support::LogsOnFailure::new(dir.path());
    // First ports from free ones; `cluster up` replaces any that are busy by then.
    let nats_port = hearth_cluster::nats::free_port()?.clamp(10_000, 55_000);
    let gateway_port = hearth_cluster::nats::free_port()?.clamp(10_000, 60_000);
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["cluster", "up", "--fresh", "--executors", "1", "--slots", "1"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--nats-server".into(), support::nats_server().display().to_string()])
        .args(["--nats-port".into(), nats_port.to_string(), "--gateway-port".into(), gateway_port.to_string()])
        .env("HEARTH_LOG", "info,async_nats=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut guard = KillOnDrop(vec![up.id().context("pid")?]);
    let mut lines = BufReader::new(up.stdout.take().context("stdout")?).lines();

    // What it prints: a line per part with its pid, gateways with their URL, then the NATS URLs.
    let (mut gateways, mut pids, mut nats, mut parts) = (Vec::<SocketAddr>::new(), Vec::new(), None, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = deadline.checked_duration_since(Instant::now()).context("cluster up did not say it was up")?;
        let line = tokio::time::timeout(left, lines.next_line()).await??.context("cluster up ended early")?;
        eprintln!("cluster up: {line}");
        if let Some(pid) = line.split("(pid ").nth(1).and_then(|p| p.trim_end_matches(')').parse::<u32>().ok()) {
            pids.push(pid);
            guard.0.push(pid);
            parts.push(line.split_whitespace().next().unwrap_or_default().to_string());
        }
        if let Some(url) = line.split("http://").nth(1) {
            gateways.push(url.split_whitespace().next().context("gateway address")?.parse()?);
        }
        if let Some(urls) = line.split("--nats ").nth(1) {
            nats = Some(urls.trim().to_string());
        }
        if line.contains("Ctrl-C stops all") {
            break;
        }
    }
    assert_eq!(parts, ["gateway-1", "gateway-2", "ex-1", "nats-1", "nats-2", "nats-3"], "every part, with its pid");
    assert_eq!(gateways.len(), 2);
    let nats = nats.context("the NATS URLs line")?;
    assert_eq!(nats.split(',').count(), 3, "{nats}");

    for (i, gw) in gateways.iter().enumerate() {
        let body =
            json!({"user_id": "u", "session_id": format!("up{i}"), "lang": "bash", "code": format!("echo via {i}")});
        let a = http::post_json(*gw, "/v1/runs?wait=true", &body, Duration::from_secs(60)).await?;
        assert_eq!(a.status, 200, "{gw}: {:?}", a.body);
        assert_eq!(
            (a.json()["status"].as_str(), a.json()["stdout"].as_str()),
            (Some("ok"), Some(&*format!("via {i}\n")))
        );
    }

    // `hearth cluster load`, as docs/deploy.md runs it, against this cluster.
    let g = gateways.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(",");
    let load = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["cluster", "load", "--seconds", "3", "--every-ms", "250", "--gateways", &g, "--nats", &nats])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let load = tokio::time::timeout(Duration::from_secs(120), load).await??;
    let said = String::from_utf8_lossy(&load.stdout);
    eprintln!("cluster load: {said}{}", String::from_utf8_lossy(&load.stderr));
    assert!(load.status.success(), "cluster load: {said}");
    assert!(said.contains(", lost 0,") && said.contains("wrong answers 0"), "{said}");
    let sent: u64 = said.split("runs sent ").nth(1).and_then(|s| s.split(',').next()).context("runs sent")?.parse()?;
    assert!(sent >= 8, "a steady load for 3 s: {said}");

    // Ctrl-C: everything it started stops, and it exits 0.
    kill(Pid::from_raw(up.id().context("pid")? as i32), Signal::SIGINT)?;
    let status = tokio::time::timeout(Duration::from_secs(90), up.wait()).await??;
    assert!(status.success(), "cluster up after Ctrl-C: {status}");
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "parts still running after Ctrl-C: {left:?}");
    logs.passed();
    Ok(())
}
