//! An executor that dies mid-run (its task aborted in-process: runs, heartbeat and NATS
//! connection gone without a goodbye, as after SIGKILL) does not leave the run queued
//! forever: it finishes on a restarted executor, or ends in `internal_error` once its
//! deliveries are spent.

mod support;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use support::{post_json, run_body, ws_connect, ws_next, Stack};

const SLOW: &str = "import time\nfor i in range(6):\n    print(i, flush=True); time.sleep(0.5)\n";

/// Waits for `run_id`'s next event of `kind`; returns it.
async fn next_event(ws: &mut support::http::Ws, run_id: &str, kind: &str, within: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = ws_next(ws, left).await?.context("socket closed")?;
        if ev["run_id"] == run_id && ev["type"] == kind {
            return Ok(ev);
        }
        if ev["run_id"] == run_id && ev["type"] == "result" && kind != "result" {
            bail!("the run ended before a {kind} event: {ev}");
        }
    }
}

async fn start_slow_run(stack: &Stack, session: &str) -> anyhow::Result<(support::http::Ws, String)> {
    let mut ws = ws_connect(stack.addr, &format!("session_id={session}")).await?;
    let a = post_json(stack.addr, "/v1/runs", &run_body(session, "python", SLOW), Duration::from_secs(30)).await?;
    assert_eq!(a.status, 202);
    let run_id = a.json()["run_id"].as_str().context("run_id")?.to_string();
    next_event(&mut ws, &run_id, "output", Duration::from_secs(30)).await?;
    Ok((ws, run_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_executor_died_finishes_on_a_restarted_one() -> anyhow::Result<()> {
    let mut stack = Stack::start(support::quick_bus(), true).await?;
    let (mut ws, run_id) = start_slow_run(&stack, "failover").await?;
    stack.kill_executor().await;
    let killed = Instant::now();
    stack.start_executor("ex2").await?;
    // Bound: ack_wait (2 s) for the redelivery, ~3 s of run, plus slack.
    let result = next_event(&mut ws, &run_id, "result", Duration::from_secs(30)).await?;
    eprintln!("result {} ms after the kill: {}", killed.elapsed().as_millis(), result["status"]);
    match result["status"].as_str() {
        Some("ok") => assert_eq!(result["stdout"], "0\n1\n2\n3\n4\n5\n", "a full rerun"),
        Some("internal_error") => {}
        other => bail!("unexpected final status {other:?}: {result}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_kills_every_executor_ends_in_internal_error() -> anyhow::Result<()> {
    let mut stack = Stack::start(support::quick_bus(), true).await?;
    let max_deliver = stack.bus.max_deliver;
    let (mut ws, run_id) = start_slow_run(&stack, "doomed").await?;
    // Every delivery but the last one is run; kill the executor under each.
    for n in 2..max_deliver {
        stack.kill_executor().await;
        stack.start_executor(&format!("ex{n}")).await?;
        let running = next_event(&mut ws, &run_id, "status", Duration::from_secs(30)).await?;
        assert_eq!((running["status"].as_str(), running["attempt"].as_i64()), (Some("running"), Some(n)), "{running}");
        next_event(&mut ws, &run_id, "output", Duration::from_secs(30)).await?;
    }
    stack.kill_executor().await;
    let killed = Instant::now();
    stack.start_executor("last").await?;
    let result = next_event(&mut ws, &run_id, "result", Duration::from_secs(30)).await?;
    assert_eq!(result["status"], "internal_error", "{result}");
    assert!(result["message"].as_str().is_some_and(|m| m.contains("no executor finished it")), "{result}");
    eprintln!("internal_error {} ms after the last kill", killed.elapsed().as_millis());
    Ok(())
}
