//! Every field case of `tests/cases/runs.json`, through the real gateway, a real
//! nats-server and a real executor, over HTTP and WebSocket: single runs (`?wait=true`,
//! with their streamed events checked against the stored result), refusals (400, 413,
//! 422), 50 runs in parallel, and a WebSocket dropped and resumed with `since=`.

#[path = "../../../tests/support/cases.rs"]
mod cases;
mod support;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::join_all;
use hearth_proto::api::RunResult;
use hearth_proto::Status;
use serde_json::Value;
use support::{get, ms_since, post_json, run_body, ws_connect, ws_next, Stack};

/// Generous bound on one `?wait=true` exchange.
const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_case_through_http_and_websocket() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let mut failures = Vec::new();
    let all = cases::load();
    for case in &all {
        let start = Instant::now();
        match run_case(&stack, case).await {
            Ok(bad) => failures.extend(bad.into_iter().map(|f| format!("{}: {f}", case.name))),
            Err(e) => failures.push(format!("{}: {e:#}", case.name)),
        }
        eprintln!("{:<22} {:>6} ms", case.name, ms_since(start));
    }
    assert!(all.len() >= 23, "only {} cases: cases went missing", all.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}

async fn run_case(stack: &Stack, case: &cases::Case) -> anyhow::Result<Vec<String>> {
    if let Some(requests) = &case.requests {
        return refusals(stack, case, requests).await;
    }
    if let Some(n) = case.parallel {
        return parallel(stack, case, n).await;
    }
    if case.ws_drop_after_ms.is_some() {
        return reconnect(stack, case).await;
    }
    if let Some(code) = case.expect.http {
        return refused(stack, case, code).await;
    }
    let mut bad = Vec::new();
    for (i, (lang, code)) in case.programs().into_iter().enumerate() {
        let session = format!("{}-{i}", case.name);
        let start = Instant::now();
        let result = run_and_wait(stack, &body(case, &session, &lang, &code)).await?;
        let elapsed = ms_since(start);
        bad.extend(cases::check(&case.expect, &result, elapsed));
        bad.extend(streamed_matches_stored(stack, &session, &result).await?);
    }
    Ok(bad)
}

/// The case's request body for one program.
fn body(case: &cases::Case, session: &str, lang: &str, code: &str) -> Value {
    let mut b = run_body(session, lang, code);
    b["stdin"] = String::from_utf8(case.stdin_bytes()).expect("stdin is text").into();
    if let Some(limits) = &case.limits {
        b["limits"] = serde_json::to_value(limits).expect("limits encode");
    }
    b
}

async fn run_and_wait(stack: &Stack, body: &Value) -> anyhow::Result<RunResult> {
    let a = post_json(stack.addr, "/v1/runs?wait=true", body, WAIT).await?;
    if a.status != 200 {
        bail!("POST ?wait=true answered {}: {}", a.status, String::from_utf8_lossy(&a.body));
    }
    Ok(serde_json::from_slice(&a.body)?)
}

/// Replays the session from the start: `queued`, `running`, the output, then the result,
/// in `seq` order, and the streamed stdout is the stored stdout.
async fn streamed_matches_stored(stack: &Stack, session: &str, result: &RunResult) -> anyhow::Result<Vec<String>> {
    let mut ws = ws_connect(stack.addr, &format!("session_id={session}")).await?;
    let events = read_until_result(&mut ws, &result.run_id, Duration::from_secs(10)).await?;
    let mut bad = Vec::new();
    let kinds: Vec<String> = events.iter().map(|e| format!("{}:{}", e["type"], e["status"])).collect();
    if kinds.first().map(String::as_str) != Some("\"status\":\"queued\"")
        || kinds.get(1).map(String::as_str) != Some("\"status\":\"running\"")
    {
        bad.push(format!("events start {:?}, expected queued then running", &kinds[..kinds.len().min(3)]));
    }
    if !seqs_increase(&events) {
        bad.push("event seqs do not increase".into());
    }
    let streamed = stdout_of(&events);
    if streamed != result.stdout_bytes() {
        bad.push(format!(
            "streamed stdout ({} bytes) differs from the result's ({} bytes)",
            streamed.len(),
            result.stdout_bytes().len()
        ));
    }
    let last: RunResult = serde_json::from_value(events.last().cloned().unwrap_or_default())?;
    if last != *result {
        bad.push("the result event differs from the ?wait=true answer".into());
    }
    Ok(bad)
}

