//! Retries that are honest. A sandbox whose processes die before the user's program started
//! (here: SIGKILLed while the compiler runs) costs the user nothing: the run moves to a fresh
//! sandbox unseen (one `running` event, the right answer), a bounded number of times. A
//! sandbox that dies after the program started ends the run as `sandbox_error` at once, and
//! the run is never silently run again. The faults are real: every process of a real sandbox
//! is SIGKILLed from outside.

mod support;

#[path = "../../../tests/support/sandboxes.rs"]
mod sandboxes;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use support::{get, post_json, run_body, ws_connect, ws_next, Stack};

/// A C program whose compile takes a while (a large initializer), so a test can catch the
/// compiler running; it prints the sum of the array.
fn slow_compile() -> (String, String) {
    let n = 300_000;
    let values: Vec<String> = (0..n).map(|i| (i % 97).to_string()).collect();
    let sum: u64 = (0..n).map(|i| (i % 97) as u64).sum();
    let code = format!(
        "#include <stdio.h>\nint a[] = {{{}}};\nint main(void) {{ long s = 0; for (unsigned i = 0; i < sizeof a / sizeof *a; i++) s += a[i]; printf(\"%ld\\n\", s); }}\n",
        values.join(",")
    );
    (code, format!("{sum}\n"))
}

