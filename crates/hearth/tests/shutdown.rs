//! Graceful shutdown of the real binaries. SIGTERM to an executor: it takes no more runs,
//! lets the runs in hand finish, then exits 0; past its drain deadline it hands what is left
//! back for another executor. SIGTERM to a gateway: every WebSocket is closed with 1012
//! ("service restart", the UI reconnects on it), a `?wait=true` request is answered with what
//! is known, and the client resumes on the other gateway with `since=`, missing nothing.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_cluster::http::{self, Ws, WsNext, SERVICE_RESTART};
use hearth_cluster::LocalCluster;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use support::LogsOnFailure;

async fn submit(gateway: SocketAddr, session: &str, lang: &str, code: &str) -> anyhow::Result<String> {
    let body = json!({"user_id": "u", "session_id": session, "lang": lang, "code": code, "limits": {"wall_ms": 20000}});
    let a = http::post_json(gateway, "/v1/runs", &body, Duration::from_secs(15)).await?;
    anyhow::ensure!(a.status == 202, "POST answered {}: {:?}", a.status, a.body);
    Ok(a.json()["run_id"].as_str().context("run_id")?.to_string())
}

/// Events of the socket until `until` holds for one, or it closes; everything seen.
async fn read_until(
    ws: &mut Ws,
    within: Duration,
    mut until: impl FnMut(&Value) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now()).context("nothing in time")?;
        match http::ws_next(ws, left).await {
            Some(WsNext::Event(ev)) => {
                let done = until(&ev);
                seen.push(ev);
                if done {
                    return Ok(seen);
                }
            }
            other => anyhow::bail!("socket: {other:?} after {seen:?}"),
        }
    }
}

fn of<'a>(events: &'a [Value], run_id: &str, kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["run_id"] == run_id && e["type"] == kind).collect()
}

