//! A measurement, not an assertion (run with `--ignored --nocapture`): p50/p99 of
//! `POST /v1/runs?wait=true` for python `print(1)` over 200 sequential runs through the
//! whole path, beside the bare `python3 -c 'print(1)'` on this host in the same run.

mod support;

use std::time::{Duration, Instant};

use support::{post_json, run_body, Stack};

const RUNS: usize = 200;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    eprintln!(
        "{name:<34} n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn wait_true_latency_of_print_1() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), true).await?;
    let body = run_body("latency", "python", "print(1)");
    for _ in 0..5 {
        post_json(stack.addr, "/v1/runs?wait=true", &body, Duration::from_secs(30)).await?;
    }
    let mut service = Vec::with_capacity(RUNS);
    let mut inside = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let a = post_json(stack.addr, "/v1/runs?wait=true", &body, Duration::from_secs(30)).await?;
        service.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!((a.status, a.json()["stdout"].as_str()), (200, Some("1\n")));
        inside.push(a.json()["wall_ms"].as_f64().unwrap_or_default());
    }
    // `python3` as PATH finds it (here maybe a version-manager shim) and the interpreter the
    // sandbox runs (resolved in /usr/local/bin, /usr/bin, /bin).
    let sandboxed = ["/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or("python3");
    let mut bare = Vec::new();
    for python in ["python3", sandboxed] {
        let mut ms = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now();
            let out = tokio::process::Command::new(python).args(["-c", "print(1)"]).output().await?;
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(out.stdout, b"1\n");
        }
        bare.push((format!("bare {python} -c 'print(1)'"), ms));
    }
    summary("POST ?wait=true python print(1)", service);
    summary("  of which the program's wall_ms", inside);
    for (name, ms) in bare {
        summary(&name, ms);
    }
    Ok(())
}
