//! Interactive runs over the WebSocket, end to end through the real gateway, a real
//! nats-server, an executor and real sandboxes: stdin while the program runs (and closing
//! it), stdin given during a compile step, kill of a running process tree, kill of a queued
//! run (which then never starts), and that no socket reaches a run of another session.

mod support;

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::SinkExt;
use serde_json::{json, Value};
use support::http::Ws;
use support::{get, ws_connect, ws_next, Stack};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

async fn send(ws: &mut Ws, frame: Value) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), ws.send(Message::text(frame.to_string()))).await??;
    Ok(())
}

/// Frames until one satisfies `want` (which sees every frame); fails on a closed socket.
async fn until(ws: &mut Ws, mut want: impl FnMut(&Value) -> bool) -> anyhow::Result<Value> {
    loop {
        let frame = ws_next(ws, WAIT).await?.context("socket closed")?;
        if want(&frame) {
            return Ok(frame);
        }
    }
}

/// Sends a `run` frame and returns its run id.
async fn start(ws: &mut Ws, body: Value) -> anyhow::Result<String> {
    let mut frame = body;
    frame["type"] = json!("run");
    send(ws, frame).await?;
    let accepted = until(ws, |f| f["type"] == "accepted" || f["type"] == "error").await?;
    if accepted["type"] != "accepted" {
        bail!("run refused: {accepted}");
    }
    Ok(accepted["run_id"].as_str().context("run_id")?.to_string())
}

fn is_event(f: &Value, run_id: &str, kind: &str) -> bool {
    f["run_id"] == run_id && f["type"] == kind
}

/// The reply to the last control frame (`sent` or `error`).
async fn reply(ws: &mut Ws) -> anyhow::Result<Value> {
    until(ws, |f| f["type"] == "sent" || f["type"] == "error").await
}

