//! The qemu driver on the real guest image (TCG here; KVM where it works).

mod support;

use std::time::Duration;

use hearth_proto::{Limits, Status};
use hearth_sandbox::{Driver, Pool, PoolConfig, PoolStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::{sleep, timeout};

use support::VM_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_prints_in_a_qemu_vm_and_the_vm_leaves_nothing() {
    let driver = support::qemu("first").await;
    let langs = support::image().languages().unwrap();
    let python = langs.get("python").expect("python in the image");
    let job =
        python.job_for_code(b"import sys\nprint(1)\nprint('err', file=sys.stderr)\n", Vec::new(), Limits::DEFAULT);
    let mut sb =
        timeout(VM_TIMEOUT, hearth_sandbox::Driver::create(driver.as_ref())).await.expect("boot in time").unwrap();
    let id = sb.id().to_string();
    assert!(!support::vm_leftovers(&id).is_empty(), "a live VM has a process and a state directory");
    let out = timeout(VM_TIMEOUT, sb.run(&job, None, None)).await.expect("run in time").unwrap();
    sb.destroy().await.unwrap();
    assert_eq!(out.result.status, Status::Ok, "{:?}", out);
    assert_eq!(out.stdout, b"1\n");
    assert_eq!(out.stderr, b"err\n");
    let left = support::vm_leftovers(&id);
    assert!(left.is_empty(), "left behind: {left:?}");
}

async fn wait_for(pool: &Pool, what: &str, ok: impl Fn(&PoolStatus) -> bool) -> PoolStatus {
    timeout(VM_TIMEOUT, async {
        loop {
            let s = pool.status().await.unwrap();
            if ok(&s) {
                return s;
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pool never reached: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_replaces_a_vm_killed_from_outside() {
    let driver = support::qemu("health").await;
    let config = PoolConfig { warm: 1, health_interval: Duration::from_millis(300), ..PoolConfig::default() };
    let pool = Pool::start(driver.clone(), config);
    wait_for(&pool, "one ready", |s| s.ready == 1).await;

    let mine = format!("hearth-vm-{}", driver.prefix());
    let victims = support::processes_naming(&mine);
    assert_eq!(victims.len(), 1, "one QEMU process: {victims:?}");
    let pid: i32 = victims[0].split(':').next().unwrap().parse().unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();

    let s = wait_for(&pool, "the dead VM replaced", |s| s.replaced >= 1 && s.ready == 1).await;
    assert_eq!(s.replaced, 1);
    let now = support::processes_naming(&mine);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(!now[0].starts_with(&format!("{pid}:")), "a new VM took the killed one's place");
    // The killed VM's state directory goes with it.
    let dirs = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&mine))
            .count()
    };
    timeout(Duration::from_secs(10), async {
        while dirs() != 1 {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("only the live VM's state directory is left");

    let langs = support::image().languages().unwrap();
    let job = langs.get("bash").unwrap().job_for_code(b"echo alive", Vec::new(), Limits::DEFAULT);
    let mut sb = pool.acquire().await.unwrap();
    let out = timeout(VM_TIMEOUT, sb.run(&job, None, None)).await.expect("run in time").unwrap();
    sb.destroy().await.unwrap();
    assert_eq!(out.stdout, b"alive\n");
    pool.shutdown().await;
    let left = support::processes_naming(&mine);
    assert!(left.is_empty(), "shutdown destroys idle VMs: {left:?}");
    assert_eq!(dirs(), 0, "and their state directories");
}

/// The executor keeps python and node prepared by default: in a VM too, the interpreter
/// started ahead of the code runs it exactly as a cold start would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_interpreter_in_a_vm_runs_the_program() {
    let driver = support::qemu("prepared").await;
    let langs = support::image().languages().unwrap();
    let python = langs.get("python").unwrap();
    let set = hearth_sandbox::WarmSet { key: "python".into(), prepare: python.prepare().unwrap(), warm: 1 };
    let config = PoolConfig { warm: 0, sets: vec![set], ping_timeout: driver.ping_timeout(), ..PoolConfig::default() };
    let pool = Pool::start(driver.clone(), config);
    wait_for(&pool, "a prepared VM", |s| s.prepared == 1).await;
    let code = b"import sys\nprint(__name__, sys.argv[1:], input())\nsys.exit(3)\n";
    let input = hearth_sandbox::JobInput {
        files: vec![hearth_proto::frame::FileSpec { path: "main.py".into(), data: code.to_vec(), executable: false }],
        stdin: b"hi\n".to_vec(),
        args: vec!["a".into()],
        limits: Limits::DEFAULT,
        ..Default::default()
    };
    let job = python.job(input).unwrap();
    let mut sb = timeout(VM_TIMEOUT, pool.acquire_for("python")).await.expect("acquire in time").unwrap();
    let out = timeout(VM_TIMEOUT, sb.run(&job, None, None)).await.expect("run in time").unwrap();
    sb.destroy().await.unwrap();
    pool.shutdown().await;
    assert_eq!(out.result.status, Status::RuntimeError, "{out:?}");
    assert_eq!(out.result.exit_code, Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "__main__ ['a'] hi\n");
}
