//! Per-user limits through the real gateway and a real nats-server: runs in flight are
//! capped per user (429 `too_many_runs`), places free up when runs end (a kill, an
//! executor's notice), the request rate is a token bucket (429 `rate_limited` with a
//! Retry-After that is honest), a tier caps what a run may ask for, and the server's
//! maxima cap every run, whatever its tier allows.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::SinkExt;
use hearth_gateway::access::Tiers;
use hearth_gateway::auth::{Auth, DEFAULT_TIER};
use hearth_gateway::limits::Tier;
use hearth_proto::{Limits, LimitsRequest};
use serde_json::{json, Value};
use support::http::{request_with, ws_connect, ws_connect_with, ws_next, Answer};
use support::Stack;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "test-key-0123456789abcdef";

async fn stack(executor: bool) -> anyhow::Result<Stack> {
    Stack::start_with(support::quick_bus(), executor, |c| {
        let default = Tier { rate_per_s: 100.0, burst: 100, max_active_runs: 3, ..Tier::UNLIMITED };
        let slow = Tier { rate_per_s: 2.0, burst: 4, max_active_runs: 100, ..Tier::UNLIMITED };
        let small =
            Tier { max_limits: LimitsRequest { wall_ms: Some(1000), ..LimitsRequest::default() }, ..default.clone() };
        c.tiers = Tiers([(DEFAULT_TIER.to_string(), default), ("slow".into(), slow), ("small".into(), small)].into());
        let mut auth = Auth::closed().with_secret(b"a test secret of at least 32 bytes!").unwrap();
        auth.tiers = c.tiers.names();
        auth.add_key("backend", KEY, DEFAULT_TIER).unwrap();
        auth.add_key("small", "small-key-0123456789abcdef", "small").unwrap();
        c.auth = auth;
    })
    .await
}

async fn call(stack: &Stack, method: &str, path: &str, key: &str, body: Option<Value>) -> anyhow::Result<Answer> {
    let header = format!("Bearer {key}");
    let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
    request_with(stack.addr, method, path, &[("authorization", &header)], body, WAIT).await
}

fn run(user: &str, code: &str) -> Value {
    json!({"user_id": user, "session_id": "lim", "lang": "python", "code": code})
}