/// Output of `run_id` collected until it contains `text`.
async fn output_until(ws: &mut Ws, run_id: &str, text: &str, seen: &mut String) -> anyhow::Result<()> {
    while !seen.contains(text) {
        let f = until(ws, |f| f["run_id"] == run_id && (f["type"] == "output" || f["type"] == "result")).await?;
        if f["type"] == "result" {
            bail!("the run ended before printing {text:?}: {f}");
        }
        seen.push_str(f["output"].as_str().unwrap_or_default());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_reads_answers_and_reads_again_until_stdin_closes() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let mut ws = ws_connect(stack.addr, "session_id=chat").await?;
    let code = "name = input()\nprint('hello', name)\nline = input()\nprint('again', line)\n\
                import sys\nprint('rest', repr(sys.stdin.read()))\n";
    let body = json!({"user_id": "u1", "lang": "python", "code": code, "stdin": "ann\n", "interactive": true});
    let run_id = start(&mut ws, body).await?;
    let mut seen = String::new();
    // The request's own stdin comes first; the program answers while it runs.
    output_until(&mut ws, &run_id, "hello ann\n", &mut seen).await?;
    send(&mut ws, json!({"type": "stdin", "run_id": run_id, "data": "bob\n"})).await?;
    assert_eq!(reply(&mut ws).await?["type"], "sent");
    output_until(&mut ws, &run_id, "again bob\n", &mut seen).await?;
    send(&mut ws, json!({"type": "stdin", "run_id": run_id, "data": "x\ny", "eof": true})).await?;
    assert_eq!(reply(&mut ws).await?["type"], "sent");
    let result = until(&mut ws, |f| is_event(f, &run_id, "result")).await?;
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["stdout"], "hello ann\nagain bob\nrest 'x\\ny'\n", "{result}");
    assert_eq!(result["user_id"], "u1", "the owner is stored with the result");

    // After the end, stdin and kill get a clear answer, not silence.
    send(&mut ws, json!({"type": "stdin", "run_id": run_id, "data": "late"})).await?;
    assert_eq!(reply(&mut ws).await?["error"]["code"], "run_ended");
    send(&mut ws, json!({"type": "kill", "run_id": run_id})).await?;
    assert_eq!(reply(&mut ws).await?["error"]["code"], "run_ended");

    // A compiled program: the input it is sent as soon as the run starts (while it is still
    // compiling) waits for it; then it answers and reads again.
    let c = "#include <stdio.h>\nint main(void){int a,b; while(scanf(\"%d %d\",&a,&b)==2){printf(\"%d\\n\",a+b);fflush(stdout);} puts(\"bye\");}\n";
    let run_id = start(&mut ws, json!({"user_id": "u1", "lang": "c", "code": c, "interactive": true})).await?;
    until(&mut ws, |f| is_event(f, &run_id, "status") && f["status"] == "running").await?;
    send(&mut ws, json!({"type": "stdin", "run_id": run_id, "data": "3 4\n"})).await?;
    assert_eq!(reply(&mut ws).await?["type"], "sent");
    let mut seen = String::new();
    output_until(&mut ws, &run_id, "7\n", &mut seen).await?;
    send(&mut ws, json!({"type": "stdin", "run_id": run_id, "data": "40 2\n"})).await?;
    output_until(&mut ws, &run_id, "42\n", &mut seen).await?;
    send(&mut ws, json!({"type": "stdin", "run_id": run_id, "eof": true})).await?;
    let result = until(&mut ws, |f| is_event(f, &run_id, "result")).await?;
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("7\n42\nbye\n")), "{result}");

    // Interactive runs are still bounded by their wall clock.
    let body =
        json!({"user_id": "u1", "lang": "python", "code": "input()", "interactive": true, "limits": {"wall_ms": 1500}});
    let run_id = start(&mut ws, body).await?;
    let result = until(&mut ws, |f| is_event(f, &run_id, "result")).await?;
    assert_eq!(result["status"], "timeout", "{result}");

    // Without `interactive`, stdin is closed after the request's stdin, as before.
    let run_id =
        start(&mut ws, json!({"user_id": "u1", "lang": "python", "code": "import sys\nprint(repr(sys.stdin.read()))"}))
            .await?;
    let result = until(&mut ws, |f| is_event(f, &run_id, "result")).await?;
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("''\n")), "{result}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_reaches_the_whole_tree_and_nobody_reaches_another_sessions_run() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let mut mine = ws_connect(stack.addr, "session_id=mine").await?;
    let mut other = ws_connect(stack.addr, "session_id=other").await?;
    // A tree: two background sleepers, a subshell that ignores the polite signals, and a
    // main process blocked on stdin.
    let code = "sleep 300 & sleep 300 &\n( trap '' TERM INT HUP; while :; do sleep 1; done ) &\necho started\nread line\necho \"got $line\"\n";
    let body =
        json!({"user_id": "u1", "lang": "bash", "code": code, "interactive": true, "limits": {"wall_ms": 40000}});
    let run_id = start(&mut mine, body).await?;
    let mut seen = String::new();
    output_until(&mut mine, &run_id, "started\n", &mut seen).await?;

    // Another session can neither feed nor kill it: answered as an unknown run.
    send(&mut other, json!({"type": "stdin", "run_id": run_id, "data": "intruder\n"})).await?;
    assert_eq!(reply(&mut other).await?["error"]["code"], "not_found");
    send(&mut other, json!({"type": "kill", "run_id": run_id})).await?;
    assert_eq!(reply(&mut other).await?["error"]["code"], "not_found");
    // Nor run in it, nor replay it.
    send(&mut other, json!({"type": "run", "user_id": "u1", "session_id": "mine", "lang": "bash", "code": "echo x"}))
        .await?;
    assert_eq!(reply_or_error(&mut other).await?["error"]["code"], "bad_request");

    send(&mut mine, json!({"type": "kill", "run_id": run_id})).await?;
    assert_eq!(reply(&mut mine).await?["type"], "sent");
    let result = until(&mut mine, |f| is_event(f, &run_id, "result")).await?;
    // The agent (PID 1 of the sandbox) reports only once every process of the tree is
    // reaped, so a result at all means the sleepers and the subshell are gone too.
    assert_eq!(result["status"], "cancelled", "{result}");
    assert_eq!(result["signal"], 9, "{result}");
    assert!(result["wall_ms"].as_u64().is_some_and(|ms| ms < 20_000), "{result}");
    assert!(!result["stdout"].as_str().unwrap_or_default().contains("intruder"), "{result}");
    let stored = get(stack.addr, &format!("/v1/runs/{run_id}")).await?;
    assert_eq!(stored.json()["status"], "cancelled");

    // Bad control frames get a clear error each.
    for (frame, code) in [
        (json!({"type": "stdin", "run_id": run_id}), "bad_request"),
        (json!({"type": "stdin", "run_id": run_id, "data": 5}), "bad_request"),
        (json!({"type": "stdin", "run_id": run_id, "data": "x", "extra": 1}), "bad_request"),
        (json!({"type": "kill"}), "bad_request"),
        (json!({"type": "kill", "run_id": "a.>"}), "invalid_id"),
        (json!({"type": "stdin", "run_id": "*", "data": "x"}), "invalid_id"),
        (json!({"type": "kill", "run_id": "0190aaaa-0000-7000-8000-000000000000"}), "not_found"),
        (json!({"type": "stdin", "run_id": run_id, "data": "x".repeat(2 << 20)}), "too_large"),
    ] {
        send(&mut mine, frame.clone()).await?;
        let r = reply(&mut mine).await?;
        assert_eq!(r["error"]["code"], code, "{}: {r}", &frame.to_string()[..frame.to_string().len().min(120)]);
    }
    Ok(())
}