/// Watches sandboxes on a thread: each time a compiler runs in a sandbox not seen before, it is
/// noted, and killed (every process of that sandbox) while `kills` lasts.
struct CompileWatcher {
    stop: Arc<AtomicBool>,
    compiled_in: Arc<Mutex<Vec<String>>>,
    killed: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CompileWatcher {
    fn start(kills: usize) -> CompileWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let compiled_in = Arc::new(Mutex::new(Vec::new()));
        let killed = Arc::new(Mutex::new(Vec::new()));
        let (s, c, k) = (stop.clone(), compiled_in.clone(), killed.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !s.load(Ordering::Relaxed) {
                // Only this test process's sandboxes (the executor runs in-process): other
                // suites on the host compile too.
                if let Some(sb) = sandboxes::find(|p| p.comm == "cc1" && sandboxes::owned_by(p, std::process::id())) {
                    if seen.insert(sb.clone()) {
                        c.lock().unwrap().push(sb.clone());
                        if k.lock().unwrap().len() < kills {
                            // Noted first: the run may end before the kill loop returns.
                            k.lock().unwrap().push(sb.clone());
                            sandboxes::kill(&sb);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        CompileWatcher { stop, compiled_in, killed, thread: Some(thread) }
    }

    fn compiled_in(&self) -> Vec<String> {
        self.compiled_in.lock().unwrap().clone()
    }

    fn killed(&self) -> Vec<String> {
        self.killed.lock().unwrap().clone()
    }
}

impl Drop for CompileWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every event of `run_id` up to and including its result.
async fn events_until_result(ws: &mut support::http::Ws, run_id: &str, within: Duration) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = ws_next(ws, left).await?.context("socket closed")?;
        if ev["run_id"] == run_id {
            let done = ev["type"] == "result";
            events.push(ev);
            if done {
                return Ok(events);
            }
        }
    }
}

fn running_events(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["type"] == "status" && e["status"] == "running").collect()
}

/// One test at a time: each watches and kills sandboxes of this process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn submit(stack: &Stack, body: &Value) -> anyhow::Result<String> {
    let a = post_json(stack.addr, "/v1/runs", body, Duration::from_secs(30)).await?;
    anyhow::ensure!(a.status == 202, "POST answered {}: {}", a.status, String::from_utf8_lossy(&a.body));
    Ok(a.json()["run_id"].as_str().context("run_id")?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_dies_before_the_program_starts_is_replaced_unseen() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start(support::quick_bus(), true).await?;
    let mut ws = ws_connect(stack.addr, "session_id=retry-unseen").await?;
    let (code, expected) = slow_compile();
    let watcher = CompileWatcher::start(1);
    let run_id = submit(&stack, &run_body("retry-unseen", "c", &code)).await?;
    let events = events_until_result(&mut ws, &run_id, Duration::from_secs(90)).await?;
    let result = events.last().context("a result")?;
    let (compiled_in, killed) = (watcher.compiled_in(), watcher.killed());
    drop(watcher);
    eprintln!("compiled in {compiled_in:?}, killed {killed:?}; result {}", result["status"]);
    assert_eq!(killed.len(), 1, "the first compile was caught and its sandbox killed");
    assert!(compiled_in.len() >= 2, "the run compiled again in another sandbox: {compiled_in:?}");
    assert_ne!(compiled_in[0], compiled_in[1]);
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["stdout"], expected.as_str());
    let running = running_events(&events);
    assert_eq!(running.len(), 1, "the user saw one start, no retry: {events:?}");
    assert_eq!(running[0]["attempt"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_that_keep_dying_before_the_start_end_the_run_as_sandbox_error() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start(support::quick_bus(), true).await?;
    let mut ws = ws_connect(stack.addr, "session_id=retry-bounded").await?;
    let (code, _) = slow_compile();
    let watcher = CompileWatcher::start(usize::MAX);
    let run_id = submit(&stack, &run_body("retry-bounded", "c", &code)).await?;
    let events = events_until_result(&mut ws, &run_id, Duration::from_secs(90)).await?;
    let result = events.last().context("a result")?;
    let killed = watcher.killed();
    drop(watcher);
    eprintln!("killed {killed:?}; result {result}");
    assert_eq!(result["status"], "sandbox_error", "{result}");
    assert!(result["message"].as_str().is_some_and(|m| m.contains("before the program started")), "{result}");
    // ExecutorConfig::sandbox_attempts (3 by default): three sandboxes, then the verdict.
    assert_eq!(killed.len(), 3, "three sandboxes were tried: {killed:?}");
    assert_eq!(running_events(&events).len(), 1, "one delivery, retried unseen until the bound: {events:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_dies_after_the_program_started_is_reported_not_rerun() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start(support::quick_bus(), true).await?;
    let mut ws = ws_connect(stack.addr, "session_id=after-start").await?;
    let ready_before = full_pool(&stack).await?;
    let mut body = run_body("after-start", "bash", "echo started; sleep 29.7; echo never");
    body["limits"] = json!({"wall_ms": 40000});
    let run_id = submit(&stack, &body).await?;
    // The program is running once its first output is out.
    loop {
        let ev = ws_next(&mut ws, Duration::from_secs(30)).await?.context("socket closed")?;
        if ev["run_id"] == run_id.as_str() && ev["type"] == "output" {
            break;
        }
    }
    // The first output can arrive before bash has forked and exec'd `sleep` (a loaded
    // machine): look for it a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sandbox = loop {
        let found = sandboxes::find(|p| p.cmdline == "sleep 29.7" && sandboxes::owned_by(p, std::process::id()));
        if found.is_some() || Instant::now() > deadline {
            break found.context("the program's sandbox (its `sleep` within 10 s)")?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let killed = Instant::now();
    assert!(sandboxes::kill(&sandbox) > 0);
    let events = events_until_result(&mut ws, &run_id, Duration::from_secs(30)).await?;
    let took = killed.elapsed();
    let result = events.last().context("a result")?;
    eprintln!("{} {} ms after the kill: {}", result["status"], took.as_millis(), result["message"]);
    assert_eq!(result["status"], "sandbox_error", "{result}");
    // The pool's health interval (5 s): the run is not left to its 40 s wall limit.
    assert!(took < Duration::from_secs(5), "sandbox_error came {took:?} after the kill");
    assert!(running_events(&events).is_empty(), "no second start: {events:?}");
    // Not redelivered either: past ack_wait (2 s) nothing more happens to the run.
    let quiet = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match ws_next(&mut ws, Duration::from_secs(10)).await {
                Ok(Some(ev)) if ev["run_id"] == run_id.as_str() => return ev,
                Ok(Some(_)) => continue,
                _ => std::future::pending::<()>().await,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the run came back after its sandbox_error: {quiet:?}");
    let stored = get(stack.addr, &format!("/v1/runs/{run_id}")).await?;
    assert_eq!(stored.json()["status"], "sandbox_error");
    // The slot is replaced: the executor holds as many ready sandboxes as before, and runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready_sandboxes(&stack).await? < ready_before {
        anyhow::ensure!(Instant::now() < deadline, "the used sandbox was not replaced within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = post_json(
        stack.addr,
        "/v1/runs?wait=true",
        &run_body("after-start", "bash", "echo again"),
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!((next.status, next.json()["stdout"].as_str()), (200, Some("again\n")));
    Ok(())
}

/// The ready sandboxes once the pool is full (the count stayed put for a second and a half).
async fn full_pool(stack: &Stack) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (ready_sandboxes(stack).await?, Instant::now());
    while since.elapsed() < Duration::from_millis(1500) || last == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the pool did not fill within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = ready_sandboxes(stack).await?;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(last)
}

/// `hearth_executor_ready_sandboxes` from the gateway's metrics.
async fn ready_sandboxes(stack: &Stack) -> anyhow::Result<u64> {
    let m = get(stack.addr, "/metrics").await?;
    let text = String::from_utf8_lossy(&m.body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("hearth_executor_ready_sandboxes ")?.trim().parse().ok())
        .context("no ready-sandboxes gauge")
}
