//! Backpressure at the front door: a full `RUNS` queue answers 503 with Retry-After (and a
//! JSON error), never drops a run silently; the runs that were taken all finish once an
//! executor is back.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use hearth_bus::BusConfig;
use serde_json::Value;
use support::{get, post_json, run_body, ws_connect, ws_next, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_the_queued_runs_still_finish() -> anyhow::Result<()> {
    let bus = BusConfig { runs_max_msgs: 3, ..support::quick_bus() };
    let mut stack = Stack::start(bus, true).await?;
    // The gateway has seen the executor's languages; now no executor takes runs.
    stack.stop_executor().await?;
    let within = Duration::from_secs(30);
    let mut taken = Vec::new();
    for i in 0..3 {
        let a = post_json(stack.addr, "/v1/runs", &run_body("full", "python", &format!("print({i})")), within).await?;
        assert_eq!(a.status, 202, "run {i}: {}", String::from_utf8_lossy(&a.body));
        taken.push(a.json()["run_id"].as_str().context("run_id")?.to_string());
    }
    let a = post_json(stack.addr, "/v1/runs", &run_body("full", "python", "print(3)"), within).await?;
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(a.json()["error"]["code"], "queue_full");
    let wait = post_json(stack.addr, "/v1/runs?wait=true", &run_body("full", "python", "print(4)"), within).await?;
    assert_eq!(wait.status, 503, "?wait=true is refused the same way");

    for id in &taken {
        let a = get(stack.addr, &format!("/v1/runs/{id}")).await?;
        assert_eq!((a.status, a.json()["status"].as_str()), (202, Some("queued")));
    }
    let metrics = get(stack.addr, "/metrics").await?;
    assert!(String::from_utf8_lossy(&metrics.body).contains("hearth_runs_rejected_total{reason=\"queue_full\"} 2\n"));

    stack.start_executor("ex2").await?;
    let mut ws = ws_connect(stack.addr, "session_id=full").await?;
    let mut finished = Vec::new();
    let mut refused = 0;
    while finished.len() < taken.len() {
        let ev: Value = ws_next(&mut ws, Duration::from_secs(60)).await?.context("socket closed")?;
        if ev["type"] != "result" {
            continue;
        }
        let id = ev["run_id"].as_str().unwrap_or_default().to_string();
        if taken.contains(&id) {
            assert_eq!(ev["status"], "ok", "{ev}");
            finished.push(id);
        } else {
            // The refused runs' sessions saw `queued`, then an end, not silence.
            assert_eq!(ev["status"], "internal_error", "{ev}");
            assert!(ev["message"].as_str().is_some_and(|m| m.contains("queue is full")), "{ev}");
            refused += 1;
        }
    }
    assert_eq!(refused, 2);
    let a = post_json(stack.addr, "/v1/runs", &run_body("full", "python", "print(5)"), within).await?;
    assert_eq!(a.status, 202, "the queue takes runs again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_takes_no_more_runs_than_it_has_slots() -> anyhow::Result<()> {
    let mut stack = Stack::start(support::quick_bus(), false).await?;
    stack.start_executor_with("one", 1).await?;
    stack.start_executor_with("two", 1).await?;
    let mut ws = ws_connect(stack.addr, "session_id=slots").await?;
    let code = "import time\ntime.sleep(0.6)\nprint('done')\n";
    let mut runs = Vec::new();
    for _ in 0..4 {
        let a = post_json(stack.addr, "/v1/runs", &run_body("slots", "python", code), Duration::from_secs(30)).await?;
        assert_eq!(a.status, 202);
        runs.push(a.json()["run_id"].as_str().context("run_id")?.to_string());
    }
    // Which executor runs what, from the session's events; at no time two on one executor.
    let mut running_on: HashMap<String, String> = HashMap::new();
    let mut used = std::collections::HashSet::new();
    let mut done = 0;
    while done < runs.len() {
        let ev = ws_next(&mut ws, Duration::from_secs(60)).await?.context("socket closed")?;
        let run = ev["run_id"].as_str().unwrap_or_default().to_string();
        match (ev["type"].as_str(), ev["status"].as_str()) {
            (Some("status"), Some("running")) => {
                let executor = ev["executor"].as_str().context("running names its executor")?.to_string();
                assert!(!running_on.values().any(|e| *e == executor), "{executor} took a second run while busy: {ev}");
                used.insert(executor.clone());
                running_on.insert(run, executor);
            }
            (Some("result"), status) => {
                assert_eq!(status, Some("ok"), "{ev}");
                running_on.remove(&run);
                done += 1;
            }
            _ => {}
        }
    }
    assert_eq!(used.len(), 2, "both executors took runs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_consumer_are_created_once_and_take_the_latest_bounds() -> anyhow::Result<()> {
    let nats = support::NatsServer::start()?;
    let first = BusConfig { runs_max_msgs: 3, ack_wait: Duration::from_secs(2), ..BusConfig::default() };
    let a = hearth_bus::Bus::connect(&nats.url, "a", first.clone()).await?;
    a.executors_consumer().await?;
    hearth_bus::Bus::connect(&nats.url, "a-again", first).await?;
    let second = BusConfig { runs_max_msgs: 5, ack_wait: Duration::from_secs(4), ..BusConfig::default() };
    let b = hearth_bus::Bus::connect(&nats.url, "b", second).await?;
    let mut consumer = b.executors_consumer().await?;
    let mut runs = b.js.get_stream(hearth_bus::names::RUNS_STREAM).await?;
    assert_eq!(runs.info().await?.config.max_messages, 5);
    assert_eq!(consumer.info().await?.config.ack_wait, Duration::from_secs(4));
    Ok(())
}
