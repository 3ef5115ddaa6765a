//! Every language, through the whole path a user's run takes: `GET /v1/languages` lists
//! exactly the languages this host has (with the version the runtime reports), and each
//! language's program from `hearth-sandbox/tests/languages/programs.toml` (read stdin,
//! compute, print) is posted with `?wait=true` to the real gateway, queued on a real
//! nats-server, compiled if need be and run by a real executor, and answers exactly.

#[path = "../../hearth-sandbox/tests/languages/programs.rs"]
mod programs;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use hearth_proto::api::RunResult;
use hearth_sandbox::Languages;
use serde_json::{json, Value};
use support::{get, ms_since, post_json, Stack};

/// Compiled languages get the time their compilers need (scalac and nim take seconds).
const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_languages_endpoint_lists_what_this_host_has() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let listed = get(stack.addr, "/v1/languages").await?.json();
    let listed: BTreeMap<String, Value> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|l| (l["id"].as_str().unwrap_or("").to_owned(), l.clone()))
        .collect();
    let here = Languages::detect()?;
    let mut bad = Vec::new();
    for lang in here.list() {
        match listed.get(&lang.id) {
            None => bad.push(format!("{} is on this host but not listed", lang.id)),
            Some(l) if l["version"] != lang.version.as_str() => {
                bad.push(format!("{}: listed version {} but the runtime says {}", lang.id, l["version"], lang.version))
            }
            Some(l) if l["compiled"] != lang.compiled => bad.push(format!("{}: wrong `compiled`", lang.id)),
            Some(_) => {}
        }
    }
    for id in listed.keys() {
        if here.get(id).is_none() {
            bad.push(format!("{id} is listed but not on this host"));
        }
    }
    assert!(listed.len() >= 20, "only {} languages listed", listed.len());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_runs_its_program_end_to_end() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let progs = programs::load();
    // Two at a time: the executor has two slots, so both stay busy and none waits long.
    let results: Vec<Option<String>> = stream::iter(progs.iter().enumerate())
        .map(|(i, prog)| {
            let stack = &stack;
            async move {
                let start = Instant::now();
                let outcome = run(stack, i, prog).await;
                eprintln!("{:<24} {:>6} ms", prog.name(), ms_since(start));
                match outcome {
                    Ok(r) if r.status == Some(hearth_proto::Status::Ok) && r.stdout == prog.stdout => None,
                    Ok(r) => Some(format!(
                        "{}: status {:?} exit {:?} stdout {:?} (want {:?})\n  stderr: {}\n  compile: {}\n  message: {:?}",
                        prog.name(),
                        r.status,
                        r.exit_code,
                        r.stdout,
                        prog.stdout,
                        r.stderr,
                        r.compile_output,
                        r.message
                    )),
                    Err(e) => Some(format!("{}: {e:#}", prog.name())),
                }
            }
        })
        .buffer_unordered(2)
        .collect()
        .await;
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(progs.len() >= 20, "only {} programs", progs.len());
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), progs.len(), failures.join("\n"));
    Ok(())
}

/// Posts one program as a user would: `code`, or `files` with an `entry`.
async fn run(stack: &Stack, i: usize, prog: &programs::Program) -> anyhow::Result<RunResult> {
    // A generous wall clock: on a loaded 2-core CI host a slow starter (R, the JVM) can take
    // seconds; this test is about each language working, the limits have their own tests.
    let mut body = json!({
        "user_id": "u1", "session_id": format!("lang-{i}"), "lang": prog.lang, "stdin": prog.stdin,
        "limits": {"wall_ms": 30_000},
    });
    match &prog.code {
        Some(code) => body["code"] = code.as_str().into(),
        None => {
            body["files"] = prog.files.iter().map(|f| json!({"name": f.path, "content": f.text})).collect();
            body["entry"] = prog.entry.clone().into();
        }
    }
    let a = post_json(stack.addr, "/v1/runs?wait=true", &body, WAIT).await?;
    anyhow::ensure!(a.status == 200, "POST ?wait=true answered {}: {}", a.status, String::from_utf8_lossy(&a.body));
    Ok(serde_json::from_slice(&a.body)?)
}
