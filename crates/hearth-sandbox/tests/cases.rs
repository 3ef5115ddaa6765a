//! Every single-run case of `tests/cases/runs.json` through the real process driver and
//! the warm pool, with the verdict the case names; hostile ones are followed by the
//! no-leftovers check.

#[path = "../../../tests/support/cases.rs"]
mod cases;
mod support;

use std::time::{Duration, Instant};

use hearth_proto::Limits;
use hearth_sandbox::{Languages, Pool, PoolConfig, WarmSet};
use tokio::time::timeout;

#[test]
fn the_cases_copy_matches_shared() {
    if let Some(shared) = cases::shared_copy() {
        let ours =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/cases/runs.json")).unwrap();
        assert_eq!(ours, shared, "tests/cases/runs.json is behind ../shared/cases/runs.json: copy it again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_single_run_case_gets_its_verdict() {
    run_cases(false).await;
}

/// The same cases, with python and javascript handed to interpreters started ahead of
/// their code: the verdicts must not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_single_run_case_gets_its_verdict_in_prepared_sandboxes() {
    run_cases(true).await;
}

async fn run_cases(prepared: bool) {
    let langs = Languages::detect().unwrap();
    let driver = support::tagged_driver(if prepared { "p" } else { "c" });
    let sets = if prepared {
        ["python", "javascript"]
            .iter()
            .map(|id| WarmSet { key: id.to_string(), prepare: langs.get(id).unwrap().prepare().unwrap(), warm: 1 })
            .collect()
    } else {
        Vec::new()
    };
    let pool = Pool::start(driver.clone(), PoolConfig { warm: 2, sets, ..PoolConfig::default() });
    if prepared {
        // Both prepared sandboxes must really be there: a failed prepare would silently fall
        // back to plain sandboxes and prove nothing.
        timeout(Duration::from_secs(20), async {
            while pool.status().await.unwrap().prepared < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("prepared sandboxes ready");
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases::load().into_iter().filter(cases::Case::is_single_run) {
        for (lang, code) in case.programs() {
            let language =
                langs.get(&lang).unwrap_or_else(|| panic!("{}: language {lang} not on this host", case.name));
            let limits = Limits::resolve(&case.limits.clone().unwrap_or_default(), &Limits::DEFAULT, &Limits::MAX);
            let job = language.job_for_code(code.as_bytes(), case.stdin_bytes(), limits);
            let mounts = support::host_mounts();
            let start = Instant::now();
            let mut sb = timeout(Duration::from_secs(30), pool.acquire_for(language.id.as_str()))
                .await
                .expect("acquire in time")
                .unwrap();
            let id = sb.id().to_string();
            let outcome = timeout(Duration::from_secs(60), sb.run(&job, None, None)).await.expect("run in time");
            let elapsed = start.elapsed().as_millis() as u64;
            sb.destroy().await.unwrap();
            ran += 1;
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{}: sandbox error {e}", case.name));
                    continue;
                }
            };
            let result = outcome.to_api("run", "session", &lang);
            eprintln!("{:<22} {:>6} ms  {:?}", case.name, elapsed, result.status);
            for f in cases::check(&case.expect, &result, elapsed) {
                failures.push(format!("{}: {f}", case.name));
            }
            if case.expect.after.as_deref() == Some("clean") {
                for f in support::leftovers(&driver, &id, &mounts) {
                    failures.push(format!("{}: left behind: {f}", case.name));
                }
            }
        }
    }
    let status = pool.status().await.unwrap();
    assert_eq!(status.create_failures, 0, "{status:?}");
    pool.shutdown().await;
    assert!(ran >= 17, "only {ran} runs: cases went missing");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
