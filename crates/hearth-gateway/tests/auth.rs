//! Auth through the real gateway, a real nats-server and an executor: API keys, session
//! tokens issued by `POST /v1/sessions`, and that a token for one session can neither submit
//! to, read, replay, feed nor kill another's runs.

mod support;

use std::time::Duration;

use anyhow::Context;
use futures_util::SinkExt;
use hearth_gateway::auth::{Auth, DEFAULT_TIER};
use serde_json::{json, Value};
use support::http::{request_with, ws_connect_with, ws_next, ws_refused, Answer, Ws};
use support::Stack;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "test-key-0123456789abcdef";

async fn stack() -> anyhow::Result<Stack> {
    Stack::start_with(support::quick_bus(), true, |c| {
        let mut auth = Auth::closed().with_secret(b"a test secret of at least 32 bytes!").unwrap();
        auth.add_key("backend", KEY, DEFAULT_TIER).unwrap();
        c.auth = auth;
    })
    .await
}

fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

async fn call(
    stack: &Stack,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<Answer> {
    let header = auth.map(bearer);
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", h.as_str())).collect();
    let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
    request_with(stack.addr, method, path, &headers, body, WAIT).await
}

async fn token(stack: &Stack, body: Value) -> anyhow::Result<String> {
    let a = call(stack, "POST", "/v1/sessions", Some(KEY), Some(body)).await?;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    Ok(a.json()["token"].as_str().context("token")?.to_string())
}

fn code(a: &Answer) -> String {
    a.json()["error"]["code"].as_str().unwrap_or_default().to_string()
}

async fn send(ws: &mut Ws, frame: Value) -> anyhow::Result<Value> {
    tokio::time::timeout(Duration::from_secs(10), ws.send(Message::text(frame.to_string()))).await??;
    loop {
        let f = ws_next(ws, WAIT).await?.context("closed")?;
        if ["accepted", "sent", "error"].contains(&f["type"].as_str().unwrap_or_default()) {
            return Ok(f);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tokens_reach_only_what_they_name() -> anyhow::Result<()> {
    let stack = stack().await?;
    let run = json!({"user_id": "u1", "session_id": "A", "lang": "python", "code": "print(6*7)"});

    // Without credentials only the public endpoints answer.
    for (method, path) in [("POST", "/v1/runs"), ("GET", "/v1/runs/x"), ("POST", "/v1/sessions"), ("GET", "/metrics")] {
        let a = call(&stack, method, path, None, Some(run.clone())).await?;
        assert_eq!((a.status, code(&a).as_str()), (401, "unauthorized"), "{method} {path}");
        assert_eq!(a.headers.get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
    }
    assert_eq!(ws_refused(stack.addr, "session_id=A", &[]).await?, Some(401));
    for path in ["/healthz", "/readyz", "/v1/languages"] {
        assert_eq!(call(&stack, "GET", path, None, None).await?.status, 200, "{path}");
    }
    // Wrong credentials of every kind.
    for header in [bearer("not-the-key-0123456789"), format!("Basic {KEY}"), "Bearer".into(), bearer("hs1.AAAA.BBBB")] {
        let headers = [("authorization", header.as_str())];
        let a = request_with(stack.addr, "POST", "/v1/runs", &headers, Some(serde_json::to_vec(&run)?), WAIT).await?;
        assert_eq!(a.status, 401, "{header}");
    }
    assert_eq!(
        ws_refused(stack.addr, &format!("session_id=A&token={KEY}"), &[]).await?,
        Some(401),
        "keys stay out of URLs"
    );

    // An API key acts for anyone.
    let a = call(&stack, "POST", "/v1/runs?wait=true", Some(KEY), Some(run.clone())).await?;
    assert_eq!((a.status, a.json()["stdout"].as_str()), (200, Some("42\n")));
    let run_a = a.json()["run_id"].as_str().context("run_id")?.to_string();
    assert_eq!(call(&stack, "GET", "/metrics", Some(KEY), None).await?.status, 200);

    let token_a = token(&stack, json!({"user_id": "u1", "session_id": "A"})).await?;
    let token_b = token(&stack, json!({"user_id": "u1", "session_id": "B"})).await?;
    let token_c = token(&stack, json!({"user_id": "u2", "session_id": "C"})).await?;
    // The same session name issued to another user does not make its runs theirs.
    let token_d = token(&stack, json!({"user_id": "u2", "session_id": "A"})).await?;
    let fresh = call(&stack, "POST", "/v1/sessions", Some(KEY), Some(json!({"user_id": "u3"}))).await?.json();
    assert_eq!(fresh["session_id"].as_str().map(str::len), Some(36), "a session id is made up: {fresh}");
    assert_eq!(fresh["tier"], DEFAULT_TIER);

    // A token submits for its own user and session only (and may leave them out).
    let mine = json!({"lang": "python", "code": "print('mine')"});
    let a = call(&stack, "POST", "/v1/runs?wait=true", Some(&token_a), Some(mine.clone())).await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let r = a.json();
    assert_eq!(
        (r["session_id"].as_str(), r["user_id"].as_str(), r["stdout"].as_str()),
        (Some("A"), Some("u1"), Some("mine\n"))
    );
    for other in [json!({"session_id": "B"}), json!({"user_id": "u2"}), json!({"user_id": "u2", "session_id": "C"})] {
        let mut body = mine.clone();
        body.as_object_mut().unwrap().extend(other.as_object().unwrap().clone());
        let a = call(&stack, "POST", "/v1/runs", Some(&token_a), Some(body.clone())).await?;
        assert_eq!((a.status, code(&a).as_str()), (403, "forbidden"), "{body}");
    }
    // ... reads its own session's results only; others' look unknown.
    assert_eq!(call(&stack, "GET", &format!("/v1/runs/{run_a}"), Some(&token_a), None).await?.status, 200);
    for t in [&token_b, &token_c, &token_d] {
        let a = call(&stack, "GET", &format!("/v1/runs/{run_a}"), Some(t), None).await?;
        assert_eq!((a.status, code(&a).as_str()), (404, "not_found"));
    }
    // ... cannot issue tokens nor read metrics.
    let a = call(&stack, "POST", "/v1/sessions", Some(&token_a), Some(json!({"user_id": "u1"}))).await?;
    assert_eq!(a.status, 403);
    assert_eq!(call(&stack, "GET", "/metrics", Some(&token_a), None).await?.status, 403);

    // Session B gets a run of its own, so that there is something of B's to replay.
    let a = call(
        &stack,
        "POST",
        "/v1/runs?wait=true",
        Some(&token_b),
        Some(json!({"lang": "python", "code": "print('b')"})),
    )
    .await?;
    assert_eq!((a.status, a.json()["stdout"].as_str()), (200, Some("b\n")));
    let run_b = a.json()["run_id"].as_str().context("run_id")?.to_string();
    assert_eq!(call(&stack, "GET", &format!("/v1/runs/{run_b}"), Some(&token_a), None).await?.status, 404);

    // WebSockets: the token in the query (browsers), or the header; its own session only,
    // live or replayed (`since=`).
    assert_eq!(ws_refused(stack.addr, &format!("session_id=B&token={token_a}"), &[]).await?, Some(403));
    assert_eq!(ws_refused(stack.addr, &format!("session_id=B&since=0&token={token_a}"), &[]).await?, Some(403));
    assert_eq!(ws_refused(stack.addr, &format!("session_id=A&since=0&token={token_c}"), &[]).await?, Some(403));
    let mut ws_a = ws_connect_with(stack.addr, &format!("token={token_a}"), &[]).await?;
    let header = bearer(&token_b);
    let mut ws_b = ws_connect_with(stack.addr, "session_id=B", &[("authorization", &header)]).await?;
    // Session A replays its own runs (both of them) and nothing else; B its own.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = ws_next(&mut ws_a, WAIT).await?.context("closed")?;
        assert_eq!(ev["session_id"], "A", "{ev}");
        if ev["type"] == "result" {
            seen.push(ev["run_id"].as_str().unwrap_or_default().to_string());
        }
    }
    assert!(seen.contains(&run_a) && !seen.contains(&run_b), "{seen:?}");
    let replayed_b = loop {
        let ev = ws_next(&mut ws_b, WAIT).await?.context("closed")?;
        assert_eq!(ev["session_id"], "B", "{ev}");
        if ev["type"] == "result" {
            break ev["run_id"].as_str().unwrap_or_default().to_string();
        }
    };
    assert_eq!(replayed_b, run_b);

    let long = json!({"type": "run", "lang": "python", "interactive": true, "code": "print('ready', flush=True)\nprint('got', input())"});
    let accepted = send(&mut ws_a, long).await?;
    assert_eq!(accepted["type"], "accepted", "{accepted}");
    let run_id = accepted["run_id"].as_str().context("run_id")?.to_string();
    loop {
        let ev = ws_next(&mut ws_a, WAIT).await?.context("closed")?;
        if ev["run_id"] == run_id.as_str() && ev["type"] == "output" {
            break;
        }
    }
    let intrusions = [
        json!({"type": "stdin", "run_id": run_id, "data": "from B\n"}),
        json!({"type": "kill", "run_id": run_id}),
        json!({"type": "run", "session_id": "A", "lang": "python", "code": "print(1)"}),
    ];
    for frame in &intrusions {
        let r = send(&mut ws_b, frame.clone()).await?;
        assert_eq!(r["type"], "error", "{frame}: {r}");
    }
    // The other user's token for a session of the same name cannot reach it either.
    let mut ws_d = ws_connect_with(stack.addr, &format!("session_id=A&token={token_d}"), &[]).await?;
    for frame in &intrusions[..2] {
        let r = send(&mut ws_d, frame.clone()).await?;
        assert_eq!(r["error"]["code"], "not_found", "{frame}: {r}");
    }
    let r = send(&mut ws_a, json!({"type": "stdin", "run_id": run_id, "data": "from A\n"})).await?;
    assert_eq!(r["type"], "sent");
    let result = loop {
        let ev = ws_next(&mut ws_a, WAIT).await?.context("closed")?;
        if ev["run_id"] == run_id.as_str() && ev["type"] == "result" {
            break ev;
        }
    };
    assert_eq!(
        (result["status"].as_str(), result["stdout"].as_str()),
        (Some("ok"), Some("ready\ngot from A\n")),
        "{result}"
    );
    assert_eq!(result["user_id"], "u1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_so_do_their_sockets() -> anyhow::Result<()> {
    let stack = stack().await?;
    let short = token(&stack, json!({"user_id": "u1", "session_id": "E", "ttl_s": 2})).await?;
    let mut ws = ws_connect_with(stack.addr, &format!("token={short}"), &[]).await?;
    assert_eq!(
        call(&stack, "GET", "/v1/runs/0190aaaa-0000-7000-8000-000000000000", Some(&short), None).await?.status,
        404
    );
    // The socket is told, then closed, when the token runs out.
    let told = ws_next(&mut ws, Duration::from_secs(10)).await?.context("closed without a word")?;
    assert_eq!(told["error"]["code"], "unauthorized", "{told}");
    assert!(ws_next(&mut ws, Duration::from_secs(10)).await?.is_none(), "closed");
    let a = call(&stack, "GET", "/v1/runs/0190aaaa-0000-7000-8000-000000000000", Some(&short), None).await?;
    assert_eq!(a.status, 401, "an expired token is refused");
    for bad in [
        json!({"user_id": "a.b"}),
        json!({"user_id": "u", "session_id": "*"}),
        json!({"user_id": "u", "tier": "gold"}),
        json!({"user_id": "u", "ttl_s": 0}),
        json!({"user_id": "u", "admin": true}),
    ] {
        let a = call(&stack, "POST", "/v1/sessions", Some(KEY), Some(bad.clone())).await?;
        assert_eq!(a.status, 400, "{bad}: {}", String::from_utf8_lossy(&a.body));
    }
    Ok(())
}

#[tokio::test]
async fn anonymous_access_is_refused_off_loopback() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
    let config = hearth_gateway::GatewayConfig::new("nats://127.0.0.1:1");
    let served =
        tokio::time::timeout(Duration::from_secs(10), hearth_gateway::serve(listener, config, async {})).await?;
    let err = served.expect_err("dev mode on 0.0.0.0 must not start");
    assert!(matches!(err, hearth_gateway::GatewayError::AnonymousNotLoopback(_)), "{err}");
    Ok(())
}
