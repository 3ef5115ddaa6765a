//! The warm pool with the real process driver: it keeps sandboxes ready, makes callers
//! wait when it has none, and replaces a sandbox whose agent was killed from outside.

mod support;

use std::time::Duration;

use hearth_proto::Limits;
use hearth_sandbox::{Languages, Pool, PoolConfig, PoolStatus};
use tokio::time::{sleep, timeout};

async fn wait_for(pool: &Pool, what: &str, ok: impl Fn(&PoolStatus) -> bool) -> PoolStatus {
    timeout(Duration::from_secs(20), async {
        loop {
            let s = pool.status().await.unwrap();
            if ok(&s) {
                return s;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pool never reached: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_replaces_a_sandbox_killed_from_outside() {
    let driver = support::tagged_driver("health");
    let config = PoolConfig { warm: 1, health_interval: Duration::from_millis(200), ..PoolConfig::default() };
    let pool = Pool::start(driver.clone(), config);
    wait_for(&pool, "one ready", |s| s.ready == 1).await;

    let mine: Vec<String> = driver.cgroups().list().into_iter().filter(|n| n.starts_with(driver.prefix())).collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let victim = &mine[0];
    // Kill the agent (PID 1 of the sandbox) with SIGKILL from the host.
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/hearth/{victim}/cgroup.procs"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/hearth/{victim}/cgroup.procs")))
        .unwrap();
    let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 2, "launcher and agent: {pids:?}");
    let agent = *pids.iter().max().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent), nix::sys::signal::Signal::SIGKILL).unwrap();

    let s = wait_for(&pool, "the dead one replaced", |s| s.replaced >= 1 && s.ready == 1).await;
    assert_eq!(s.replaced, 1);
    let mine = || driver.cgroups().list().into_iter().filter(|n| n.starts_with(driver.prefix())).collect::<Vec<_>>();
    // The dead sandbox is destroyed in the background; wait for its cgroup to go.
    let now = timeout(Duration::from_secs(10), async {
        loop {
            let now = mine();
            if now.len() == 1 {
                return now;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the killed sandbox's cgroup is removed");
    assert_ne!(&now[0], victim, "the killed sandbox is gone, a new one took its place");

    let langs = Languages::detect().unwrap();
    let job = langs.get("bash").unwrap().job_for_code(b"echo alive", Vec::new(), Limits::DEFAULT);
    let mut sb = pool.acquire().await.unwrap();
    let out = sb.run(&job, None, None).await.unwrap();
    sb.destroy().await.unwrap();
    assert_eq!(out.stdout, b"alive\n");
    pool.shutdown().await;
    assert!(
        driver.cgroups().list().iter().all(|n| !n.starts_with(driver.prefix())),
        "shutdown destroys idle sandboxes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_waits_for_a_sandbox_and_the_pool_refills() {
    let driver = support::tagged_driver("wait");
    let pool = Pool::start(driver.clone(), PoolConfig { warm: 1, ..PoolConfig::default() });
    wait_for(&pool, "one ready", |s| s.ready == 1).await;
    // Take more than the pool holds: the later ones wait until refills arrive.
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(timeout(Duration::from_secs(20), pool.acquire()).await.expect("acquire").unwrap());
    }
    let ids: std::collections::HashSet<String> = taken.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(ids.len(), 3, "every acquire gets its own sandbox");
    for sb in taken {
        sb.destroy().await.unwrap();
    }
    let s = wait_for(&pool, "refilled", |s| s.ready == 1).await;
    assert!(s.created >= 4, "{s:?}");
    pool.shutdown().await;
}
