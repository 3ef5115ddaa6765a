//! Chaos on a local cluster of the real binaries (three clustered nats-servers with R3
//! streams, two gateways, two executors), each fault under a steady load of runs from a
//! client that checks every answer (`hearth_cluster::load`). Each test prints runs sent,
//! finished, lost and duplicates seen, and asserts that nothing acknowledged is lost and
//! every answer is right.

mod support;

#[path = "../../../tests/support/sandboxes.rs"]
mod sandboxes;

use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_cluster::http::{self, WsNext};
use hearth_cluster::{Load, LoadSpec, LocalCluster, Program};
use serde_json::json;
use support::{check, until, LogsOnFailure};

async fn start(dir: &std::path::Path) -> anyhow::Result<LocalCluster> {
    Ok(LocalCluster::start(support::spec(dir, 3, 2, 2)).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_executor_mid_load() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = LogsOnFailure::new(dir.path());
    let mut cluster = start(dir.path()).await?;
    let mut spec = LoadSpec::new("exkill", cluster.gateway_addrs(), &cluster.nats_urls());
    spec.program = Program::Sleepy { ms: 800 };
    spec.every = Duration::from_millis(500);
    let load = Load::start(spec).await?;
    load.wait_for(4, 2, Duration::from_secs(60)).await?;
    until(Duration::from_secs(30), "ex-1 holds a run", || !load.in_flight_on("ex-1").is_empty()).await?;
    let in_flight = load.in_flight_on("ex-1");
    cluster.executor("ex-1").context("ex-1")?.proc.kill();
    eprintln!("SIGKILLed ex-1 with {} runs in hand: {in_flight:?}", in_flight.len());
    let at_kill = load.sent();
    load.wait_for(at_kill + 10, 0, Duration::from_secs(60)).await?;
    let report = load.finish(Duration::from_secs(90)).await;
    check("sigkill-executor", &report);
    let elsewhere = in_flight.iter().filter(|id| report.ran_on.get(*id).map(String::as_str) == Some("ex-2")).count();
    eprintln!("of the runs in hand on ex-1, {elsewhere} finished on ex-2 after redelivery");
    assert!(elsewhere >= 1, "a run in hand on the killed executor was redelivered and finished on ex-2");
    assert!(report.redelivered >= elsewhere as u64);
    cluster.stop(Duration::from_secs(30)).await;
    logs.passed();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_nats_server_of_three_mid_load() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = LogsOnFailure::new(dir.path());
    let mut cluster = start(dir.path()).await?;
    let mut spec = LoadSpec::new("natskill", cluster.gateway_addrs(), &cluster.nats_urls());
    spec.program = Program::Sleepy { ms: 300 };
    let load = Load::start(spec).await?;
    load.wait_for(6, 3, Duration::from_secs(60)).await?;
    // The most harmful node to lose: the one leading the run queue.
    let leader = support::stream_leader(&mut cluster, "RUNS").await?;
    let node = cluster.nats.iter_mut().find(|n| n.name == format!("nats-{}", &leader[1..])).context("leader node")?;
    node.kill();
    eprintln!("SIGKILLed {} (leader of RUNS) with {} runs sent", node.name, load.sent());
    let (at_kill, killed) = (load.sent(), Instant::now());
    // The load goes on on the two nodes left (the streams elect new leaders).
    load.wait_for(at_kill + 15, 0, Duration::from_secs(90)).await?;
    eprintln!("15 more runs sent {} ms after the kill", killed.elapsed().as_millis());
    let report = load.finish(Duration::from_secs(90)).await;
    check("sigkill-nats", &report);
    assert!(report.sent >= at_kill + 15, "runs were acknowledged after the node died");
    assert_eq!(report.gaps, 0, "every stored event reached its socket: {:?}", report.problems);
    let new_leader = support::stream_leader(&mut cluster, "RUNS").await?;
    assert_ne!(new_leader, leader, "another node leads RUNS now");
    cluster.stop(Duration::from_secs(30)).await;
    logs.passed();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_gateway_a_websocket_is_on() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = LogsOnFailure::new(dir.path());
    let mut cluster = start(dir.path()).await?;
    // Session i watches from gateway i % 2: sessions 0 and 2 are on gateway-1.
    let mut spec = LoadSpec::new("gwkill", cluster.gateway_addrs(), &cluster.nats_urls());
    spec.program = Program::Sleepy { ms: 200 };
    let load = Load::start(spec).await?;
    load.wait_for(6, 3, Duration::from_secs(60)).await?;
    cluster.gateways[0].proc.kill();
    eprintln!("SIGKILLed gateway-1 with {} runs sent", load.sent());
    let at_kill = load.sent();
    load.wait_for(at_kill + 10, 0, Duration::from_secs(60)).await?;
    let report = load.finish(Duration::from_secs(60)).await;
    check("sigkill-gateway", &report);
    assert!(report.reconnects >= 2, "the sockets on gateway-1 reconnected to gateway-2: {report}");
    assert_eq!(report.replayed, 0, "no event came twice after the reconnect (since=)");
    assert_eq!(report.gaps, 0, "no event was missed across the reconnect: {:?}", report.problems);
    assert_eq!(report.duplicates, 0);
    cluster.stop(Duration::from_secs(30)).await;
    logs.passed();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_a_sandbox_mid_run() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = LogsOnFailure::new(dir.path());
    let mut cluster = start(dir.path()).await?;
    let gateways = cluster.gateway_addrs();
    let nats = cluster.nats_urls();
    let spec = LoadSpec::new("sbkill", gateways.clone(), &nats);
    let load = Load::start(spec).await?;
    load.wait_for(4, 2, Duration::from_secs(60)).await?;

    // The victim: a run that prints, then sleeps long; its sandbox is killed from outside.
    let mut ws = http::ws_connect(gateways[1], "session_id=victim").await?;
    let body = json!({"user_id": "u", "session_id": "victim", "lang": "bash",
        "code": "echo started; sleep 29.7; echo never", "limits": {"wall_ms": 40000}});
    let a = http::post_json(gateways[0], "/v1/runs", &body, Duration::from_secs(15)).await?;
    anyhow::ensure!(a.status == 202, "victim not accepted: {}", a.status);
    let run_id = a.json()["run_id"].as_str().context("run_id")?.to_string();
    let mut executor = None;
    loop {
        match http::ws_next(&mut ws, Duration::from_secs(30)).await {
            Some(WsNext::Event(ev)) if ev["run_id"] == run_id.as_str() => {
                if ev["type"] == "status" && ev["status"] == "running" {
                    executor = ev["executor"].as_str().map(str::to_owned);
                }
                if ev["type"] == "output" {
                    break;
                }
            }
            Some(WsNext::Event(_)) => {}
            other => anyhow::bail!("victim's socket: {other:?}"),
        }
    }
    let executor = executor.context("the victim's executor")?;
    let pid = cluster.executor(&executor).context("victim executor")?.proc.pid();
    // `started` can reach the socket before bash has forked and exec'd `sleep` (a loaded
    // machine): look for it a while.
    let mut sandbox = None;
    until(Duration::from_secs(10), "the victim's `sleep` in its sandbox", || {
        sandbox = sandboxes::find(|p| p.cmdline == "sleep 29.7" && sandboxes::owned_by(p, pid));
        sandbox.is_some()
    })
    .await?;
    let sandbox = sandbox.context("the victim's sandbox")?;
    let done_before = support::heartbeat(&nats, &executor).await?["runs_done"].as_u64().unwrap_or(0);
    let killed = Instant::now();
    assert!(sandboxes::kill(&sandbox) > 0);
    eprintln!("SIGKILLed every process of sandbox {sandbox} on {executor}");
    let result = loop {
        match http::ws_next(&mut ws, Duration::from_secs(30)).await {
            Some(WsNext::Event(ev)) if ev["run_id"] == run_id.as_str() => {
                anyhow::ensure!(ev["status"] != "running", "the victim was started again: {ev}");
                if ev["type"] == "result" {
                    break ev;
                }
            }
            Some(WsNext::Event(_)) => {}
            other => anyhow::bail!("victim's socket: {other:?}"),
        }
    };
    let took = killed.elapsed();
    eprintln!("victim ended {} {} ms after the kill", result["status"], took.as_millis());
    assert_eq!(result["status"], "sandbox_error", "{result}");
    // Within the pool's health interval (5 s), not at the run's 40 s wall limit.
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Not run again: past ack_wait (3 s) the victim's session stays quiet.
    match http::ws_next(&mut ws, Duration::from_secs(5)).await {
        None => {}
        Some(WsNext::Event(ev)) => anyhow::bail!("the victim came back: {ev}"),
        Some(other) => anyhow::bail!("victim's socket: {other:?}"),
    }
    // The slot was replaced: the executor goes on finishing runs of the load.
    let mut done_after = done_before;
    let deadline = Instant::now() + Duration::from_secs(60);
    while done_after < done_before + 5 {
        anyhow::ensure!(Instant::now() < deadline, "{executor} finished no runs after the kill");
        done_after = support::heartbeat(&nats, &executor).await?["runs_done"].as_u64().unwrap_or(0);
    }
    let report = load.finish(Duration::from_secs(60)).await;
    check("sigkill-sandbox", &report);
    // And its pool is full again once the load is over.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hb = support::heartbeat(&nats, &executor).await?;
        let (ready, busy) = (hb["ready"].as_u64().unwrap_or(0), hb["busy"].as_u64().unwrap_or(1));
        if busy == 0 && ready >= hb["warm"].as_u64().unwrap_or(u64::MAX) {
            eprintln!("{executor}: {ready} sandboxes ready again, none busy");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{executor}'s pool did not refill: {hb}");
    }
    cluster.stop(Duration::from_secs(30)).await;
    logs.passed();
    Ok(())
}