async fn start(dir: &std::path::Path, gateways: usize, executors: usize) -> anyhow::Result<LocalCluster> {
    Ok(LocalCluster::start(support::spec(dir, 1, gateways, executors)).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_an_executor_lets_its_runs_finish_and_takes_no_more() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = LogsOnFailure::new(dir.path());
    let mut cluster = start(dir.path(), 1, 1).await?;
    let gw = cluster.gateway_addrs()[0];
    let mut ws = http::ws_connect(gw, "session_id=drain").await?;
    let long = submit(gw, "drain", "bash", "echo start; sleep 3; echo end").await?;
    let mut events =
        read_until(&mut ws, Duration::from_secs(30), |e| e["run_id"] == long.as_str() && e["type"] == "output").await?;
    cluster.spawn_executor(&[])?;
    cluster.wait_ready(2, Duration::from_secs(60)).await?;

    cluster.executor("ex-1").context("ex-1")?.proc.signal(Signal::SIGTERM);
    let termed = Instant::now();
    let mut quick = Vec::new();
    for i in 0..3 {
        quick.push(submit(gw, "drain", "bash", &format!("echo quick{i}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(cluster.executor("ex-1").context("ex-1")?.proc.running(), "ex-1 waits for its run in hand");
    let mut done = 0;
    events.extend(
        read_until(&mut ws, Duration::from_secs(60), |e| {
            if e["type"] == "result" {
                done += 1;
            }
            done == 4
        })
        .await?,
    );
    let status = cluster.executor("ex-1").context("ex-1")?.proc.wait_exit(Duration::from_secs(20)).await?;
    eprintln!("ex-1 exited {status} {} ms after SIGTERM", termed.elapsed().as_millis());
    assert!(status.success(), "a drained executor exits 0: {status}");

    let result = of(&events, &long, "result")[0];
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("start\nend\n")), "{result}");
    let starts = of(&events, &long, "status").into_iter().filter(|e| e["status"] == "running").collect::<Vec<_>>();
    assert_eq!(starts.len(), 1, "the run in hand finished where it was, once: {starts:?}");
    assert_eq!(starts[0]["executor"], "ex-1");
    for (i, id) in quick.iter().enumerate() {
        let r = of(&events, id, "result")[0];
        assert_eq!(r["stdout"], format!("quick{i}\n"));
        for start in of(&events, id, "status").into_iter().filter(|e| e["status"] == "running") {
            assert_eq!(start["executor"], "ex-2", "a stopping executor takes no new run: {start}");
        }
    }
    cluster.stop(Duration::from_secs(30)).await;
    logs.passed();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_past_its_drain_deadline_hands_its_runs_back() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = LogsOnFailure::new(dir.path());
    let mut cluster = start(dir.path(), 1, 0).await?;
    cluster.spawn_executor(&["--drain-timeout-s=1".to_string()])?;
    cluster.wait_ready(1, Duration::from_secs(60)).await?;
    let gw = cluster.gateway_addrs()[0];
    let mut ws = http::ws_connect(gw, "session_id=deadline").await?;
    let run = submit(gw, "deadline", "bash", "echo start; sleep 4; echo end").await?;
    let mut events =
        read_until(&mut ws, Duration::from_secs(30), |e| e["run_id"] == run.as_str() && e["type"] == "output").await?;
    cluster.spawn_executor(&[])?;
    cluster.wait_ready(2, Duration::from_secs(60)).await?;

    let ex1 = &mut cluster.executor("ex-1").context("ex-1")?.proc;
    ex1.signal(Signal::SIGTERM);
    let termed = Instant::now();
    let status = ex1.wait_exit(Duration::from_secs(15)).await?;
    eprintln!("ex-1 exited {status} {} ms after SIGTERM (drain deadline 1 s)", termed.elapsed().as_millis());
    assert!(status.success(), "{status}");
    events.extend(
        read_until(&mut ws, Duration::from_secs(60), |e| e["run_id"] == run.as_str() && e["type"] == "result").await?,
    );
    let result = of(&events, &run, "result")[0];
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("start\nend\n")), "{result}");
    let starts: Vec<&Value> = of(&events, &run, "status").into_iter().filter(|e| e["status"] == "running").collect();
    assert_eq!(starts.len(), 2, "started on ex-1, handed back, run again on ex-2: {starts:?}");
    assert_eq!((starts[0]["executor"].as_str(), starts[1]["executor"].as_str()), (Some("ex-1"), Some("ex-2")));
    cluster.stop(Duration::from_secs(30)).await;
    logs.passed();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_gateway_closes_sockets_with_1012_and_the_client_resumes_elsewhere() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let logs = LogsOnFailure::new(dir.path());
    let mut cluster = start(dir.path(), 2, 1).await?;
    let (gw1, gw2) = (cluster.gateway_addrs()[0], cluster.gateway_addrs()[1]);
    let mut ws = http::ws_connect(gw1, "session_id=gwterm").await?;
    let first = submit(gw1, "gwterm", "bash", "echo one").await?;
    let seen = read_until(&mut ws, Duration::from_secs(30), |e| e["run_id"] == first.as_str() && e["type"] == "result")
        .await?;
    let last = seen.iter().filter_map(|e| e["seq"].as_u64()).max().context("a seq")?;
    // A synchronous request in flight when the gateway is asked to stop.
    let body = json!({"user_id": "u", "session_id": "gwterm", "lang": "bash", "code": "echo two; sleep 3; echo three"});
    let waiting =
        tokio::spawn(async move { http::post_json(gw1, "/v1/runs?wait=true", &body, Duration::from_secs(30)).await });
    read_until(&mut ws, Duration::from_secs(30), |e| e["type"] == "output" && e["output"] == "two\n").await?;

    let g1 = &mut cluster.gateways[0].proc;
    g1.signal(Signal::SIGTERM);
    let closed = loop {
        match http::ws_next(&mut ws, Duration::from_secs(10)).await {
            Some(WsNext::Event(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(closed, Some(WsNext::Closed(Some(SERVICE_RESTART))), "closed with 1012 service restart");
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting).await???;
    assert_eq!(answer.status, 202, "the waiting request is answered with what is known: {:?}", answer.body);
    let run_id = answer.json()["run_id"].as_str().context("run_id")?.to_string();
    let status = g1.wait_exit(Duration::from_secs(15)).await?;
    assert!(status.success(), "{status}");

    // The client resumes on the other gateway after the last seq it saw: the events it missed
    // come, and nothing it had comes again.
    let mut ws = http::ws_connect(gw2, &format!("session_id=gwterm&since={last}")).await?;
    let rest =
        read_until(&mut ws, Duration::from_secs(30), |e| e["run_id"] == run_id.as_str() && e["type"] == "result")
            .await?;
    assert!(rest.iter().all(|e| e["seq"].as_u64() > Some(last)), "nothing before since: {rest:?}");
    assert!(rest.iter().all(|e| e["run_id"] == run_id.as_str()), "only the run after since: {rest:?}");
    let outputs: String = of(&rest, &run_id, "output").iter().filter_map(|e| e["output"].as_str()).collect();
    assert_eq!(outputs, "two\nthree\n", "every output event, once: {rest:?}");
    assert_eq!(of(&rest, &run_id, "result")[0]["status"], "ok");
    let stored = http::get(gw2, &format!("/v1/runs/{run_id}")).await?;
    assert_eq!(stored.json()["stdout"], "two\nthree\n");
    cluster.stop(Duration::from_secs(30)).await;
    logs.passed();
    Ok(())
}
