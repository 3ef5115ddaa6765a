//! The browser UI's files and `GET /v1/status`, over the real gateway (nats-server on a free
//! port, executor with the process driver). The pages themselves are tested in Chromium by
//! `web/tests/` (scripts/test).

mod support;

use std::time::{Duration, Instant};

use anyhow::bail;
use support::{get, post_json, run_body, Stack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A UI directory as `web/` builds it, in small.
fn web_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>editor</title>")?;
    std::fs::write(dir.path().join("status.html"), "<!doctype html><title>status</title>")?;
    std::fs::write(dir.path().join("app.js"), "console.log(1)")?;
    std::fs::write(dir.path().join("app.css"), "body{}")?;
    std::fs::write(dir.path().join(".secret.js"), "no")?;
    Ok(dir)
}

/// One raw request with extra header lines; answers the status line and the headers.
async fn raw_get(addr: std::net::SocketAddr, path: &str, extra: &str) -> anyhow::Result<String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").as_bytes()).await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_assets_are_served_and_nothing_else() -> anyhow::Result<()> {
    let dir = web_dir()?;
    let path = dir.path().to_path_buf();
    let stack = Stack::start_with(support::quick_bus(), false, move |c| c.web_dir = Some(path)).await?;
    let index = get(stack.addr, "/").await?;
    assert_eq!(index.status, 200);
    assert_eq!(index.headers["content-type"], "text/html; charset=utf-8");
    assert!(index.headers["content-security-policy"].to_str()?.contains("default-src 'self'"));
    assert_eq!(index.headers["x-content-type-options"], "nosniff");
    assert_eq!(&index.body[..], b"<!doctype html><title>editor</title>");
    let status = get(stack.addr, "/status").await?;
    assert_eq!((status.status, &status.body[..]), (200, &b"<!doctype html><title>status</title>"[..]));
    let js = get(stack.addr, "/ui/app.js").await?;
    assert_eq!((js.status, js.headers["content-type"].to_str()?), (200, "text/javascript; charset=utf-8"));
    assert_eq!(get(stack.addr, "/ui/app.css").await?.headers["content-type"], "text/css; charset=utf-8");
    for bad in
        ["/ui/.secret.js", "/ui/..%2Fapp.js", "/ui/../app.js", "/ui/index.html", "/ui/missing.js", "/ui/a/app.js"]
    {
        let a = get(stack.addr, bad).await?;
        assert_eq!(a.status, 404, "{bad}");
    }
    // Revalidation: the same file answers 304 to its own ETag, 200 once it changed.
    let tag = js.headers["etag"].to_str()?.to_string();
    assert_eq!(js.headers["cache-control"], "no-cache");
    let again = raw_get(stack.addr, "/ui/app.js", &format!("If-None-Match: {tag}\r\n")).await?;
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    std::fs::write(dir.path().join("app.js"), "console.log(22)")?;
    let changed = raw_get(stack.addr, "/ui/app.js", &format!("If-None-Match: {tag}\r\n")).await?;
    assert!(changed.starts_with("HTTP/1.1 200") && changed.ends_with("console.log(22)"), "{changed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_built_ui_the_page_says_how_to_build_it() -> anyhow::Result<()> {
    let empty = tempfile::tempdir()?;
    let path = empty.path().to_path_buf();
    let stack = Stack::start_with(support::quick_bus(), false, move |c| c.web_dir = Some(path)).await?;
    let a = get(stack.addr, "/").await?;
    assert_eq!(a.status, 404);
    assert!(String::from_utf8_lossy(&a.body).contains("scripts/setup"));
    assert_eq!(get(stack.addr, "/healthz").await?.status, 200);
    let none = Stack::start(support::quick_bus(), false).await?;
    let a = get(none.addr, "/status").await?;
    assert_eq!(a.status, 404);
    assert!(String::from_utf8_lossy(&a.body).contains("not built"));
    Ok(())
}

/// Polls `/v1/status` until `check` holds, within 20 s.
async fn status_until(
    stack: &Stack,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = get(stack.addr, "/v1/status").await?.json();
        if check(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("/v1/status never showed {what}: last {s}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_executors_queue_and_latency() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let s = status_until(&stack, "one executor", |s| s["executors_online"] == 1).await?;
    assert_eq!((s["slots"].as_u64(), s["busy"].as_u64(), s["warm_target"].as_u64()), (Some(2), Some(0), Some(2)));
    assert_eq!(s["nats_connected"], true);
    assert_eq!(s["queue"]["depth"], 0);
    assert_eq!(s["latency"]["count"], 0);
    assert!(s["latency"]["p50_ms"].is_null());
    assert_eq!(s["executors"][0]["id"], "ex1");
    assert_eq!(s["executors"][0]["driver"], "process");

    // Three runs of 3 s on 2 slots: two are handed out, one waits.
    for i in 0..3 {
        let a =
            post_json(stack.addr, "/v1/runs", &run_body(&format!("st{i}"), "bash", "sleep 3"), Duration::from_secs(10))
                .await?;
        assert_eq!(a.status, 202);
    }
    let s = status_until(&stack, "two busy, one waiting", |s| {
        s["busy"] == 2 && s["queue"]["waiting"] == 1 && s["queue"]["running"] == 2
    })
    .await?;
    assert_eq!(s["queue"]["depth"], 3);
    status_until(&stack, "the queue drained", |s| s["queue"]["depth"] == 0 && s["busy"] == 0).await?;

    // Latency is from accepted to the verdict: it covers the program's own time.
    let a = post_json(stack.addr, "/v1/runs?wait=true", &run_body("st9", "bash", "sleep 0.3"), Duration::from_secs(30))
        .await?;
    assert_eq!(a.json()["status"], "ok");
    let s = status_until(&stack, "four latencies", |s| s["latency"]["count"] == 4).await?;
    let (p50, p99) = (s["latency"]["p50_ms"].as_f64().unwrap(), s["latency"]["p99_ms"].as_f64().unwrap());
    assert!(p50 >= 300.0 && p99 >= 3000.0 && p99 >= p50, "p50 {p50} p99 {p99}");
    Ok(())
}
