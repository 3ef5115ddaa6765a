//! Times the sandbox core on this host:
//! - create: `driver.create()` until the agent says Ready (what refilling the pool costs);
//! - run: a program on an already-warm sandbox, from `run()` to the verdict (what a user
//!   waits for when the pool has a sandbox ready);
//! - prepared: the same, on a sandbox whose interpreter was started ahead of the code;
//! - bare: the same program started directly on the host, `/usr/bin/python3 -c 'print(1)'`.
//!
//! `cargo run --release -p hearth-sandbox --example sandbox_timing [N]` (needs root).

use std::time::{Duration, Instant};

use hearth_proto::Limits;
use hearth_sandbox::{locate_agent, Driver, Languages, ProcessConfig, ProcessDriver};

fn stats(name: &str, mut xs: Vec<Duration>) {
    xs.sort();
    let q = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "| {name:<40} | {:>4} | {:>7.2} | {:>7.2} | {:>7.2} | {:>7.2} |",
        xs.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}

fn bare(argv: &[&str], n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let out = std::process::Command::new(argv[0]).args(&argv[1..]).output().expect("bare run");
            assert!(out.status.success());
            t.elapsed()
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let agent = locate_agent().ok_or_else(|| anyhow::anyhow!("hearth-agent not found; set HEARTH_AGENT"))?;
    let driver = ProcessDriver::new(ProcessConfig::new(agent))?;
    let langs = Languages::detect()?;
    println!("| measurement (ms) | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|");

    let mut create = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let sb = driver.create().await?;
        create.push(t.elapsed());
        sb.destroy().await?;
    }
    stats("create sandbox (spawn → agent Ready)", create);

    for (lang, code, bare_argv) in [
        ("python", "print(1)", vec!["/usr/bin/python3", "-c", "print(1)"]),
        ("javascript", "console.log(1)", vec!["/usr/bin/node", "-e", "console.log(1)"]),
        ("bash", "echo 1", vec!["/bin/bash", "-c", "echo 1"]),
    ] {
        let l = langs.get(lang).expect("language present");
        let job = l.job_for_code(code.as_bytes(), Vec::new(), Limits::DEFAULT);
        let prepare = l.prepare();
        for prepared in [false, true] {
            if prepared && prepare.is_none() {
                continue;
            }
            let mut runs = Vec::new();
            for _ in 0..n {
                let mut sb = driver.create().await?;
                if let (true, Some(p)) = (prepared, &prepare) {
                    sb.prepare(p, Duration::from_secs(10)).await?;
                }
                let t = Instant::now();
                let out = sb.run(&job, None, None).await?;
                runs.push(t.elapsed());
                assert_eq!(out.stdout, b"1\n");
                sb.destroy().await?;
            }
            let how = if prepared { "a prepared" } else { "a warm" };
            stats(&format!("{lang} `{code}` in {how} sandbox"), runs);
        }
        stats(&format!("bare `{}`", bare_argv.join(" ")), bare(&bare_argv, n));
    }
    Ok(())
}
