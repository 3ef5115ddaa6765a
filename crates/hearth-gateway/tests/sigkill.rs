//! The real `hearth executor` binary, SIGKILLed mid-run: the run finishes on a restarted
//! executor (or ends in `internal_error`) within a bound, never stays queued. Needs the
//! `hearth` binary built beside this test (`cargo build -p hearth`) or `$HEARTH_BIN`.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use support::{post_json, run_body, ws_connect, ws_next, Stack};
use tokio::process::{Child, Command};

fn hearth_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HEARTH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("hearth"))
        .find(|p| p.is_file())
        .context("the hearth binary is not built: run `cargo build -p hearth` (or set HEARTH_BIN)")
}

fn spawn_executor(stack: &Stack, id: &str) -> anyhow::Result<Child> {
    let child = Command::new(hearth_bin()?)
        .args(["executor", "--nats", &stack.nats.url, "--id", id, "--slots", "1", "--warm", "1"])
        .arg(format!("--ack-wait-ms={}", stack.bus.ack_wait.as_millis()))
        .arg(format!("--max-deliver={}", stack.bus.max_deliver))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_executor_binary_loses_no_run() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), false).await?;
    let mut first = spawn_executor(&stack, "bin1")?;
    stack.wait_ready(true).await?;
    let mut ws = ws_connect(stack.addr, "session_id=sigkill").await?;
    let code = "import time\nfor i in range(6):\n    print(i, flush=True); time.sleep(0.5)\n";
    let a = post_json(stack.addr, "/v1/runs", &run_body("sigkill", "python", code), Duration::from_secs(30)).await?;
    assert_eq!(a.status, 202);
    let run_id = a.json()["run_id"].as_str().context("run_id")?.to_string();
    loop {
        let ev = ws_next(&mut ws, Duration::from_secs(30)).await?.context("socket closed")?;
        if ev["run_id"] == run_id.as_str() && ev["type"] == "output" {
            break;
        }
    }
    first.start_kill()?; // SIGKILL
    tokio::time::timeout(Duration::from_secs(10), first.wait()).await??;
    let killed = Instant::now();
    let _second = spawn_executor(&stack, "bin2")?;
    let result = loop {
        let ev = ws_next(&mut ws, Duration::from_secs(30)).await?.context("socket closed")?;
        if ev["run_id"] == run_id.as_str() && ev["type"] == "result" {
            break ev;
        }
    };
    eprintln!("final {} {} ms after SIGKILL", result["status"], killed.elapsed().as_millis());
    match result["status"].as_str() {
        Some("ok") => assert_eq!(result["stdout"], "0\n1\n2\n3\n4\n5\n"),
        Some("internal_error") => {}
        other => bail!("unexpected final status {other:?}: {result}"),
    }
    Ok(())
}
