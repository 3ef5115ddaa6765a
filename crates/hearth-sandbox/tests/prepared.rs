//! A program handed to a prepared interpreter sees exactly what a fresh start would show
//! it: argv, `__main__`/main module, file names, search path, stdin, exit status, and
//! tracebacks that name only its own files.

mod support;

use std::time::Duration;

use hearth_proto::frame::FileSpec;
use hearth_proto::{Limits, Status};
use hearth_sandbox::{Driver, JobInput, Languages, RunOutcome};
use tokio::time::timeout;

async fn both_ways(lang: &str, code: &str, stdin: &str) -> (RunOutcome, RunOutcome) {
    let driver = support::tagged_driver(&format!("prep-{lang}"));
    let langs = Languages::detect().unwrap();
    let l = langs.get(lang).unwrap();
    let input = JobInput {
        files: vec![FileSpec { path: l.file.clone(), data: code.as_bytes().to_vec(), executable: false }],
        stdin: stdin.as_bytes().to_vec(),
        args: vec!["first arg".into(), "--flag".into()],
        limits: Limits::DEFAULT,
        keep_stdin_open: false,
        entry: None,
    };
    let job = l.job(input).unwrap();
    assert!(job.warm_argv.is_some(), "{lang} has a prestart loader");
    let mut outcomes = Vec::new();
    for prepare in [false, true] {
        let mut sb = driver.create().await.unwrap();
        if prepare {
            sb.prepare(&l.prepare().unwrap(), Duration::from_secs(10)).await.unwrap();
        }
        let out = timeout(Duration::from_secs(30), sb.run(&job, None, None)).await.unwrap().unwrap();
        sb.destroy().await.unwrap();
        outcomes.push(out);
    }
    let warm = outcomes.pop().unwrap();
    (outcomes.pop().unwrap(), warm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sees_the_same_world_prepared_or_not() {
    let code = r#"
import os, sys
print(__name__, __file__, sys.argv, sys.orig_argv[1:], sys.path[0], os.getcwd())
print(sorted(k for k in globals()), __loader__.name, __spec__)
print(repr(sys.stdin.read()))
def fail():
    raise ValueError("from the program")
fail()
"#;
    let (cold, warm) = both_ways("python", code, "line one\nline two\n").await;
    assert_eq!(cold.result.status, Status::RuntimeError);
    assert_eq!(warm.result.status, Status::RuntimeError);
    assert_eq!(warm.result.exit_code, Some(1));
    assert_eq!(String::from_utf8_lossy(&warm.stdout), String::from_utf8_lossy(&cold.stdout));
    assert_eq!(String::from_utf8_lossy(&warm.stderr), String::from_utf8_lossy(&cold.stderr));
    let stdout = String::from_utf8_lossy(&warm.stdout);
    assert!(stdout.starts_with("__main__ /work/main.py ['main.py', 'first arg', '--flag']"), "{stdout}");
    assert!(String::from_utf8_lossy(&warm.stderr).contains("File \"/work/main.py\", line 8, in <module>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_exit_codes_pass_through_a_prepared_interpreter() {
    let (cold, warm) = both_ways("python", "import sys\nprint('bye')\nsys.exit(7)\n", "").await;
    assert_eq!(cold.result.exit_code, Some(7));
    assert_eq!(warm.result.exit_code, Some(7));
    assert_eq!(warm.stdout, b"bye\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sees_the_same_world_prepared_or_not() {
    let code = r#"
console.log(process.argv.slice(1), require.main === module, __filename, process.execArgv, process.cwd());
let input = '';
process.stdin.on('data', d => input += d).on('end', () => { console.log(JSON.stringify(input)); process.exit(3); });
"#;
    let (cold, warm) = both_ways("javascript", code, "some input").await;
    assert_eq!(cold.result.exit_code, Some(3));
    assert_eq!(warm.result.exit_code, Some(3));
    assert_eq!(String::from_utf8_lossy(&warm.stdout), String::from_utf8_lossy(&cold.stdout));
    assert!(String::from_utf8_lossy(&warm.stdout)
        .contains("[ '/work/main.js', 'first arg', '--flag' ] true /work/main.js [] /work"));
}
