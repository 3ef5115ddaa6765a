//! Boot-to-Ready of a qemu VM and the per-run cost in a warm VM, for docs/microvm.md.
//!
//! `cargo run --release -p hearth-image --example vm_timing -- [N]` (root; the image from
//! `hearth image build`, or `$HEARTH_IMAGE`). For each of N VMs, one after another:
//! "boot" is from spawning QEMU to the agent's Ready frame; then one run in it ("bash
//! `true`": the floor of a run, i.e. the frame round trip, writing the file, fork, seccomp,
//! exec and reaping inside the guest; or python `print(1)`), timed from sending the job to
//! the verdict, and the VM destroyed (not timed).

use std::time::Instant;

use hearth_proto::Limits;
use hearth_sandbox::{Driver, QemuConfig, QemuDriver};

fn summary(name: &str, v: &mut [f64]) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!("| {name:<34} | {:>4} | {:>8.0} | {:>8.0} | {:>8.0} |", v.len(), pct(0.5), pct(0.9), v[v.len() - 1]);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let image = hearth_image::Image::open(&hearth_image::default_image())?;
    let driver = QemuDriver::new(QemuConfig::new(image.vm_image())).await?;
    let langs = image.languages()?;
    println!("qemu driver with {:?}, {n} VMs per row", driver.accel());
    let jobs = [
        ("bash `true`", langs.get("bash").unwrap().job_for_code(b"true", Vec::new(), Limits::DEFAULT)),
        ("python `print(1)`", langs.get("python").unwrap().job_for_code(b"print(1)", Vec::new(), Limits::DEFAULT)),
    ];
    let mut boot = Vec::new();
    let mut runs = vec![Vec::new(); jobs.len()];
    for i in 0..n {
        for (j, (_, job)) in jobs.iter().enumerate() {
            let t = Instant::now();
            let mut sb = driver.create().await?;
            boot.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let out = sb.run(job, None, None).await?;
            runs[j].push(t.elapsed().as_secs_f64() * 1000.0);
            sb.destroy().await?;
            assert_eq!(out.result.status, hearth_proto::Status::Ok, "run {i}: {out:?}");
        }
    }
    println!("| measurement (ms)                   |    n |      p50 |      p90 |      max |");
    println!("|---|---:|---:|---:|---:|");
    summary("boot: spawn QEMU -> agent Ready", &mut boot);
    for (j, (name, _)) in jobs.iter().enumerate() {
        summary(&format!("{name} in a warm VM"), &mut runs[j]);
    }
    Ok(())
}
