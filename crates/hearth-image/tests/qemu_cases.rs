//! Every single-run case of `tests/cases/runs.json` through the qemu driver and the warm
//! pool (TCG on hosts without a usable KVM), with the verdict the case names and, after
//! each run, nothing of its VM left on the host. The same checks as the process driver's
//! `cases` test; under TCG the driver scales time limits for the emulated CPU, and the
//! cases' time bounds are scaled alike.

#[path = "../../../tests/support/cases.rs"]
mod cases;
mod support;

use std::time::Instant;

use hearth_proto::Limits;
use hearth_sandbox::{Driver, Pool, PoolConfig};
use tokio::time::timeout;

use support::VM_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_single_run_case_gets_its_verdict_in_a_qemu_vm() {
    let driver = support::qemu("cases").await;
    let langs = support::image().languages().unwrap();
    // Interpreters start several times slower under TCG than on the host: a case's time
    // bound (which is about the slot not freezing) gets that start-up on top.
    // Under TCG the driver gives runs 4x their wall and CPU limits (the emulated CPU is that
    // much slower); a case's time bound (about the slot not freezing) gets the same factor
    // plus a VM's slower start.
    let factor = driver.time_scale();
    let slack_ms = if factor == 1 { 1_000 } else { 6_000 };
    eprintln!("qemu driver with {:?}", driver.accel());
    // A few VMs, runs one after another: lean on a 2-core host.
    let config = PoolConfig { warm: 2, max_creating: 1, ping_timeout: driver.ping_timeout(), ..PoolConfig::default() };
    let pool = Pool::start(driver.clone(), config);
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases::load().into_iter().filter(cases::Case::is_single_run) {
        for (lang, code) in case.programs() {
            let language =
                langs.get(&lang).unwrap_or_else(|| panic!("{}: language {lang} not in the image", case.name));
            let limits = Limits::resolve(&case.limits.clone().unwrap_or_default(), &Limits::DEFAULT, &Limits::MAX);
            let job = language.job_for_code(code.as_bytes(), case.stdin_bytes(), limits);
            let mut sb =
                timeout(VM_TIMEOUT, pool.acquire_for(language.id.as_str())).await.expect("acquire in time").unwrap();
            let start = Instant::now();
            let id = sb.id().to_string();
            let outcome = timeout(VM_TIMEOUT, sb.run(&job, None, None)).await.expect("run in time");
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
            let mut expect = case.expect.clone();
            expect.max_ms = expect.max_ms.map(|ms| ms * factor + slack_ms);
            for f in cases::check(&expect, &result, elapsed) {
                failures.push(format!("{}: {f}", case.name));
            }
            for f in support::vm_leftovers(&id) {
                failures.push(format!("{}: left behind: {f}", case.name));
            }
        }
    }
    let status = pool.status().await.unwrap();
    pool.shutdown().await;
    assert_eq!(status.create_failures, 0, "{status:?}");
    assert!(ran >= 17, "only {ran} runs: cases went missing");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    let left = support::processes_naming(&format!("hearth-vm-{}", driver.prefix()));
    assert!(left.is_empty(), "VMs left after the pool shut down: {left:?}");
}