/// Events of `run_id` until (and with) its result.
async fn read_until_result(ws: &mut support::http::Ws, run_id: &str, within: Duration) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = ws_next(ws, left).await?.context("socket closed before the result")?;
        if ev["run_id"] != run_id {
            continue;
        }
        let done = ev["type"] == "result";
        events.push(ev);
        if done {
            return Ok(events);
        }
    }
}

fn seqs_increase(events: &[Value]) -> bool {
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    seqs.len() == events.len() && seqs.windows(2).all(|w| w[0] < w[1])
}

fn stdout_of(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e["type"] == "output" && e["stream"] == "stdout") {
        match (e["output"].as_str(), e["output_b64"].as_str()) {
            (Some(text), _) => out.extend_from_slice(text.as_bytes()),
            (None, Some(b64)) => out.extend(hearth_proto::b64::decode(b64).unwrap_or_default()),
            _ => {}
        }
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Each request (merged over a valid one) is refused with the case's code, over HTTP and as
/// a WebSocket session id.
async fn refusals(stack: &Stack, case: &cases::Case, requests: &[Value]) -> anyhow::Result<Vec<String>> {
    let want = case.expect.http.context("a requests case names its http code")?;
    let mut bad = Vec::new();
    for r in requests {
        let mut b = run_body("ok", "python", "print(1)");
        for (k, v) in r.as_object().context("a request is an object")? {
            b[k] = v.clone();
        }
        let a = post_json(stack.addr, "/v1/runs", &b, WAIT).await?;
        if a.status != want || a.json()["error"]["code"].as_str().is_none() {
            bad.push(format!("{r}: answered {} {}", a.status, String::from_utf8_lossy(&a.body)));
        }
        if let Some(sid) = r["session_id"].as_str() {
            let q = format!("/v1/ws?session_id={}", percent_encode(sid));
            let a = get(stack.addr, &q).await?;
            if a.status != want {
                bad.push(format!("GET {q}: answered {}", a.status));
            }
            let ws = ws_connect(stack.addr, &format!("session_id={}", percent_encode(sid))).await;
            if ws.is_ok() {
                bad.push(format!("a WebSocket for session {sid:?} was opened"));
            }
        }
    }
    Ok(bad)
}

/// The request is refused with `code` and a JSON error; the service still runs code after.
async fn refused(stack: &Stack, case: &cases::Case, code: u16) -> anyhow::Result<Vec<String>> {
    let (lang, program) = case.programs().remove(0);
    let a = post_json(stack.addr, "/v1/runs?wait=true", &body(case, &case.name, &lang, &program), WAIT).await?;
    let mut bad = Vec::new();
    if a.status != code {
        bad.push(format!("answered {}, expected {code}", a.status));
    }
    match serde_json::from_slice::<Value>(&a.body) {
        Ok(v) if v["error"]["code"].is_string() && v["error"]["message"].is_string() => {}
        _ => bad
            .push(format!("body is not a JSON error: {:?}", String::from_utf8_lossy(&a.body[..a.body.len().min(200)]))),
    }
    let after = run_and_wait(stack, &run_body("after-refusal", "python", "print(1)")).await?;
    if after.status != Some(Status::Ok) || after.stdout != "1\n" {
        bad.push(format!("the next run did not work: {:?} {:?}", after.status, after.stdout));
    }
    Ok(bad)
}

/// `n` runs at once, each checked on its own.
async fn parallel(stack: &Stack, case: &cases::Case, n: usize) -> anyhow::Result<Vec<String>> {
    let (lang, code) = case.programs().remove(0);
    let runs = (0..n).map(|i| {
        let b = body(case, &format!("par-{i}"), &lang, &code);
        async move { run_and_wait(stack, &b).await }
    });
    let mut bad = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, r) in join_all(runs).await.into_iter().enumerate() {
        match r {
            Ok(r) => {
                ids.insert(r.run_id.clone());
                bad.extend(cases::check(&case.expect, &r, 0).into_iter().map(|f| format!("run {i}: {f}")));
            }
            Err(e) => bad.push(format!("run {i}: {e:#}")),
        }
    }
    if ids.len() != n {
        bad.push(format!("{} distinct run ids for {n} runs", ids.len()));
    }
    Ok(bad)
}

