//! Every language of `languages.toml`, proven on this host: its runtime is installed (after
//! `scripts/setup`), it reports a real version, and a small program in it reads stdin,
//! computes, and prints the exact answer through the real process driver and the warm pool.
//! Multi-file projects with a chosen entry point run the same way.

#[path = "languages/programs.rs"]
mod programs;
mod support;

use std::time::{Duration, Instant};

use hearth_proto::frame::FileSpec;
use hearth_proto::{Limits, Status};
use hearth_sandbox::{Driver, JobInput, Languages, Pool, PoolConfig};
use tokio::time::timeout;

#[test]
fn every_declared_language_is_installed_here() {
    let langs = Languages::detect().unwrap();
    let missing: Vec<String> = programs::declared_ids().into_iter().filter(|id| langs.get(id).is_none()).collect();
    assert!(missing.is_empty(), "not on this host (run scripts/setup): {missing:?}");
    assert!(langs.list().len() >= 20, "only {} languages", langs.list().len());
}

#[test]
fn every_language_reports_a_real_version() {
    let langs = Languages::detect().unwrap();
    let bad: Vec<String> = langs
        .list()
        .iter()
        .filter(|l| {
            let mut parts = l.version.split('.');
            let numeric = l.version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            !(numeric && parts.next().is_some() && parts.next().is_some())
        })
        .map(|l| format!("{}: {:?}", l.id, l.version))
        .collect();
    assert!(bad.is_empty(), "versions that are not N.N...: {bad:?}");
}

#[test]
fn every_declared_language_has_a_program() {
    let progs = programs::load();
    let without: Vec<String> =
        programs::declared_ids().into_iter().filter(|id| !progs.iter().any(|p| &p.lang == id)).collect();
    assert!(without.is_empty(), "no program in tests/languages/programs.toml for {without:?}");
}

#[test]
fn an_entry_that_is_not_a_file_is_refused() {
    let langs = Languages::detect().unwrap();
    let python = langs.get("python").unwrap();
    let input = JobInput {
        files: vec![FileSpec { path: "a.py".into(), data: b"print(1)".to_vec(), executable: false }],
        entry: Some("b.py".into()),
        ..JobInput::default()
    };
    assert!(python.job(input).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_program_prints_its_answer() {
    let langs = Languages::detect().unwrap();
    let driver = support::tagged_driver("lang");
    let pool = Pool::start(driver, PoolConfig { warm: 2, ..PoolConfig::default() });
    let mut failures = Vec::new();
    let mut ran = 0;
    for prog in programs::load() {
        let Some(language) = langs.get(&prog.lang) else {
            failures.push(format!("{}: language {} not on this host", prog.name(), prog.lang));
            continue;
        };
        let job = prog.job(language);
        let start = Instant::now();
        let mut sb = timeout(Duration::from_secs(30), pool.acquire()).await.expect("acquire in time").unwrap();
        let outcome = timeout(Duration::from_secs(120), sb.run(&job, None, None)).await.expect("run in time");
        sb.destroy().await.unwrap();
        ran += 1;
        let out = match outcome {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{}: sandbox error {e}", prog.name()));
                continue;
            }
        };
        let r = &out.result;
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{:<24} {:>6} ms  {:?}", prog.name(), start.elapsed().as_millis(), r.status);
        if r.status != Status::Ok || stdout != prog.stdout {
            let compile = r.compile.as_ref().map(|c| String::from_utf8_lossy(&c.output).to_string());
            failures.push(format!(
                "{}: status {:?} exit {:?} signal {:?} stdout {stdout:?} (want {:?})\n  stderr: {}\n  compile: {}\n  message: {:?}",
                prog.name(),
                r.status,
                r.exit_code,
                r.signal,
                prog.stdout,
                String::from_utf8_lossy(&out.stderr),
                compile.unwrap_or_default(),
                r.message,
            ));
        }
    }
    pool.shutdown().await;
    assert!(ran >= 20, "only {ran} programs ran");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// A compile step that fails is `compile_error`, with the compiler's message kept apart
/// from the (empty) run output: a TypeScript type error must fail, not run anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_errors_stop_the_run_and_keep_their_output_apart() {
    let langs = Languages::detect().unwrap();
    let driver = support::tagged_driver("langerr");
    for (lang, code, needle) in [
        ("typescript", "const n: number = \"text\";\nconsole.log(n);\n", "TS2322"),
        ("java", "public class Main { public static void main(String[] a) { int x = ; } }\n", "error"),
        ("rust", "fn main() { let x: u8 = \"s\"; }\n", "mismatched types"),
    ] {
        let language = langs.get(lang).unwrap_or_else(|| panic!("{lang} on this host"));
        let limits = language.limits(&Default::default(), &Limits::DEFAULT, &Limits::MAX);
        let job = language.job_for_code(code.as_bytes(), Vec::new(), limits);
        let mut sb = driver.create().await.unwrap();
        let out = timeout(Duration::from_secs(90), sb.run(&job, None, None)).await.expect("run in time").unwrap();
        sb.destroy().await.unwrap();
        assert_eq!(out.result.status, Status::CompileError, "{lang}: {:?}", out.result);
        let compile = out.result.compile.as_ref().expect("a compile result");
        let text = String::from_utf8_lossy(&compile.output);
        assert!(text.contains(needle), "{lang}: compile output {text:?} lacks {needle:?}");
        assert!(out.stdout.is_empty(), "{lang}: the program must not have run");
    }
}

/// A request's own limits win over a language's defaults, and the maximum still caps.
#[test]
fn language_limits_are_defaults_not_overrides() {
    let langs = Languages::detect().unwrap();
    let java = langs.get("java").expect("java on this host");
    let defaults = java.limits(&Default::default(), &Limits::DEFAULT, &Limits::MAX);
    assert!(
        defaults.pids > Limits::DEFAULT.pids,
        "java gets room for the JVM's threads over {} pids",
        Limits::DEFAULT.pids
    );
    assert_eq!(defaults.memory_mb, Limits::DEFAULT.memory_mb, "the JVM starts under the default memory limit");
    let asked = hearth_proto::LimitsRequest { pids: Some(32), ..Default::default() };
    assert_eq!(java.limits(&asked, &Limits::DEFAULT, &Limits::MAX).pids, 32);
    let asked = hearth_proto::LimitsRequest { pids: Some(100_000), ..Default::default() };
    assert_eq!(java.limits(&asked, &Limits::DEFAULT, &Limits::MAX).pids, Limits::MAX.pids);
    let python = langs.get("python").unwrap();
    assert_eq!(python.limits(&Default::default(), &Limits::DEFAULT, &Limits::MAX), Limits::DEFAULT);
    assert!(langs.get("haskell").expect("ghc on this host").compile_limits().wall_ms > Limits::COMPILE.wall_ms);
}
