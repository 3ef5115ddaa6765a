//! Times every language on this host with its program from `tests/languages/programs.toml`
//! (read two numbers from stdin, print the sum): N cold runs each, every run in a fresh
//! sandbox with nothing prepared or cached, so a compiled language compiles every time.
//! "total" is from `run()` to the verdict (what a user waits for once a warm sandbox is
//! taken: compile + run + the agent round trips); "compile" and "run" are the agent's own
//! wall times of the two steps. Sandbox creation is not counted (the pool does it ahead).
//!
//! `cargo run --release -p hearth-sandbox --example language_timing [N] [LANG...]` (root).

#[path = "../tests/languages/programs.rs"]
mod programs;

use std::time::{Duration, Instant};

use hearth_proto::Status;
use hearth_sandbox::{locate_agent, Driver, Languages, ProcessConfig, ProcessDriver};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let only: Vec<String> = args.collect();
    let agent = locate_agent().ok_or_else(|| anyhow::anyhow!("hearth-agent not found; set HEARTH_AGENT"))?;
    let driver = ProcessDriver::new(ProcessConfig::new(agent))?;
    let langs = Languages::detect()?;
    let progs = programs::load();
    println!("| id | name | version | compiled | total avg (ms) | compile avg (ms) | run avg (ms) |");
    println!("|---|---|---|---|---:|---:|---:|");
    for lang in langs.list() {
        if !only.is_empty() && !only.contains(&lang.id) {
            continue;
        }
        let Some(prog) = progs.iter().find(|p| p.lang == lang.id && p.code.is_some()) else {
            eprintln!("{}: no program", lang.id);
            continue;
        };
        let job = prog.job(lang);
        let (mut total, mut compile, mut run) = (Duration::ZERO, 0u64, 0u64);
        for _ in 0..n {
            let mut sb = driver.create().await?;
            let t = Instant::now();
            let out = sb.run(&job, None, None).await?;
            total += t.elapsed();
            sb.destroy().await?;
            anyhow::ensure!(
                out.result.status == Status::Ok && out.stdout == prog.stdout.as_bytes(),
                "{}: {:?} {:?}",
                lang.id,
                out.result.status,
                String::from_utf8_lossy(&out.stderr)
            );
            compile += out.result.compile.as_ref().map_or(0, |c| c.wall_ms);
            run += out.result.wall_ms;
        }
        let avg = |x: u64| x as f64 / n as f64;
        let compile = if lang.compiled { format!("{:.0}", avg(compile)) } else { "–".into() };
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {:.0} |",
            lang.id,
            lang.name,
            lang.version,
            if lang.compiled { "yes" } else { "no" },
            total.as_secs_f64() * 1e3 / n as f64,
            compile,
            avg(run),
        );
    }
    Ok(())
}
