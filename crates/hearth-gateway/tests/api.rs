//! The HTTP and WebSocket API beyond the field cases, against the real stack: operations
//! endpoints, JSON errors for every kind of bad input, stored results, multi-file runs,
//! and runs started and killed over the WebSocket.

mod support;

use std::time::Duration;

use anyhow::Context;
use futures_util::SinkExt;
use hearth_proto::api::RunResult;
use hearth_proto::Status;
use serde_json::{json, Value};
use support::http::request;
use support::{get, post_json, run_body, ws_connect, ws_next, Stack};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

fn is_json_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v["error"]["code"].is_string() && v["error"]["message"].is_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_tell_the_truth() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let a = get(stack.addr, "/healthz").await?;
    assert_eq!((a.status, a.json()["status"].as_str()), (200, Some("ok")));
    let a = get(stack.addr, "/readyz").await?;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["executors"], 1);

    let offered: Vec<String> = hearth_sandbox::Languages::detect()?.list().iter().map(|l| l.id.clone()).collect();
    let a = get(stack.addr, "/v1/languages").await?;
    let listed = a.json();
    let mut ids: Vec<String> =
        listed.as_array().context("an array")?.iter().map(|l| l["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    let mut want = offered.clone();
    want.sort();
    assert_eq!(ids, want, "languages listed are exactly those the executor has");
    let python = listed.as_array().unwrap().iter().find(|l| l["id"] == "python").context("python listed")?;
    assert!(python["version"].as_str().is_some_and(|v| v.starts_with('3')), "{python}");
    assert_eq!(python["compiled"], false);

    let r = post_json(stack.addr, "/v1/runs?wait=true", &run_body("ops", "python", "print(1)"), WAIT).await?;
    assert_eq!(r.status, 200);
    let m = get(stack.addr, "/metrics").await?;
    let text = String::from_utf8_lossy(&m.body);
    assert!(text.contains("hearth_runs_accepted_total 1\n"), "{text}");
    assert!(text.contains("hearth_executors_online 1\n"), "{text}");
    assert!(text.contains("hearth_nats_connected 1\n"), "{text}");
    assert!(text.contains("# TYPE hearth_http_responses_total counter"), "{text}");

    stack_stop_and_unready(stack).await
}

async fn stack_stop_and_unready(mut stack: Stack) -> anyhow::Result<()> {
    stack.stop_executor().await?;
    stack.wait_ready(false).await?;
    let a = get(stack.addr, "/readyz").await?;
    assert_eq!(a.status, 503);
    assert!(is_json_error(&a.body));
    assert!(a.headers.contains_key("retry-after"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_never_a_5xx() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let ok = run_body("bad", "python", "print(1)");
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        serde_json::to_vec(&b).unwrap()
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("POST", "/v1/runs", b"{not json".to_vec(), 400),
        ("POST", "/v1/runs", b"".to_vec(), 400),
        ("POST", "/v1/runs", b"[]".to_vec(), 400),
        ("POST", "/v1/runs", with("cod", json!("x")), 400),
        ("POST", "/v1/runs", with("user_id", json!("a b")), 400),
        ("POST", "/v1/runs", with("limits", json!({"wall": 5})), 400),
        ("POST", "/v1/runs", with("limits", json!({"wall_ms": -5})), 400),
        ("POST", "/v1/runs", with("lang", json!("")), 400),
        ("POST", "/v1/runs", with("files", json!([{"name": "../x.py", "content": "1"}])), 400),
        ("POST", "/v1/runs", with("files", json!([{"name": "a.py", "content": "!!", "encoding": "base64"}])), 400),
        ("POST", "/v1/runs?wait=maybe", serde_json::to_vec(&ok).unwrap(), 400),
        ("GET", "/v1/runs/a.b", vec![], 400),
        ("GET", "/v1/runs/0190aaaa-0000-7000-8000-000000000000", vec![], 404),
        ("GET", "/v1/nothing", vec![], 404),
        ("GET", "/v1/runs", vec![], 405),
        ("DELETE", "/healthz", vec![], 405),
        ("GET", "/v1/ws", vec![], 400),
        ("GET", "/v1/ws?session_id=s1", vec![], 400),
    ];
    for (method, path, body, want) in cases {
        let a = request(stack.addr, method, path, Some(body.clone()), WAIT).await?;
        assert_eq!(
            a.status,
            want,
            "{method} {path} {:?}: {:?}",
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&a.body)
        );
        assert!(is_json_error(&a.body), "{method} {path}: not a JSON error: {:?}", String::from_utf8_lossy(&a.body));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_stored_and_files_and_args_reach_the_program() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let body = json!({
        "user_id": "u1", "session_id": "files", "lang": "python",
        "files": [
            {"name": "main.py", "content": "import sys, helper\nprint(helper.X, sys.argv[1:], sys.stdin.read())\n"},
            {"name": "helper.py", "content": "WD0gNDI=", "encoding": "base64"}
        ],
        "args": ["a", "b c"], "stdin": "in"
    });
    let a = post_json(stack.addr, "/v1/runs?wait=true", &body, WAIT).await?;
    assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));
    let r: RunResult = serde_json::from_slice(&a.body)?;
    assert_eq!((r.status, r.stdout.as_str()), (Some(Status::Ok), "42 ['a', 'b c'] in\n"), "{r:?}");
    assert_eq!(r.session_id, "files");
    assert_eq!(r.lang, "python");

    let stored = get(stack.addr, &format!("/v1/runs/{}", r.run_id)).await?;
    assert_eq!(stored.status, 200);
    assert_eq!(serde_json::from_slice::<RunResult>(&stored.body)?, r);
    // The timing follows the run through every step, in order (docs/benchmarks.md).
    let t = r.timing.context("a final result carries its timing")?;
    let steps = [t.received_us, t.queued_us, t.pulled_us, t.acquired_us, t.started_us, t.first_output_us];
    assert!(steps.iter().all(|&s| s > 0), "{t:?}");
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "steps in order: {t:?}");
    assert!(t.started_us <= t.exited_us && t.exited_us <= t.published_us, "{t:?}");
    // program_us is the agent's clock (fork to exit) and the stamps are the host's (frames
    // received), so neither bounds the other exactly: a frame's trip can go either way.
    assert!(t.program_us > 0, "{t:?}");

    // A compiled multi-file project whose entry is not the first file.
    let project = json!({
        "user_id": "u1", "session_id": "files", "lang": "c", "entry": "main.c",
        "files": [
            {"name": "add.h", "content": "int add(int a, int b);\n"},
            {"name": "main.c", "content": "#include <stdio.h>\n#include \"add.h\"\nint add(int a, int b) { return a + b; }\nint main(void) { printf(\"%d\\n\", add(40, 2)); }\n"}
        ]
    });
    let a = post_json(stack.addr, "/v1/runs?wait=true", &project, WAIT).await?;
    let r: RunResult = serde_json::from_slice(&a.body)?;
    assert_eq!((r.status, r.stdout.as_str()), (Some(Status::Ok), "42\n"), "{r:?}");
    let mut stray = project.clone();
    stray["entry"] = json!("nope.c");
    let a = post_json(stack.addr, "/v1/runs?wait=true", &stray, WAIT).await?;
    assert_eq!(a.status, 400, "an entry that is not one of the files: {:?}", String::from_utf8_lossy(&a.body));

    let queued = post_json(stack.addr, "/v1/runs", &run_body("later", "python", "print(2)"), WAIT).await?;
    assert_eq!(queued.status, 202);
    let q = queued.json();
    assert_eq!((q["status"].as_str(), q["session_id"].as_str()), (Some("queued"), Some("later")));
    let run_id = q["run_id"].as_str().context("run_id")?;
    assert_eq!(run_id.len(), 36, "a UUID");
    let mut ws = ws_connect(stack.addr, "session_id=later").await?;
    loop {
        let ev = ws_next(&mut ws, WAIT).await?.context("socket closed")?;
        if ev["type"] == "result" {
            assert_eq!(
                (ev["run_id"].as_str(), ev["status"].as_str(), ev["stdout"].as_str()),
                (Some(run_id), Some("ok"), Some("2\n"))
            );
            break;
        }
    }
    let stored = get(stack.addr, &format!("/v1/runs/{run_id}")).await?;
    assert_eq!((stored.status, stored.json()["stdout"].as_str()), (200, Some("2\n")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_start_and_die_over_the_websocket() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let mut ws = ws_connect(stack.addr, "session_id=wsrun").await?;
    ws.send(Message::text(
        json!({"type": "run", "user_id": "u1", "lang": "python", "code": "print('hi')"}).to_string(),
    ))
    .await?;
    let accepted = ws_next(&mut ws, WAIT).await?.context("closed")?;
    assert_eq!(accepted["type"], "accepted", "{accepted}");
    let first = accepted["run_id"].as_str().context("run_id")?.to_string();
    let result = next_result(&mut ws, &first).await?;
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("hi\n")));

    let code = "import time\nprint('start', flush=True)\ntime.sleep(30)\n";
    ws.send(Message::text(
        json!({"type": "run", "user_id": "u1", "lang": "python", "code": code, "limits": {"wall_ms": 40000}})
            .to_string(),
    ))
    .await?;
    let accepted = ws_next(&mut ws, WAIT).await?.context("closed")?;
    let second = accepted["run_id"].as_str().context("run_id")?.to_string();
    loop {
        let ev = ws_next(&mut ws, WAIT).await?.context("closed")?;
        if ev["run_id"] == second.as_str() && ev["type"] == "output" {
            break;
        }
    }
    ws.send(Message::text(json!({"type": "kill", "run_id": second}).to_string())).await?;
    let result = next_result(&mut ws, &second).await?;
    assert_eq!(result["status"], "cancelled", "{result}");
    assert!(result["wall_ms"].as_u64().is_some_and(|ms| ms < 20_000), "{result}");

    ws.send(Message::text("{\"type\":\"nope\"}")).await?;
    let err = ws_next(&mut ws, WAIT).await?.context("closed")?;
    assert_eq!((err["type"].as_str(), err["error"]["code"].as_str()), (Some("error"), Some("bad_request")));
    ws.send(Message::text(json!({"type": "run", "user_id": "u1", "lang": "cobol-2099", "code": "x"}).to_string()))
        .await?;
    let err = ws_next(&mut ws, WAIT).await?.context("closed")?;
    assert_eq!(err["error"]["code"], "unknown_language", "{err}");
    Ok(())
}

async fn next_result(ws: &mut support::http::Ws, run_id: &str) -> anyhow::Result<Value> {
    loop {
        let ev = ws_next(ws, WAIT).await?.context("closed")?;
        if ev["run_id"] == run_id && ev["type"] == "result" {
            return Ok(ev);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_websockets_instead_of_hanging() -> anyhow::Result<()> {
    let mut stack = Stack::start(support::quick_bus(), false).await?;
    let mut ws = ws_connect(stack.addr, "session_id=bye").await?;
    stack.stop_gateway(Duration::from_secs(10)).await?;
    assert!(ws_next(&mut ws, Duration::from_secs(10)).await?.is_none(), "the socket is closed");
    Ok(())
}