/// Drop the socket after `ws_drop_after_ms`, reconnect with `since=<last seq>` at
/// `ws_reconnect_after_ms`: every later event arrives, in order, no gap, no duplicate, and
/// the two halves together are exactly a full replay.
async fn reconnect(stack: &Stack, case: &cases::Case) -> anyhow::Result<Vec<String>> {
    let drop_after = Duration::from_millis(case.ws_drop_after_ms.unwrap_or(1000));
    let reconnect_after = Duration::from_millis(case.ws_reconnect_after_ms.unwrap_or(2500));
    let session = "reconnect-replay";
    let (lang, code) = case.programs().remove(0);
    let mut ws = ws_connect(stack.addr, &format!("session_id={session}")).await?;
    let start = Instant::now();
    let a = post_json(stack.addr, "/v1/runs", &body(case, session, &lang, &code), WAIT).await?;
    if a.status != 202 {
        bail!("POST answered {}: {}", a.status, String::from_utf8_lossy(&a.body));
    }
    let run_id = a.json()["run_id"].as_str().context("run_id")?.to_string();
    let mut before = Vec::new();
    // The case's own timeline: read for `drop_after`, then drop the socket.
    while let Some(left) = (start + drop_after).checked_duration_since(Instant::now()) {
        match ws_next(&mut ws, left).await {
            Ok(Some(ev)) => before.push(ev),
            Ok(None) => bail!("the socket closed by itself"),
            Err(_) => break,
        }
    }
    drop(ws);
    let last = before.last().and_then(|e| e["seq"].as_u64()).context("no event before the drop")?;
    tokio::time::sleep((start + reconnect_after).saturating_duration_since(Instant::now())).await;
    let mut ws = ws_connect(stack.addr, &format!("session_id={session}&since={last}")).await?;
    let after = read_until_result(&mut ws, &run_id, Duration::from_secs(30)).await?;
    let mut full_ws = ws_connect(stack.addr, &format!("session_id={session}")).await?;
    let full = read_until_result(&mut full_ws, &run_id, Duration::from_secs(10)).await?;

    let mut bad = Vec::new();
    if !before.iter().any(|e| e["type"] == "output") {
        bad.push("no output arrived before the drop: output is held back".into());
    }
    let joined: Vec<Value> = before.iter().chain(after.iter()).cloned().collect();
    if !seqs_increase(&joined) {
        bad.push("seqs across the reconnect do not strictly increase (a duplicate?)".into());
    }
    if joined != full {
        bad.push(format!(
            "before + after ({} events) is not the full replay ({} events): a gap",
            joined.len(),
            full.len()
        ));
    }
    let result: RunResult = serde_json::from_value(after.last().cloned().unwrap_or_default())?;
    bad.extend(cases::check(&case.expect, &result, 0));
    let streamed = String::from_utf8_lossy(&stdout_of(&joined)).into_owned();
    if Some(&streamed) != case.expect.stdout.as_ref() {
        bad.push(format!("streamed stdout {streamed:?}"));
    }
    Ok(bad)
}