/// The answer to a `run` frame: `accepted` or `error`.
async fn reply_or_error(ws: &mut Ws) -> anyhow::Result<Value> {
    until(ws, |f| f["type"] == "accepted" || f["type"] == "error").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_while_queued_ends_at_once_and_never_starts() -> anyhow::Result<()> {
    let mut stack = Stack::start(support::quick_bus(), true).await?;
    // The gateway knows the languages; now no executor takes runs, so runs stay queued.
    stack.stop_executor().await?;
    let mut ws = ws_connect(stack.addr, "session_id=queued").await?;
    let code = "import pathlib\nprint('ran')\n";
    let killed = start(&mut ws, json!({"user_id": "u1", "lang": "python", "code": code, "interactive": true})).await?;
    let kept = start(&mut ws, json!({"user_id": "u1", "lang": "python", "code": "print('kept')"})).await?;
    send(&mut ws, json!({"type": "stdin", "run_id": killed, "data": "early\n"})).await?;
    assert_eq!(reply(&mut ws).await?["error"]["code"], "not_running", "stdin is not held for a queued run");
    send(&mut ws, json!({"type": "kill", "run_id": killed})).await?;
    assert_eq!(reply(&mut ws).await?["type"], "sent");
    let result = until(&mut ws, |f| is_event(f, &killed, "result")).await?;
    assert_eq!(result["status"], "cancelled", "{result}");
    assert_eq!(get(stack.addr, &format!("/v1/runs/{killed}")).await?.json()["status"], "cancelled");

    // An executor comes back: the other run runs; the killed one is pulled, refused, acked.
    stack.start_executor("ex2").await?;
    let result = until(&mut ws, |f| is_event(f, &kept, "result")).await?;
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("kept\n")), "{result}");
    let nats = async_nats::connect(&stack.nats.url).await?;
    let mut runs = async_nats::jetstream::new(nats).get_stream(hearth_bus::names::RUNS_STREAM).await?;
    let deadline = std::time::Instant::now() + WAIT;
    while runs.info().await?.state.messages > 0 {
        assert!(std::time::Instant::now() < deadline, "the killed run stays on the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every event of the killed run was published before this sentinel's: none says running.
    let sentinel = start(&mut ws, json!({"user_id": "u1", "lang": "python", "code": "print(0)"})).await?;
    let mut replay = ws_connect(stack.addr, "session_id=queued").await?;
    let mut events_of_killed = Vec::new();
    until(&mut replay, |f| {
        if f["run_id"] == killed.as_str() {
            events_of_killed.push(f.clone());
        }
        is_event(f, &sentinel, "result")
    })
    .await?;
    let statuses: Vec<&str> = events_of_killed.iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses, ["queued", "cancelled"], "{events_of_killed:?}");
    assert_eq!(get(stack.addr, &format!("/v1/runs/{killed}")).await?.json()["status"], "cancelled");
    Ok(())
}
