//! The firecracker driver for real: a template VM booted, snapshotted, and sandboxes
//! restored from it, running python. Runs only where `firecracker` is on PATH and KVM boots
//! a stock kernel (the qemu driver's KVM probe decides); elsewhere it says it was skipped,
//! and why. The request sequence itself is tested against a stub everywhere
//! (`crates/hearth-sandbox/tests/firecracker_stub.rs`).

mod support;

use hearth_proto::{Limits, Status};
use hearth_sandbox::{Accel, Driver, FirecrackerConfig, FirecrackerDriver};
use tokio::time::timeout;

use support::VM_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firecracker_restores_a_snapshot_and_runs_python() {
    let Some(fc) = hearth_sandbox::host::find_binary("firecracker") else {
        eprintln!("skipped: no `firecracker` on PATH (docs/microvm.md says how to install it)");
        return;
    };
    let qemu = support::qemu("fc-probe").await;
    if qemu.accel() != Accel::Kvm {
        eprintln!("skipped: KVM does not boot a stock kernel on this host (the qemu probe fell back to TCG)");
        return;
    }
    let config =
        FirecrackerConfig { firecracker: fc, tag: "fc".into(), ..FirecrackerConfig::new(support::image().vm_image()) };
    let driver = timeout(VM_TIMEOUT, FirecrackerDriver::new(config)).await.expect("template in time").unwrap();
    assert!(driver.restores(), "sandboxes come from the snapshot");
    let langs = support::image().languages().unwrap();
    let job = langs.get("python").unwrap().job_for_code(b"print(6 * 7)", Vec::new(), Limits::DEFAULT);
    for _ in 0..2 {
        let mut sb = timeout(VM_TIMEOUT, driver.create()).await.expect("restore in time").unwrap();
        let id = sb.id().to_string();
        let out = timeout(VM_TIMEOUT, sb.run(&job, None, None)).await.expect("run in time").unwrap();
        sb.destroy().await.unwrap();
        assert_eq!(out.result.status, Status::Ok, "{out:?}");
        assert_eq!(out.stdout, b"42\n");
        assert!(support::vm_leftovers(&id).is_empty(), "{:?}", support::vm_leftovers(&id));
    }
}
