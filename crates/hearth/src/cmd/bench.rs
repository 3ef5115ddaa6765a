//! `hearth bench`: measures a running hearth from outside (see `hearth_bench`) and writes
//! `report.json`, `report.md` and SVG plots into `--out`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use hearth_bench::{BenchConfig, ConnectionsConfig, LatencyConfig, ThroughputConfig};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The hearth to measure (its gateway).
    #[arg(long, env = "HEARTH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API token, sent as `Authorization: Bearer ...` on every request and socket.
    #[arg(long, env = "HEARTH_TOKEN")]
    pub token: Option<String>,
    /// Directory for report.json, report.md and the plots.
    #[arg(long, default_value = "bench-report")]
    pub out: PathBuf,
    /// A note for the report: the build, what else was running.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Parts to run: latency, throughput, connections (default: all three).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Languages of the latency part, each with its trivial program.
    #[arg(long, value_delimiter = ',', default_value = "python,javascript,bash")]
    pub langs: Vec<String>,
    /// A program of your own for a language: LANG=CODE (repeatable).
    #[arg(long = "code", value_name = "LANG=CODE")]
    pub codes: Vec<String>,
    /// The bare command for a language: LANG=CMD ... {file} (default: its interpreter, as the sandbox runs it).
    #[arg(long = "bare", value_name = "LANG=CMD")]
    pub bares: Vec<String>,
    /// Measured sequential runs per language.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Runs before those (not counted).
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Pause between sequential runs, in ms (the pool replaces the sandbox a run used).
    #[arg(long, default_value_t = 50)]
    pub pause_ms: u64,
    /// Languages of the throughput part.
    #[arg(long, value_delimiter = ',', default_value = "bash,python")]
    pub throughput_langs: Vec<String>,
    /// Concurrency levels of the throughput part.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub concurrency: Vec<usize>,
    /// Seconds per throughput level.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Idle WebSocket sessions to hold open.
    #[arg(long, default_value_t = 10_000)]
    pub sockets: usize,
    /// Sockets opened at once.
    #[arg(long, default_value_t = 200)]
    pub parallel: usize,
    /// Sockets on the watched session, and runs on it, while the idle ones are open.
    #[arg(long, default_value_t = 100)]
    pub fanout_sockets: usize,
    #[arg(long, default_value_t = 20)]
    pub fanout_runs: usize,
    /// Tiny everything (a few seconds): a smoke run that the bench still works.
    #[arg(long)]
    pub quick: bool,
}

fn per_lang(pairs: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(l, c)| (l.to_string(), c.to_string()))
                .with_context(|| format!("--{what} takes LANG=..."))
        })
        .collect()
}

fn config(mut args: Args) -> anyhow::Result<BenchConfig> {
    if args.quick {
        (args.runs, args.warmup, args.pause_ms) = (5, 1, 20);
        (args.concurrency, args.duration_s, args.throughput_langs) = (vec![1, 2], 1.0, vec!["bash".into()]);
        (args.sockets, args.fanout_sockets, args.fanout_runs) = (50, 5, 2);
    }
    let codes = per_lang(&args.codes, "code")?;
    let bares = per_lang(&args.bares, "bare")?;
    let code = |lang: &str| -> anyhow::Result<String> {
        match codes.iter().rev().find(|(l, _)| l == lang) {
            Some((_, c)) => Ok(c.clone()),
            None => hearth_bench::default_code(lang)
                .map(String::from)
                .with_context(|| format!("no trivial program known for {lang}: give --code {lang}=...")),
        }
    };
    let bare = |lang: &str| bares.iter().rev().find(|(l, _)| l == lang).map(|(_, c)| c.clone());
    let parts = ["latency", "throughput", "connections"];
    if let Some(bad) = args.only.iter().find(|p| !parts.contains(&p.as_str())) {
        bail!("--only takes {}, not {bad:?}", parts.join(", "));
    }
    let wants = |part: &str| args.only.is_empty() || args.only.iter().any(|p| p == part);
    let mut latency = Vec::new();
    if wants("latency") {
        for lang in &args.langs {
            latency.push(LatencyConfig {
                lang: lang.clone(),
                code: code(lang)?,
                runs: args.runs,
                warmup: args.warmup,
                pause: Duration::from_millis(args.pause_ms),
                bare: bare(lang),
            });
        }
    }
    let mut throughput = Vec::new();
    if wants("throughput") {
        for lang in &args.throughput_langs {
            throughput.push(ThroughputConfig {
                lang: lang.clone(),
                code: code(lang)?,
                concurrency: args.concurrency.clone(),
                duration: Duration::from_secs_f64(args.duration_s.max(0.1)),
                bare: bare(lang),
            });
        }
    }
    let connections = wants("connections").then(|| ConnectionsConfig {
        sockets: args.sockets,
        parallel: args.parallel,
        fanout_sockets: args.fanout_sockets,
        fanout_runs: args.fanout_runs,
        lang: "bash".into(),
        code: "echo 1".into(),
    });
    Ok(BenchConfig {
        url: args.url,
        token: args.token,
        out: args.out,
        note: args.note,
        latency,
        throughput,
        connections,
    })
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    let sockets = if args.quick { 64 } else { args.sockets + args.fanout_sockets };
    super::raise_fd_limit(sockets as u64 + 1024);
    let config = config(args)?;
    let report = hearth_bench::run(&config).await?;
    println!("{}", report.markdown());
    println!("report: {}/report.json, {}/report.md", config.out.display(), config.out.display());
    Ok(0)
}