fn retry_after(a: &Answer) -> u64 {
    a.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_flight_are_capped_per_user_and_freed_when_they_end() -> anyhow::Result<()> {
    let mut stack = stack(true).await?;
    // The gateway knows the languages; with no executor, runs stay queued.
    stack.stop_executor().await?;
    let mut ids = Vec::new();
    for i in 0..3 {
        let a = call(&stack, "POST", "/v1/runs", KEY, Some(run("busy", &format!("print({i})")))).await?;
        assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
        ids.push(a.json()["run_id"].as_str().context("run_id")?.to_string());
    }
    let a = call(&stack, "POST", "/v1/runs", KEY, Some(run("busy", "print(3)"))).await?;
    assert_eq!(a.status, 429, "{}", String::from_utf8_lossy(&a.body));
    let e = a.json();
    assert_eq!(e["error"]["code"], "too_many_runs", "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("busy") && m.contains('3')), "{e}");
    assert_eq!((retry_after(&a), e["error"]["retry_after_s"].as_u64()), (1, Some(1)));
    // ?wait=true and WebSocket run frames are counted the same way.
    let a = call(&stack, "POST", "/v1/runs?wait=true", KEY, Some(run("busy", "print(3)"))).await?;
    assert_eq!(a.status, 429);
    let header = format!("Bearer {KEY}");
    let mut ws = ws_connect_with(stack.addr, "session_id=lim", &[("authorization", &header)]).await?;
    ws.send(Message::text(json!({"type": "run", "user_id": "busy", "lang": "python", "code": "1"}).to_string()))
        .await?;
    let refused = next_of(&mut ws, &["accepted", "error"]).await?;
    assert_eq!(refused["error"]["code"], "too_many_runs", "{refused}");
    // Other users are not affected.
    assert_eq!(call(&stack, "POST", "/v1/runs", KEY, Some(run("idle", "print(9)"))).await?.status, 202);

    // A kill of a queued run gives its place back at once.
    ws.send(Message::text(json!({"type": "kill", "run_id": ids[0]}).to_string())).await?;
    assert_eq!(next_of(&mut ws, &["sent", "error"]).await?["type"], "sent");
    let a = call(&stack, "POST", "/v1/runs", KEY, Some(run("busy", "print(4)"))).await?;
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));

    // The runs end on an executor, which tells the gateway: the places come back.
    stack.start_executor("ex2").await?;
    let mut results = 0;
    while results < 4 {
        let ev = ws_next(&mut ws, WAIT).await?.context("closed")?;
        if ev["type"] == "result" && ev["status"] == "ok" {
            results += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut accepted = 0;
    while accepted < 3 {
        let a = call(&stack, "POST", "/v1/runs", KEY, Some(run("busy", "print(5)"))).await?;
        match a.status {
            202 => accepted += 1,
            429 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other}: {}", String::from_utf8_lossy(&a.body)),
        }
    }
    Ok(())
}

async fn next_of(ws: &mut support::http::Ws, kinds: &[&str]) -> anyhow::Result<Value> {
    loop {
        let f = ws_next(ws, WAIT).await?.context("closed")?;
        if kinds.contains(&f["type"].as_str().unwrap_or_default()) {
            return Ok(f);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_rate_is_a_token_bucket_and_tiers_cap_run_limits() -> anyhow::Result<()> {
    let stack = stack(true).await?;
    let issued = call(&stack, "POST", "/v1/sessions", KEY, Some(json!({"user_id": "r1", "tier": "slow"}))).await?;
    assert_eq!(issued.status, 201);
    let token = issued.json()["token"].as_str().context("token")?.to_string();
    let path = "/v1/runs/0190aaaa-0000-7000-8000-000000000000";
    // A burst of 4, then 429 with a Retry-After...
    for i in 0..4 {
        assert_eq!(call(&stack, "GET", path, &token, None).await?.status, 404, "request {i}");
    }
    let a = call(&stack, "GET", path, &token, None).await?;
    assert_eq!((a.status, a.json()["error"]["code"].as_str()), (429, Some("rate_limited")));
    let wait = retry_after(&a);
    assert!(wait >= 1, "{:?}", a.headers);
    // ... that is honest: after it, the request goes through.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(call(&stack, "GET", path, &token, None).await?.status, 404);
    // A socket's frames count too.
    let mut ws = ws_connect(stack.addr, &format!("token={token}")).await;
    while let Err(e) = &ws {
        // The handshake itself may be the request over the rate: wait for the bucket.
        assert!(e.to_string().contains("429"), "{e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        ws = ws_connect(stack.addr, &format!("token={token}")).await;
    }
    let mut ws = ws?;
    let mut limited = false;
    for _ in 0..8 {
        ws.send(Message::text(json!({"type": "kill", "run_id": "0190aaaa-0000-7000-8000-000000000000"}).to_string()))
            .await?;
        let r = next_of(&mut ws, &["sent", "error"]).await?;
        if r["error"]["code"] == "rate_limited" {
            assert!(r["error"]["retry_after_s"].as_u64() >= Some(1), "{r}");
            limited = true;
            break;
        }
        assert_eq!(r["error"]["code"], "not_found", "{r}");
    }
    assert!(limited, "8 frames at once exceed a burst of 4");
    // Another user's bucket is untouched.
    let other = call(&stack, "POST", "/v1/sessions", KEY, Some(json!({"user_id": "r2", "tier": "slow"}))).await?;
    let other = other.json()["token"].as_str().context("token")?.to_string();
    assert_eq!(call(&stack, "GET", path, &other, None).await?.status, 404);

    // The "small" tier caps wall_ms at 1000 whatever the run asks for; default does not.
    let sleepy = json!({"user_id": "t1", "session_id": "tier", "lang": "python",
                        "code": "import time\ntime.sleep(3)\nprint('woke')", "limits": {"wall_ms": 8000}});
    let a = call(&stack, "POST", "/v1/runs?wait=true", "small-key-0123456789abcdef", Some(sleepy.clone())).await?;
    let r = a.json();
    assert_eq!(r["status"], "timeout", "{r}");
    assert!(r["wall_ms"].as_u64().is_some_and(|ms| ms < 2500), "{r}");
    let a = call(&stack, "POST", "/v1/runs?wait=true", KEY, Some(sleepy)).await?;
    assert_eq!((a.json()["status"].as_str(), a.json()["stdout"].as_str()), (Some("ok"), Some("woke\n")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_maxima_cap_every_run_and_no_tier_raises_them() -> anyhow::Result<()> {
    // The server allows 1000 bytes of output per run; the "big" tier claims a million, the
    // "small" tier 100. Output is cut at exactly the limit, so the cap in force is visible
    // in the result, byte for byte.
    let server_max = Limits { output_bytes: 1000, ..Limits::MAX };
    let caps = |bytes| Tier {
        max_limits: LimitsRequest { output_bytes: Some(bytes), ..LimitsRequest::default() },
        ..Tier::UNLIMITED
    };
    let mut stack = Stack::start_with(support::quick_bus(), false, |c| {
        c.limits_max = server_max;
        c.tiers = Tiers(
            [(DEFAULT_TIER.to_string(), Tier::UNLIMITED), ("big".into(), caps(1_000_000)), ("small".into(), caps(100))]
                .into(),
        );
        let mut auth = Auth::closed().with_secret(b"a test secret of at least 32 bytes!").unwrap();
        auth.tiers = c.tiers.names();
        auth.add_key("backend", KEY, DEFAULT_TIER).unwrap();
        auth.add_key("big", "big-key-0123456789abcdef", "big").unwrap();
        auth.add_key("small", "small-key-0123456789abcdef", "small").unwrap();
        c.auth = auth;
    })
    .await?;
    stack.start_executor_configured("capped", |c| c.limits_max = server_max).await?;
    let loud = |asked: u64| {
        json!({"user_id": "m1", "session_id": "max", "lang": "python", "code": "print('x' * 5000)",
               "limits": {"output_bytes": asked}})
    };
    for (key, asked, got) in [
        (KEY, 1_000_000, 1000),
        ("big-key-0123456789abcdef", 1_000_000, 1000),
        ("small-key-0123456789abcdef", 1_000_000, 100),
        // Below every cap, the run gets what it asked for.
        ("big-key-0123456789abcdef", 50, 50),
    ] {
        let a = call(&stack, "POST", "/v1/runs?wait=true", key, Some(loud(asked))).await?;
        let r = a.json();
        assert_eq!(
            (a.status, r["status"].as_str(), r["truncated"].as_bool()),
            (200, Some("output_limit"), Some(true)),
            "{key} asking {asked}: {r}"
        );
        assert_eq!(r["stdout"].as_str().map(str::len), Some(got), "{key} asking {asked}: {r}");
    }
    Ok(())
}
