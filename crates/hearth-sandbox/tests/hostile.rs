//! Programs that try to get out, or to take the host down with them: each gets a clear
//! verdict, gains nothing, and leaves nothing behind.

mod support;

use std::time::{Duration, Instant};

use hearth_proto::api::RunResult;
use hearth_proto::{Limits, LimitsRequest, Status};
use hearth_sandbox::{Driver, Languages, ProcessDriver};
use tokio::time::timeout;

async fn run(driver: &ProcessDriver, lang: &str, code: &str, req: LimitsRequest) -> (RunResult, u64) {
    let langs = Languages::detect().unwrap();
    let limits = Limits::resolve(&req, &Limits::DEFAULT, &Limits::MAX);
    let job = langs.get(lang).unwrap().job_for_code(code.as_bytes(), Vec::new(), limits);
    let mounts = support::host_mounts();
    let mut sb = driver.create().await.unwrap();
    let id = sb.id().to_string();
    let start = Instant::now();
    let out = timeout(Duration::from_secs(60), sb.run(&job, None, None)).await.expect("run in time").unwrap();
    let elapsed = start.elapsed().as_millis() as u64;
    sb.destroy().await.unwrap();
    let left = support::leftovers(driver, &id, &mounts);
    assert!(left.is_empty(), "{code:?} left behind: {left:?}");
    (out.to_api("r", "s", lang), elapsed)
}

fn no_limits() -> LimitsRequest {
    LimitsRequest::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_mount_and_trace_calls_are_refused() {
    let d = support::driver();
    let code = r#"
import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, rc):
    print(name, "refused" if rc == -1 and ctypes.get_errno() in (errno.EPERM, errno.ENOSYS) else f"ALLOWED rc={rc}")
attempt("unshare-user", libc.unshare(0x10000000))
attempt("unshare-net", libc.unshare(0x40000000))
attempt("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
attempt("ptrace", libc.ptrace(16, 1, None, None))
attempt("setns", libc.setns(0, 0))
attempt("chroot", libc.chroot(b"/tmp"))
attempt("bpf", libc.syscall(321, 0, None, 0))
attempt("keyctl", libc.syscall(250, 0, 0, 0))
attempt("perf", libc.syscall(298, None, 0, -1, -1, 0))
# x32 ABI: the same unshare under its x32 number. EPERM is the filter's answer (a kernel
# without x32 would say ENOSYS; one with it would run the call).
rc = libc.syscall(0x40000000 | 272, 0x10000000)
print("x32-unshare", "refused" if rc == -1 and ctypes.get_errno() == errno.EPERM else f"ALLOWED rc={rc} errno={ctypes.get_errno()}")
"#;
    let (r, _) = run(&d, "python", code, no_limits()).await;
    assert_eq!(r.status, Some(Status::Ok), "{r:?}");
    assert!(!r.stdout.contains("ALLOWED"), "{}", r.stdout);
    assert_eq!(r.stdout.matches("refused").count(), 10, "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_is_read_only_and_the_program_is_not_root() {
    let d = support::driver();
    let code = r#"
id -u; id -g
touch /usr/x 2>/dev/null && echo WROTE-USR || echo usr-ro
touch /etc/x 2>/dev/null && echo WROTE-ETC || echo etc-ro
touch /x 2>/dev/null && echo WROTE-ROOT || echo root-ro
echo hi > /work/ok && cat /work/ok
{ ls -A /home /root 2>/dev/null; find /var -mindepth 1 -maxdepth 2 2>/dev/null | grep -vx -e /var/lib -e /var/lib/ghc; } | wc -l
"#;
    let (r, _) = run(&d, "bash", code, no_limits()).await;
    assert_eq!(r.stdout, "1000\n1000\nusr-ro\netc-ro\nroot-ro\nhi\n0\n", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_pid_1_from_inside_changes_nothing() {
    let d = support::driver();
    let (r, _) = run(&d, "bash", "kill -9 1; kill -9 -1; echo still-here", no_limits()).await;
    assert_eq!(r.status, Some(Status::Ok), "{r:?}");
    assert!(r.stdout.ends_with("still-here\n"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fork_bomb_is_contained_and_cleaned_up() {
    let d = support::driver();
    let code = r#"
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(100)
            os._exit(0)
        n += 1
except OSError as e:
    print("stopped after", n, "children:", e.strerror, flush=True)
time.sleep(100)
"#;
    let req = LimitsRequest { pids: Some(16), wall_ms: Some(1500), ..no_limits() };
    let (r, elapsed) = run(&d, "python", code, req).await;
    assert_eq!(r.status, Some(Status::Timeout), "{r:?}");
    assert!(r.stdout.starts_with("stopped after"), "{r:?}");
    let n: usize = r.stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(n < 16, "{n} children with a limit of 16 processes");
    // Only a hang breaks this bound (the wall limit is 1.5 s; a loaded CI host is slow).
    assert!(elapsed < 30_000, "{elapsed} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_spinning_hit_the_cpu_limit() {
    let d = support::driver();
    let code = "import threading\ndef spin():\n    while True: pass\nfor _ in range(4): threading.Thread(target=spin).start()\n";
    let req = LimitsRequest { cpu_ms: Some(500), wall_ms: Some(30_000), ..no_limits() };
    // `CpuLimit` (not `Timeout`) is the proof that the CPU limit struck before the wall
    // limit; how long that took depends on how much CPU the host had to give.
    let (r, _) = run(&d, "python", code, req).await;
    assert_eq!(r.status, Some(Status::CpuLimit), "{r:?}");
    assert!(r.cpu_ms >= 500, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_process_cpu_hog_is_caught_too() {
    let d = support::driver();
    // The busy work happens in children, which RLIMIT_CPU per process would not sum.
    let code = "for i in 1 2 3 4; do (while :; do :; done) & done; wait\n";
    let req = LimitsRequest { cpu_ms: Some(800), wall_ms: Some(30_000), ..no_limits() };
    let (r, _) = run(&d, "bash", code, req).await;
    assert_eq!(r.status, Some(Status::CpuLimit), "{r:?}");
    assert!(r.cpu_ms >= 800, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_filling_is_bounded() {
    let d = support::driver();
    let code = "head -c 200000000 /dev/zero > /work/big; echo rc=$?; ls -la /work/big | awk '{print $5}'";
    let (r, _) = run(&d, "bash", code, no_limits()).await;
    assert_eq!(r.status, Some(Status::Ok), "{r:?}");
    let size: u64 = r.stdout.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(size <= 64 << 20, "wrote {size} bytes");
    assert!(!r.stdout.starts_with("rc=0"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_can_reopen_its_own_stdio() {
    let d = support::driver();
    let langs = Languages::detect().unwrap();
    let job = langs.get("bash").unwrap().job_for_code(
        b"cat /dev/stdin; echo to-stdout > /dev/stdout; echo to-stderr > /proc/self/fd/2",
        b"from-stdin\n".to_vec(),
        Limits::DEFAULT,
    );
    let mut sb = d.create().await.unwrap();
    let out = sb.run(&job, None, None).await.unwrap();
    sb.destroy().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-stdin\nto-stdout\n", "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_of_the_host_is_visible() {
    let d = support::driver();
    let (r, _) = run(&d, "bash", "ls /proc | grep -E '^[0-9]+$' | sort -n | head -1", no_limits()).await;
    assert_eq!(r.stdout, "1\n", "the agent is PID 1 and nothing of the host shows: {r:?}");
}
